"""The WAL stays bounded with SQLite's inline checkpoints and with the background checkpointer,
and the guard's lean reserve and attach leave the ledger as the full path would."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.errors import BudgetExceeded, HoldStateError, SheetMismatchError
from klingcost.ledger import Ledger
from klingcost.ledger.checkpointer import CAP_PAGES, INLINE_PAGES, Checkpointer

AMOUNTS = HoldAmounts(4000, "video", 60000, "credits")
#: Enough submissions that a WAL never checkpointed grows well past the inline bound and the
#: test's cap (each reserve and attach appends some ten pages).
SUBMISSIONS = 400
CAP = 2 * INLINE_PAGES


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _submit_many(ledger: Ledger, count: int) -> int:
    """``count`` reserves and attaches; returns the WAL's largest size seen, in pages."""
    largest = 0
    wal = _wal(Path(ledger.path))
    for i in range(count):
        hold = ledger.reserve("team", AMOUNTS)
        ledger.attach(hold.id, f"task-{i}", reserved=hold)
        if i % 50 == 0:
            largest = max(largest, wal.stat().st_size // 4096)
    return max(largest, wal.stat().st_size // 4096)


def _ledger(path: Path) -> Ledger:
    ledger = Ledger.open(path)
    ledger.set_budget("company", limit=10**15, period="month")
    ledger.set_budget("team", limit=10**15, period="month", parent="company")
    return ledger


def _autocheckpoint(ledger: Ledger) -> int:
    with ledger.reading():
        return int(ledger.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_wal_stays_bounded_by_inline_checkpoints_alone(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.db") as ledger:
        assert _autocheckpoint(ledger) == INLINE_PAGES
        largest = _submit_many(ledger, SUBMISSIONS)
        assert ledger.check() == []
    # Past INLINE_PAGES a COMMIT checkpoints, and the WAL starts over from its beginning.
    assert largest <= INLINE_PAGES + 64, largest


def test_without_any_checkpoint_the_wal_would_grow(tmp_path: Path) -> None:
    """What the two bounds guard against: the same work with checkpoints off."""
    with _ledger(tmp_path / "ledger.db") as ledger:
        with ledger.reading():
            ledger.conn.execute("PRAGMA wal_autocheckpoint = 0")
        largest = _submit_many(ledger, SUBMISSIONS)
    assert largest > 2 * INLINE_PAGES, largest


def test_background_checkpointer_keeps_the_wal_under_the_cap(tmp_path: Path) -> None:
    """Back-to-back writes leave the thread's checkpoint no gap to finish in, so the WAL
    never starts over by its work alone: the cap's inline checkpoint bounds it."""
    with _ledger(tmp_path / "ledger.db") as ledger:
        with ledger.background_checkpoints() as default:
            assert _autocheckpoint(ledger) == CAP_PAGES
        assert isinstance(default, Checkpointer)
        with ledger.background_checkpoints(interval=0.01, cap_pages=CAP) as checkpointer:
            assert isinstance(checkpointer, Checkpointer)
            # The request connection checkpoints inline only at the cap meanwhile.
            assert _autocheckpoint(ledger) == CAP
            largest = _submit_many(ledger, 2 * SUBMISSIONS)
            deadline = time.monotonic() + 10
            while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert checkpointer.checkpoints > 0
        assert _autocheckpoint(ledger) == INLINE_PAGES  # set back when the thread stops
        assert ledger.check() == []
    # Unchecked, ~7 pages a submission would make 5,600. The cap's inline checkpoint can run a
    # few transactions late while the thread's own checkpoint holds the WAL (seen: CAP + 68 on
    # a loaded machine), so the bound leaves a quarter of the cap for that.
    assert largest <= CAP + CAP // 4, largest


def test_background_checkpointer_alone_keeps_the_wal_small_when_writes_leave_gaps(
    tmp_path: Path,
) -> None:
    """A server's writes come with gaps (the POST between reserve and attach): the thread's
    checkpoint finishes in one, the next write starts the WAL over, and the cap is never met."""
    path = tmp_path / "ledger.db"
    with (
        _ledger(path) as ledger,
        ledger.background_checkpoints(interval=0.005, cap_pages=10**6) as checkpointer,
    ):
        assert checkpointer is not None
        largest = 0
        for i in range(SUBMISSIONS):
            hold = ledger.reserve("team", AMOUNTS)
            if i % 20 == 0:  # a pause now and then, ten times the thread's interval
                time.sleep(0.05)
            ledger.attach(hold.id, f"task-{i}", reserved=hold)
            largest = max(largest, _wal(path).stat().st_size // 4096)
        assert checkpointer.checkpoints >= SUBMISSIONS // 20
    # Inline checkpoints were off in practice (a cap of a million pages): the thread alone
    # kept the WAL from growing by the pages of every submission (thousands, unchecked).
    assert largest < INLINE_PAGES, largest


def test_checkpointer_checkpoints_what_another_connection_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with _ledger(path) as ledger:
        with ledger.reading():
            ledger.conn.execute("PRAGMA wal_autocheckpoint = 0")
        for _ in range(20):
            ledger.reserve("team", AMOUNTS)
        with Checkpointer(path, interval=0.01) as checkpointer:
            deadline = time.monotonic() + 10
            while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        # Every frame of the WAL is in the database file now: a PASSIVE checkpoint from a
        # fresh connection has nothing left to copy.
        conn = sqlite3.connect(path)
        try:
            _, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        assert checkpointer.checkpoints >= 1
        assert log == done


def test_checkpointer_refuses_a_nonpositive_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        Checkpointer(tmp_path / "x.db", interval=0)


def test_background_checkpoints_are_nothing_on_postgres(make_ledger: object) -> None:
    ledger = make_ledger()  # type: ignore[operator]
    with ledger.background_checkpoints() as checkpointer:
        if ledger.dialect == "postgres":
            assert checkpointer is None
        else:
            assert isinstance(checkpointer, Checkpointer)


# --- the lean reserve and attach ------------------------------------------------------------


def test_lean_attach_of_a_hold_that_left_held_takes_the_full_path(make_ledger: object) -> None:
    ledger: Ledger = make_ledger()  # type: ignore[operator]
    ledger.set_budget("team", limit=10**9)
    hold = ledger.reserve("team", AMOUNTS)
    ledger.mark_unknown(hold.id, "timeout")
    attached = ledger.attach(hold.id, "task-1", reserved=hold)  # ``hold`` is stale: held
    assert attached.state == "submitted" and attached.reason == "timeout"
    assert ledger.get_hold(hold.id) == attached
    other = ledger.reserve("team", AMOUNTS)
    with pytest.raises(HoldStateError, match="already belongs to hold"):
        ledger.attach(other.id, "task-1", reserved=other)
    assert ledger.get_hold(other.id).state == "held"  # the refused attach wrote nothing
    assert ledger.check() == []


def test_lean_attach_returns_what_the_ledger_holds(make_ledger: object) -> None:
    ledger: Ledger = make_ledger()  # type: ignore[operator]
    ledger.set_budget("company", limit=10**9, period="month")
    ledger.set_budget("team", limit=10**9, period="day", parent="company", tz="Asia/Tokyo")
    hold = ledger.reserve("team", AMOUNTS, meta={"endpoint": "videos/text2video", "n": 1})
    attached = ledger.attach(hold.id, "task-9", reserved=hold)
    stored = ledger.get_hold(hold.id)
    assert attached == stored
    assert [e.kind for e in ledger.events(hold_id=hold.id)] == ["reserve", "attach"]


def test_lean_reserve_sees_balances_of_every_period_and_zone(
    make_ledger: object, ledger_url: str
) -> None:
    """The joined read asks for the period keys this process has met; a budget whose
    (period, tz) it has not met yet is read on its own, so no balance is ever missed."""
    ledger: Ledger = make_ledger()  # type: ignore[operator]
    ledger.set_budget("root", limit=3 * AMOUNTS.cost_minor, period="week", tz="America/Lima")
    ledger.set_budget("team", limit=10**9, period="day", parent="root", tz="Asia/Tokyo")
    for _ in range(3):
        ledger.reserve("team", AMOUNTS)
    with pytest.raises(BudgetExceeded):
        ledger.reserve("team", AMOUNTS)
    # A second ledger object (another process's view): it has met no pair yet.
    with Ledger.open(ledger_url) as other:
        with pytest.raises(BudgetExceeded) as refused:
            other.reserve("team", AMOUNTS)
        assert refused.value.team == "root"
        other.set_budget("team2", limit=10**9, period="month", parent="root")
        with pytest.raises(BudgetExceeded):  # (month, UTC) met now, root's pair already
            other.reserve("team2", AMOUNTS)
    assert ledger.check() == []


def test_a_sheet_published_by_another_process_is_seen_by_the_next_reserve(
    make_ledger: object, ledger_url: str
) -> None:
    from klingcost.sheet import load_sheet, sheet_hash

    ledger: Ledger = make_ledger()  # type: ignore[operator]
    ledger.set_budget("team", limit=10**9)
    sheet = load_sheet()
    ledger.reserve("team", AMOUNTS, sheet_sha256="other")  # nothing published: any sheet
    with Ledger.open(ledger_url) as publisher:
        publisher.publish_sheet(sheet)
    with pytest.raises(SheetMismatchError):
        ledger.reserve("team", AMOUNTS, sheet_sha256="other")
    ledger.reserve("team", AMOUNTS, sheet_sha256=sheet_hash(sheet))
