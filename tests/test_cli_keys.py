"""``klingcost keys create/list/revoke`` through CliRunner: what is printed once, what never is,
and the exit codes."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from klingcost.cli import main
from klingcost.errors import KeyRefused
from klingcost.keys import SECRET_FILE, authenticate, server_secret
from klingcost.ledger import Ledger


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("acme", limit=1_000_000)
        ledger.set_budget("other", limit=1_000)
    return {"KLINGCOST_LEDGER": str(path), "KLINGCOST_HOME": str(tmp_path / "home")}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_create_prints_the_key_once_and_json_exactly_its_fields(env: dict[str, str]) -> None:
    result = run(env, "keys", "create", "--team", "acme", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert list(made) == ["id", "team", "key", "access_key", "secret_key"]
    assert made["team"] == "acme" and made["id"].startswith("kc_")
    secret_file = Path(env["KLINGCOST_HOME"]) / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = server_secret({"KLINGCOST_HOME": env["KLINGCOST_HOME"]})
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        now = datetime.now(UTC)
        key = authenticate(ledger, f"Bearer {made['key']}", secret=secret, now=now)
        assert key.id == made["id"]
    text = run(
        env,
        "keys",
        "create",
        "-t",
        "acme",
        "--name",
        "ci",
        "--expires",
        "30d",
        "--max-concurrent",
        "4",
    )
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith("key kc_") and "for team acme (ci): expires " in lines[0]
    assert lines[0].endswith("at most 4 jobs open")
    assert lines[1].startswith("  bearer key:  kck_") and lines[2].startswith("  access key:  kca_")
    assert lines[3].startswith("  secret key:  ") and "Shown once" in lines[4]


def test_list_never_shows_a_secret(env: dict[str, str]) -> None:
    made = json.loads(run(env, "keys", "create", "--team", "acme", "--json").stdout)
    run(env, "keys", "create", "--team", "other", "--max-concurrent", "2")
    listed = run(env, "keys", "list", "--json")
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [r["team"] for r in rows] == ["acme", "other"]
    assert rows[0]["state"] == "active" and rows[1]["max_concurrent"] == 2
    for fmt in ("table", "json", "csv"):
        out = run(env, "keys", "list", "--format", fmt).stdout
        assert made["key"] not in out and made["secret_key"] not in out
        assert made["id"] in out
    only = json.loads(run(env, "keys", "list", "--team", "other", "--json").stdout)
    assert [r["team"] for r in only] == ["other"]


def test_revoke_refuses_the_key_from_then_on(env: dict[str, str]) -> None:
    made = json.loads(run(env, "keys", "create", "--team", "acme", "--json").stdout)
    result = run(env, "keys", "revoke", made["id"])
    assert result.exit_code == 0 and result.stdout.startswith(
        f"key {made['id']} of team acme revoked"
    )
    assert json.loads(run(env, "keys", "list", "--json").stdout)[0]["state"] == "revoked"
    secret = server_secret({"KLINGCOST_HOME": env["KLINGCOST_HOME"]})
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger, pytest.raises(KeyRefused):
        authenticate(ledger, f"Bearer {made['key']}", secret=secret, now=datetime.now(UTC))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--team", "nosuch"], "no budget named 'nosuch'"),
        (["keys", "create", "--team", "acme", "--expires", "soon"], "'soon' is not a duration"),
        (["keys", "create", "--team", "acme", "--max-concurrent", "0"], "--max-concurrent"),
        (["keys", "revoke", "kc_nope"], "no key 'kc_nope' in the ledger"),
        (["keys", "list", "--team", "nosuch"], "no budget named 'nosuch'"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_and_writes_nothing(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = run(env, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert run(env, "keys", "list", "--json").stdout.strip() == "[]"


def test_a_loose_secret_file_is_refused_with_exit_2(env: dict[str, str]) -> None:
    home = Path(env["KLINGCOST_HOME"])
    home.mkdir()
    (home / SECRET_FILE).write_text("x" * 64, encoding="utf-8")
    (home / SECRET_FILE).chmod(0o644)
    result = run(env, "keys", "create", "--team", "acme")
    assert result.exit_code == 2 and "chmod 600" in result.stderr
    assert run(env, "keys", "list", "--json").stdout.strip() == "[]"
