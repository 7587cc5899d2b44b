"""Benchmarks of the ledger, each printed beside a floor measured in the same run.

    .venv/bin/python bench/bench_ledger.py                 # the default run, about 2 minutes
    .venv/bin/python bench/bench_ledger.py --entries 50000 --quick

The floor is what SQLite itself costs for one durable write on this machine: a bare ``sqlite3``
INSERT plus COMMIT in WAL mode with the ledger's own settings (synchronous=NORMAL). Targets:

* ``reserve`` median <= 3x the floor;
* a whole reserve -> attach -> settle cycle <= 1 ms median;
* reserve throughput with 1,000,000 entries in the ledger within 10% of an empty ledger;
* four processes on one file >= 2,000 reserves per second together, with zero errors.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from klingcost.budgets import HoldAmounts
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=2000, pack="video", cost_minor=30000, currency="credits")
BIG = 10**18


def floor_us(directory: Path, n: int, synchronous: str) -> float:
    """Median µs of a bare INSERT + COMMIT in WAL mode."""
    conn = sqlite3.connect(directory / f"floor-{synchronous}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, team TEXT, amount INTEGER, at TEXT)")
    times = []
    for i in range(n):
        start = time.perf_counter_ns()
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO t (team, amount, at) VALUES (?, ?, ?)",
            ("team", i, "2026-11-25T00:00:00+00:00"),
        )
        conn.execute("COMMIT")
        times.append(time.perf_counter_ns() - start)
    conn.close()
    return statistics.median(times) / 1000


def fresh(path: Path, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> Ledger:
    ledger = Ledger.open(path, synchronous=synchronous)
    ledger.set_budget("company", limit=BIG, period="month")
    ledger.set_budget("team", limit=BIG, period="month", parent="company")
    return ledger


def reserve_us(ledger: Ledger, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        ledger.reserve("team", AMOUNTS)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def cycle_us(ledger: Ledger, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter_ns()
        hold = ledger.reserve("team", AMOUNTS)
        ledger.attach(hold.id, f"task-{i}-{hold.id}")
        ledger.settle(hold.id, units_milli=2000, cost_minor=30000, raw_deduction="2")
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def throughput(ledger: Ledger, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        ledger.reserve("team", AMOUNTS)
    return n / (time.perf_counter() - start)


def bulk_fill(ledger: Ledger, entries: int) -> None:
    """Add ``entries`` settled holds (and their entries) to ``team``, balances kept exact."""
    at = datetime.now(UTC).isoformat()
    key = datetime.now(UTC).strftime("%Y-%m")
    conn = ledger.conn
    start = conn.execute("SELECT COALESCE(MAX(id), 0) FROM holds").fetchone()[0] + 1
    chunk = 100_000
    conn.execute("BEGIN IMMEDIATE")
    for first in range(start, start + entries, chunk):
        ids = range(first, min(first + chunk, start + entries))
        conn.executemany(
            "INSERT INTO holds (id, idempotency_key, team, state, est_units_milli, pack,"
            " est_cost_minor, currency, units_milli, cost_minor, variance_units_milli,"
            " variance_cost_minor, meta, reserved_at, updated_at)"
            " VALUES (?, ?, 'team', 'settled', 2000, 'video', 30000, 'credits', 2000, 30000,"
            " 0, 0, '{}', ?, ?)",
            ((i, f"bulk-{i}", at, at) for i in ids),
        )
        for depth, budget in enumerate(("team", "company")):
            conn.executemany(
                "INSERT INTO hold_entries (hold_id, budget, depth, period_key, reserved, charged)"
                " VALUES (?, ?, ?, ?, 30000, 30000)",
                ((i, budget, depth, key) for i in ids),
            )
    for budget in ("team", "company"):
        conn.execute(
            "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, ?, 0)"
            " ON CONFLICT (budget, period_key) DO UPDATE SET posted = posted + excluded.posted",
            (budget, key, 30000 * entries),
        )
    conn.execute("COMMIT")


def _worker(path: str, n: int, start_at: Any, results: Any) -> None:
    ledger = Ledger.open(path, timeout=30)
    ok = errors = 0
    start_at.wait()
    first = time.perf_counter()
    for _ in range(n):
        try:
            ledger.reserve("team", AMOUNTS)
            ok += 1
        except Exception as exc:  # counted and reported
            errors += 1
            print(f"worker error: {type(exc).__name__}: {exc}", file=sys.stderr)
    results.put((ok, errors, first, time.perf_counter()))
    ledger.close()


def processes(path: Path, workers: int, n: int) -> tuple[float, int, int]:
    context = mp.get_context("spawn")
    start_at = context.Event()
    results = context.Queue()
    procs = [
        context.Process(target=_worker, args=(str(path), n, start_at, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every process import and open the ledger
    start_at.set()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    ok = sum(o[0] for o in outcomes)
    errors = sum(o[1] for o in outcomes)
    wall = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    return ok / wall, ok, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in the big ledger")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        floor = floor_us(directory, n, "FULL")
        normal = floor_us(directory, n, "NORMAL")
        print(f"floor: bare sqlite3 INSERT+COMMIT, WAL (default synchronous=FULL): {floor:7.1f} µs")
        print(f"       the same with synchronous=NORMAL (the ledger's default):   {normal:7.1f} µs")

        ledger = fresh(directory / "empty.db")
        reserve = reserve_us(ledger, n)
        print(
            f"reserve, synchronous=NORMAL (team under a parent, median of {n}): {reserve:7.1f} µs"
            f" = {reserve / floor:4.2f}x floor, {reserve / normal:4.1f}x the NORMAL floor"
            " (target <= 3x floor)"
        )
        cycle = cycle_us(ledger, n)
        print(
            f"reserve -> attach -> settle, synchronous=NORMAL (median of {n}): {cycle:7.1f} µs"
            f" = {cycle / floor:4.2f}x floor (target <= 1000 µs)"
        )
        ledger.close()
        durable = fresh(directory / "durable.db", "FULL")
        full_reserve = reserve_us(durable, n)
        full_cycle = cycle_us(durable, n // 2)
        durable.close()
        print(
            f"reserve, synchronous=FULL: {full_reserve:7.1f} µs = {full_reserve / floor:4.2f}x"
            f" floor; reserve -> attach -> settle: {full_cycle:7.1f} µs"
        )
        ledger.close()

        empty = fresh(directory / "fresh.db")
        big = fresh(directory / "big.db")
        start = time.perf_counter()
        bulk_fill(big, args.entries)
        big.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start both with an empty WAL
        built = time.perf_counter() - start
        cold = throughput(big, n // 5)
        throughput(empty, n // 5)  # the same warm-up for the empty ledger
        rounds: dict[str, list[float]] = {"empty": [], "big": []}
        for _ in range(5):  # interleaved, so that noise from other work hits both alike
            rounds["empty"].append(throughput(empty, n // 2))
            rounds["big"].append(throughput(big, n // 2))
        empty_rate = statistics.median(rounds["empty"])
        big_rate = statistics.median(rounds["big"])
        holds = big.conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
        problems = big.check()
        big.close()
        empty.close()
        print(
            f"throughput, empty ledger: {empty_rate:7.0f} reserves/s (median of 5 rounds of"
            f" {n // 2}: {', '.join(f'{r:.0f}' for r in rounds['empty'])})"
        )
        print(
            f"throughput, {holds:,} holds ({args.entries:,} bulk-loaded in {built:.1f} s):"
            f" {big_rate:7.0f} reserves/s = {big_rate / empty_rate:5.1%} of empty (target >= 90%)"
            f"\n    rounds: {', '.join(f'{r:.0f}' for r in rounds['big'])};"
            f" first cold round {cold:.0f}/s; ledger check: {len(problems)} differences"
        )

        shared = fresh(directory / "shared.db")
        shared.close()
        per = 2000 if args.quick else 5000
        rate, ok, errors = processes(directory / "shared.db", args.workers, per)
        print(
            f"{args.workers} processes on one file: {rate:9.0f} reserves/s together"
            f" ({ok} ok, {errors} errors) (target >= 2000/s, 0 errors)"
        )


if __name__ == "__main__":
    main()
