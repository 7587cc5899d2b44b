"""Ledger backends for the tests: every test that takes ``ledger_url`` (or ``make_ledger``) runs
once on SQLite and once on PostgreSQL.

PostgreSQL needs a server: ``eval "$(scripts/postgres-for-tests)"`` starts one and exports
``KLINGCOST_TEST_POSTGRES`` (``.ci/run`` does it). Without it the PostgreSQL tests are skipped
with a reason, locally; in CI (``CI`` set) a missing server fails them instead. Each test gets
a schema of its own in that server (``CREATE SCHEMA t_<uuid>``, reached through the URL's
``search_path``), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from klingcost.ledger import Ledger

# Scripts run by the real third-party clients' own interpreter (test_real_clients.py), not
# test modules: --doctest-modules would import them here, without those clients installed.
collect_ignore = ["realclients"]

BACKENDS = ("sqlite", "postgres")


def postgres_server() -> str:
    """The test server's URL; skips the test without one (fails it in CI)."""
    url = os.environ.get("KLINGCOST_TEST_POSTGRES", "")
    if not url:
        reason = (
            "no PostgreSQL server for the tests: run "
            '`eval "$(scripts/postgres-for-tests)"` to set KLINGCOST_TEST_POSTGRES'
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set: the PostgreSQL tests must run, yet there is {reason}")
        pytest.skip(reason)
    return url


def _admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@contextmanager
def fresh_postgres_url() -> Iterator[str]:
    """A URL whose ledger lives in a new, empty schema of the test server (dropped after)."""
    server = postgres_server()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with _admin(server) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server else "?"
    try:
        yield f"{server}{separator}options=-csearch_path%3D{schema}"
    finally:
        with _admin(server) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def fresh_ledger_url(backend: str, directory: Path) -> Iterator[str]:
    """A new, empty ledger's location on ``backend``: a file in ``directory``, or a schema."""
    if backend == "sqlite":
        yield str(directory / f"ledger-{uuid.uuid4().hex[:8]}.db")
    else:
        with fresh_postgres_url() as url:
            yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: a test that takes it runs on both."""
    return str(request.param)


@pytest.fixture
def ledger_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """Where a fresh ledger lives: a SQLite file path, or a PostgreSQL URL (its own schema)."""
    with fresh_ledger_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
def make_ledger(ledger_url: str) -> Iterator[Callable[..., Ledger]]:
    """Open the test's ledger (as often as a test likes); every one is closed afterwards."""
    opened: list[Ledger] = []

    def make(**options: Any) -> Ledger:
        ledger = Ledger.open(ledger_url, **options)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture(autouse=True)
def _no_priced_requests_across_tests_under_mutmut() -> None:
    """Under mutation testing (scripts/mutation; mutmut sets MUTANT_UNDER_TEST), each test
    starts with no priced request cached on the bundled sheet. That cache lives for the process:
    a test that found a price an earlier test had computed would neither run the mutated pricing
    code nor be counted among its tests, and the mutant would pass for a survivor. (The sheet
    itself stays loaded, as it takes a while to parse: each overlay a test writes is a new path,
    so the loading code runs afresh in those tests.)"""
    if os.environ.get("MUTANT_UNDER_TEST"):
        from klingcost.sheet.load import _load_cached

        _load_cached(None).priced.clear()
