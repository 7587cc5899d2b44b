"""Inputs as people save them: BOMs, UTF-16, pretty-printed bodies, and JSON Lines batches
given to ``submit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits
PRETTY = json.dumps(BODY, indent=2)


def run(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]
)
def test_estimate_reads_every_encoding_people_save(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(PRETTY.replace("\n", "\r\n").encode(encoding))
    result = run("estimate", "-e", ENDPOINT, str(path))
    assert result.exit_code == 0, result.output
    assert "= 105000 credits" in result.output
    piped = run("estimate", "-e", ENDPOINT, "-", stdin=PRETTY.encode(encoding))
    assert piped.exit_code == 0 and "= 105000 credits" in piped.output


def test_text_in_another_encoding_is_named(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_bytes('{"prompt": "café"}'.encode("latin-1"))
    result = run("estimate", "-e", ENDPOINT, str(path))
    assert result.exit_code == 2
    assert "not UTF-8 text (byte 0xe9 at position 15)" in result.output
    assert "save the file as UTF-8" in result.output and "Traceback" not in result.output


def test_a_pretty_body_with_a_trailing_comma_is_one_error_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(PRETTY.replace('"10"\n}', '"10",\n}'), encoding="utf-8")
    result = run("estimate", "-e", ENDPOINT, str(path), "--json")
    assert result.exit_code == 2
    assert "not JSON: Expecting property name enclosed in double quotes" in result.output
    assert "at line 6, column 1" in result.output
    assert "remove the trailing comma on line 5" in result.output
    assert "line 2" not in result.output and "total" not in result.output


def test_a_bom_never_hides_in_a_message(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(b"\xef\xbb\xbf{nope")
    result = run("estimate", "-e", ENDPOINT, str(path))
    assert result.exit_code == 2 and "\ufeff" not in result.output
    assert "at line 1, column 2 (near 'nope')" in result.output


# --- submit of a JSON Lines batch -----------------------------------------------------------


@pytest.fixture
def env(fake: FakeKling, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=250_000, period="month")
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
    }


def test_submit_guards_each_line_of_a_batch(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    lines = [json.dumps(BODY), "{broken", json.dumps(BODY), "", json.dumps(BODY)]
    path = tmp_path / "batch.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-16"))  # as PowerShell saves it
    result = run("submit", "-t", "studio", "-e", ENDPOINT, "--key", "b1", str(path), env=env)
    assert result.exit_code == 3, result.output
    out = result.output.splitlines()
    assert out[0].startswith("line 1: hold 1 on studio: submitted, task ")
    assert out[1].startswith("line 2: invalid: not JSON")
    assert out[2].startswith("line 3: hold 2 on studio: submitted")
    assert out[3].startswith("line 5: refused: ") and "needs 105000 credits" in out[3]
    assert out[4] == "total: 4 line(s): 2 submitted, 1 refused by a budget, 1 invalid, 0 failed"
    assert len(fake.requests("POST")) == 2
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        assert sorted(h.key for h in ledger.holds()) == ["b1:1", "b1:3"]
    again = run("submit", "-t", "studio", "-e", ENDPOINT, "--key", "b1", "--json", str(path),
                env=env)  # fmt: skip
    data = json.loads(again.stdout)
    assert data["totals"] == {"lines": 4, "submitted": 2, "refused": 1, "invalid": 1, "failed": 0}
    assert [r["resent"] for r in data["results"] if r["outcome"] == "submitted"] == [True, True]
    assert len(fake.requests("POST")) == 2  # the keys held: nothing was sent twice


def test_submit_batch_refuses_wait(env: dict[str, str], fake: FakeKling, tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps(BODY) + "\n" + json.dumps(BODY) + "\n", encoding="utf-8")
    result = run("submit", "-t", "studio", "-e", ENDPOINT, "--wait", str(path), env=env)
    assert result.exit_code == 2 and "--wait takes one job" in result.output
    assert fake.requests() == []


def test_a_body_of_json_null_is_one_invalid_body_not_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "null.json"
    path.write_text("null", encoding="utf-8")
    result = CliRunner().invoke(main, ["estimate", "-e", "text2video", str(path)])
    assert result.exit_code == 2
    assert "the body must be a JSON object (given None" in result.output
    assert "line 1" not in result.output and "total:" not in result.output
