from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.ledger import Ledger


@pytest.fixture
def db(ledger_url: str) -> str:
    """The ledger on each backend (conftest.py): a file path, or a PostgreSQL URL."""
    return ledger_url


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_budget_set_and_show(db: str) -> None:
    result = run(
        "budget", "set", "acme", "--limit", "500000", "--period", "month", "--ledger", str(db)
    )
    assert result.exit_code == 0, result.output
    assert "created budget acme" in result.output
    result = run("budget", "set", "video", "--limit", "1000", "--parent", "acme", "--soft", "0.9",
                 "--ledger", str(db))  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("budget", "show", "video", "--ledger", str(db))
    assert result.exit_code == 0
    assert "parent acme" in result.output and "1000 credits" in result.output
    assert "alert at 90%" in result.output
    data = json.loads(run("budget", "show", "acme", "--json", "--ledger", str(db)).output)
    assert data["limit"] == "500000" and data["limit_minor"] == 500000
    assert data["window"]["key"] == data["window"]["start"][:7]
    assert (data["period"], data["share_used"], data["soft"]) == ("month", "0.0000", "0.8")
    every = json.loads(run("budget", "show", "--json", "--ledger", str(db)).output)
    assert [b["team"] for b in every] == ["acme", "video"]


def test_updating_keeps_what_is_not_given(db: str) -> None:
    run("budget", "set", "acme", "--limit", "10", "--period", "week", "--ledger", str(db))
    run("budget", "set", "team", "--limit", "5", "--parent", "acme", "--tz", "Asia/Tokyo",
        "--ledger", str(db))  # fmt: skip
    result = run("budget", "set", "team", "--limit", "7", "--json", "--ledger", str(db))
    data = json.loads(result.output)
    assert (data["limit_minor"], data["parent"], data["tz"]) == (7, "acme", "Asia/Tokyo")


def test_budget_set_without_limit_keeps_every_current_value(db: str) -> None:
    run("budget", "set", "acme", "--limit", "10", "--ledger", str(db))
    run("budget", "set", "team", "--limit", "5", "--parent", "acme", "--period", "week",
        "--tz", "Asia/Tokyo", "--soft", "2/3", "--ledger", str(db))  # fmt: skip
    result = run("budget", "set", "team", "--soft", "0.9", "--json", "--ledger", str(db))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    kept = (data["limit_minor"], data["unit"], data["parent"], data["period"], data["tz"])
    assert kept == (5, "credits", "acme", "week", "Asia/Tokyo") and data["soft"] == "0.9"
    result = run("budget", "set", "team", "--period", "day", "--json", "--ledger", str(db))
    data = json.loads(result.output)
    assert (data["limit_minor"], data["soft"], data["period"]) == (5, "0.9", "day")
    run("budget", "set", "pack", "--unit", "units", "--pack", "image", "--limit", "2.5",
        "--ledger", str(db))  # fmt: skip
    data = json.loads(run("budget", "set", "pack", "--tz", "UTC", "--json", "--ledger", db).output)
    assert (data["unit"], data["pack"], data["limit"]) == ("units", "image", "2.5")


def test_a_new_budget_needs_limit(db: str, tmp_path: Path) -> None:
    run("budget", "set", "acme", "--limit", "10", "--ledger", str(db))
    result = run("budget", "set", "team", "--soft", "0.9", "--ledger", str(db))
    assert result.exit_code == 2
    assert result.output == "Error: budget team does not exist yet: give --limit N to create it\n"
    missing = tmp_path / "none" / "l.db"
    result = run("budget", "set", "team", "--soft", "0.9", "--ledger", str(missing))
    assert result.exit_code == 2 and f"no ledger at {missing}" in result.output
    assert f"no folder {missing.parent} to make one in" in result.output
    assert not missing.parent.exists()  # a refused command starts no ledger


def test_changing_what_a_budget_counts_needs_a_new_limit(db: str) -> None:
    run("budget", "set", "acme", "--limit", "500000", "--ledger", str(db))
    result = run("budget", "set", "acme", "--unit", "usd", "--ledger", str(db))
    assert result.exit_code == 2
    assert "counts credits: to count usd instead, give its --limit N in usd" in result.output
    run("budget", "set", "pack", "--unit", "units", "--limit", "4", "--ledger", str(db))
    result = run("budget", "set", "pack", "--pack", "image", "--ledger", str(db))
    assert result.exit_code == 2 and "units (video)" in result.output
    assert "units (image)" in result.output


