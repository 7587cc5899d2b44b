"""The report, reconcile, calibrate and import-usage commands, as a new user runs them."""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_fixtures import _fake_session, fake_server  # noqa: F401
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.reports import COLUMNS, TASK_COLUMNS
from test_calibrate import JOBS, drifted_ledger
from test_reconcile import book


@pytest.fixture
def path(tmp_path: Path, fake: FakeKling) -> Iterator[Path]:
    where = tmp_path / "ledger.db"
    drifted_ledger(where, fake, JOBS).close()
    yield where


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_in_every_format(path: Path, tmp_path: Path) -> None:
    code, out, _ = run("report", "--ledger", str(path))
    assert code == 0, out
    assert out.splitlines()[0].split()[:2] == ["team", "tasks"]
    assert "studio" in out and "total (credits)" in out
    code, out, _ = run("report", "--ledger", str(path), "--by", "model,mode", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == COLUMNS
    with Ledger.open(path) as ledger:
        charged = ledger.conn.execute("SELECT SUM(cost_minor) FROM holds").fetchone()[0]
    assert int(rows[-1]["charged"]) == charged
    code, out, _ = run("report", "--ledger", str(path), "--format", "json", "--by", "team,day")
    assert json.loads(out)["totals"][0]["charged"] == str(charged)
    code, out, _ = run("report", "--ledger", str(path), "--format", "md", "--by", "endpoint")
    assert out.startswith("| endpoint |")
    target = tmp_path / "report.html"
    code, out, err = run("report", "--ledger", str(path), "--format", "html", "-o", str(target))
    assert code == 0 and f"wrote {target}" in err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<figure class="panel"' in page


def test_report_exports_every_task(path: Path, tmp_path: Path) -> None:
    target = tmp_path / "tasks.csv"
    code, _, _ = run(
        "report", "--ledger", str(path), "--tasks", "--format", "csv", "-o", str(target)
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == TASK_COLUMNS and len(rows) == sum(n for *_, n in JOBS)
    code, out, _ = run("report", "--ledger", str(path), "--tasks", "--format", "json")
    assert len(json.loads(out)) == len(rows)
    code, _, err = run("report", "--ledger", str(path), "--tasks", "--format", "md")
    assert code == 2 and "--tasks writes csv, json or jsonl" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "team,colour"], "unknown key 'colour'"),
        (["--since", "25/11/2026"], "is not a date"),
        (["--since", "2026-12", "--until", "2026-11"], "is before --since"),
    ],
)
def test_report_refuses_bad_options(path: Path, args: list[str], message: str) -> None:
    code, _, err = run("report", "--ledger", str(path), *args)
    assert code == 2 and message in err


def test_reconcile_strict_for_cron(path: Path) -> None:
    code, out, err = run("reconcile", "--ledger", str(path), "--strict")
    assert code == 1
    assert "! videos/text2video kling-v1-5 std 5s" in out
    assert "drift beyond the tolerance of 0.00%" in err
    code, out, _ = run("reconcile", "--ledger", str(path), "--strict", "--tolerance", "25%")
    assert code == 0, out
    code, out, _ = run("reconcile", "--ledger", str(path), "--json", "--tolerance", "0.1")
    data = json.loads(out)
    assert data["ok"] is False and data["tolerance"] == "0.1000"
    assert "videos/text2video kling-v1-5 std 5s" in data["drifting"]
    code, _, err = run("reconcile", "--ledger", str(path), "--tolerance", "lots")
    assert code == 2 and "5% or 1/20" in err
    code, out, _ = run("reconcile", "--ledger", str(path), "--since", "2099-01")
    assert code == 0 and "nothing settled" in out


def test_reconcile_prints_rates_as_decimals(tmp_path: Path) -> None:
    where = tmp_path / "rates.db"
    with Ledger.open(where) as ledger:
        ledger.set_budget("studio", limit=10**12)
        for charged in (1000, 1000, 1100):  # agreement 2/3, drift +1/30
            book(ledger, "kling-v1", charged, str(charged / 1000))
    code, out, _ = run("reconcile", "--ledger", str(where))
    assert code == 0, out
    row = next(line for line in out.splitlines() if "kling-v1" in line).split()
    assert row[-4:-2] == ["66.67%", "+3.33%"]  # agree, drift; then largest var, flags
    assert "6667/100" not in out and "333/100" not in out
    code, out, _ = run("reconcile", "--ledger", str(where), "--json")
    [c] = json.loads(out)["classes"]
    assert (c["agreement_rate"], c["drift"], c["ratio"]) == ("0.6667", "0.0333", "1.0333")


def test_reconcile_refuses_until_before_since(path: Path) -> None:
    code, _, err = run(
        "reconcile", "--ledger", str(path), "--since", "2026-12", "--until", "2026-11"
    )
    assert code == 2 and "is before --since" in err


