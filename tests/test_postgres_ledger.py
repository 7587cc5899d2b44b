"""What only a PostgreSQL ledger does: selected by URL, shared by machines, refused when newer.

The shared suite (test_ledger.py and the others taking ``ledger_url``) runs every operation on
both backends; these tests need a server (see conftest.py) and skip without one locally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conftest import fresh_postgres_url
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.errors import LedgerError, LedgerSchemaError
from klingcost.ledger import Ledger, default_ledger_path, migrations
from klingcost.ledger.pgurl import is_postgres_url, redact
from klingcost.sheet import load_sheet

COST = 7
AMOUNTS = HoldAmounts(units_milli=1000, pack="video", cost_minor=COST, currency="credits")


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_postgres_url() as fresh:
        yield fresh


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def raw(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


# --- choosing the backend -----------------------------------------------------------------


def test_a_url_selects_postgres_from_the_environment_and_from_ledger(
    url: str, tmp_path: Path
) -> None:
    env = {"KLINGCOST_LEDGER": url, "KLINGCOST_HOME": str(tmp_path / "home")}
    assert run("budget", "set", "acme", "--limit", "500", env=env).exit_code == 0
    assert default_ledger_path(env) == url and is_postgres_url(url)
    assert not (tmp_path / "home").exists()  # nothing written to a local file
    with Ledger.open(url) as ledger:
        assert ledger.dialect == "postgres" and ledger.budget_status("acme").limit == 500
    # --ledger wins over the environment, whichever backend each names.
    file_env = {"KLINGCOST_LEDGER": str(tmp_path / "file.db")}
    result = run("budget", "show", "acme", "--json", "--ledger", url, env=file_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["limit_minor"] == 500
    assert not (tmp_path / "file.db").exists()
    checked = run("ledger", "check", "--ledger", url)
    assert checked.exit_code == 0 and checked.output.startswith("OK")
    assert "postgresql://" in checked.output


def test_the_password_never_shows() -> None:
    assert redact("postgresql://kc:s3cret@db.example:5432/ledger?sslmode=require") == (
        "postgresql://kc:***@db.example:5432/ledger?sslmode=require"
    )
    assert redact("postgresql://kc@db/ledger") == "postgresql://kc@db/ledger"


def test_an_unreachable_server_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="cannot open the ledger postgresql://"):
        Ledger.open("postgresql://nobody@127.0.0.1:9/none", timeout=1)


# --- the schema ---------------------------------------------------------------------------


def test_a_schema_from_a_newer_klingcost_is_refused_untouched(url: str) -> None:
    Ledger.open(url).close()
    with raw(url) as conn:
        conn.execute("INSERT INTO _klingcost_migrations VALUES ('9999_future', 'x')")
        before = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() ORDER BY 1"
        ).fetchall()
    with pytest.raises(LedgerSchemaError, match="newer klingcost"):
        Ledger.open(url)
    with raw(url) as conn:
        after = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() ORDER BY 1"
        ).fetchall()
        applied = [r[0] for r in conn.execute("SELECT name FROM _klingcost_migrations")]
    assert after == before
    assert sorted(applied) == [*(m.name for m in migrations.MIGRATIONS), "9999_future"]


def test_a_schema_of_something_else_is_refused_untouched(url: str) -> None:
    with raw(url) as conn:
        conn.execute("CREATE TABLE photos (id BIGINT PRIMARY KEY)")
    with pytest.raises(LedgerSchemaError, match="other tables"):
        Ledger.open(url)
    with raw(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    assert tables == [("photos",)]


def test_the_event_log_cannot_be_truncated(url: str) -> None:
    with Ledger.open(url) as ledger:
        ledger.set_budget("a", limit=1)
        with pytest.raises(LedgerError, match="append-only"):
            ledger.execute("TRUNCATE events")
        assert len(ledger.events()) == 1


def test_the_published_sheets_cannot_be_truncated(url: str) -> None:
    with Ledger.open(url) as ledger:
        published = ledger.publish_sheet(load_sheet())
        with pytest.raises(LedgerError, match="published price sheets are append-only"):
            ledger.execute("TRUNCATE pricing_sheets")
        assert ledger.published_sheet() == published


# --- concurrency --------------------------------------------------------------------------


def test_one_key_reserved_at_once_by_many_workers_makes_one_hold(url: str) -> None:
    with Ledger.open(url) as ledger:
        ledger.set_budget("a", limit=1000)
    ledgers = [Ledger.open(url) for _ in range(6)]
    start = threading.Barrier(len(ledgers))
    ids: list[int] = []

    def reserve(ledger: Ledger) -> None:
        start.wait()
        ids.append(ledger.reserve("a", AMOUNTS, key="the-job").id)

    threads = [threading.Thread(target=reserve, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ledger in ledgers:
        ledger.close()
    assert len(ids) == len(ledgers) and len(set(ids)) == 1
    with Ledger.open(url) as ledger:
        assert ledger.budget_status("a").held == COST
        assert ledger.check() == []


def test_a_write_waits_for_a_locked_budget_then_says_busy(url: str) -> None:
    with Ledger.open(url) as ledger:
        ledger.set_budget("a", limit=1000)
    with raw(url) as other, Ledger.open(url, timeout=0.5) as ledger:
        other.execute("BEGIN")
        other.execute("SELECT * FROM budgets WHERE name = 'a' FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(LedgerError, match="stayed busy"):
            ledger.reserve("a", AMOUNTS)
        assert time.monotonic() - started >= 0.4
        other.execute("ROLLBACK")
        assert ledger.reserve("a", AMOUNTS).state == "held"  # the lock is gone: it goes through


_WORKER = """
import json, sys
from klingcost.budgets import HoldAmounts
from klingcost.errors import BudgetExceeded
from klingcost.ledger import Ledger