@pytest.mark.parametrize("existing", [False, True])
def test_pack_is_refused_with_a_currency_unit(db: str, existing: bool) -> None:
    if existing:
        run("budget", "set", "x", "--unit", "usd", "--limit", "5", "--ledger", str(db))
        args = ["--pack", "video"]  # the unit is the budget's own: usd
    else:
        args = ["--unit", "usd", "--pack", "video", "--limit", "5"]
    result = run("budget", "set", "x", *args, "--ledger", str(db))
    assert result.exit_code == 2
    assert "--pack video applies only to --unit units" in result.output
    assert "counts usd" in result.output


@pytest.mark.parametrize(
    ("unit", "note"),
    [
        ("usd", "price jobs with --provider kling-global"),
        ("cny", "price jobs with --provider kling-cn"),
        ("eur", "price jobs with a provider in eur, added with --pricing FILE"),
    ],
)
def test_a_budget_in_another_currency_says_how_to_price_holds(
    db: str, unit: str, note: str
) -> None:
    result = run("budget", "set", "x", "--unit", unit, "--limit", "5", "--json", "--ledger", db)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unit"] == unit  # the note leaves the JSON alone
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"note: budget x counts {unit}")
    assert lines[0].endswith(note)
    for plain in (["--limit", "5"], ["--unit", "units", "--limit", "5"]):
        assert run("budget", "set", "y", *plain, "--ledger", str(db)).stderr == ""


def test_units_limits_are_exact(db: str) -> None:
    result = run("budget", "set", "pack", "--unit", "units", "--pack", "image", "--limit", "12.5",
                 "--json", "--ledger", str(db))  # fmt: skip
    data = json.loads(result.output)
    assert (data["limit"], data["limit_minor"], data["pack"]) == ("12.5", 12500, "image")
    result = run("budget", "set", "c", "--limit", "12.5", "--ledger", str(db))
    assert result.exit_code == 2
    assert "decimals" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-5"], "negative"),
        (["--limit", "ten"], "invalid limit"),
        (["--limit", "5", "--parent", "nobody"], "no budget named 'nobody'"),
        (["--limit", "5", "--tz", "Mars/Base"], "unknown time zone"),
        (["--limit", "5", "--soft", "2"], "soft threshold"),
    ],
)
def test_bad_budgets_exit_2(db: str, args: list[str], message: str) -> None:
    result = run("budget", "set", "team", *args, "--ledger", str(db))
    assert result.exit_code == 2
    assert message in result.output


def test_budget_list_is_a_table(db: str) -> None:
    if not str(db).startswith("postgres"):  # a file that does not exist is no empty ledger
        missing = run("budget", "list", "--ledger", str(db))
        assert missing.exit_code == 2 and "`klingcost budget set` starts one" in missing.output
        assert not Path(db).exists()
    run("budget", "set", "acme", "--limit", "1000", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        ledger.reserve("acme", HoldAmounts(1000, "video", 250, "credits"))
    result = run("budget", "list", "--ledger", str(db))
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "team", "parent", "unit", "period", "limit", "posted", "held", "available", "used",
    ]  # fmt: skip
    assert lines[1].split() == ["acme", "-", "credits", "all", "1000", "0", "250", "750", "25.0%"]
    assert (
        json.loads(run("budget", "list", "--json", "--ledger", str(db)).output)[0]["held"] == "250"
    )