@pytest.mark.parametrize("command", ["report", "reconcile", "calibrate"])
def test_a_missing_ledger_is_an_error_not_an_empty_report(tmp_path: Path, command: str) -> None:
    for missing in (tmp_path / "missing.db", tmp_path / "nowhere" / "missing.db"):
        code, out, err = run(command, "--ledger", str(missing))
        assert code == 2, out
        assert f"no ledger at {missing}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither file nor folder was created


def test_calibrate_help_shows_an_estimate_command_that_runs(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run("calibrate", "--help")
    assert code == 0 and "--body" not in out
    [example] = [line for line in out.splitlines() if "klingcost estimate" in line]
    monkeypatch.chdir(tmp_path)
    args = shlex.split(example)[1:]  # without "klingcost"; run it as written
    overlay = args[args.index("--pricing") + 1]
    code, _, _ = run("calibrate", "--ledger", str(path), "--min-samples", "2", "--write", overlay)
    assert code == 0
    [body] = [arg for arg in args if arg.endswith(".json")]
    Path(body).write_text('{"model_name": "kling-v1-5", "duration": "5", "prompt": "x"}')
    code, out, err = run(*args)
    assert code == 0, err


def test_calibrate_writes_an_overlay_that_estimate_loads(path: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "observed.yaml"
    code, out, _ = run(
        "calibrate", "--ledger", str(path), "--min-samples", "2", "--write", str(overlay)
    )
    assert code == 0, out
    assert "model_tier" in out and "<- changed" in out
    assert f"to {overlay}" in out
    body = tmp_path / "body.json"
    body.write_text('{"model_name": "kling-v1-5", "mode": "pro", "duration": "10", "prompt": "x"}')
    code, out, _ = run(
        "estimate", "-e", "text2video", str(body), "--pricing", str(overlay), "--json"
    )
    assert code == 0, out
    assert json.loads(out)["units"] == "8.4"  # 7 x 6/5, what the drifted server charges
    code, out, _ = run("calibrate", "--ledger", str(path), "--json")
    data = json.loads(out)
    assert data["written"] is None and data["observed"]


def test_import_usage_from_the_command_line(path: Path, tmp_path: Path) -> None:
    with Ledger.open(path) as ledger:
        rows = [
            {"reqid": h.task_id, "model": h.meta["model"], "fen": h.cost_minor, "yufen": 1}
            for h in ledger.holds(state="settled")
        ]
    log = tmp_path / "log.json"
    log.write_text(json.dumps(rows))
    out_file = tmp_path / "credits.yaml"
    code, out, _ = run("import-usage", str(log), "--ledger", str(path), "--write", str(out_file))
    assert code == 0, out
    assert "matched by id: " in out and "credits per unit" in out
    # The ledger charged at the sheet's own rate: nothing to write.
    assert "no overlay written" in out and not out_file.exists()
    code, _, err = run("import-usage", str(tmp_path / "missing.json"), "--ledger", str(path))
    assert code == 2 and "does not exist" in err


def usage_log(path: Path, tmp_path: Path, per_unit: int, **change: object) -> Path:
    """A usage log of every settled task, charged ``per_unit`` credits per unit."""
    with Ledger.open(path) as ledger:
        rows: list[dict[str, object]] = [
            {
                "reqid": h.task_id,
                "model": h.meta["model"],
                "fen": str(Fraction(h.units_milli or 0, 1000) * per_unit),
            }
            for h in ledger.holds(state="settled")
        ]
    rows[1].update(change)
    log = tmp_path / "log.json"
    log.write_text(json.dumps(rows))
    return log


def usage_rows_kept(path: Path) -> int:
    with Ledger.open(path) as ledger:
        return int(ledger.execute("SELECT COUNT(*) FROM usage_rows").fetchone()[0])


@pytest.mark.parametrize("fen", ["0", "-15000", -1, "lots", None])
def test_import_usage_refuses_a_row_without_a_positive_fen(
    path: Path, tmp_path: Path, fen: object
) -> None:
    log = usage_log(path, tmp_path, 18_000, fen=fen)
    code, out, err = run("import-usage", str(log), "--ledger", str(path))
    assert code == 2, out
    assert f"{log} row 2" in err and "fen" in err and "Traceback" not in err
    assert usage_rows_kept(path) == 0


def test_import_usage_with_a_bad_write_target_changes_nothing(path: Path, tmp_path: Path) -> None:
    log = usage_log(path, tmp_path, 18_000)  # not the sheet's 15,000: an overlay to write
    target = tmp_path / "no-such-folder" / "o.yaml"
    code, out, err = run("import-usage", str(log), "--ledger", str(path), "--write", str(target))
    assert code == 2, out
    assert "no-such-folder" in err and "does not exist" in err and "unexpected" not in err
    assert usage_rows_kept(path) == 0 and not target.parent.exists()
    target = tmp_path / "credits.yaml"
    code, out, err = run("import-usage", str(log), "--ledger", str(path), "--write", str(target))
    assert code == 0, err
    assert usage_rows_kept(path) == sum(n for *_, n in JOBS) and target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_every_new_command_has_help() -> None:
    for name in ("report", "reconcile", "calibrate", "import-usage"):
        code, out, _ = run(name, "--help")
        assert code == 0 and "Usage:" in out and "--ledger" in out


def test_report_refuses_a_team_the_ledger_does_not_know(path: Path, tmp_path: Path) -> None:
    target = tmp_path / "nobody.csv"
    for extra in ([], ["--format", "csv", "-o", str(target)], ["--tasks", "--format", "json"]):
        code, out, err = run("report", "--ledger", str(path), "--team", "studoi", *extra)
        assert code == 2, out
        assert "'studoi'" in err and "known: studio" in err and "Traceback" not in err
    assert not target.exists()


def test_report_on_a_parent_team_names_its_budgets_below(tmp_path: Path) -> None:
    where = tmp_path / "tree.db"
    with Ledger.open(where) as ledger:
        ledger.set_budget("acme", limit=10**12)
        ledger.set_budget("studio", limit=10**12, parent="acme")
        book(ledger, "kling-v1", 1000, "1")
    code, out, _ = run("report", "--ledger", str(where), "--team", "acme")
    assert code == 0, out
    assert "acme has no holds of its own; its budgets below: studio" in out
    code, out, _ = run("report", "--ledger", str(where), "--team", "studio")
    assert code == 0 and "no holds of its own" not in out and "studio" in out


def test_report_names_the_time_keys_given(path: Path) -> None:
    code, _, err = run("report", "--ledger", str(path), "--by", "team,day,month")
    assert code == 2
    assert "choose one of day, week or month" in err and "team,day,month" in err


def test_reconcile_shows_only_the_tolerance_hint(path: Path) -> None:
    for given in ("abc", "1/0", "-5%"):
        code, _, err = run("reconcile", "--ledger", str(path), "--tolerance", given)
        assert code == 2
        assert f"'{given}'" in err and "(write 0.05, 5% or 1/20" in err
        assert "4/3" not in err and "Traceback" not in err


def test_calibrate_says_when_it_writes_no_file(tmp_path: Path) -> None:
    where = tmp_path / "exact.db"
    with Ledger.open(where) as ledger:
        ledger.set_budget("studio", limit=10**12)
        for _ in range(3):
            book(ledger, "kling-v1", 1000, "1")  # what the sheet says
    target = tmp_path / "observed.yaml"
    code, out, _ = run("calibrate", "--ledger", str(where), "--write", str(target))
    assert code == 0, out
    assert f"{target} was not written" in out and "no overlay is needed" in out
    assert f"--pricing {target}" in out and not target.exists()


def test_calibrate_says_no_class_reaches_min_samples(path: Path) -> None:
    code, out, _ = run("calibrate", "--ledger", str(path), "--min-samples", "50")
    assert code == 0, out
    trusted = sum(n for *_, n in JOBS)
    assert f"{trusted} trusted charges, but no job class has 50 or more" in out
    assert "(lower --min-samples)" in out and "no trusted charges" not in out


def test_reconcile_strict_fails_on_an_over_limit_budget_or_an_implausible_deduction(
    ledger_url: str,
) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("studio", limit=10**12)
        book(ledger, "kling-v1", 1000, "1")
    code, out, _ = run("reconcile", "--ledger", ledger_url, "--strict")
    assert code == 0, out
    # A deduction that was not booked (implausible, settled at the estimate) fails --strict.
    with Ledger.open(ledger_url) as ledger:
        hold = ledger.reserve("studio", HoldAmounts(1000, "video", 15_000), meta={"n": 1})
        ledger.settle(
            hold.id,
            units_milli=1000,
            cost_minor=15_000,
            raw_deduction="500",
            deduction_flag="absurd",
            verdict="implausible",
        )
    code, _, err = run("reconcile", "--ledger", ledger_url, "--strict")
    assert code == 1 and "1 deduction(s) not booked as implausible" in err
    # A budget charged past its limit fails it too, until it is back under.
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("studio", limit=10_000)
    code, out, err = run("reconcile", "--ledger", ledger_url, "--strict", "--json")
    assert code == 1 and "budget(s) charged past their limit" in err and "studio" in err
    data = json.loads(out)
    assert data["over_limit"] == ["studio"] and data["strict_ok"] is False
    assert data["ok"] is True  # no class drifts: --strict fails for the other reasons
