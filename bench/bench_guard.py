"""Benchmarks of the budget guard against the fake Kling API on loopback, in one run.

    .venv/bin/python bench/bench_guard.py                  # the default run, about 80 s
    .venv/bin/python bench/bench_guard.py --n 1200 --sync-tasks 1000

Targets (from the issue):

* a guarded submission (estimate -> reserve -> POST -> attach) costs <= 1.5x a bare
  ``httpx.Client.post`` of the same body to the same fake server (issue 14), medians of many,
  measured interleaved in rounds so that drift of the machine hits both alike, each with its
  p99 beside it. Beside them, two floors: the same post after one empty write transaction, and
  between two, on a file at the ledger's own ``synchronous`` setting. A guard that commits the
  hold before sending and the task id after the answer cannot cost less than the second. The
  guarded submission is measured twice: with SQLite's inline checkpoints (a CLI process), and
  with the background checkpointer a server runs (``Ledger.background_checkpoints``);
* ``klingcost sync`` settles 1,000 finished tasks from the fake server in <= 5 s (the whole
  command through CliRunner, and ``sync_holds`` alone).

By default the fake server runs in its own process (``klingcost fake-server``), as a real API
would: in a thread of this process it would share the GIL with the guard, so every
microsecond the guard spends in Python would also stall the server (``--server thread`` shows
that setting too).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
from click.testing import CliRunner

from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.cli import main as cli_main
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.sync import sync_holds

KEY = "hk-bench-0123456789abcdef"
ENDPOINT = "videos/text2video"
BODY: dict[str, Any] = {
    "model_name": "kling-v1-5",
    "prompt": "a ship in space",
    "mode": "pro",
    "duration": "10",
}
BIG = 10**15


class Server(Protocol):
    """What the benchmark needs of the fake API: FakeKling, or _ProcessServer."""

    base_url: str

    def configure(self, **settings: Any) -> None: ...

    def reset(self) -> None: ...


class _ProcessServer:
    """``klingcost fake-server`` in a child process, driven through its /_fake controls."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def configure(self, **settings: Any) -> None:
        httpx.post(f"{self.base_url}/_fake/config", json=settings).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_fake/reset").raise_for_status()


