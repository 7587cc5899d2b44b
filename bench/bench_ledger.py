"""Benchmarks of the ledger, each printed beside a floor measured in the same run.

    .venv/bin/python bench/bench_ledger.py                 # the default run, about 2 minutes
    .venv/bin/python bench/bench_ledger.py --entries 50000 --quick

The floor is what SQLite itself costs for one committed write on this machine: a bare
``sqlite3`` INSERT plus COMMIT in WAL mode, measured at the SAME ``synchronous`` setting as the
ledger it judges (NORMAL, the ledger's default, against the NORMAL floor; FULL against FULL:
comparing a NORMAL reserve with a FULL floor flattered it ~20x). Targets:

* ``reserve`` median <= 3x the floor of its own setting;
* a whole reserve -> attach -> settle cycle <= 1 ms median;
* reserve latency with 1,000,000 holds in the ledger (``--entries``) within 10% of an empty
  ledger, by the mean (which is what throughput sees) with the median and p99 beside it. The
  big ledger is built as production grows one: random idempotency keys (uuid4, as the ledger
  makes them), a task per hold with a random task id, and three events per hold, bulk-inserted
  with executemany in one transaction;
* four processes on one file >= 2,000 reserves per second together, with zero errors.

Figures and their baselines: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
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
from klingcost.ledger.rollups import rebuild_rollups

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


def reserve_times(ledger: Ledger, n: int) -> list[int]:
    """Nanoseconds of each of ``n`` reserves."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        ledger.reserve("team", AMOUNTS)
        times.append(time.perf_counter_ns() - start)
    return times


def reserve_us(ledger: Ledger, n: int) -> float:
    return statistics.median(reserve_times(ledger, n)) / 1000


def spread(times: list[int]) -> tuple[float, float, float]:
    """Median, mean and p99 in µs."""
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) / 1000, statistics.fmean(ordered) / 1000, p99 / 1000


