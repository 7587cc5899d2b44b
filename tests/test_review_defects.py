"""Defects the review of issue 11 reproduced, outside the CLI: each stays fixed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from klingcost import errors
from klingcost.api.base import DEFAULT_TIMEOUT, http_timeout
from klingcost.api.client import KlingClient
from klingcost.guard import GuardedClient
from klingcost.home import klingcost_home
from klingcost.hooks import create_app
from klingcost.journal import journal_path
from klingcost.ledger import Ledger, default_ledger_path


def test_klingcost_home_expands_the_tilde_for_every_file_found_there() -> None:
    env = {"KLINGCOST_HOME": "~/kc"}
    home = Path.home() / "kc"
    assert klingcost_home(env) == home
    assert default_ledger_path(env) == home / "ledger.db"
    assert journal_path("postgresql://u@h/db", env).parent == home
    assert klingcost_home({"KLINGCOST_HOME": ""}) == Path.home() / ".klingcost"


def test_a_number_as_the_timeout_keeps_the_short_connect_timeout() -> None:
    assert http_timeout(30.0) == httpx.Timeout(30.0, connect=10.0)
    assert http_timeout(5) == httpx.Timeout(5, connect=5)  # never longer than the whole
    assert http_timeout(None) == httpx.Timeout(None)
    given = httpx.Timeout(60.0, connect=2.0)
    assert http_timeout(given) is given


def test_the_guarded_client_keeps_the_connect_timeout(tmp_path: Path) -> None:
    with GuardedClient("t", ledger=str(tmp_path / "l.db"), api_key="k", timeout=30.0) as guard:
        assert guard.client._http.timeout == httpx.Timeout(30.0, connect=10.0)
    with GuardedClient("t", ledger=str(tmp_path / "l.db"), api_key="k") as guard:
        assert guard.client._http.timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize("task_id", ["", "  ", "a/b"])
def test_a_task_id_no_query_can_carry_is_a_klingcost_error(task_id: str) -> None:
    refused = pytest.raises(errors.InvalidTaskIdError, match="is not one: give the id the API")
    with KlingClient("k", base_url="http://127.0.0.1:9") as client, refused:
        client.get_task("text2video", task_id)


def test_a_short_hook_secret_is_a_klingcost_error(tmp_path: Path) -> None:
    refused = pytest.raises(errors.HookSecretError, match="the hook secret is 5 characters")
    with Ledger.open(tmp_path / "l.db") as ledger, refused:
        create_app(ledger, "short")


def test_the_postgresql_migrations_are_checked_without_assert() -> None:
    # python -O strips asserts: the check that the two dialects' migrations agree must stay.
    code = (
        "import klingcost.migrations as m\n"
        "m.MIGRATIONS = m.MIGRATIONS[:-1]\n"
        "import klingcost._postgres\n"
    )
    ran = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 1
    assert "PostgreSQL migrations do not match its SQLite ones" in ran.stderr