@contextmanager
def fake_api(kind: str) -> Iterator[Server]:
    if kind == "thread":
        with FakeKling(api_key=KEY, done_after=0) as fake:
            yield fake
        return
    cli = "from klingcost.cli import main; main(prog_name='klingcost')"
    command = [sys.executable, "-c", cli, "fake-server", "--port", "0", "--key", KEY]
    child = subprocess.Popen([*command, "--delay", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        found = re.search(r"http://\S+", child.stdout.readline())
        if found is None:
            raise SystemExit("klingcost fake-server did not start")
        yield _ProcessServer(found.group(0))
    finally:
        child.terminate()
        child.wait(timeout=10)


def fresh_ledger(path: Path) -> Ledger:
    ledger = Ledger.open(path)
    ledger.set_budget("company", limit=BIG, period="month")
    ledger.set_budget("team", limit=BIG, period="month", parent="company")
    return ledger


def _synchronous(ledger: Ledger) -> str:
    """The ledger connection's ``synchronous`` setting, by name (the floor copies it)."""
    level = int(ledger.conn.execute("PRAGMA synchronous").fetchone()[0])
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]


def _empty_transactions(path: Path, synchronous: str) -> Callable[[], None]:
    """One write transaction that changes one small row, on a file set as the ledger's is
    (WAL, the same ``synchronous``): the least any durable ledger write can cost."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER)")
    conn.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")

    def write() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        conn.execute("COMMIT")

    return write


def submission_ratio(fake: Server, directory: Path, n: int, rounds: int) -> dict[str, Any]:
    """Median µs of each kind of submission, interleaved in ``rounds``.

    Besides the bare post, klingcost's own client alone and the guarded submission, two
    floors: the bare post after one empty write transaction, and between two (reading the
    answer's JSON as the guard must).
    A guard that checks the budget before sending and records the task after the answer
    cannot cost less than the second floor, whatever its ledger holds.
    """
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    with (
        httpx.Client(base_url=fake.base_url, headers=headers) as http,
        fresh_ledger(directory / "submit.db") as ledger,
        GuardedClient("team", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
        fresh_ledger(directory / "served.db") as served,
        served.background_checkpoints(),
        GuardedClient("team", ledger=served, api_key=KEY, base_url=fake.base_url) as server,
    ):
        synchronous = _synchronous(ledger)
        write = _empty_transactions(directory / "floor.db", synchronous)

        def bare() -> None:
            http.post(f"/v1/{ENDPOINT}", json=BODY).raise_for_status()

        def one_write() -> None:
            write()
            http.post(f"/v1/{ENDPOINT}", json=BODY).raise_for_status()

        def two_writes() -> None:
            write()
            answer = http.post(f"/v1/{ENDPOINT}", json=BODY)
            answer.raise_for_status()
            answer.json()
            write()

        def client() -> None:  # klingcost's own HTTP client, without the guard
            guard.client.submit(ENDPOINT, BODY)

        def guarded() -> None:
            guard.submit(ENDPOINT, BODY)

        def guarded_bg() -> None:
            server.submit(ENDPOINT, BODY)

        kinds: dict[str, Callable[[], None]] = {
            "bare": bare,
            "client": client,
            "one_write": one_write,
            "two_writes": two_writes,
            "guarded": guarded,
            "guarded_bg": guarded_bg,
        }
        times: dict[str, list[int]] = {name: [] for name in kinds}
        for run in kinds.values():  # warm up the connections, the sheet's cache and the pages
            for _ in range(50):
                run()
        gc.collect()
        per_round = max(1, n // rounds)
        for _ in range(rounds):
            for name, run in kinds.items():
                for _ in range(per_round):
                    start = time.perf_counter_ns()
                    run()
                    times[name].append(time.perf_counter_ns() - start)
        overhead = _guard_overhead_us(guard, 500)
    medians = {name: statistics.median(values) / 1000 for name, values in times.items()}
    return {
        **{f"{name}_us": value for name, value in medians.items()},
        **{f"{name}_ratio": value / medians["bare"] for name, value in medians.items()},
        "ratio": medians["guarded"] / medians["bare"],
        **{f"{name}_p99_us": _quantile(values, 0.99) / 1000 for name, values in times.items()},
        "synchronous": synchronous,
        **overhead,
    }


def _guard_overhead_us(guard: GuardedClient, n: int) -> dict[str, float]:
    """The guard's own steps, without the HTTP round trip, to say where the time goes."""
    estimate: list[int] = []
    reserve: list[int] = []
    attach: list[int] = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        guard.estimate(ENDPOINT, BODY)
        t1 = time.perf_counter_ns()
        _, hold, _ = guard._core.reserve(ENDPOINT, BODY, None)
        t2 = time.perf_counter_ns()
        guard.ledger.attach(hold.id, f"bench-{i}-{hold.id}", reserved=hold)
        t3 = time.perf_counter_ns()
        estimate.append(t1 - t0)
        reserve.append(t2 - t1)
        attach.append(t3 - t2)
    return {
        "estimate_us": statistics.median(estimate) / 1000,
        "reserve_us": statistics.median(reserve) / 1000,
        "attach_us": statistics.median(attach) / 1000,
    }


def _quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def prepare_finished(fake: Server, ledger_path: Path, count: int) -> None:
    """``count`` submitted holds whose tasks have already succeeded on the fake server."""
    fake.configure(done_after=0)
    with (
        fresh_ledger(ledger_path) as ledger,
        GuardedClient("team", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
    ):
        for _ in range(count):
            guard.submit(ENDPOINT, BODY)


def sync_seconds(fake: Server, directory: Path, count: int) -> dict[str, float]:
    fake.reset()
    cli_path = directory / f"sync-cli-{count}.db"
    prepare_finished(fake, cli_path, count)
    runner = CliRunner()
    env = {"KLINGCOST_API_KEY": KEY, "KLINGCOST_BASE_URL": fake.base_url}
    start = time.perf_counter()
    result = runner.invoke(cli_main, ["sync", "--ledger", str(cli_path), "--json"], env=env)
    cli_seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"klingcost sync failed ({result.exit_code}): {result.output}")
    report = json.loads(result.output)
    if report["settled"] != count:
        raise SystemExit(f"klingcost sync settled {report['settled']} of {count}: {report}")

    lib_path = directory / f"sync-lib-{count}.db"
    prepare_finished(fake, lib_path, count)

    async def run(ledger: Ledger) -> float:
        async with AsyncKlingClient(KEY, base_url=fake.base_url) as client:
            begin = time.perf_counter()
            done = await sync_holds(ledger, client)
            took = time.perf_counter() - begin
        assert done.settled == count, done
        return took

    with Ledger.open(lib_path) as ledger:
        lib_seconds = asyncio.run(run(ledger))
    return {"cli_s": cli_seconds, "library_s": lib_seconds}


def bare_query_floor(fake: Server, count: int) -> float:
    """Seconds for ``count`` sequential task queries with the plain sync client: a floor."""
    with KlingClient(KEY, base_url=fake.base_url) as client:
        task = client.submit(ENDPOINT, BODY)
        start = time.perf_counter()
        for _ in range(count):
            client.get_task(ENDPOINT, task.task_id)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="submissions of each kind")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--sync-tasks", type=int, default=1000, help="finished tasks to sync")
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the fake API in a child process (default) or in a thread of this one",
    )
    args = parser.parse_args(argv)

    print(f"command: {sys.executable} bench/bench_guard.py " + " ".join(argv or sys.argv[1:]))
    with (
        tempfile.TemporaryDirectory(prefix="klingcost-bench-") as scratch,
        fake_api(args.server) as fake,
    ):
        directory = Path(scratch)
        ratio = submission_ratio(fake, directory, args.n, args.rounds)
        fake.reset()
        floor = bare_query_floor(fake, args.sync_tasks)
        synced = sync_seconds(fake, directory, args.sync_tasks)

    ok_ratio = ratio["ratio"] <= 1.5
    ok_sync = synced["cli_s"] <= 5.0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"fake server: {args.server}; load average {load}")
    print(f"submission, median (p99) of {args.n} each, {args.rounds} interleaved rounds:")
    rows = [
        ("bare httpx.Client.post", "bare", ""),
        ("KlingClient.submit", "client", "klingcost's HTTP client alone (api/wire.py)"),
        ("GuardedClient.submit", "guarded", "inline checkpoints"),
        ("  in a server", "guarded_bg", "background checkpointer"),
        ("floor: one write, post", "one_write", ""),
        ("floor: write, post, write", "two_writes", "the least a two-phase guard costs"),
    ]
    for label, name, note in rows:
        print(
            f"  {label:<26} {ratio[f'{name}_us']:8.1f} µs  p99 {ratio[f'{name}_p99_us']:8.1f} µs"
            f"  {ratio[f'{name}_ratio']:.3f}x  {note}"
        )
    print(
        f"  ratio guarded / bare       {ratio['ratio']:8.3f}     target <= 1.5: "
        f"{'ok' if ok_ratio else 'MISSED'}"
    )
    print(
        f"  floors: empty write transactions, WAL, synchronous={ratio['synchronous']} as the ledger"
    )
    print(
        f"  guard steps alone: estimate {ratio['estimate_us']:.1f} µs, "
        f"reserve {ratio['reserve_us']:.1f} µs, attach {ratio['attach_us']:.1f} µs"
    )
    print(f"sync of {args.sync_tasks} finished tasks:")
    print(
        f"  klingcost sync (CliRunner)  {synced['cli_s']:6.2f} s  target <= 5 s: "
        f"{'ok' if ok_sync else 'MISSED'}"
    )
    print(f"  sync_holds alone            {synced['library_s']:6.2f} s")
    print(f"  floor: {args.sync_tasks} sequential queries, sync client  {floor:6.2f} s")
    return 0 if ok_ratio and ok_sync else 1


if __name__ == "__main__":
    raise SystemExit(main())
