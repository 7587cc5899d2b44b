"""One ledger file, one path (issue 13, item 1).

A SQLite ledger reached under two names (a hard link, a file bind-mounted on its own) gets a
write-ahead log per name, and writers on different names overspend. The first test reproduces
the attack with the check switched off in the workers; the others show every such open refused
(LedgerSetupError, CLI exit 2, naming the safe set-ups), and the safe set-ups still opening.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import klingcost.ledger._one_path
import klingcost.ledger._sqlite
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.errors import BudgetExceeded, LedgerSetupError
from klingcost.ledger import Ledger
from klingcost.ledger._one_path import held_locks, mount_points, other_index_users, second_name

LIMIT = 100_000
COST = 1_000  # the limit admits exactly LIMIT // COST = 100 holds
ATTEMPTS = 60  # per process: 4 processes try 240
AMOUNTS = HoldAmounts(units_milli=1000, pack="video", cost_minor=COST, currency="credits")


def _no_check(path: Path, **_: object) -> None:
    """The one-path checks, switched off."""


def _unchecked_worker(path: str, worker: int, ready: Any, start: Any, results: Any) -> None:
    """Reserve through ``path`` with the check switched off: the ledger the attack met."""
    import klingcost.ledger._sqlite

    klingcost.ledger._sqlite.refuse_second_name = _no_check  # type: ignore[attr-defined]
    klingcost.ledger._sqlite.refuse_a_live_second_path = _no_check  # type: ignore[attr-defined]
    ledger = Ledger.open(path, timeout=30)
    granted = 0
    errors: list[str] = []
    with ledger:
        ready.put(worker)
        start.wait()
        for attempt in range(ATTEMPTS):
            try:
                ledger.reserve("team", AMOUNTS, key=f"w{worker}-{attempt}")
                granted += 1
            except BudgetExceeded:
                pass
            except Exception as exc:  # every other error is reported
                errors.append(f"{type(exc).__name__}: {exc}")
    results.put(("opened", granted, errors))


def _race(paths: list[Path]) -> list[tuple[Any, ...]]:
    """Two unchecked processes per path reserve at once; what each one reports."""
    # fork where there is one: the workers start in milliseconds (each opens its own ledger)
    forks = "fork" in mp.get_all_start_methods()
    context = mp.get_context("fork") if forks else mp.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_unchecked_worker, args=(str(paths[n % len(paths)]), n, ready, start, results)
        )
        for n in range(2 * len(paths))
    ]
    for process in workers:
        process.start()
    for _ in workers:  # every process has its path open before any of them reserves
        ready.get(timeout=60)
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def _ledger_with_budget(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.set_budget("team", limit=LIMIT)


def test_two_paths_overspend_without_the_check_and_are_refused_with_it(tmp_path: Path) -> None:
    first = tmp_path / "ledger.db"
    _ledger_with_budget(first)
    second = tmp_path / "alias.db"
    os.link(first, second)

    # The attack, as the review ran it: four processes, two per path, the check switched off.
    outcomes = _race([first, second])
    assert all(o[0] == "opened" and o[2] == [] for o in outcomes), outcomes
    granted = sum(o[1] for o in outcomes)
    assert granted > LIMIT // COST, f"{granted} holds of {COST} fit a limit of {LIMIT}"
    print(f"two paths, check off: {granted} holds of {COST} granted against {LIMIT}")

    # Now: every open is refused, on either path, before anything can be reserved.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    first = fresh / "ledger.db"
    _ledger_with_budget(first)
    second = fresh / "alias.db"
    os.link(first, second)
    for path in (first, second, first, second):
        with pytest.raises(LedgerSetupError, match="hard links"):
            Ledger.open(path, timeout=30)
    os.unlink(second)  # one path again: the ledger opens, and nothing was held
    with Ledger.open(first) as ledger:
        assert ledger.budget_status("team").held == 0
        assert ledger.check() == []


def test_a_hard_link_is_refused_by_every_open_and_names_the_safe_setups(tmp_path: Path) -> None:
    first = tmp_path / "ledger.db"
    _ledger_with_budget(first)
    before = first.read_bytes()
    second = tmp_path / "other-name.db"
    os.link(first, second)
    for path in (first, second):
        for read_only in (False, True):
            with pytest.raises(LedgerSetupError) as caught:
                Ledger.open(path, read_only=read_only)
            message = str(caught.value)
            assert "2 hard links" in message and str(path) in message
            assert "bind mount of the directory" in message and "PostgreSQL" in message
    result = CliRunner().invoke(main, ["budget", "list", "--ledger", str(second)])
    assert result.exit_code == 2, result.output
    assert "one file under two paths" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        main, ["budget", "set", "team", "--limit", "1", "--ledger", str(first)]
    )
    assert result.exit_code == 2, result.output
    assert first.read_bytes() == before  # refused before anything was written
    assert not Path(f"{first}-wal").exists() and not Path(f"{second}-wal").exists()


def test_the_safe_setups_open(tmp_path: Path) -> None:
    """A symbolic link (SQLite follows it to one -wal), a moved file, a copy: one path each."""
    first = tmp_path / "ledger.db"
    _ledger_with_budget(first)
    link = tmp_path / "symlink.db"
    link.symlink_to(first)
    assert second_name(link) is None
    with Ledger.open(link) as via_link, Ledger.open(first) as direct:
        via_link.reserve("team", AMOUNTS, key="a")
        assert direct.budget_status("team").held == COST  # one log: each sees the other
        assert not Path(f"{link}-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copyfile(first, copy)
    with Ledger.open(copy) as ledger:
        assert ledger.budget_status("team").held == COST


def test_mountinfo_paths_are_unescaped(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "36 25 0:32 / /srv/with\\040space/ledger.db rw - ext4 /dev/sda1 rw\n"
        "37 25 0:33 / /data rw - ext4 /dev/sda2 rw\n",
        encoding="utf-8",
    )
    assert mount_points(info) == {"/srv/with space/ledger.db", "/data"}
    assert mount_points(tmp_path / "missing") == frozenset()


@contextlib.contextmanager
def _bind(source: Path, target: Path, *options: str) -> Iterator[None]:
    """``mount --bind source target`` for the test (root only); skipped where not permitted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a bind mount needs root and mount(8)")
    done = subprocess.run(
        ["mount", "--bind", str(source), str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount --bind is not permitted here: {done.stderr.strip()}")
    try:
        for option in options:
            subprocess.run(["mount", "-o", f"remount,bind,{option}", str(target)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_file_bind_mounted_on_its_own_is_refused(tmp_path: Path) -> None:
    host = tmp_path / "host"
    container = tmp_path / "container"
    host.mkdir()
    container.mkdir()
    source = host / "ledger.db"
    _ledger_with_budget(source)
    target = container / "ledger.db"
    target.touch()  # what a container runtime creates to mount the file on
    with _bind(source, target):
        assert os.stat(source).st_ino == os.stat(target).st_ino  # one file, two paths
        assert str(target.resolve()) in mount_points()
        with pytest.raises(LedgerSetupError, match="bind-mounted"):
            Ledger.open(target)
        result = CliRunner().invoke(main, ["holds", "--ledger", str(target)])
        assert result.exit_code == 2 and "one file under two paths" in result.output
        with Ledger.open(source) as ledger:  # its own place is one path: it opens
            assert ledger.budget_status("team").limit == LIMIT
        assert not Path(f"{target}-wal").exists()


def test_a_bind_mounted_directory_is_one_path_and_opens(tmp_path: Path) -> None:
    host = tmp_path / "host"
    container = tmp_path / "container"
    host.mkdir()
    container.mkdir()
    _ledger_with_budget(host / "ledger.db")
    with (
        _bind(host, container),
        Ledger.open(container / "ledger.db") as inside,
        Ledger.open(host / "ledger.db") as outside,
    ):
        inside.reserve("team", AMOUNTS, key="a")
        assert outside.budget_status("team").held == COST  # one -wal, seen from both sides


# --- a live second path: seen in /proc/locks once open ----------------------------------

_HOLD = """
import sys, time
from klingcost.ledger import Ledger
ledger = Ledger.open(sys.argv[1])
ledger.budgets()
print("ready", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def _held_open(path: Path) -> Iterator[int]:
    """Another process with the ledger at ``path`` open and read; yields its pid."""
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.fixture
def quick_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(klingcost.ledger._one_path, "SETTLE_SECONDS", 0.3)
    if not Path("/proc/locks").exists():
        pytest.skip("no /proc/locks: the live check is Linux's")


def test_a_file_renamed_while_open_is_refused_until_its_user_stops(
    tmp_path: Path, quick_settle: None
) -> None:
    first = tmp_path / "ledger.db"
    _ledger_with_budget(first)
    moved = tmp_path / "moved.db"
    with _held_open(first) as pid:
        first.rename(moved)  # the holder keeps ledger.db-wal; moved.db would get its own
        for read_only in (False, True):
            with pytest.raises(LedgerSetupError, match=f"process {pid} has it open"):
                Ledger.open(moved, read_only=read_only)
        result = CliRunner().invoke(main, ["budget", "list", "--ledger", str(moved)])
        assert result.exit_code == 2 and "through another path" in result.output
    with Ledger.open(moved) as ledger:  # its user stopped: one path again
        assert ledger.budget_status("team").limit == LIMIT


def test_a_hard_link_in_use_is_refused_even_without_the_link_count(
    tmp_path: Path, quick_settle: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live check alone (the link count check switched off) sees the holder's other log."""
    monkeypatch.setattr(klingcost.ledger._sqlite, "refuse_second_name", lambda path: None)
    first = tmp_path / "ledger.db"
    _ledger_with_budget(first)
    second = tmp_path / "alias.db"
    with _held_open(first) as pid:
        os.link(first, second)  # after the holder opened: its own link count check passed
        with pytest.raises(LedgerSetupError, match=f"process {pid} has it open"):
            Ledger.open(second)
        with Ledger.open(first) as same_path:  # the holder's own path: no refusal
            assert same_path.budget_status("team").limit == LIMIT


def test_lock_lines_name_the_processes_on_another_index() -> None:
    db, index, other_index, unrelated = (0xFE, 0, 11), (0xFE, 0, 13), (0xFE, 0, 21), (8, 1, 11)
    locks = (
        "1: POSIX  ADVISORY  READ 100 fe:00:13 128 128\n"  # 100: this path (its index)
        "2: POSIX  ADVISORY  READ 100 fe:00:11 1073741826 1073742335\n"
        "3: POSIX  ADVISORY  READ 200 fe:00:21 128 128\n"  # 200: another path's index
        "4: POSIX  ADVISORY  READ 200 fe:00:11 1073741826 1073742335\n"
        "4: -> POSIX  ADVISORY  WRITE 300 fe:00:11 1073741824 1073741824\n"  # waits: holds none
        "5: POSIX  ADVISORY  READ 400 fe:00:11 1073741826 1073742335\n"  # 400: reads this path,
        "6: POSIX  ADVISORY  READ 500 08:01:11 1073741826 EOF\n"  # its -shm read-only to it
        "7: OFDLCK ADVISORY  READ -1 fe:00:11 0 EOF\n"
    )
    assert [entry[0] for entry in held_locks(locks)] == [100, 100, 200, 200, 400, 500]
    assert held_locks(locks)[-1] == (500, unrelated, 1073741826, 2**63)
    assert other_index_users(locks, db, index, me=100) == {200}
    assert other_index_users(locks, db, other_index, me=200) == {100}  # seen from either side
    assert other_index_users(locks, db, index, me=200) == set()  # itself is never counted
