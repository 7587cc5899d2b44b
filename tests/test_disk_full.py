"""An accepted task id survives a full disk (issue 13, item 3), on a real, tiny file system.

The review left a task running with no hold counting it when the disk filled up in the moment
between the API's acceptance and the attach. Here the ledger (SQLite) lives on a tmpfs of a
few MiB; in exactly that moment the test fills it, the way another process's log or download
does, so the attach fails with SQLite's own "database or disk is full":

* full, then space back at once (another process deleted its file right after the attach
  failed): the task id goes to the accepted-tasks journal beside the ledger, the error names
  it, the hold keeps counting, and ``klingcost sync`` replays the journal and settles it;
* full until after the submit (SQLite's failed attach takes the last free pages too): the
  journal cannot be written either; the error still names the task id, the hold keeps
  counting, and a hold sent with its ``external_task_id`` is found and settled by ``sync``
  once the space is back.

Mounting a tmpfs needs root (CI runs as root); elsewhere the tests are skipped, saying so.
PostgreSQL is not covered: a full disk there is the server's, not this process's.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors, journal
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.envelope import Task
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Hold, Ledger
from klingcost.sync import SyncReport, sync_holds

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits
COST = 105_000
PAGE = 4096  # tmpfs allocates whole pages


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` with one file to its last page; returns the file."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (64 * 1024, PAGE):  # large writes, then to the last page
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        continue  # a short write: the next one says ENOSPC
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


class FullAfterAccept(KlingClient):
    """The real client; once the API has accepted the task, the disk fills up."""

    def __init__(self, then: Callable[[Task], None], **options: Any) -> None:
        super().__init__(KEY, **options)
        self.then = then

    def submit(self, endpoint: str, body: Mapping[str, Any]) -> Task:
        task = super().submit(endpoint, body)
        self.then(task)
        return task


def fill_after_accept(path: Path, fillers: list[Path]) -> Callable[[Task], None]:
    def then(task: Task) -> None:
        # An empty WAL (as after a checkpoint) must grow for the attach's pages: the write
        # that a full disk refuses. (A WAL already long enough would be overwritten in place.)
        with sqlite3.connect(path) as other:
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fillers.append(fill(path.parent))

    return then


def sync(ledger: Ledger, fake: FakeKling) -> SyncReport:
    async def run() -> SyncReport:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            return await sync_holds(ledger, client)

    return anyio.run(run)


def counted(ledger: Ledger) -> int:
    status = ledger.budget_status("studio")
    return status.posted + status.held


def test_an_intermittently_full_disk_at_attach_keeps_the_task_id_in_the_journal(
    fake: FakeKling, small_disk: Path
) -> None:
    path = small_disk / "ledger.db"
    fillers: list[Path] = []
    with Ledger.open(path, timeout=0.5) as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
        client = FullAfterAccept(fill_after_accept(path, fillers), base_url=fake.base_url)
        attach = ledger.attach

        def attach_then_space_returns(*args: Any, **kwargs: Any) -> Hold:
            try:
                return attach(*args, **kwargs)  # fails: the disk is full
            finally:
                fillers[0].unlink()  # the other process deleted its file right after

        ledger.attach = attach_then_space_returns  # type: ignore[method-assign]
        try:
            with (
                client,
                GuardedClient("studio", ledger=ledger, client=client) as guard,
                pytest.raises(errors.TaskNotRecorded) as caught,
            ):
                guard.submit(ENDPOINT, BODY)
        finally:
            del ledger.attach
        [task] = fake.ledger()["tasks"]
        error = caught.value
        assert "database or disk is full" in str(error)  # SQLite's own words, not a mock's
        assert error.task_id == task["task_id"] and task["task_id"] in str(error)
        assert error.journal == str(journal.journal_path(path))
        [entry], problems = journal.read(path)
        assert (entry.task_id, problems) == (task["task_id"], [])
        [hold] = ledger.holds()
        assert hold.task_id is None and counted(ledger) == COST  # still counted
        report = sync(ledger, fake)  # replays the journal, then settles from the API
        assert (report.replayed, report.settled) == (1, 1)
        settled = ledger.get_hold(hold.id)
        assert (settled.state, settled.task_id, settled.cost_minor) == (
            "settled",
            task["task_id"],
            COST,
        )
        assert ledger.budget_status("studio").posted == COST
        assert ledger.check() == []


def test_a_disk_full_to_the_last_byte_still_names_the_task_and_sync_finds_it(
    fake: FakeKling, small_disk: Path
) -> None:
    path = small_disk / "ledger.db"
    fillers: list[Path] = []
    with Ledger.open(path, timeout=0.5) as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
        client = FullAfterAccept(fill_after_accept(path, fillers), base_url=fake.base_url)
        with (
            client,
            GuardedClient("studio", ledger=ledger, client=client, external_ids=True) as guard,
            pytest.raises(errors.TaskNotRecorded) as caught,
        ):
            guard.submit(ENDPOINT, BODY)
        [task] = fake.ledger()["tasks"]
        error = caught.value
        assert error.task_id == task["task_id"] and task["task_id"] in str(error)
        assert error.journal is None and "database or disk is full" in str(error)
        assert "the journal could not be written either (No space left on device)" in str(error)
        assert journal.read(path) == ([], [])  # no half line was left behind
        [hold] = ledger.holds()
        assert hold.task_id is None and counted(ledger) == COST
        fillers[0].unlink()
        report = sync(ledger, fake)  # by the external id it was sent with
        assert report.settled == 1
        settled = ledger.get_hold(hold.id)
        assert (settled.state, settled.task_id) == ("settled", task["task_id"])
        assert ledger.check() == []
