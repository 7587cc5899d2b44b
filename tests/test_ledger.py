from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.errors import (
    BudgetCannotCount,
    BudgetConfigError,
    BudgetExceeded,
    BudgetNotFound,
    HoldNotFound,
    HoldStateError,
    InvalidAmountError,
    LedgerError,
    LedgerSchemaError,
    LedgerValueError,
)
from klingcost.ledger import Ledger, default_ledger_path, migrations

START = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


def credits(cost: int, units: int = 1000, pack: str = "video") -> HoldAmounts:
    return HoldAmounts(units_milli=units, pack=pack, cost_minor=cost, currency="credits")  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger], clock: ManualClock) -> Ledger:
    """A fresh ledger on each backend (SQLite and PostgreSQL: see conftest.py)."""
    return make_ledger(clock=clock)


def count(ledger: Ledger, table: str) -> int:
    return int(ledger.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


# --- the file -----------------------------------------------------------------------------


def test_a_new_file_gets_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "ledger.db"
    with Ledger.open(path) as ledger:
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    db = sqlite_utils.Database(path)
    assert {"budgets", "holds", "tasks", "events", "balances", "hold_entries"} <= set(
        db.table_names()
    )
    assert {"budget_balances", "hold_summary", "open_holds"} <= set(db.view_names())
    applied = [r["name"] for r in db["_klingcost_migrations"].rows]
    assert applied == [m.name for m in migrations.MIGRATIONS]
    assert applied[0] == "0001_initial"
    assert db.execute("PRAGMA user_version").fetchone()[0] == migrations.schema_version()
    db.close()


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    with Ledger.open(path) as ledger:
        assert count(ledger, "_klingcost_migrations") == len(migrations.MIGRATIONS)


def test_default_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLINGCOST_LEDGER", raising=False)
    monkeypatch.setenv("KLINGCOST_HOME", str(tmp_path / "home"))
    assert default_ledger_path() == tmp_path / "home" / "ledger.db"
    with Ledger.open() as ledger:
        assert ledger.path == tmp_path / "home" / "ledger.db"
    assert (tmp_path / "home" / "ledger.db").exists()
    monkeypatch.setenv("KLINGCOST_LEDGER", str(tmp_path / "other.db"))
    assert default_ledger_path() == tmp_path / "other.db"
    monkeypatch.delenv("KLINGCOST_HOME")
    monkeypatch.delenv("KLINGCOST_LEDGER")
    assert default_ledger_path({}) == Path.home() / ".klingcost" / "ledger.db"


def test_a_file_from_a_newer_klingcost_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.schema_version() + 1}")
    conn.execute("INSERT INTO _klingcost_migrations VALUES ('9999_future', 'x')")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LedgerSchemaError, match="newer klingcost"):
        Ledger.open(path)
    assert path.read_bytes() == before


def test_another_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "photos.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LedgerSchemaError, match="not a klingcost ledger"):
        Ledger.open(path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 10)
    with pytest.raises(LedgerSchemaError, match="not a SQLite file"):
        Ledger.open(path)
    assert path.read_text().startswith("these are my notes")


# --- budgets ------------------------------------------------------------------------------


def test_set_and_update_a_budget(ledger: Ledger) -> None:
    status = ledger.set_budget("acme", limit=1000, period="month")
    assert (status.limit, status.posted, status.held, status.available) == (1000, 0, 0, 1000)
    assert status.window.key == "2026-11"
    ledger.set_budget("acme", limit=2000, period="month")
    assert ledger.budget_status("acme").limit == 2000
    assert [s.team for s in ledger.budgets()] == ["acme"]
    assert [e.kind for e in ledger.events(team="acme")] == ["budget_set", "budget_set"]


def test_parents_must_exist_and_never_cycle(ledger: Ledger) -> None:
    with pytest.raises(BudgetNotFound):
        ledger.set_budget("team", limit=1, parent="nobody")
    ledger.set_budget("company", limit=10)
    ledger.set_budget("team", limit=5, parent="company")
    ledger.set_budget("project", limit=5, parent="team")
    with pytest.raises(BudgetConfigError, match="company -> project -> team -> company"):
        ledger.set_budget("company", limit=10, parent="project")
    assert ledger.get_budget("company").parent is None


