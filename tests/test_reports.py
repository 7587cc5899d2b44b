"""Spending reports: totals agree with the ledger, grouping, windows, exports, rollups."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.ledger import Ledger
from klingcost.ledger.queries import sql_decimal
from klingcost.money import format_minor
from klingcost.reports import (
    COLUMNS,
    TASK_COLUMNS,
    ReportError,
    csv_cell,
    export_tasks_csv,
    export_tasks_json,
    group_digits,
    iter_tasks,
    parse_group_by,
    period_of,
    render_table,
    share_text,
    spending_report,
    task_rows,
    write_csv,
    write_json,
    write_markdown,
)

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def video(cost: int, units: int = 1000) -> HoldAmounts:
    return HoldAmounts(units_milli=units, pack="video", cost_minor=cost, currency="credits")


def meta(
    model: str, mode: str | None = "std", endpoint: str = "videos/text2video"
) -> dict[str, str | int | None]:
    return {
        "endpoint": endpoint,
        "model": model,
        "mode": mode,
        "duration": 5,
        "sound": 0,
        "video_reference": 0,
        "reference_image": 0,
        "n": 1,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger], clock: ManualClock) -> Ledger:
    """A ledger on each backend (conftest.py), with three budgets."""
    opened = make_ledger(clock=clock)
    opened.set_budget("company", limit=10_000_000, period="month")
    opened.set_budget("video", limit=1_000_000, period="month", parent="company")
    opened.set_budget("ads", limit=500_000, parent="company")
    return opened


def populate(ledger: Ledger, clock: ManualClock) -> None:
    """Holds over four days (crossing a month), in every state."""
    plan = [
        ("video", "kling-v1-5", "std", 30_000, 36_000, "settle"),
        ("video", "kling-v1-5", "pro", 52_500, 52_500, "settle"),
        ("video", "kling-v1", "std", 15_000, None, "open"),
        ("ads", "kling-v1", "std", 15_000, None, "void"),
        ("ads", "kling-v2-master", None, 150_000, 150_000, "settle"),
        ("ads", "kling-v1", "std", 15_000, 12_000, "settle"),
        ("video", "kling-v1-5", "std", 30_000, None, "unknown"),
    ]
    for day in range(4):
        for i, (team, model, mode, est, charged, action) in enumerate(plan):
            if (i + day) % 3 == 2:
                continue  # not every class every day
            hold = ledger.reserve(team, video(est, est // 15), meta=meta(model, mode))
            if action == "settle":
                assert charged is not None
                ledger.attach(hold.id, f"t-{day}-{i}")
                ledger.settle(
                    hold.id,
                    units_milli=charged // 15,
                    cost_minor=charged,
                    raw_deduction=format_minor(charged // 15, 3),
                )
            elif action == "void":
                ledger.void(hold.id, reason="task failed")
            elif action == "unknown":
                ledger.mark_unknown(hold.id, "timeout")
        clock.advance(timedelta(days=1))


def raw_totals(ledger: Ledger, team: str | None = None) -> dict[str, int]:
    """The totals computed straight from the holds table, the slow way."""
    where = "" if team is None else f" WHERE team = '{team}'"
    row = ledger.execute(
        "SELECT SUM(CASE WHEN state = 'settled' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN state IN ('held', 'submitted', 'unknown') THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN state = 'voided' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN state = 'settled' THEN cost_minor ELSE 0 END),"
        " SUM(CASE WHEN state IN ('held', 'submitted', 'unknown') THEN est_cost_minor ELSE 0 END),"
        " SUM(CASE WHEN state <> 'voided' THEN est_cost_minor ELSE 0 END),"
        " SUM(CASE WHEN state = 'settled' THEN variance_cost_minor ELSE 0 END)"
        f" FROM holds{where}"
    ).fetchone()
    keys = ("settled", "open", "voided", "charged", "held", "estimated", "variance")
    return dict(zip(keys, row, strict=True))


def test_totals_agree_with_the_ledger(ledger: Ledger, clock: ManualClock) -> None:
    populate(ledger, clock)
    report = spending_report(ledger, by="team,model,mode,day")
    [total] = report.totals
    want = raw_totals(ledger)
    got = {
        "settled": total.settled,
        "open": total.open,
        "voided": total.voided,
        "charged": total.charged_minor,
        "held": total.held_minor,
        "estimated": total.estimated_minor,
        "variance": total.variance_minor,
    }
    assert got == want
    # The groups add up to the total, whatever the grouping.
    for by in ("team", "model", "mode", "endpoint", "pack", "week", "month", "team,month"):
        rows = spending_report(ledger, by=by).rows
        assert sum(r.charged_minor for r in rows) == want["charged"], by
        assert sum(r.held_minor for r in rows) == want["held"], by
        assert sum(r.tasks for r in rows) == want["settled"] + want["open"], by
    assert ledger.check() == []


def test_per_team_rows_match_the_ledger_and_the_budget(ledger: Ledger, clock: ManualClock) -> None:
    populate(ledger, clock)
    report = spending_report(ledger, by="team")
    rows = {r.team: r for r in report.rows}
    assert set(rows) == {"video", "ads"}
    for team, row in rows.items():
        assert team is not None
        want = raw_totals(ledger, team)
        assert (row.charged_minor, row.held_minor, row.variance_minor) == (
            want["charged"],
            want["held"],
            want["variance"],
        )
        status = ledger.budget_status(team)
        assert row.budget is not None
        assert row.budget.used_minor == status.used
        assert row.budget.share == status.share_used
        assert row.budget.period_key == status.window.key
    assert rows["video"].budget is not None and rows["video"].budget.period_key == "2026-12"
    assert rows["ads"].budget is not None and rows["ads"].budget.period_key == "all"
    # A grouping without team has no budget columns.
    assert all(r.budget is None for r in spending_report(ledger, by="model").rows)


def test_windows_and_team_filter(ledger: Ledger, clock: ManualClock) -> None:
    populate(ledger, clock)
    nov = spending_report(ledger, by="month", until=date(2026, 11, 30))
    dec = spending_report(ledger, by="month", since=date(2026, 12, 1))
    whole = spending_report(ledger, by="month")
    assert [r.period for r in whole.rows] == ["2026-11", "2026-12"]
    assert [r.period for r in nov.rows] == ["2026-11"]
    assert [r.period for r in dec.rows] == ["2026-12"]
    assert (
        nov.totals[0].charged_minor + dec.totals[0].charged_minor == whole.totals[0].charged_minor
    )
    ads = spending_report(ledger, by="team,model", team="ads")
    assert {r.team for r in ads.rows} == {"ads"}
    assert ads.totals[0].charged_minor == raw_totals(ledger, "ads")["charged"]
    one_day = spending_report(ledger, by="day", since=date(2026, 11, 29), until=date(2026, 11, 29))
    assert [r.period for r in one_day.rows] == ["2026-11-29"]


def test_group_keys_are_checked() -> None:
    assert parse_group_by("team, model,week") == ("team", "model", "week")
    with pytest.raises(ReportError, match="unknown key 'colour'"):
        parse_group_by("team,colour")
    with pytest.raises(ReportError, match="one of day, week or month"):
        parse_group_by("day,month")
    with pytest.raises(ReportError, match="repeated"):
        parse_group_by("team,team")
    assert period_of("2026-12-31", "week") == "2026-W53"
    assert period_of("2027-01-01", "week") == "2026-W53"
    assert period_of("2026-11-05", "month") == "2026-11"


def test_digits_are_grouped_for_people_only() -> None:
    assert group_digits("1245000") == "1,245,000"
    assert group_digits("-1245000.125") == "-1,245,000.125"
    assert group_digits("999") == "999" and group_digits("") == ""


def test_share_is_a_rounded_decimal_never_a_float() -> None:
    assert share_text(Fraction(13, 16)) == "0.8125"
    assert share_text(Fraction(1, 3)) == "0.3333"
    assert share_text(Fraction(2, 3)) == "0.6667"
    assert share_text(Fraction(5, 4)) == "1.2500"
    assert share_text(None) == ""


def test_csv_and_json_have_the_documented_columns(ledger: Ledger, clock: ManualClock) -> None:
    populate(ledger, clock)
    report = spending_report(ledger, by="team,month")
    out = io.StringIO()
    write_csv(report, out)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(lines[0].keys()) == COLUMNS
    assert [line["kind"] for line in lines][-1] == "total"
    total = lines[-1]
    assert int(total["charged"]) == raw_totals(ledger)["charged"]
    video_dec = next(
        line for line in lines if line["team"] == "video" and line["period"] == "2026-12"
    )
    assert video_dec["budget_unit"] == "credits" and video_dec["budget_period"] == "2026-12"
    assert video_dec["model"] == ""  # not grouped on
    out = io.StringIO()
    write_json(report, out)
    data = json.loads(out.getvalue())
    assert data["columns"] == list(COLUMNS)
    assert data["by"] == ["team", "month"]
    assert set(data["rows"][0]) == set(COLUMNS)
    assert data["totals"][0]["kind"] == "total"


def test_table_and_markdown_read_well(ledger: Ledger, clock: ManualClock) -> None:
    populate(ledger, clock)
    report = spending_report(ledger, by="team")
    text = render_table(report)
    assert text.splitlines()[0].split()[:3] == ["team", "tasks", "settled"]
    assert "total (credits)" in text
    assert "%" in text
    out = io.StringIO()
    write_markdown(report, out)
    md = out.getvalue().splitlines()
    assert md[0].startswith("| team | tasks |")
    assert md[1].startswith("|---|---:|")
    assert (
        render_table(spending_report(ledger, since=date(2030, 1, 1)))
        == "no spending in this window"
    )


def test_markdown_escapes_pipes(ledger: Ledger) -> None:
    ledger.set_budget("a", limit=100)
    ledger.reserve("a", video(5), meta=meta("kling|v1"))
    out = io.StringIO()
    write_markdown(spending_report(ledger, by="model"), out)
    assert "kling\\|v1" in out.getvalue()


def test_task_export_streams_every_row_with_exact_amounts(
    ledger: Ledger, clock: ManualClock
) -> None:
    populate(ledger, clock)
    out = io.StringIO()
    count = export_tasks_csv(ledger, out)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(lines)
    assert tuple(lines[0].keys()) == TASK_COLUMNS
    assert len(lines) == ledger.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
    settled = [line for line in lines if line["state"] == "settled"]
    assert sum(int(line["charged"]) for line in settled) == raw_totals(ledger)["charged"]
    some = next(line for line in settled if line["model"] == "kling-v1-5" and line["mode"] == "std")
    assert (some["estimated_units"], some["charged_units"], some["variance_units"]) == (
        "2",
        "2.4",
        "0.4",
    )
    assert some["deduction_flag"] == "ok" and some["task_id"].startswith("t-")
    rows = list(iter_tasks(ledger, team="ads", state="settled"))
    assert rows and all(r.team == "ads" and r.state == "settled" for r in rows)
    assert isinstance(rows[0].estimated, str)
    out = io.StringIO()
    assert export_tasks_json(task_rows(ledger, since=date(2026, 12, 1)), out) > 0
    data = json.loads(out.getvalue())
    assert all(row["reserved_at"] >= "2026-12-01" for row in data)
    assert set(data[0]) == set(TASK_COLUMNS)
    out = io.StringIO()
    assert export_tasks_json(task_rows(ledger, team="nobody"), out) == 0
    assert json.loads(out.getvalue()) == []


@pytest.mark.parametrize("exponent", [1, 2, 3, 4])
def test_sql_formatting_matches_format_minor(exponent: int) -> None:
    conn = sqlite3.connect(":memory:")
    values = [0, 1, -1, 5, 10, 99, 100, 101, 1000, 1234, -1234, 12_000, -5000, 10**12 + 7]
    for value in values:
        [(text,)] = conn.execute(
            f"SELECT {sql_decimal('v', exponent)} FROM (SELECT ? AS v)", (value,)
        )
        assert str(text) == format_minor(value, exponent), value


@pytest.mark.parametrize("exponent", [0, 2, 3])
def test_sql_formatting_matches_format_minor_on_each_backend(ledger: Ledger, exponent: int) -> None:
    values = [0, 1, -1, 5, 10, 99, 100, 101, 1000, 1234, -1234, 12_000, -5000, 10**12 + 7]
    expression = sql_decimal("v", exponent, ledger.dialect)
    for value in values:
        [(text,)] = ledger.execute(f"SELECT {expression} FROM (SELECT ? AS v) AS t", (value,))
        assert str(text) == format_minor(value, exponent), value


def test_rollups_follow_every_write_and_check_catches_damage(
    ledger: Ledger, clock: ManualClock
) -> None:
    populate(ledger, clock)
    assert ledger.check() == []
    ledger.execute(
        "UPDATE rollup_daily SET charged_minor = charged_minor + 1"
        " WHERE team = 'ads' AND day = '2026-11-28' AND model = 'kling-v2-master'"
    )
    found = [d.what for d in ledger.check()]
    assert len(found) == 1 and "rollup_daily differs" in found[0] and "'ads'" in found[0]
    ledger.rebuild_rollups()
    assert ledger.check() == []


def test_an_old_ledger_is_migrated_and_backfilled(tmp_path: Path) -> None:
    """A file written before 0002_rollups gets the job-class columns and its rollups."""
    from klingcost.ledger import migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE _klingcost_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    for statement in migrations.MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("INSERT INTO _klingcost_migrations VALUES ('0001_initial', 'then')")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
    conn.execute(
        "INSERT INTO budgets VALUES ('a', NULL, 'credits', NULL, 0, 1000000, 'none', 'UTC', '0.8',"
        " 'x', 'x')"
    )
    meta_json = json.dumps(meta("kling-v1-5"))
    for i, (state, raw) in enumerate([("settled", "2.4"), ("settled", "0"), ("held", None)]):
        conn.execute(
            "INSERT INTO holds (id, idempotency_key, team, state, pack, currency, est_units_milli,"
            " est_cost_minor, units_milli, cost_minor, variance_units_milli, variance_cost_minor,"
            " raw_deduction, meta, reserved_at, updated_at)"
            " VALUES (?, ?, 'a', ?, 'video', 'credits', 2000, 30000, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                i + 1,
                f"k{i}",
                state,
                2400 if state == "settled" else None,
                36000 if state == "settled" else None,
                400 if state == "settled" else None,
                6000 if state == "settled" else None,
                raw,
                meta_json,
                "2026-11-25T10:00:00+00:00",
                "2026-11-25T10:00:00+00:00",
            ),
        )
        conn.execute(
            "INSERT INTO hold_entries VALUES (?, 'a', 0, 'all', 30000, ?)",
            (i + 1, 36000 if state == "settled" else None),
        )
    conn.execute("INSERT INTO balances VALUES ('a', 'all', 72000, 30000)")
    conn.close()
    with Ledger.open(path) as ledger:
        assert ledger.check() == []
        row = ledger.conn.execute(
            "SELECT model, mode, duration, n FROM holds WHERE id = 1"
        ).fetchone()
        assert row == ("kling-v1-5", "std", "5", 1)
        flags = [h.deduction_flag for h in ledger.holds()]
        assert flags == ["ok", "zero", None]
        [total] = spending_report(ledger).totals
        assert (total.charged_minor, total.held_minor, total.settled, total.open) == (
            72000,
            30000,
            2,
            1,
        )


def test_the_fast_csv_is_byte_for_byte_what_csv_writer_writes(
    ledger: Ledger, clock: ManualClock
) -> None:
    populate(ledger, clock)
    tricky = ledger.reserve("ads", video(10), meta=meta('kling, "v1"\nnew'))
    ledger.void(tricky.id, reason='refused: "bad", try\r\nlater')
    odd = ledger.reserve("ads", video(10), meta=meta("kling-v1"))
    ledger.attach(odd.id, 'task,"x"')
    ledger.settle(odd.id, units_milli=1, cost_minor=1, raw_deduction='1"')
    formula = ledger.reserve("ads", video(10), meta=meta("kling-v1"))
    ledger.void(formula.id, reason="=1+2")
    for batch_owner in range(2):  # the odd rows in a batch of their own, and among others
        want = io.StringIO()
        csv.writer(want, lineterminator="\n").writerows(
            [
                TASK_COLUMNS,
                *(
                    [csv_cell(cell) for cell in row]
                    for row in task_rows(ledger, team="ads" if batch_owner else None)
                ),
            ]
        )
        got = io.StringIO()
        export_tasks_csv(ledger, got, team="ads" if batch_owner else None)
        assert got.getvalue() == want.getvalue()
    rows = list(csv.DictReader(io.StringIO(got.getvalue())))
    assert rows[-3]["model"] == 'kling, "v1"\nnew' and rows[-3]["reason"].startswith(
        'refused: "bad"'
    )
    assert rows[-1]["reason"] == "'=1+2"


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(
    ledger: Ledger, clock: ManualClock
) -> None:
    populate(ledger, clock)  # negative variances: numbers that start with "-"
    texts = ["=1+2", "+cmd", "-2+3", "--1", "@SUM(A1)", "\tx"]
    for text in texts:
        hold = ledger.reserve("ads", video(10), meta=meta("kling-v1"))
        ledger.void(hold.id, reason=text)
    raw = ledger.reserve("ads", video(15_000), meta=meta("=HYPERLINK(1)"))
    ledger.attach(raw.id, "t-raw")
    ledger.settle(raw.id, units_milli=500, cost_minor=7_500, raw_deduction="-1")
    out = io.StringIO()
    export_tasks_csv(ledger, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["reason"] for r in rows[-len(texts) - 1 : -1]] == ["'" + t for t in texts]
    last = rows[-1]
    assert last["model"] == "'=HYPERLINK(1)"
    # Plain numbers are never changed, though they start with "-".
    assert (last["raw_deduction"], last["variance"], last["variance_units"]) == (
        "-1",
        "-7500",
        "-0.5",
    )
    assert any(r["variance"].startswith("-") for r in rows[:-1])
    assert [csv_cell(v) for v in ("-1", "2.5", "+3", "-1e5", ".5", 7, None, "")] == [
        "-1",
        "2.5",
        "+3",
        "-1e5",
        ".5",
        7,
        None,
        "",
    ]
    assert [csv_cell(v) for v in ("-1-1", "1+2", "-", "@", "- 1", "\r=1")] == [
        "'-1-1",
        "1+2",
        "'-",
        "'@",
        "'- 1",
        "'\n=1",  # a carriage return becomes a line feed, and still neutralised
    ]
    grouped = io.StringIO()
    write_csv(spending_report(ledger, by="model"), grouped)
    models = [r["model"] for r in csv.DictReader(io.StringIO(grouped.getvalue()))]
    assert "'=HYPERLINK(1)" in models and "=HYPERLINK(1)" not in models


def test_a_lone_carriage_return_never_splits_a_csv_row() -> None:
    import csv
    import io

    from klingcost.reports import csv_cell

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([csv_cell("voided:\rby hand"), csv_cell("\r=1")])
    [row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ["voided:\nby hand", "'\n=1"]
