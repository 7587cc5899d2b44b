"""Crashes at every step: a worker is SIGKILLed at each test point of a guarded submission.

Each worker is a real process (``tests/workers.py submit``) started with
``KLINGCOST_PAUSE_AT=<point>``: it stops at that point (see :mod:`klingcost._testpoints`),
writes a marker file, and the test kills it with SIGKILL, as the OOM killer or a power-less
container would. Then a restart (a fresh worker submits and settles a job of its own),
``klingcost sync`` and ``klingcost ledger check``, and the invariants: the check is clean, no
task is lost or counted twice (the fake server's tasks against the ledger's holds), and the
dead worker's hold is resolved, or still counted against every budget: never released in
silence.

Each test runs on both ledger backends (``ledger_url``, conftest.py): a SQLite file, and a
PostgreSQL database, where the killed worker's connection drops and the server rolls back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import pytest

from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost.api.client import AsyncKlingClient
from klingcost.clock import ManualClock
from klingcost.fake_server import FakeKling
from klingcost.ledger import Hold, Ledger
from klingcost.sync import IN_FLIGHT_GRACE, NOT_FOUND_WINDOW, sync_holds
from workers import COST, UNITS_MILLI, cli

WORKER = Path(__file__).with_name("workers.py")


@pytest.fixture
def ledger_path(ledger_url: str) -> str:
    """The ledger on each backend: a SQLite file path, or a PostgreSQL URL."""
    path = ledger_url
    with Ledger.open(path) as ledger:
        ledger.set_budget("company", limit=10 * COST, period="month")
        ledger.set_budget("studio", limit=5 * COST, period="month", parent="company")
    return path


@pytest.fixture
def env(fake: FakeKling, ledger_path: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(ledger_path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
    }


def worker(
    fake: FakeKling,
    ledger_path: Path,
    *,
    pause_at: str | None = None,
    marker: Path | None = None,
    external_ids: bool = True,
    settle: bool = True,
) -> subprocess.Popen[str]:
    """Start one guarded job (and its settle) in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINGCOST_")}
    if pause_at is not None:
        assert marker is not None
        env.update(KLINGCOST_PAUSE_AT=pause_at, KLINGCOST_PAUSE_FILE=str(marker))
    args = [sys.executable, str(WORKER), "submit", "--ledger", str(ledger_path)]
    args += ["--base-url", fake.base_url, "--team", "studio"]
    args += ["--external-ids"] * external_ids + ["--settle"] * settle
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_pause(process: subprocess.Popen[str], marker: Path, point: str) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the worker ended ({process.returncode}) before {point}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            process.communicate()
            pytest.fail(f"the worker never reached {point}")
        time.sleep(0.01)
    pid, name = marker.read_text(encoding="utf-8").split()
    assert (int(pid), name) == (process.pid, point)


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def crash_at(
    point: str, fake: FakeKling, ledger_path: Path, tmp_path: Path, **options: Any
) -> None:
    marker = tmp_path / f"paused-{point}"
    process = worker(fake, ledger_path, pause_at=point, marker=marker, **options)
    try:
        wait_for_pause(process, marker, point)
    finally:
        if process.returncode is None:
            kill(process)


