"""Reserves per second with concurrent worker processes, on SQLite and on PostgreSQL, in one run.

    .venv/bin/python bench/bench_backends.py                # 8 workers, 5 s per point
    .venv/bin/python bench/bench_backends.py --seconds 10 --postgres postgresql://...

Each point runs for ``--seconds`` (at least 5: shorter runs measure process start-up and noise).
PostgreSQL is measured durable, as it ships: the bench starts its own throwaway server on
loopback with the defaults (fsync on, synchronous_commit on; needs the server binaries, as
scripts/postgres-for-tests does), or measures ``--postgres URL`` and prints that server's
fsync and synchronous_commit beside the figure. The shared test server
($KLINGCOST_TEST_POSTGRES, fsync and synchronous_commit off for speed) is measured too when set,
and shown only beside the durable figure, labelled: it is no figure of a real deployment.

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
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from klingcost.budgets import HoldAmounts
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=2000, pack="video", cost_minor=30000, currency="credits")
BIG = 10**18


def _worker(location: str, seconds: float, ready: Any, start_at: Any, results: Any) -> None:
    ok = errors = 0
    latencies: list[int] = []
    with Ledger.open(location, timeout=60) as ledger:
        ready.put(os.getpid())
        start_at.wait()
        first = time.perf_counter()
        deadline = first + seconds
        while time.perf_counter() < deadline:
            began = time.perf_counter_ns()
            try:
                ledger.reserve("team", AMOUNTS)
                ok += 1
            except Exception as exc:  # counted and reported
                errors += 1
                print(f"worker error: {type(exc).__name__}: {exc}", file=sys.stderr)
            latencies.append(time.perf_counter_ns() - began)
        last = time.perf_counter()
    latencies.sort()
    results.put((ok, errors, first, last, latencies))


def run(location: str, workers: int, seconds: float) -> dict[str, Any]:
    """``workers`` processes reserving for ``seconds`` on the ledger at ``location``."""
    with Ledger.open(location) as ledger:
        ledger.set_budget("company", limit=BIG, period="month")
        ledger.set_budget("team", limit=BIG, period="month", parent="company")
    context = mp.get_context("spawn")
    ready, start_at, results = context.Queue(), context.Event(), context.Queue()
    procs = [
        context.Process(target=_worker, args=(location, seconds, ready, start_at, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # every process has imported klingcost and opened the ledger
        ready.get(timeout=120)
    start_at.set()
    outcomes = [results.get(timeout=seconds + 600) for _ in procs]
    for proc in procs:
        proc.join()
    ok = sum(o[0] for o in outcomes)
    wall = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    with Ledger.open(location) as ledger:
        differences = len(ledger.check())
        held = ledger.budget_status("company").held
    latencies = sorted(t for o in outcomes for t in o[4])
    return {
        "ok": ok,
        "errors": sum(o[1] for o in outcomes),
        "per_second": ok / wall,
        "seconds": wall,
        "median_us": statistics.median(latencies) / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
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


def _settings(server: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        values = [
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        ]
    return ", ".join(values)


@contextmanager
def durable_server() -> Iterator[str | None]:
    """A throwaway PostgreSQL server on loopback with the default durability; None without
    the server binaries. Started as scripts/postgres-for-tests starts one, minus its fsync=off
    and synchronous_commit=off; stopped and deleted on exit."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        yield None
        return
    pgbin = bins[-1].parent
    directory = Path(tempfile.mkdtemp(prefix="klingcost-bench-pg."))
    run_as: list[str] = []
    if os.getuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(directory, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = directory / "data"
    try:
        subprocess.run(
            [*run_as, str(pgbin / "initdb"), "-D", str(data), "-A", "trust", "-U", "klingcost"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            [
                *run_as,
                str(pgbin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(directory / "server.log"),
                "-w",
                "-o",
                options,
                "start",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        yield f"postgresql://klingcost@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def _postgres_point(
    server: str, label: str, workers: int, seconds: float
) -> tuple[str, dict[str, Any]]:
    settings = _settings(server)
    url, schema = _postgres_schema(server)
    try:
        return f"{label} ({settings})", run(url, workers, seconds)
    finally:
        _drop(server, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="per point (at least 5)")
    parser.add_argument(
        "--postgres",
        default="",
        help="measure this PostgreSQL server instead of starting a durable one",
    )
    parser.add_argument(
        "--no-test-server",
        action="store_true",
        help="skip the fsync-off figure of $KLINGCOST_TEST_POSTGRES",
    )
    args = parser.parse_args()
    if args.seconds < 5:
        parser.error("--seconds: at least 5, or the figure is start-up and noise")
    load = os.getloadavg()[0]
    print(
        f"{args.workers} worker processes reserving for {args.seconds:g} s per point, team under"
        f" a parent; load average {load:.2f}"
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            (
                "SQLite (one file, WAL, synchronous=NORMAL)",
                run(str(Path(tmp) / "bench.db"), args.workers, args.seconds),
            )
        )
    if args.postgres:
        rows.append(
            _postgres_point(args.postgres, "PostgreSQL --postgres", args.workers, args.seconds)
        )
    else:
        with durable_server() as server:
            if server is None:
                print("PostgreSQL durable: skipped (no server binaries; give --postgres URL)")
            else:
                rows.append(
                    _postgres_point(server, "PostgreSQL, durable", args.workers, args.seconds)
                )
    test_server = os.environ.get("KLINGCOST_TEST_POSTGRES", "")
    if test_server and not args.no_test_server and test_server != args.postgres:
        rows.append(
            _postgres_point(
                test_server, "  beside it, NOT durable: the test server", args.workers, args.seconds
            )
        )
    for name, r in rows:
        print(
            f"{name}\n    {r['per_second']:8.0f} reserves/s together over {r['seconds']:.1f} s;"
            f" reserve median {r['median_us']:7.0f} µs, p99 {r['p99_us']:7.0f} µs;"
            f" {r['ok']} ok, {r['errors']} errors; balances {'exact' if r['exact'] else 'WRONG'}"
        )
    if any(r["errors"] or not r["exact"] for _, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
