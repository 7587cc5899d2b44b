"""Reserves per second with concurrent worker processes, on SQLite and on PostgreSQL, in one run.

    eval "$(scripts/postgres-for-tests)"                    # or point --postgres at a server
    .venv/bin/python bench/bench_backends.py                # 8 workers, 500 reserves each
    .venv/bin/python bench/bench_backends.py --workers 8 --reserves 2000 --postgres postgresql://...

Every worker is its own process with its own connection, reserving on one team under a parent
(two budgets on the path, both checked and locked on each reserve) with limits that never bind:
the figure is the ledger's own concurrency cost. Errors (anything but a granted hold) are
counted and printed; a sound run has none. The PostgreSQL ledger gets a fresh schema, dropped
afterwards; the SQLite one a temporary file.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from klingcost.budgets import HoldAmounts
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=2000, pack="video", cost_minor=30000, currency="credits")
BIG = 10**18


def _worker(location: str, n: int, ready: Any, start_at: Any, results: Any) -> None:
    ok = errors = 0
    latencies: list[int] = []
    with Ledger.open(location, timeout=60) as ledger:
        ready.put(os.getpid())
        start_at.wait()
        first = time.perf_counter()
        for _ in range(n):
            began = time.perf_counter_ns()
            try:
                ledger.reserve("team", AMOUNTS)
                ok += 1
            except Exception as exc:  # counted and reported
                errors += 1
                print(f"worker error: {type(exc).__name__}: {exc}", file=sys.stderr)
            latencies.append(time.perf_counter_ns() - began)
        last = time.perf_counter()
    results.put((ok, errors, first, last, statistics.median(latencies) / 1000))


def run(location: str, workers: int, n: int) -> dict[str, Any]:
    """``workers`` processes reserving ``n`` times each on the ledger at ``location``."""
    with Ledger.open(location) as ledger:
        ledger.set_budget("company", limit=BIG, period="month")
        ledger.set_budget("team", limit=BIG, period="month", parent="company")
    context = mp.get_context("spawn")
    ready, start_at, results = context.Queue(), context.Event(), context.Queue()
    procs = [
        context.Process(target=_worker, args=(location, n, ready, start_at, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # every process has imported klingcost and opened the ledger
        ready.get(timeout=120)
    start_at.set()
    outcomes = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    ok = sum(o[0] for o in outcomes)
    wall = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    with Ledger.open(location) as ledger:
        differences = len(ledger.check())
        held = ledger.budget_status("company").held
    return {
        "ok": ok,
        "errors": sum(o[1] for o in outcomes),
        "per_second": ok / wall,
        "median_us": statistics.median(o[4] for o in outcomes),
        "exact": held == ok * AMOUNTS.cost_minor and differences == 0,
    }


def _postgres_schema(server: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options=-csearch_path%3D{schema}", schema


def _drop(server: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--reserves", type=int, default=500, help="per worker")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KLINGCOST_TEST_POSTGRES", ""),
        help="a PostgreSQL server URL (default: $KLINGCOST_TEST_POSTGRES)",
    )
    args = parser.parse_args()
    print(f"{args.workers} worker processes x {args.reserves} reserves, team under a parent")
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            (
                "SQLite (one file, WAL)",
                run(str(Path(tmp) / "bench.db"), args.workers, args.reserves),
            )
        )
    if args.postgres:
        url, schema = _postgres_schema(args.postgres)
        try:
            rows.append(("PostgreSQL (loopback)", run(url, args.workers, args.reserves)))
        finally:
            _drop(args.postgres, schema)
    else:
        print("PostgreSQL: skipped (no --postgres and no KLINGCOST_TEST_POSTGRES)")
    for name, r in rows:
        print(
            f"{name:24} {r['per_second']:8.0f} reserves/s together;"
            f" median reserve {r['median_us']:7.0f} µs; {r['ok']} ok, {r['errors']} errors;"
            f" balances {'exact' if r['exact'] else 'WRONG'}"
        )
    if any(r["errors"] or not r["exact"] for _, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
