"""Budgets a person can manage: set says what it changed and warns; delete; rename."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.ledger import Ledger


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def events(db: str) -> list[str]:
    with Ledger.open(db) as ledger:
        return [e.kind for e in ledger.events()]


@pytest.fixture
def db(ledger_url: str) -> str:
    assert run("budget", "set", "acme", "--limit", "1000", "--ledger", ledger_url).exit_code == 0
    return ledger_url


def spend(db: str, team: str, amount: int, *, settle: bool = False) -> int:
    with Ledger.open(db) as ledger:
        hold = ledger.reserve(team, HoldAmounts(1000, "video", amount, "credits"))
        if settle:
            ledger.attach(hold.id, f"task-{hold.id}")
            ledger.settle(hold.id, units_milli=1000, cost_minor=amount, raw_deduction="1")
        return hold.id


def test_set_without_options_has_nothing_to_change(db: str) -> None:
    before = events(db)
    result = run("budget", "set", "acme", "--ledger", db)
    assert result.exit_code == 2
    assert "budget acme: nothing to change" in result.output and "--limit" in result.output
    assert "updated" not in result.output and events(db) == before


def test_set_says_what_it_changed(db: str) -> None:
    result = run("budget", "set", "acme", "--limit", "2000", "--soft", "90%", "--ledger", db)
    assert result.exit_code == 0, result.output
    assert "updated budget acme: limit 1000 -> 2000; soft 0.8 -> 0.9" in result.output
    same = run("budget", "set", "acme", "--limit", "2000", "--ledger", db)
    assert same.exit_code == 0 and "budget acme unchanged" in same.output
    data = json.loads(run("budget", "set", "acme", "--tz", "Europe/Paris", "--json",
                          "--ledger", db).output)  # fmt: skip
    assert data["changed"] == {"tz": {"from": "UTC", "to": "Europe/Paris"}}


def test_a_limit_below_what_is_spent_warns_and_needs_yes(db: str) -> None:
    spend(db, "acme", 600, settle=True)
    before = events(db)
    result = run("budget", "set", "acme", "--limit", "100", "--ledger", db)
    assert result.exit_code == 2
    assert "the new limit 100 credits is below the 600 already used" in result.output
    assert "available becomes -500" in result.output and "pass --yes" in result.output
    assert events(db) == before
    assert (
        json.loads(run("budget", "show", "acme", "--json", "--ledger", db).output)["limit"]
        == "1000"
    )
    done = run("budget", "set", "acme", "--limit", "100", "--yes", "--ledger", db)
    assert done.exit_code == 0 and "limit 1000 -> 100" in done.output
    assert "warning: budget acme: the new limit" in done.output


def test_a_period_change_that_moves_open_holds_warns(db: str) -> None:
    spend(db, "acme", 480, settle=True)
    spend(db, "acme", 15)
    result = run("budget", "set", "acme", "--period", "MONTH", "--ledger", db)
    assert result.exit_code == 2
    assert "the period changes from all to" in result.output
    assert "posted 480 and held 15 become 0 and 0" in result.output
    assert "1 open hold(s) holding 15 stay in all" in result.output
    assert (
        json.loads(run("budget", "show", "acme", "--json", "--ledger", db).output)["period"]
        == "none"
    )


def test_shares_as_percentages_and_currencies_in_any_case(ledger_url: str) -> None:
    result = run("budget", "set", "us", "--unit", "USD", "--limit", "5", "--soft", "75%",
                 "--json", "--ledger", ledger_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["unit"] == "usd" and data["soft"] == "0.75"
    bad = run("budget", "set", "us", "--soft", "lots", "--ledger", ledger_url)
    assert bad.exit_code == 2 and "'lots' is not a share: write 0.8, 80% or 4/5" in bad.output


def test_delete_is_refused_while_holds_are_open(db: str) -> None:
    hold = spend(db, "acme", 15)
    before = events(db)
    result = run("budget", "delete", "acme", "--ledger", db)
    assert result.exit_code == 2
    assert f"budget acme has 1 open hold(s) (ids {hold})" in result.output
    assert "--force" in result.output and events(db) == before
    forced = run("budget", "delete", "acme", "--force", "--ledger", db)
    assert forced.exit_code == 0, forced.output
    assert "history is kept as acme~deleted-1" in forced.output
    assert f"open hold(s) ({hold}) stay open" in forced.output
    assert "acme" not in run("budget", "list", "--ledger", db).output
    assert run("budget", "show", "acme", "--ledger", db).exit_code == 2
    with Ledger.open(db) as ledger:  # the hold still settles, under the archived name
        ledger.attach(hold, "t-late")
        settled = ledger.settle(hold, units_milli=1000, cost_minor=15, raw_deduction="1")
        assert settled.team == "acme~deleted-1" and settled.state == "settled"
        deleted = [e for e in ledger.events() if e.kind == "budget_deleted"]
        assert deleted[0].team == "acme" and deleted[0].data["open_holds"] == [hold]
        assert ledger.check() == []
    again = run("budget", "set", "acme", "--limit", "5", "--json", "--ledger", db)
    assert json.loads(again.output)["held"] == "0"  # the name is free, and starts empty


def test_delete_of_a_budget_that_held_nothing_removes_it(db: str) -> None:
    result = run("budget", "delete", "acme", "--ledger", db)
    assert result.exit_code == 0 and "deleted budget acme (it held nothing)" in result.output
    assert "no budgets yet" in run("budget", "list", "--ledger", db).output
    assert run("budget", "delete", "acme", "--ledger", db).exit_code == 2


def test_delete_refuses_a_budget_with_children(db: str) -> None:
    run("budget", "set", "video", "--limit", "10", "--parent", "acme", "--ledger", db)
    result = run("budget", "delete", "acme", "--ledger", db)
    assert result.exit_code == 2 and "has budgets below it (video)" in result.output


def test_rename_moves_holds_balances_and_children(db: str) -> None:
    run("budget", "set", "video", "--limit", "500", "--parent", "acme", "--ledger", db)
    spend(db, "video", 40, settle=True)
    open_id = spend(db, "acme", 15)
    result = run("budget", "rename", "acme", "acme-eu", "--ledger", db)
    assert result.exit_code == 0, result.output
    assert "renamed budget acme to acme-eu; budgets below it now point to it: video" in (
        result.output
    )
    data = json.loads(run("budget", "show", "acme-eu", "--json", "--ledger", db).output)
    assert (data["posted"], data["held"]) == ("40", "15")
    child = json.loads(run("budget", "show", "video", "--json", "--ledger", db).output)
    assert child["parent"] == "acme-eu"
    assert run("budget", "show", "acme", "--ledger", db).exit_code == 2
    with Ledger.open(db) as ledger:
        assert ledger.get_hold(open_id).team == "acme-eu"
        assert ledger.check() == []  # balances and rollups agree with the moved entries
        assert [e.data for e in ledger.events() if e.kind == "budget_renamed"] == [
            {"previous": "acme"}
        ]
    report = run("report", "--format", "csv", "--ledger", db).output
    assert "acme-eu" in report and "\nacme," not in report


def test_rename_refuses_a_taken_or_invalid_name(db: str) -> None:
    run("budget", "set", "other", "--limit", "1", "--ledger", db)
    taken = run("budget", "rename", "acme", "other", "--ledger", db)
    assert taken.exit_code == 2 and "budget 'other' already exists" in taken.output
    bad = run("budget", "rename", "acme", "no spaces", "--ledger", db)
    assert bad.exit_code == 2 and "team name 'no spaces'" in bad.output
    missing = run("budget", "rename", "nosuch", "x", "--ledger", db)
    assert missing.exit_code == 2 and "no budget named 'nosuch'" in missing.output


CLI = [sys.executable, "-c", "from klingcost.cli import main; main()"]


def on_a_terminal(args: list[str], question: bytes, answer: bytes) -> tuple[int, bytes]:
    """Run ``klingcost ARGS`` with stdin and stderr on a terminal, wait for ``question`` there,
    answer it; (the exit code, what the terminal showed)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*CLI, *args], stdin=secondary, stdout=subprocess.DEVNULL, stderr=secondary
    )
    os.close(secondary)
    seen = b""
    try:
        while question not in seen:
            chunk = os.read(primary, 1024)  # warnings, then the question
            assert chunk, seen
            seen += chunk
        os.write(primary, answer)
        return process.wait(timeout=30), seen
    finally:
        os.close(primary)


def test_set_asks_on_a_terminal(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    assert run("budget", "set", "acme", "--limit", "1000", "--ledger", db).exit_code == 0
    spend(db, "acme", 600, settle=True)
    args = ["budget", "set", "acme", "--limit", "100", "--ledger", db]
    code, seen = on_a_terminal(args, b"Apply this change?", b"n\n")
    assert code == 1
    assert b"the new limit 100 credits is below" in seen
    assert (
        json.loads(run("budget", "show", "acme", "--json", "--ledger", db).output)["limit"]
        == "1000"
    )


def test_delete_asks_on_a_terminal_and_keeps_the_budget_on_no(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    assert run("budget", "set", "acme", "--limit", "1000", "--ledger", db).exit_code == 0
    args = ["budget", "delete", "acme", "--ledger", db]
    assert on_a_terminal(args, b"Delete budget acme?", b"n\n")[0] == 1
    assert run("budget", "show", "acme", "--ledger", db).exit_code == 0  # still there
    assert on_a_terminal(args, b"Delete budget acme?", b"y\n")[0] == 0
    assert run("budget", "show", "acme", "--ledger", db).exit_code == 2  # gone
