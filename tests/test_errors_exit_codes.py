"""Errors carry their exit code and the argument they are about as data (issue 11, item 6).

A library error says which argument was wrong in ``option`` (its keyword), never in flag text;
the command line names it as its flag in the one line it prints, and exits with the error's
``exit_code``. The first tests map errors through a bare command (a unit test of the mapping);
the others go through real commands, a real ledger file and the real price sheet.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from klingcost import errors
from klingcost.calibration import calibrate
from klingcost.cli import main
from klingcost.cli._common import KlingcostGroup
from klingcost.ledger import Ledger
from klingcost.reports import parse_group_by
from klingcost.sheet import PRICING_ENV

BODY = {"model_name": "kling-v1", "prompt": "a ship", "mode": "std", "duration": "5"}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (PRICING_ENV, "KLINGCOST_DEBUG", "KLINGCOST_LEDGER"):
        monkeypatch.delenv(name, raising=False)


def _raising(exc: Exception) -> click.Group:
    group = KlingcostGroup("klingcost")

    @group.command("boom")
    def boom() -> None:
        raise exc

    return group


# --- the mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (
            errors.ReportError("must be at least 1 (given 0)", option="min_samples", value=0),
            2,
            "Error: --min-samples: must be at least 1 (given 0)",
        ),
        (errors.ReportError("no such report"), 2, "Error: no such report"),
        (
            errors.BudgetExceeded(
                team="t", needed=5, available=1, limit=9, unit="credits", period="none", window=""
            ),
            3,
            "Error: budget 't' refused: needs 5 credits, 1 of 9 credits left (the budget has "
            "no period)",
        ),
        (
            errors.ConcurrencyExceeded(key_id="k1", team="t", limit=1, open_holds=1),
            3,
            None,
        ),
        (errors.ServerError("the API failed", status=500), 1, "Error: the API failed | HTTP 500"),
        (errors.LedgerSchemaError("not a ledger"), 1, "Error: not a ledger"),
        (errors.KeyNotFound(key_id="k9"), 2, None),
    ],
)
def test_a_library_error_exits_with_its_exit_code_and_names_its_option(
    exc: errors.KlingcostError, code: int, line: str | None
) -> None:
    result = CliRunner().invoke(_raising(exc), ["boom"])
    assert result.exit_code == code == exc.exit_code
    assert result.stdout == ""
    if line is not None:
        assert result.stderr == line + "\n"
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr


def test_the_exit_codes_the_tree_documents_are_the_errors_own() -> None:
    """Every ``(CLI exit N)`` in the errors module's tree is that class's exit_code, and a
    class the tree gives none of exits 1."""
    doc = errors.__doc__ or ""
    found = (re.search(r"(\w+)  .*\(CLI exit (\d)\)", line) for line in doc.splitlines())
    documented = {m[1]: int(m[2]) for m in found if m}
    assert len(documented) >= 15
    for name, code in documented.items():
        assert getattr(errors, name).exit_code == code, name
    assert errors.KlingAPIError.exit_code == errors.HoldStateError.exit_code == 1
    assert errors.KlingcostError.exit_code == 1


def test_structured_fields_default_to_none_and_keep_a_subclass_own() -> None:
    plain = errors.HoldStateError("settled")
    assert (plain.option, plain.field, plain.value, plain.allowed) == (None, None, None, None)
    # SheetMismatchError keeps its own `given`; nothing of the base overwrites a subclass field
    mismatch = errors.SheetMismatchError(ledger="l.db", published="ab", version=2, given="cd")
    assert mismatch.given == "cd" and mismatch.option is None


# --- library errors name their argument as data, not as a flag ----------------------------


def test_group_by_names_its_option_by_keyword() -> None:
    with pytest.raises(errors.ReportError) as caught:
        parse_group_by("team,colour")
    error = caught.value
    assert (error.option, error.value, error.exit_code) == ("by", "colour", 2)
    assert "team" in (error.allowed or "") and "--" not in str(error)


def test_calibrate_names_min_samples_by_keyword(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger, pytest.raises(errors.CalibrationError) as caught:
        calibrate(ledger, min_samples=0)
    assert (caught.value.option, caught.value.value) == ("min_samples", 0)
    assert str(caught.value) == "must be at least 1 (given 0)"


# --- through real commands ----------------------------------------------------------------


def test_an_unknown_provider_is_one_line_naming_the_option(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps(BODY), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["estimate", "-e", "text2video", "--provider", "nobody", str(body)]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: --provider: no provider 'nobody' in the price sheet (")
    assert "choose one of" in lines[0] and "openai-hk" in lines[0]


def test_a_batch_line_names_the_option_in_text_and_as_data(tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps(BODY) + "\n" + json.dumps(BODY) + "\n", encoding="utf-8")
    args = ["estimate", "-e", "text2video", "--provider", "nobody", str(batch)]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 2
    invalid = [line for line in text.stdout.splitlines() if "invalid:" in line]
    assert len(invalid) == 2
    assert all("invalid: --provider: no provider 'nobody'" in line for line in invalid)
    as_json = CliRunner().invoke(main, [*args, "--json"])
    assert as_json.exit_code == 2
    results = json.loads(as_json.stdout)["results"]
    assert [r["error"]["option"] for r in results] == ["provider", "provider"]
    assert not any("--provider" in r["error"]["message"] for r in results)


def test_an_unknown_alert_kind_names_on_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=1000)
    result = CliRunner().invoke(
        main,
        [
            "alerts",
            "add",
            "--team",
            "studio",
            "--webhook",
            "https://example.com/h",
            "--on",
            "soft,bogus",
            "--ledger",
            str(path),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --on: 'bogus' given; allowed: soft, refused, over, forecast (comma-separated)\n"
    )
    with Ledger.open(path) as ledger:
        assert ledger.alert_rules() == []


def test_report_by_and_team_errors_name_the_option_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=1000)
    by = CliRunner().invoke(main, ["report", "--by", "colour", "--ledger", str(path)])
    assert by.exit_code == 2
    assert "Invalid value for --by: unknown key 'colour' (allowed: " in by.stderr
    assert "--by: --by" not in by.stderr and "unknown key 'colour'" in by.stderr
    team = CliRunner().invoke(main, ["report", "--team", "nobody", "--ledger", str(path)])
    assert team.exit_code == 2
    assert "Invalid value for --team: no team 'nobody' in the ledger (known: studio)" in (
        team.stderr
    )
