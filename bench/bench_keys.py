"""What a proxy key costs per request, each figure beside its baseline from the same run.

    .venv/bin/python bench/bench_keys.py            # about 10 s
    .venv/bin/python bench/bench_keys.py --n 5000

* ``authenticate``: a bearer key and a JWT, with the one-second :class:`KeyCache` (what the
  proxy does) and without it (a ledger read each time), beside a bare sha256 of the key;
* ``Ledger.reserve`` on SQLite with ``key_id`` and ``max_open_for_key`` (the count folded into
  the path's read) beside the same reserve without a key, interleaved in rounds so that drift
  of the machine hits both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from klingcost import _jwt
from klingcost.budgets import HoldAmounts
from klingcost.keys import KeyCache, authenticate, create_key
from klingcost.ledger import Ledger

SECRET = b"s" * 48
AMOUNTS = HoldAmounts(units_milli=1000, pack="video", cost_minor=1, currency="credits")


def timed(call: Callable[[], object], n: int) -> tuple[float, float]:
    """Median and p99 of ``n`` calls, in microseconds."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def show(name: str, figures: tuple[float, float]) -> None:
    print(f"  {name:<44} median {figures[0]:8.1f} us   p99 {figures[1]:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per figure")
    n = parser.parse_args().n
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1 and 5 min)")
    with tempfile.TemporaryDirectory() as directory, Ledger.open(f"{directory}/l.db") as ledger:
        ledger.set_budget("acme", limit=10**15)
        made = create_key(ledger, "acme", secret=SECRET, max_concurrent=10**6)
        at = int(time.time())
        token = _jwt.encode(
            {"iss": made.api_key.access_key, "exp": at + 1800, "nbf": at - 5},
            made.secret_key.encode(),
        )
        now = datetime.now(UTC)
        cache = KeyCache()
        bearer, jwt = f"Bearer {made.key}", f"Bearer {token}"
        print("authenticate, per request:")
        show(
            "baseline: sha256 of the bearer key",
            timed(lambda: hashlib.sha256(made.key.encode()).hexdigest(), n),
        )
        show(
            "bearer key, cached row",
            timed(lambda: authenticate(ledger, bearer, secret=SECRET, now=now, cache=cache), n),
        )
        show(
            "bearer key, row read each time",
            timed(lambda: authenticate(ledger, bearer, secret=SECRET, now=now), n),
        )
        show(
            "JWT, cached row",
            timed(lambda: authenticate(ledger, jwt, secret=SECRET, now=now, cache=cache), n),
        )
        show(
            "JWT, row read each time",
            timed(lambda: authenticate(ledger, jwt, secret=SECRET, now=now), n),
        )
        print("Ledger.reserve on SQLite, interleaved rounds of 100:")
        plain: list[float] = []
        keyed: list[float] = []
        for _ in range(max(1, n // 100)):
            for samples, options in (
                (plain, {}),
                (keyed, {"key_id": made.id, "max_open_for_key": 10**6}),
            ):
                for _ in range(100):
                    start = time.perf_counter()
                    hold = ledger.reserve("acme", AMOUNTS, **options)  # type: ignore[arg-type]
                    samples.append((time.perf_counter() - start) * 1e6)
                    ledger.void(hold.id, reason="bench")  # a key has few jobs open at once
        for name, samples in (
            ("baseline: reserve without a key", plain),
            ("reserve with key_id and max_open_for_key", keyed),
        ):
            samples.sort()
            show(name, (statistics.median(samples), samples[int(len(samples) * 0.99) - 1]))


if __name__ == "__main__":
    main()
