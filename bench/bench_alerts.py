"""How soon an alert reaches a webhook, beside a bare POST to the same loopback receiver.

    .venv/bin/python bench/bench_alerts.py           # 30 crossings, a few seconds

Prints medians and maxima of: a direct ``httpx`` POST to the receiver (the floor), the time
from a reserve that crosses a soft threshold to the alert's arrival (the outbox row, the
commit, the background delivery), a reserve that crosses nothing (no rule is read), and the
crossing reserve itself (what the submission waits for). The machine's load is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from alert_receiver import receiver
from klingcost import alerts  # noqa: F401 (loaded, as in a running proxy or guard)
from klingcost.budgets import HoldAmounts
from klingcost.ledger import Ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="crossings (and direct POSTs)")
    n = parser.parse_args().n
    arrive, direct, crossing, plain = [], [], [], []
    with receiver() as hook, tempfile.TemporaryDirectory() as tmp:
        with httpx.Client() as client:
            for _ in range(n):
                start = time.monotonic()
                client.post(hook.url, json={"ping": 1})
                direct.append(time.monotonic() - start)
        hook.received.clear()
        with Ledger.open(Path(tmp) / "bench.db") as ledger:
            for i in range(n):
                team = f"team{i}"
                ledger.set_budget(team, limit=10_000)
                ledger.add_alert_rule(team, channel="webhook", url=hook.url, on=["soft"])
                start = time.monotonic()
                ledger.reserve(team, HoldAmounts(1000, "video", 100, "credits"))
                plain.append(time.monotonic() - start)
                seen = len(hook.received)
                start = time.monotonic()
                ledger.reserve(team, HoldAmounts(1000, "video", 8_000, "credits"))
                crossing.append(time.monotonic() - start)
                hook.wait(seen + 1, timeout=5)
                arrive.append(hook.received[seen].at - start)

    def ms(values: list[float]) -> str:
        return (
            f"median {statistics.median(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
        )

    print(f"direct POST to the receiver (floor)  {ms(direct)}")
    print(f"soft crossing -> alert arrives       {ms(arrive)}")
    print(f"reserve, no crossing                 {ms(plain)}")
    print(f"reserve that crosses (enqueues)      {ms(crossing)}")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