def test_a_budget_with_entries_keeps_its_unit(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    ledger.reserve("a", credits(10))
    with pytest.raises(BudgetConfigError, match="unit cannot"):
        ledger.set_budget("a", limit=100, unit="units")
    ledger.set_budget("b", limit=100)
    ledger.set_budget("b", limit=100, unit="units")  # no entries yet: allowed


def test_unknown_budget(ledger: Ledger) -> None:
    with pytest.raises(BudgetNotFound):
        ledger.reserve("ghost", credits(1))
    with pytest.raises(BudgetNotFound):
        ledger.budget_status("ghost")


# --- holds --------------------------------------------------------------------------------


def test_reserve_attach_settle(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    hold = ledger.reserve("a", credits(300, units=2000), key="job-1", meta={"model": "kling-v1"})
    assert (hold.state, hold.estimate.cost_minor, hold.meta) == ("held", 300, {"model": "kling-v1"})
    assert ledger.budget_status("a").held == 300
    attached = ledger.attach(hold.id, "task-9")
    assert (attached.state, attached.task_id) == ("submitted", "task-9")
    assert ledger.hold_for_task("task-9") == ledger.get_hold(hold.id)
    assert ledger.hold_for_key("job-1") == ledger.get_hold(hold.id)
    assert ledger.hold_for_task("nope") is None and ledger.hold_for_key("nope") is None
    settled = ledger.settle(hold.id, units_milli=2500, cost_minor=375, raw_deduction="2.5")
    assert (settled.state, settled.units_milli, settled.cost_minor) == ("settled", 2500, 375)
    assert (settled.variance_units_milli, settled.variance_cost_minor) == (500, 75)
    assert settled == ledger.get_hold(hold.id)
    status = ledger.budget_status("a")
    assert (status.posted, status.held, status.available) == (375, 0, 625)
    kinds = [e.kind for e in ledger.events(hold_id=hold.id)]
    assert kinds == ["reserve", "attach", "settle"]
    assert ledger.check() == []


def test_the_same_key_never_charges_twice(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    first = ledger.reserve("a", credits(300), key="k")
    again = ledger.reserve("a", credits(300), key="k")
    assert again.id == first.id
    assert ledger.budget_status("a").held == 300
    assert count(ledger, "holds") == 1
    with pytest.raises(HoldStateError, match="another key"):
        ledger.reserve("a", credits(301), key="k")


def test_a_voided_hold_frees_its_key_for_a_new_reservation(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    first = ledger.reserve("a", credits(300), key="job-7")
    ledger.void(first.id, reason="submission refused: RateLimitError")
    again = ledger.reserve("a", credits(300), key="job-7")
    assert again.id != first.id and again.key == "job-7" and again.state == "held"
    assert ledger.hold_for_key("job-7") == ledger.get_hold(again.id)
    old = ledger.get_hold(first.id)
    assert (old.state, old.key) == ("voided", f"job-7#voided-{first.id}")
    [released] = ledger.events(kind="release_key")
    assert released.hold_id == first.id and released.data["key"] == "job-7"
    assert ledger.budget_status("a").held == 300  # the new hold alone counts
    assert ledger.reserve("a", credits(300), key="job-7").id == again.id  # idempotent again
    assert ledger.check() == []


def test_no_key_may_take_the_form_of_a_released_one(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    first = ledger.reserve("a", credits(300), key="k")
    with pytest.raises(HoldStateError, match="may not contain '#voided-'"):
        ledger.reserve("a", credits(300), key=f"k#voided-{first.id}")
    ledger.void(first.id, reason="refused")
    assert ledger.reserve("a", credits(300), key="k").id != first.id  # the key frees cleanly


def test_a_refused_retry_under_a_voided_key_changes_nothing(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=300)
    first = ledger.reserve("a", credits(300), key="k")
    ledger.void(first.id, reason="refused")
    ledger.reserve("a", credits(300))  # the room is taken by another hold meanwhile
    with pytest.raises(BudgetExceeded):
        ledger.reserve("a", credits(300), key="k")
    assert ledger.get_hold(first.id).key == "k"  # the rename rolled back with the refusal
    assert ledger.events(kind="release_key") == []


def test_a_used_key_returns_its_hold_even_when_the_budget_is_now_full(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=300)
    first = ledger.reserve("a", credits(300), key="k")
    events = count(ledger, "events")
    assert ledger.reserve("a", credits(300), key="k").id == first.id  # not BudgetExceeded
    assert count(ledger, "events") == events
    with pytest.raises(BudgetExceeded):
        ledger.reserve("a", credits(300), key="other")
    with pytest.raises(HoldStateError, match="another key"):
        ledger.reserve("ghost", credits(300), key="k")  # a team without a budget, a used key
    with pytest.raises(BudgetNotFound):
        ledger.reserve("ghost", credits(300), key="new")


def test_a_refusal_says_why_and_writes_nothing(ledger: Ledger) -> None:
    ledger.set_budget("company", limit=1000, period="month")
    ledger.set_budget("team", limit=10_000, parent="company")
    ledger.reserve("team", credits(700))
    events, holds = count(ledger, "events"), count(ledger, "holds")
    with pytest.raises(BudgetExceeded) as caught:
        ledger.reserve("team", credits(400))
    error = caught.value
    assert (error.team, error.needed, error.available, error.limit) == ("company", 400, 300, 1000)
    assert (error.period, error.requested_by) == ("month", "team")
    assert "2026-11" in error.window
    assert (count(ledger, "events"), count(ledger, "holds")) == (events, holds)
    assert ledger.budget_status("team").held == 700
    ledger.reserve("team", credits(300))  # exactly what is left fits
    assert ledger.budget_status("company").available == 0


def test_units_budgets_count_their_own_pack(ledger: Ledger) -> None:
    ledger.set_budget("videos", limit=5000, unit="units", pack="video")
    ledger.reserve("videos", credits(1, units=5000))
    with pytest.raises(BudgetExceeded) as caught:
        ledger.reserve("videos", credits(1, units=1))
    assert caught.value.unit.startswith("milli-units")
    ledger.set_budget("dollars", limit=5000, unit="usd")
    with pytest.raises(BudgetConfigError, match="mixes currencies"):
        ledger.reserve("dollars", credits(1))


def test_a_budget_that_cannot_count_a_job_refuses_it(ledger: Ledger) -> None:
    # The attack: a team with only a video-units budget had five image jobs of n=9 admitted
    # with nothing held. Now each is refused, nothing is written, and the message says what
    # to add.
    ledger.set_budget("company", limit=10**9)  # credits: counts both packs
    ledger.set_budget("videos", limit=5000, unit="units", pack="video", parent="company")
    before = (count(ledger, "holds"), count(ledger, "events"))
    for _ in range(5):
        with pytest.raises(BudgetCannotCount) as caught:
            ledger.reserve("videos", credits(3375, units=72_000, pack="image"))
        message = str(caught.value)
        assert "budget 'videos' counts Kling units of the video pack" in message
        assert "cannot count this image job" in message
        assert "klingcost budget set videos --unit credits --limit N" in message
        assert "--unit units --pack image" in message
    assert (count(ledger, "holds"), count(ledger, "events")) == before
    assert ledger.budget_status("company").held == 0
    # A parent that cannot count it refuses it too, whatever the team's own budget counts.
    ledger.set_budget("team", limit=10**6, parent="videos")
    with pytest.raises(BudgetCannotCount, match="'videos' \\(on the path of 'team'\\)"):
        ledger.reserve("team", credits(375, units=1000, pack="image"))
    # Video jobs still pass; and an image-units budget counts image jobs.
    ledger.reserve("team", credits(15_000, units=1000))
    ledger.set_budget("images", limit=72_000, unit="units", pack="image", parent="company")
    assert ledger.reserve("images", credits(3375, units=72_000, pack="image")).state == "held"
    assert ledger.check() == []


def test_one_path_never_mixes_two_currencies(ledger: Ledger) -> None:
    ledger.set_budget("company", limit=10**6)  # credits
    with pytest.raises(BudgetConfigError, match=r"'us' counts usd to 10\^-4, but 'company'"):
        ledger.set_budget("us", limit=10**6, unit="usd", parent="company")
    ledger.set_budget("videos", limit=10**6, unit="units", pack="video", parent="company")
    ledger.set_budget("us", limit=10**6, unit="usd")  # a root of its own: fine
    ledger.set_budget("us-videos", limit=10**6, unit="units", pack="video", parent="us")
    ledger.set_budget("us-team", limit=10**6, unit="usd", parent="us-videos")
    # Moving the usd tree (or its units budget) under the credits company mixes the two.
    with pytest.raises(BudgetConfigError, match=r"'us' counts usd to 10\^-4, but 'company'"):
        ledger.set_budget("us", limit=10**6, unit="usd", parent="company")
    with pytest.raises(BudgetConfigError, match=r"counts credits to 10\^-0, but 'us-team'"):
        ledger.set_budget("us-videos", limit=10**6, unit="units", pack="video", parent="company")
    assert ledger.get_budget("us-videos").parent == "us"  # nothing changed
    # The same currency to another minor unit would count one cost 100 times off on one of them.
    with pytest.raises(BudgetConfigError, match="'cents' counts usd to 10\\^-2, but 'us-team'"):
        ledger.set_budget("cents", limit=100, unit="usd", exponent=2, parent="us-team")


def test_a_money_budget_refuses_a_cost_in_another_minor_unit(ledger: Ledger) -> None:
    ledger.set_budget("dollars", limit=10 * 10**4, unit="usd")  # USD 10, to 1/10,000
    cost = HoldAmounts(units_milli=1000, pack="video", cost_minor=1400, currency="usd")
    hold = ledger.reserve("dollars", replace(cost, exponent=4))
    assert ledger.budget_status("dollars").held == 1400  # USD 0.14
    with pytest.raises(BudgetConfigError, match=r"to 10\^-4, but the hold is priced to 10\^-2"):
        ledger.reserve("dollars", replace(cost, exponent=2))
    assert [h.id for h in ledger.holds()] == [hold.id]


def test_what_the_driver_cannot_bind_is_a_klingcost_error(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    # SQLite's driver cannot bind it; PostgreSQL refuses it: a klingcost error either way.
    with pytest.raises(LedgerError, match=r"cannot be stored|out of range"):
        ledger.reserve("a", credits(1), meta={"n": 2**64})
    with pytest.raises(LedgerValueError, match="a value cannot be stored"):
        ledger.reserve("a", credits(1), key="bad\ud800key")
    with pytest.raises(LedgerValueError, match="key must be a string"):
        ledger.reserve("a", credits(1), key=5)  # type: ignore[arg-type]
    with pytest.raises(LedgerValueError, match="team must be a string"):
        ledger.reserve(5, credits(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError, match="2\\*\\*63 - 1"):
        HoldAmounts(units_milli=2**64, pack="video", cost_minor=1)
    hold = ledger.reserve("a", credits(1))
    with pytest.raises(InvalidAmountError, match="2\\*\\*63 - 1"):
        ledger.settle(hold.id, units_milli=1, cost_minor=2**64)
    with pytest.raises((LedgerValueError, HoldNotFound)):
        ledger.get_hold(2**64)
    assert ledger.check() == []


def test_void_unless_task_decides_inside_the_transaction(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    hold = ledger.reserve("a", credits(100))
    seen = ledger.get_hold(hold.id)  # what a caller looked at: no task yet
    ledger.attach(hold.id, "task-late")  # ... and then the guard attached one
    assert seen.task_id is None
    with pytest.raises(HoldStateError, match="has task task-late"):
        ledger.void(hold.id, reason="no such task", unless_task=True)
    assert ledger.get_hold(hold.id).state == "submitted"
    assert ledger.budget_status("a").held == 100


def _undo_0007(conn: sqlite3.Connection) -> None:
    """Take a ledger file back to before 0007_sheets_truncate (nothing to undo in SQLite)."""
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0007_sheets_truncate'")
    conn.execute("PRAGMA user_version = 6")


def _undo_0006(conn: sqlite3.Connection) -> None:
    """Take a ledger file back to before 0006_alerts (as an older klingcost left it)."""
    _undo_0007(conn)
    for table in ("alert_outbox", "alert_marks", "alert_rules"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0006_alerts'")
    conn.execute("PRAGMA user_version = 5")


def _undo_0005(conn: sqlite3.Connection) -> None:
    """Take a ledger file back to before 0005_api_keys (as an older klingcost left it)."""
    _undo_0006(conn)
    conn.execute("DROP INDEX holds_open_key")
    conn.execute("DROP INDEX events_refused")
    conn.execute("DROP TABLE api_keys")
    conn.execute("ALTER TABLE holds DROP COLUMN key_id")
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0005_api_keys'")
    conn.execute("PRAGMA user_version = 4")


def _undo_0004(conn: sqlite3.Connection) -> None:
    """Take a ledger file back to before 0004_published_sheets (as an older klingcost left it)."""
    _undo_0005(conn)
    conn.execute("DROP TABLE pricing_sheets")
    conn.execute("DROP TABLE ledger_settings")
    conn.execute("ALTER TABLE holds DROP COLUMN sheet_sha256")
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0004_published_sheets'")
    conn.execute("PRAGMA user_version = 3")


def test_migration_0004_adds_published_sheets_to_an_old_ledger(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("team", limit=1000)
        hold = ledger.reserve("team", credits(100))
    conn = sqlite3.connect(path, isolation_level=None)
    _undo_0004(conn)
    conn.close()
    with Ledger.open(path) as ledger:
        assert ledger.get_hold(hold.id).sheet_sha256 is None  # priced before any was named
        assert ledger.published_sheet() is None
        assert ledger.reserve("team", credits(100), sheet_sha256="a" * 64).sheet_sha256 == "a" * 64
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.schema_version()
    conn.close()


def test_migration_0003_moves_old_usd_and_cny_limits_to_the_sheet_exponents(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("us", limit=1000, unit="usd")
        ledger.set_budget("cn", limit=1000, unit="cny")
    # As klingcost wrote them before 0003: USD and CNY to 10^-2, schema version 2.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE budgets SET limit_minor = 1000, exponent = 2")  # 10.00 each
    _undo_0004(conn)
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0003_currency_exponents'")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with Ledger.open(path) as ledger:
        us, cn = ledger.get_budget("us"), ledger.get_budget("cn")
        assert (us.limit, us.exponent, cn.limit, cn.exponent) == (100_000, 4, 10_000, 3)
        assert us.format(us.limit) == cn.format(cn.limit) == "10"  # the same money as before
    # A limit too large to scale stays the largest a column holds.
    with Ledger.open(tmp_path / "huge.db") as ledger:
        ledger.set_budget("us", limit=1, unit="usd")
    conn = sqlite3.connect(tmp_path / "huge.db", isolation_level=None)
    conn.execute(f"UPDATE budgets SET limit_minor = {2**63 - 1}, exponent = 2")
    _undo_0004(conn)
    conn.execute("DELETE FROM _klingcost_migrations WHERE name = '0003_currency_exponents'")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with Ledger.open(tmp_path / "huge.db") as ledger:
        assert ledger.get_budget("us").limit == 2**63 - 1


def test_settle_and_void_are_idempotent_and_exclusive(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    one = ledger.reserve("a", credits(100))
    two = ledger.reserve("a", credits(100))
    ledger.settle(one.id, units_milli=1000, cost_minor=90)
    events = count(ledger, "events")
    assert ledger.settle(one.id, units_milli=1000, cost_minor=90).state == "settled"
    with pytest.raises(HoldStateError, match="settled"):
        ledger.settle(one.id, units_milli=1000, cost_minor=91)
    with pytest.raises(HoldStateError, match="settled"):
        ledger.void(one.id, reason="oops")
    ledger.void(two.id, reason="task failed")
    events = count(ledger, "events")
    assert ledger.void(two.id, reason="again").reason == "task failed"
    assert count(ledger, "events") == events
    with pytest.raises(HoldStateError, match="voided"):
        ledger.settle(two.id, units_milli=1, cost_minor=1)
    status = ledger.budget_status("a")
    assert (status.posted, status.held) == (90, 0)
    # A task the API accepted after all restores the hold: acceptance wins (issue 13, item 3).
    restored = ledger.attach(two.id, "late-task")
    assert (restored.state, restored.task_id, restored.reason) == ("submitted", "late-task", None)
    status = ledger.budget_status("a")
    assert (status.posted, status.held) == (90, 100)
    assert ledger.attach(two.id, "late-task") == ledger.get_hold(two.id)  # idempotent
    with pytest.raises(HoldStateError, match="already has task"):
        ledger.attach(two.id, "other-task")
    assert ledger.check() == []
    with pytest.raises(HoldNotFound):
        ledger.void(999, reason="x")


def test_an_unknown_outcome_keeps_counting_until_resolved(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    hold = ledger.reserve("a", credits(100))
    unknown = ledger.mark_unknown(hold.id, "timeout after sending")
    assert unknown.state == "unknown" and unknown.is_open
    assert ledger.mark_unknown(hold.id, "again").reason == "timeout after sending"
    assert ledger.budget_status("a").held == 100
    with pytest.raises(BudgetExceeded):
        ledger.reserve("a", credits(1))
    assert [h.id for h in ledger.holds(state="unknown")] == [hold.id]
    ledger.void(hold.id, reason="provider has no such task")
    assert ledger.budget_status("a").available == 100


def test_an_unknown_hold_can_still_get_its_task_and_settle(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    hold = ledger.reserve("a", credits(100))
    ledger.mark_unknown(hold.id, "crash")
    assert ledger.attach(hold.id, "t1").state == "submitted"
    ledger.settle(hold.id, units_milli=1000, cost_minor=100)
    assert ledger.budget_status("a").posted == 100


def test_a_task_belongs_to_one_hold(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    one = ledger.reserve("a", credits(1))
    two = ledger.reserve("a", credits(1))
    ledger.attach(one.id, "t1")
    assert ledger.attach(one.id, "t1").task_id == "t1"  # no-op
    events = count(ledger, "events")
    with pytest.raises(HoldStateError, match="already belongs"):
        ledger.attach(two.id, "t1")
    with pytest.raises(HoldStateError, match="already has task"):
        ledger.attach(one.id, "t2")
    assert count(ledger, "tasks") == 1
    # The refused attach changed nothing: the other hold is still held, without a task.
    assert (ledger.get_hold(two.id).state, ledger.get_hold(two.id).task_id) == ("held", None)
    assert count(ledger, "events") == events
    assert ledger.check() == []


def test_settling_past_the_limit_is_recorded_never_refused(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    hold = ledger.reserve("a", credits(90))
    settled = ledger.settle(hold.id, units_milli=1000, cost_minor=150)
    assert [a.kind for a in settled.alerts] == ["over"]
    status = ledger.budget_status("a")
    assert (status.posted, status.available) == (150, -50)
    assert [e.kind for e in ledger.events(kind="over_limit")] == ["over_limit"]


def test_soft_threshold_records_an_alert_and_warns(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.set_budget("a", limit=100, soft="0.5")
    assert ledger.reserve("a", credits(49)).alerts == ()
    with caplog.at_level(logging.WARNING, logger="klingcost.ledger"):
        hold = ledger.reserve("a", credits(1))
    assert [a.kind for a in hold.alerts] == ["soft"]
    assert "soft threshold" in caplog.text
    assert ledger.events(kind="soft_threshold")[0].data["used"] == 50
    assert ledger.reserve("a", credits(1)).alerts == ()  # already past: no new alert


def test_periods_roll_over_and_spending_stays_in_its_period(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.set_budget("a", limit=100, period="month")
    november = ledger.reserve("a", credits(100))
    with pytest.raises(BudgetExceeded):
        ledger.reserve("a", credits(1))
    clock.set(datetime(2026, 12, 1, tzinfo=UTC))  # exactly at the boundary
    status = ledger.budget_status("a")
    assert (status.window.key, status.available) == ("2026-12", 100)
    december = ledger.reserve("a", credits(60))
    ledger.settle(november.id, units_milli=1000, cost_minor=80)  # settled in December
    assert ledger.budget_status("a").posted == 0  # ... but counted in November
    rows = {
        key: (posted, held)
        for key, posted, held in ledger.execute(
            "SELECT period_key, posted, held FROM budget_balances"
        )
    }
    assert rows == {"2026-11": (80, 0), "2026-12": (0, 60)}
    ledger.void(december.id, reason="failed")
    assert ledger.check() == []


def test_periods_follow_the_budget_time_zone(ledger: Ledger, clock: ManualClock) -> None:
    ledger.set_budget("tokyo", limit=100, period="day", tz="Asia/Tokyo")
    clock.set(datetime(2026, 11, 25, 14, 59, tzinfo=UTC))
    ledger.reserve("tokyo", credits(100))
    clock.advance(minutes=1)  # 00:00 on the 26th in Tokyo
    assert ledger.budget_status("tokyo").window.key == "2026-11-26"
    ledger.reserve("tokyo", credits(100))


def test_the_event_log_is_append_only(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    with pytest.raises(LedgerError, match="append-only"):
        ledger.execute("UPDATE events SET kind = 'x'")
    with pytest.raises(LedgerError, match="append-only"):
        ledger.execute("DELETE FROM events")
    assert count(ledger, "events") == 1


def test_check_finds_every_difference(ledger: Ledger) -> None:
    ledger.set_budget("company", limit=1000)
    ledger.set_budget("a", limit=1000, parent="company")
    hold = ledger.reserve("a", credits(100))
    ledger.settle(ledger.reserve("a", credits(50)).id, units_milli=1, cost_minor=40)
    assert ledger.check() == []
    ledger.execute("UPDATE balances SET held = held + 1 WHERE budget = 'a'")
    ledger.execute("DELETE FROM balances WHERE budget = 'company'")
    found = {(d.what, d.budget, d.recorded, d.expected) for d in ledger.check()}
    assert found == {
        ("held differs", "a", 101, 100),
        ("posted differs", "company", None, 40),
        ("held differs", "company", None, 100),
    }
    ledger.execute("UPDATE holds SET state = 'submitted' WHERE id = ?", (hold.id,))
    assert any(d.what == "submitted hold has no task" for d in ledger.check())


def test_amounts_must_be_ints(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    hold = ledger.reserve("a", credits(10))
    with pytest.raises(InvalidAmountError):
        ledger.settle(hold.id, units_milli=1, cost_minor=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        ledger.settle(hold.id, units_milli=-1, cost_minor=1)
    with pytest.raises(InvalidAmountError):
        ledger.reserve("a", credits(1), meta={"duration": 5.0})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        ledger.reserve("a", (1, "video", 1, "credits"))  # type: ignore[arg-type]


def test_listing_holds(ledger: Ledger, clock: ManualClock) -> None:
    ledger.set_budget("a", limit=1000)
    ledger.set_budget("b", limit=1000)
    ids = [ledger.reserve(team, credits(1)).id for team in "ababa"]
    ledger.void(ids[0], reason="x")
    ledger.attach(ids[1], "t")
    assert [h.id for h in ledger.holds(batch=2)] == ids
    assert [h.id for h in ledger.holds(state="open", batch=2)] == ids[1:]
    assert [h.id for h in ledger.holds(team="a")] == [ids[0], ids[2], ids[4]]
    assert [h.id for h in ledger.holds(state="submitted")] == [ids[1]]
    with pytest.raises(HoldStateError, match="unknown hold state"):
        list(ledger.holds(state="lost"))


def test_views_read_well(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=1000)
    hold = ledger.reserve("a", credits(5), meta={"model": "kling-v2-6", "duration": "5"})
    ledger.attach(hold.id, "task-1")
    row = ledger.execute("SELECT model, duration, task_id FROM hold_summary").fetchone()
    assert tuple(row) == ("kling-v2-6", "5", "task-1")
    balance = ledger.execute("SELECT budget, available, exponent FROM budget_balances")
    assert tuple(balance.fetchone()) == ("a", 995, 0)  # whole credits
    assert [r[0] for r in ledger.execute("SELECT id FROM open_holds")] == [hold.id]


def test_two_connections_see_one_ledger(
    make_ledger: Callable[..., Ledger], clock: ManualClock
) -> None:
    with make_ledger(clock=clock) as one, make_ledger(clock=clock) as two:
        one.set_budget("a", limit=100)
        one.reserve("a", credits(60))
        with pytest.raises(BudgetExceeded):
            two.reserve("a", credits(60))
        clock.advance(timedelta(days=40))  # a budget with no period never resets
        with pytest.raises(BudgetExceeded):
            two.reserve("a", credits(41))