def restart(fake: FakeKling, ledger_path: Path) -> None:
    """A fresh worker after the crash: submits and settles its own job."""
    process = worker(fake, ledger_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, f"{out}\n{err}"
    assert '"action": "settled"' in out


def holds(ledger_path: Path) -> list[Hold]:
    with Ledger.open(ledger_path) as ledger:
        return list(ledger.holds())


def used(ledger_path: Path) -> dict[str, tuple[int, int]]:
    with Ledger.open(ledger_path) as ledger:
        return {s.team: (s.posted, s.held) for s in ledger.budgets()}


def settle_events(ledger_path: Path) -> Counter[int | None]:
    with Ledger.open(ledger_path) as ledger:
        return Counter(e.hold_id for e in ledger.events(kind="settle"))


def sync_and_check(env: dict[str, str]) -> str:
    code, output = cli(["sync"], env)
    assert code == 0, output
    code, checked = cli(["ledger", "check"], env)
    assert code == 0, checked
    assert checked.startswith("OK")
    return output


def assert_each_task_once(fake: FakeKling, ledger_path: Path) -> None:
    """Every task the server created is on exactly one hold, and settled at what it charged."""
    found = holds(ledger_path)
    by_task = Counter(h.task_id for h in found if h.task_id is not None)
    tasks = {t["task_id"] for t in fake.ledger()["tasks"]}
    assert set(by_task) == tasks
    assert all(n == 1 for n in by_task.values())
    settled = [h for h in found if h.state == "settled"]
    assert Fraction(sum(h.units_milli or 0 for h in settled), 1000) == fake.charged()
    assert all(n == 1 for n in settle_events(ledger_path).values())


# --- the kills ----------------------------------------------------------------------------


def test_killed_after_reserve_the_hold_stays_counted_until_the_grace_ends(
    fake: FakeKling, ledger_path: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    crash_at("after_reserve", fake, ledger_path, tmp_path)
    [dead] = holds(ledger_path)
    assert (dead.state, dead.task_id) == ("held", None)
    assert fake.requests("POST") == []  # killed before sending anything

    restart(fake, ledger_path)
    output = sync_and_check(env)
    # Nothing tells sync yet whether the submission is in flight: the hold keeps counting.
    assert f"hold {dead.id}: held, and no task" in output
    assert holds(ledger_path)[0].state == "held"
    assert used(ledger_path)["company"] == (COST, COST)  # the restart's job + the dead hold
    assert used(ledger_path)["studio"] == (COST, COST)
    assert_each_task_once(fake, ledger_path)

    # Once the grace is over, lasting "no such task" answers void it: the submission never
    # created one (the first answer is recorded; one an hour later is evidence that lasts).
    with Ledger.open(ledger_path, clock=ManualClock(dead.reserved_at)) as ledger:
        assert isinstance(ledger.clock, ManualClock)
        ledger.clock.advance(IN_FLIGHT_GRACE + timedelta(seconds=1))
        report = sync_in_process(ledger, fake)
        assert (report.voided, report.unresolved, len(report.awaiting)) == (0, [], 1)
        for _ in range(2):
            ledger.clock.advance(NOT_FOUND_WINDOW / 2)
            report = sync_in_process(ledger, fake)
        assert (report.voided, report.unresolved) == (1, [])
        voided = ledger.get_hold(dead.id)
        assert voided.state == "voided" and voided.reason is not None
        assert voided.reason.startswith("no task")
        assert ledger.check() == []
    assert used(ledger_path)["company"] == (COST, 0)


def test_killed_after_sending_sync_finds_the_task_by_its_external_id(
    fake: FakeKling, ledger_path: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    crash_at("after_send", fake, ledger_path, tmp_path)
    [dead] = holds(ledger_path)
    assert (dead.state, dead.task_id) == ("held", None)  # the answer came; nothing attached
    [task] = fake.state.tasks.values()
    assert task.external_task_id == dead.key == dead.meta["external_task_id"]

    restart(fake, ledger_path)
    sync_and_check(env)
    recovered = holds(ledger_path)[0]
    assert (recovered.state, recovered.task_id) == ("settled", task.task_id)
    assert recovered.units_milli == UNITS_MILLI
    assert used(ledger_path)["company"] == (2 * COST, 0)
    assert_each_task_once(fake, ledger_path)


def test_killed_after_sending_without_external_ids_the_hold_stays_counted(
    fake: FakeKling, ledger_path: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    crash_at("after_send", fake, ledger_path, tmp_path, external_ids=False)
    restart(fake, ledger_path)
    output = sync_and_check(env)
    dead = holds(ledger_path)[0]
    assert (dead.state, dead.task_id) == ("held", None)
    assert f"hold {dead.id}: held with no task id and no external_task_id" in output
    # The server charged a task the ledger cannot name, but its estimate is still counted:
    # posted + held covers every unit charged.
    assert used(ledger_path)["company"] == (COST, COST)
    charged_milli = fake.charged() * 1000
    assert sum(h.units_milli or h.estimate.units_milli for h in holds(ledger_path)) == charged_milli


def test_killed_after_attach_sync_settles_the_task(
    fake: FakeKling, ledger_path: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    crash_at("after_attach", fake, ledger_path, tmp_path)
    [dead] = holds(ledger_path)
    assert dead.state == "submitted" and dead.task_id is not None

    restart(fake, ledger_path)
    sync_and_check(env)
    assert holds(ledger_path)[0].state == "settled"
    assert used(ledger_path)["company"] == (2 * COST, 0)
    assert_each_task_once(fake, ledger_path)


def test_killed_inside_the_settle_transaction_nothing_half_done_survives(
    fake: FakeKling, ledger_path: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    marker = tmp_path / "paused-during_settle"
    process = worker(fake, ledger_path, pause_at="during_settle", marker=marker)
    try:
        wait_for_pause(process, marker, "during_settle")
        # Paused before COMMIT, holding the write lock: a reader sees the hold as it was, and
        # a writer waits. (Raw SQLite: Ledger.open itself takes the write lock to migrate.)
        if str(ledger_path).startswith("postgresql://"):
            assert_a_writer_waits_on_postgres(str(ledger_path))
        else:
            with contextlib.closing(sqlite3.connect(ledger_path, timeout=0.05)) as conn:
                assert conn.execute("SELECT state FROM holds").fetchall() == [("submitted",)]
                settles = conn.execute("SELECT count(*) FROM events WHERE kind = 'settle'")
                assert settles.fetchone() == (0,)
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    conn.execute("BEGIN IMMEDIATE")
    finally:
        if process.returncode is None:
            kill(process)

    [dead] = holds(ledger_path)
    assert dead.state == "submitted"  # the half-done settle is gone, the lock released
    restart(fake, ledger_path)
    sync_and_check(env)
    assert holds(ledger_path)[0].state == "settled"
    assert used(ledger_path)["company"] == (2 * COST, 0)
    assert_each_task_once(fake, ledger_path)


def test_a_test_point_costs_nothing_when_no_pause_is_asked(
    fake: FakeKling, ledger_path: Path
) -> None:
    from klingcost import _testpoints

    assert "KLINGCOST_PAUSE_AT" not in os.environ
    assert _testpoints.reach is _testpoints._off
    _testpoints.reach("during_settle")  # returns at once
    restart(fake, ledger_path)  # every point passed through without stopping


def assert_a_writer_waits_on_postgres(url: str) -> None:
    """The paused settle holds its hold's row lock: a reader sees the hold as it was, and a
    writer that needs the row waits (here, gives up after 50 ms)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT state FROM holds").fetchall() == [("submitted",)]
        settles = conn.execute("SELECT count(*) FROM events WHERE kind = 'settle'")
        assert settles.fetchone() == (0,)
        conn.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("SELECT id FROM holds FOR UPDATE")


def sync_in_process(ledger: Ledger, fake: FakeKling) -> Any:
    async def run() -> Any:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            return await sync_holds(ledger, client)

    return anyio.run(run)


@pytest.fixture(autouse=True)
def _no_stray_workers() -> Iterator[None]:
    yield
    marker_env = os.environ.get("KLINGCOST_PAUSE_AT")
    assert marker_env is None, "a test leaked KLINGCOST_PAUSE_AT into this process"
