"""The report, reconcile, calibrate and import-usage commands, as a new user runs them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_fixtures import _fake_session, fake_server  # noqa: F401
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.reports import COLUMNS, TASK_COLUMNS
from test_calibrate import JOBS, drifted_ledger


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
    assert page.startswith("<!DOCTYPE html>") and 'class="series"' in page


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
    assert code == 2 and "--tasks writes csv or json" in err


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
    assert "drift beyond the tolerance of 0%" in err
    code, out, _ = run("reconcile", "--ledger", str(path), "--strict", "--tolerance", "25%")
    assert code == 0, out
    code, out, _ = run("reconcile", "--ledger", str(path), "--json", "--tolerance", "0.1")
    data = json.loads(out)
    assert data["ok"] is False and data["tolerance"] == "0.1"
    assert "videos/text2video kling-v1-5 std 5s" in data["drifting"]
    code, _, err = run("reconcile", "--ledger", str(path), "--tolerance", "lots")
    assert code == 2 and "5% or 1/20" in err
    code, out, _ = run("reconcile", "--ledger", str(path), "--since", "2099-01")
    assert code == 0 and "nothing settled" in out


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


def test_every_new_command_has_help() -> None:
    for name in ("report", "reconcile", "calibrate", "import-usage"):
        code, out, _ = run(name, "--help")
        assert code == 0 and "Usage:" in out and "--ledger" in out