def cycle_us(ledger: Ledger, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter_ns()
        hold = ledger.reserve("team", AMOUNTS)
        ledger.attach(hold.id, f"task-{i}-{hold.id}")
        ledger.settle(hold.id, units_milli=2000, cost_minor=30000, raw_deduction="2")
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def bulk_fill(ledger: Ledger, entries: int, seed: int = 14) -> None:
    """Add ``entries`` settled holds to ``team`` as production would leave them: random
    idempotency keys, a task each with a random task id, three events each (reserve, attach,
    settle), the entries on both budgets; balances kept exact. One transaction, executemany."""
    rng = random.Random(seed)
    at = datetime.now(UTC).isoformat()
    key = datetime.now(UTC).strftime("%Y-%m")
    conn = ledger.conn
    start = conn.execute("SELECT COALESCE(MAX(id), 0) FROM holds").fetchone()[0] + 1
    chunk = 50_000
    conn.execute("BEGIN IMMEDIATE")
    # The rollup triggers would upsert per row (most of the build's time): drop the insert
    # triggers for the load, restore them, and recompute the rollups once, all in this
    # transaction, as the ledger's own rebuild does (`ledger check` then compares them).
    triggers = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'holds'"
        " AND name LIKE 'rollup%_insert'"
    ).fetchall()
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    for first in range(start, start + entries, chunk):
        ids = range(first, min(first + chunk, start + entries))
        keys = [f"{rng.getrandbits(128):032x}" for _ in ids]  # uuid4().hex, as reserve makes
        tasks = [str(rng.getrandbits(62)) for _ in ids]  # Kling task ids are long numbers
        conn.executemany(
            "INSERT INTO holds (id, idempotency_key, team, state, est_units_milli, pack,"
            " est_cost_minor, currency, units_milli, cost_minor, variance_units_milli,"
            " variance_cost_minor, meta, reserved_at, updated_at, task_id)"
            " VALUES (?, ?, 'team', 'settled', 2000, 'video', 30000, 'credits', 2000, 30000,"
            " 0, 0, '{}', ?, ?, ?)",
            ((i, k, at, at, t) for i, k, t in zip(ids, keys, tasks, strict=True)),
        )
        conn.executemany(
            "INSERT INTO tasks (task_id, hold_id, attached_at) VALUES (?, ?, ?)",
            ((t, i, at) for i, t in zip(ids, tasks, strict=True)),
        )
        for depth, budget in enumerate(("team", "company")):
            conn.executemany(
                "INSERT INTO hold_entries (hold_id, budget, depth, period_key, reserved, charged)"
                " VALUES (?, ?, ?, ?, 30000, 30000)",
                ((i, budget, depth, key) for i in ids),
            )
        conn.executemany(
            "INSERT INTO events (at, kind, hold_id, team, data) VALUES (?, ?, ?, 'team', ?)",
            (
                event
                for i, k, t in zip(ids, keys, tasks, strict=True)
                for event in (
                    (at, "reserve", i, f'{{"key":"{k}","pack":"video","cost_minor":30000}}'),
                    (at, "attach", i, f'{{"task_id":"{t}"}}'),
                    (at, "settle", i, '{"units_milli":2000,"cost_minor":30000}'),
                )
            ),
        )
    for budget in ("team", "company"):
        conn.execute(
            "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, ?, 0)"
            " ON CONFLICT (budget, period_key) DO UPDATE SET posted = posted + excluded.posted",
            (budget, key, 30000 * entries),
        )
    for _, sql in triggers:
        conn.execute(sql)
    rebuild_rollups(conn)
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
    parser.add_argument("--entries", type=int, default=1_000_000, help="holds in the big ledger")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        floors = {sync: floor_us(directory, n, sync) for sync in ("NORMAL", "FULL")}
        for sync, floor in floors.items():
            print(f"floor: bare sqlite3 INSERT+COMMIT, WAL, synchronous={sync:<6}: {floor:7.1f} µs")
        for sync in ("NORMAL", "FULL"):
            floor = floors[sync]
            ledger = fresh(directory / f"ledger-{sync}.db", sync)  # type: ignore[arg-type]
            reserve = reserve_us(ledger, n)
            cycle = cycle_us(ledger, n if sync == "NORMAL" else n // 2)
            ledger.close()
            print(
                f"reserve, synchronous={sync} (team under a parent, median): {reserve:7.1f} µs"
                f" = {reserve / floor:5.2f}x the {sync} floor (target <= 3x)"
            )
            print(
                f"reserve -> attach -> settle, synchronous={sync} (median): {cycle:7.1f} µs"
                f" = {cycle / floor:5.2f}x the {sync} floor (target <= 1000 µs)"
            )

        empty = fresh(directory / "fresh.db")
        big = fresh(directory / "big.db")
        start = time.perf_counter()
        bulk_fill(big, args.entries)
        big.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start both with an empty WAL
        built = time.perf_counter() - start
        reserve_times(big, n // 5)  # warm-up, the same for both
        reserve_times(empty, n // 5)
        samples: dict[str, list[int]] = {"empty": [], "big": []}
        for _ in range(5):  # interleaved, so that noise from other work hits both alike
            samples["empty"] += reserve_times(empty, n // 2)
            samples["big"] += reserve_times(big, n // 2)
        holds = big.conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
        events = big.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        problems = big.check()
        big.close()
        empty.close()
        e_med, e_mean, e_p99 = spread(samples["empty"])
        b_med, b_mean, b_p99 = spread(samples["big"])
        print(
            f"reserve latency, empty ledger:    median {e_med:7.1f} µs, mean {e_mean:7.1f} µs,"
            f" p99 {e_p99:7.1f} µs ({len(samples['empty'])} reserves)"
        )
        print(
            f"reserve latency, {holds:,} holds:  median {b_med:7.1f} µs, mean {b_mean:7.1f} µs,"
            f" p99 {b_p99:7.1f} µs ({args.entries:,} holds, {events:,} events built in"
            f" {built:.1f} s; random keys and tasks; ledger check: {len(problems)} differences)"
        )
        print(
            f"    big / empty: median {b_med / e_med:5.2f}x, mean {b_mean / e_mean:5.2f}x,"
            f" p99 {b_p99 / e_p99:5.2f}x; throughput (1/mean) {e_mean / b_mean:5.1%} of empty"
            " (target >= 90%)"
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
