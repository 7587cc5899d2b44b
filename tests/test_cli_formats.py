"""Every command that prints records takes --format table|json|jsonl|csv (md, html where they
fit), with --json as its short form."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.ledger import Ledger


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def db(ledger_url: str) -> str:
    run("budget", "set", "acme", "--limit", "1000.5", "--unit", "units", "--ledger", ledger_url)
    run("budget", "set", "video", "--limit", "500", "--parent", "acme", "--unit", "units",
        "--ledger", ledger_url)  # fmt: skip
    with Ledger.open(ledger_url) as ledger:
        ledger.reserve("video", HoldAmounts(2500, "video", 100, "credits"), meta={"model": "=m"})
    return ledger_url


@pytest.mark.parametrize("command", [["budget", "list"], ["budget", "show"], ["holds"]])
def test_record_commands_print_every_format(db: str, command: list[str]) -> None:
    as_json = run(*command, "--json", "--ledger", db)
    assert as_json.exit_code == 0, as_json.output
    assert run(*command, "--format", "json", "--ledger", db).output == as_json.output
    records = json.loads(as_json.output)
    lines = run(*command, "--format", "jsonl", "--ledger", db).output.splitlines()
    assert [json.loads(line) for line in lines] == records
    rows = list(
        csv.DictReader(io.StringIO(run(*command, "--format", "csv", "--ledger", db).output))
    )
    assert len(rows) == len(records) > 0
    md = run(*command, "--format", "md", "--ledger", db).output.splitlines()
    assert md[0].startswith("| ") and len(md) == len(records) + 2


def test_budget_csv_keeps_exact_amounts(db: str) -> None:
    rows = list(csv.DictReader(io.StringIO(run("budget", "list", "--format", "csv",
                                               "--ledger", db).output)))  # fmt: skip
    acme = next(r for r in rows if r["team"] == "acme")
    assert acme["limit"] == "1000.5" and acme["held"] == "2.5" and acme["parent"] == ""
    assert acme["unit"] == "units (video)" and acme["used"] == "0.2%"


def test_holds_csv_neutralises_a_formula(db: str) -> None:
    out = run("holds", "--format", "csv", "--ledger", db).output
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["note"] == "'=m" and row["estimate"] == "100 credits" and row["units"] == "2.5"


def test_holds_of_an_unknown_team_is_invalid_input(db: str) -> None:
    result = run("holds", "--team", "nosuch", "--ledger", db)
    assert result.exit_code == 2
    assert "nosuch" in result.output and "no holds" not in result.output


def test_budget_show_of_an_unknown_team_is_invalid_input(db: str) -> None:
    result = run("budget", "show", "nosuch", "--ledger", db)
    assert result.exit_code == 2 and "nosuch" in result.output


def test_json_and_another_format_are_refused(db: str) -> None:
    result = run("holds", "--json", "--format", "csv", "--ledger", db)
    assert result.exit_code == 2 and "--json is short for --format json" in result.output


def test_prices_in_csv_jsonl_and_json(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(run("prices", "--format", "csv").output)))
    assert rows[0].keys() >= {"endpoint", "model", "units", "cost", "currency"}
    first = json.loads(run("prices", "--format", "jsonl").output.splitlines()[0])
    assert first["cost"] == rows[0]["cost"] and first["units"] == rows[0]["units"]
    assert isinstance(first["cost"], str)  # exact decimal text, never a float
    assert "rows" in json.loads(run("prices", "--json").output)


def test_reconcile_and_report_take_the_same_formats(db: str) -> None:
    with Ledger.open(db) as ledger:
        hold = next(iter(ledger.holds(team="video")))
        ledger.attach(hold.id, "t1")
        ledger.settle(
            hold.id, units_milli=3000, cost_minor=120, raw_deduction="3", deduction_flag="ok"
        )
    out = run("reconcile", "--format", "csv", "--ledger", db).output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and rows[0]["estimated_units"] == "2.5" and rows[0]["charged_units"] == "3"
    report = run("report", "--json", "--ledger", db)
    assert report.exit_code == 0 and "rows" in json.loads(report.output)
    lines = run("report", "--format", "jsonl", "--ledger", db).output.splitlines()
    assert json.loads(lines[-1])["kind"] == "total"


def test_report_tasks_stream_as_json_lines(db: str) -> None:
    result = run("report", "--tasks", "--format", "jsonl", "--ledger", db)
    assert result.exit_code == 0, result.output
    [task] = [json.loads(line) for line in result.output.splitlines()]
    assert task["team"] == "video" and task["estimated"] == "100" and task["held"] == "100"
    refused = run("report", "--tasks", "--format", "md", "--ledger", db)
    assert refused.exit_code == 2 and "--tasks writes csv, json or jsonl" in refused.output