amounts = HoldAmounts(1000, "video", 7, "credits")
granted = refused = 0
with Ledger.open() as ledger:  # KLINGCOST_LEDGER names the shared PostgreSQL ledger
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for i in range(int(sys.argv[1])):
        try:
            ledger.reserve("team", amounts, key=f"{sys.argv[2]}-{i}")
            granted += 1
        except BudgetExceeded:
            refused += 1
    print(json.dumps({"granted": granted, "refused": refused, "home": str(ledger.path)}))
"""


@pytest.mark.slow
def test_two_machines_with_their_own_homes_share_one_budget(url: str, tmp_path: Path) -> None:
    """Two worker processes, each with its own KLINGCOST_HOME (as on two machines), point at
    one PostgreSQL ledger through KLINGCOST_LEDGER: the budget holds across both."""
    limit_holds, attempts = 50, 40  # 80 attempts for 50 places
    setup = {"KLINGCOST_LEDGER": url, "KLINGCOST_HOME": str(tmp_path / "admin")}
    result = run("budget", "set", "company", "--limit", str(limit_holds * COST), env=setup)
    assert result.exit_code == 0, result.output
    result = run("budget", "set", "team", "--limit", "100000", "--parent", "company", env=setup)
    assert result.exit_code == 0, result.output
    workers = []
    for machine in ("machine-a", "machine-b"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLINGCOST_")}
        env.update(KLINGCOST_LEDGER=url, KLINGCOST_HOME=str(tmp_path / machine))
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(attempts), machine],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(o["granted"] for o in outcomes) == limit_holds
    assert sum(o["refused"] for o in outcomes) == 2 * attempts - limit_holds
    assert all(o["home"].startswith("postgresql://") for o in outcomes)
    assert not any((tmp_path / m / "ledger.db").exists() for m in ("machine-a", "machine-b"))
    shown = json.loads(run("budget", "show", "company", "--json", env=setup).output)
    assert (shown["held_minor"], shown["available_minor"]) == (limit_holds * COST, 0)
    checked = run("ledger", "check", env=setup)
    assert checked.exit_code == 0 and checked.output.startswith("OK")