def test_holds_list_and_void(db: str) -> None:
    run("budget", "set", "acme", "--limit", "1000", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        lost = ledger.reserve("acme", HoldAmounts(1000, "video", 300, "credits"))
        ledger.mark_unknown(lost.id, "timeout after sending")
        done = ledger.reserve(
            "acme", HoldAmounts(2500, "video", 100, "credits"), meta={"model": "m"}
        )
        ledger.attach(done.id, "task-1")
    result = run("holds", "--ledger", str(db))
    assert result.exit_code == 0
    assert "unknown" in result.output and "task-1" in result.output and "2.5" in result.output
    only = run("holds", "--state", "unknown", "--json", "--ledger", str(db))
    data = json.loads(only.output)
    assert [h["id"] for h in data] == [lost.id]
    assert data[0]["estimate"] == {"units": "1", "cost": "300"}
    assert data[0]["est_cost_minor"] == 300
    result = run("holds", "void", str(lost.id), "--reason", "no such task", "--ledger", str(db))
    assert result.exit_code == 0, result.output
    assert "voided hold" in result.output and "was unknown" in result.output
    again = run("holds", "void", str(lost.id), "--reason", "x", "--ledger", str(db))
    assert "already voided" in again.output
    assert (
        json.loads(run("budget", "show", "acme", "--json", "--ledger", str(db)).output)[
            "held_minor"
        ]
        == 100
    )
    assert run("holds", "void", "999", "--reason", "x", "--ledger", str(db)).exit_code == 2
    missing = run("holds", "void", str(done.id), "--ledger", str(db))
    assert missing.exit_code == 2 and "--reason" in missing.output


def test_voiding_a_hold_whose_task_was_accepted_needs_force(db: str) -> None:
    run("budget", "set", "acme", "--limit", "1000", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        hold = ledger.reserve("acme", HoldAmounts(1000, "video", 300, "credits"))
        ledger.attach(hold.id, "task-7")
    result = run("holds", "void", str(hold.id), "--reason", "oops", "--ledger", str(db))
    assert result.exit_code == 2
    assert "task-7" in result.output and "--force" in result.output and "sync" in result.output
    with Ledger.open(db) as ledger:
        assert ledger.get_hold(hold.id).state == "submitted"  # still counted
    args = ["holds", "void", str(hold.id), "--reason", "refunded", "--force", "--ledger", str(db)]
    assert run(*args).exit_code == 0
    with Ledger.open(db) as ledger:
        assert ledger.get_hold(hold.id).state == "voided"


def test_budget_shares_print_as_decimals(db: str) -> None:
    run("budget", "set", "acme", "--limit", "3000", "--soft", "2/3", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        ledger.reserve("acme", HoldAmounts(1000, "video", 1000, "credits"))
    data = json.loads(run("budget", "show", "acme", "--json", "--ledger", str(db)).output)
    assert data["share_used"] == "0.3333"
    text = run("budget", "show", "acme", "--ledger", str(db)).output
    assert "alert at 66.67%" in text and "/" not in text.split("used", 1)[1].splitlines()[0]


def test_holds_void_uses_the_group_ledger_and_settled_holds_refuse(db: str) -> None:
    run("budget", "set", "acme", "--limit", "1000", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        hold = ledger.reserve("acme", HoldAmounts(1, "video", 1, "credits"))
        ledger.settle(hold.id, units_milli=1, cost_minor=1)
    result = run("holds", "--ledger", str(db), "void", str(hold.id), "--reason", "x")
    assert result.exit_code == 2  # the hold's state does not allow it: invalid input
    assert (
        result.output.startswith("Error:") and "was settled; it cannot be voided" in result.output
    )


def test_ledger_check(db: str) -> None:
    run("budget", "set", "acme", "--limit", "1000", "--ledger", str(db))
    with Ledger.open(db) as ledger:
        ledger.reserve("acme", HoldAmounts(1, "video", 40, "credits"))
    result = run("ledger", "check", "--ledger", str(db))
    assert result.exit_code == 0 and result.output.startswith("OK")
    with Ledger.open(db) as ledger:
        ledger.execute("UPDATE balances SET held = 7")
    result = run("ledger", "check", "--ledger", str(db))
    assert result.exit_code == 1
    assert "held differs budget 'acme' period all: recorded 7, entries say 40" in result.output
    data = json.loads(run("ledger", "check", "--json", "--ledger", str(db)).output)
    assert data["ok"] is False and data["differences"][0]["expected"] == 40


def test_the_ledger_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"KLINGCOST_LEDGER": str(tmp_path / "env.db"), "KLINGCOST_HOME": str(tmp_path / "h")}
    assert run("budget", "set", "acme", "--limit", "5", env=env).exit_code == 0
    assert (tmp_path / "env.db").exists()
    del env["KLINGCOST_LEDGER"]
    env["KLINGCOST_LEDGER"] = ""
    assert run("budget", "set", "acme", "--limit", "5", env=env).exit_code == 0
    assert (tmp_path / "h" / "ledger.db").exists()


def test_a_foreign_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_text("hello")
    result = run("budget", "list", "--ledger", str(path))
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and "not a SQLite file" in result.output


COMMANDS = [
    ("budget", "set"),
    ("budget", "show"),
    ("budget", "list"),
    ("holds",),
    ("holds", "void"),
    ("ledger", "check"),
]


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_has_help_and_takes_ledger(path: tuple[str, ...]) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    assert command.help
    assert "--ledger" in [opt for param in command.params for opt in param.opts]
    assert run(*path, "--help").exit_code == 0


@pytest.mark.parametrize("path", [("holds",), ("holds", "void")])
def test_holds_help_names_only_commands_that_exist(path: tuple[str, ...]) -> None:
    text = " ".join(run(*path, "--help").output.split())
    assert "settle or void it" not in text
    named = re.findall(r"`klingcost ([a-z -]+?)(?: [A-Z]|`)", text)
    assert named, text
    for words in named:
        command: click.Command = main
        for name in words.split():
            assert isinstance(command, click.Group), words
            found = command.get_command(click.Context(command), name)
            assert found is not None, f"`klingcost {words}` in {path} help does not exist"
            command = found
    if path == ("holds",):
        assert "`klingcost sync`" in text and "`klingcost holds void ID --reason TEXT`" in text
