"""One schema spec for both dialects (klingcost.ledger.schema): a migrated ledger matches it
exactly on SQLite and on PostgreSQL, the spec rendered builds the same, a drift is named, and
no shipped migration changes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pytest
import sqlite_utils

from conftest import fresh_postgres_url
from klingcost.ledger import Ledger, ddl, migrations, migrations_postgres, rollups
from klingcost.ledger.introspect import (
    differences,
    expected,
    postgres_shape,
    schema_differences,
    shape,
    sqlite_shape,
)

#: sha256 (first 16 hex digits) of each shipped migration's statements, one per line, as
#: ledgers in the field ran them. A digest that no longer matches means a shipped migration
#: was edited: undo it, and write a new migration instead (klingcost.ledger.schema says how).
#: A new migration fails here too, naming its digest: add it, and it is history from then on.
SHIPPED: dict[str, dict[str, str]] = {
    "sqlite": {
        "0001_initial": "eea9e6135e3a1cef",
        "0002_rollups": "bb8c1cc9f40df63f",
        "0003_currency_exponents": "cdf73b30f40f6a13",
        "0004_published_sheets": "93cfa819fa5211bf",
        "0005_api_keys": "5dd52840e18fd55a",
        "0006_alerts": "bfc1b792bbb0ba1e",
        "0007_sheets_truncate": "e3b0c44298fc1c14",
    },
    "postgres": {
        "0001_initial": "35ffb623cb40b728",
        "0002_rollups": "af68e91a7ab476be",
        "0003_currency_exponents": "cdf73b30f40f6a13",
        "0004_published_sheets": "5575fe63e7b68d8b",
        "0005_api_keys": "eb9022f082c7266d",
        "0006_alerts": "8d36207209d3efc3",
        "0007_sheets_truncate": "9fc7df190e6e5f92",
    },
}
#: ... and of the rollup tables and triggers 0002's backfill creates (klingcost.ledger.rollups).
SHIPPED_ROLLUPS = {"sqlite": "0d5f8a1ec713d05a", "postgres": "58c99f8059de359d"}


def _digest(statements: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]


def test_no_shipped_migration_changed() -> None:
    ran = {
        "sqlite": {m.name: _digest(m.statements) for m in migrations.MIGRATIONS},
        "postgres": {name: _digest(s) for name, s, _ in migrations_postgres.MIGRATIONS},
    }
    assert ran == SHIPPED
    for dialect in ("sqlite", "postgres"):
        created = [
            statement
            for name in rollups.ROLLUPS
            for statement in (
                rollups.rollup_table(name, dialect),
                *rollups.rollup_triggers(name, dialect),
            )
        ]
        assert _digest(created) == SHIPPED_ROLLUPS[dialect], dialect


def test_a_migrated_ledger_matches_the_spec_exactly(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        have = shape(ledger.backend)
        dialect = ledger.backend.dialect
    want = expected(dialect)
    assert differences(want, have) == []
    assert have == want
    # Not vacuous: the spec's tables are all there, each with its columns and types.
    assert len(have.columns) == 15 and len(have.indexes) == 9 and len(have.views) == 3
    text, whole = ("TEXT", "INTEGER") if dialect == "sqlite" else ('TEXT COLLATE "C"', "BIGINT")
    assert have.columns["budgets"][:2] == (
        ("name", text, True, None),
        ("parent", text, False, None),
    )
    assert ("limit_minor", whole, True, None) in have.columns["budgets"]
    assert ("tz", text, True, "'UTC'") in have.columns["budgets"]


def test_the_spec_rendered_builds_the_schema_the_migrations_built(tmp_path: Path) -> None:
    path = tmp_path / "rendered.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in ddl.create_statements("sqlite"):
        conn.execute(statement)
    assert differences(expected("sqlite"), sqlite_shape(sqlite_utils.Database(conn))) == []
    conn.close()


def test_the_spec_rendered_for_postgresql_builds_what_its_migrations_built() -> None:
    import psycopg

    from klingcost.ledger._postgres import PgDB

    with fresh_postgres_url() as url, psycopg.connect(url, autocommit=True) as conn:
        for statement in ddl.create_statements("postgres"):
            conn.execute(statement)
        assert differences(expected("postgres"), postgres_shape(PgDB(conn))) == []


def test_a_drift_from_the_spec_is_named(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        for statement in (
            "ALTER TABLE holds ADD COLUMN region TEXT",
            "DROP INDEX holds_open",
            "CREATE INDEX holds_team ON holds(team)",
            "DROP VIEW open_holds",
            "DROP TRIGGER rollup_daily_delete ON holds"
            if ledger.dialect == "postgres"
            else "DROP TRIGGER rollup_daily_delete",
        ):
            ledger.backend.write(lambda db, s=statement: db.execute(s))  # type: ignore[misc]
        found = schema_differences(ledger.backend)
    assert found == [
        "column holds.region is not in the spec",
        "indexes: holds_open is missing",
        "indexes: holds_team is not in the spec",
        "views: open_holds is missing",
        "triggers: rollup_daily_delete on holds is missing",
    ]


def test_a_column_of_another_type_is_named_with_both_types(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    # A hand-made copy of the table with one type changed (as a careless repair might).
    conn.execute(
        "CREATE TABLE ledger_settings_new (name TEXT PRIMARY KEY, value BLOB NOT NULL,"
        " updated_at TEXT NOT NULL)"
    )
    conn.execute("DROP TABLE ledger_settings")
    conn.execute("ALTER TABLE ledger_settings_new RENAME TO ledger_settings")
    found = differences(expected("sqlite"), sqlite_shape(sqlite_utils.Database(conn)))
    conn.close()
    assert found == [
        "column ledger_settings.value is (type, not null, default) ('BLOB', True, None);"
        " the spec says ('TEXT', True, None)"
    ]


@pytest.mark.parametrize("sign", ["+", "-", "+-"])
def test_the_rollup_upsert_is_one_statement_both_dialects_run(sign: rollups.Sign) -> None:
    for name in rollups.ROLLUPS:
        sqlite_triggers = " ".join(rollups.rollup_triggers(name, "sqlite"))
        postgres_function = rollups.rollup_triggers(name, "postgres")[0]
        assert f"BEGIN {rollups.upsert(name, sign, 'sqlite')} END" in sqlite_triggers
        assert rollups.upsert(name, sign, "postgres") in postgres_function


def test_ledger_check_full_names_a_schema_drift(ledger_url: str) -> None:
    from click.testing import CliRunner

    from klingcost.cli import main

    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("studio", limit=10, period="month")
    clean = CliRunner().invoke(main, ["ledger", "check", "--full", "--ledger", ledger_url])
    assert clean.exit_code == 0
    assert clean.output.rstrip().endswith("its schema matches klingcost's")
    with Ledger.open(ledger_url) as ledger:
        ledger.backend.write(lambda db: db.execute("ALTER TABLE budgets ADD COLUMN owner TEXT"))
    quick = CliRunner().invoke(main, ["ledger", "check", "--ledger", ledger_url])
    assert (quick.exit_code, quick.output.startswith("OK:")) == (0, True)
    assert "schema" not in quick.output  # the plain check does not compare the schema
    full = CliRunner().invoke(main, ["ledger", "check", "--full", "--ledger", ledger_url])
    assert full.exit_code == 1
    assert "schema: column budgets.owner is not in the spec" in full.output
