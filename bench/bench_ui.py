"""How long the live page's data takes to read (``klingcost.ui.page_data``), against reading
the budgets alone, on a ledger of N settled holds over the last 7 days.

    python bench/bench_ui.py /tmp/ui-bench.db 20000    # builds the ledger first (a few minutes)
"""

import sys
import time
from datetime import UTC, datetime, timedelta

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.ledger import Ledger
from klingcost.ui.data import page_data

path = sys.argv[1]
n = int(sys.argv[2])
now = datetime.now(UTC)
clock = ManualClock(now - timedelta(days=7))
meta: dict[str, str | int | None] = {
    "endpoint": "videos/text2video",
    "model": "kling-v1-6",
    "mode": "std",
    "duration": 5,
    "n": 1,
}
with Ledger.open(path, clock=clock) as ledger:
    ledger.set_budget("acme", limit=10**12, period="month")
    ledger.set_budget("ads", limit=10**11, period="week", parent="acme")
    t = time.perf_counter()
    for i in range(n):
        team = "ads" if i % 2 else "acme"
        h = ledger.reserve(team, HoldAmounts(1000, "video", 1500, "credits"), meta=meta)
        ledger.settle(h.id, units_milli=1000, cost_minor=1500, raw_deduction="1")
        clock.advance(timedelta(seconds=7 * 86400 / n))
    print(f"built {n} holds in {time.perf_counter() - t:.1f}s")
with Ledger.open(path, read_only=True) as ledger:
    runs = (("budgets() baseline", ledger.budgets), ("page_data", lambda: page_data(ledger)))
    for label, fn in runs:
        fn()
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        print(f"{label}: median {sorted(ts)[2] * 1000:.1f} ms")
