"""The ledger's schema, as a list of named migrations applied when a file opens.

As in llm's ``migrations.py``: each migration has a name, runs once, and is recorded in
``_klingcost_migrations``. ``PRAGMA user_version`` holds how many have run and
``PRAGMA application_id`` marks the file as a klingcost ledger. A file is refused, and never
written to, when it is not SQLite, is a SQLite file of something else, or was written by a
newer klingcost (more migrations than this code knows).

Append new migrations at the end of :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from klingcost.errors import LedgerError, LedgerSchemaError

#: ``PRAGMA application_id`` of a klingcost ledger: "KLCG".
APPLICATION_ID: Final = 0x4B4C4347
SQLITE_HEADER: Final = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: tuple[str, ...]


_INITIAL = (
    """
    CREATE TABLE budgets (
        name TEXT PRIMARY KEY,
        parent TEXT REFERENCES budgets(name),
        unit TEXT NOT NULL,
        pack TEXT CHECK (pack IS NULL OR pack IN ('video', 'image')),
        exponent INTEGER NOT NULL,
        limit_minor INTEGER NOT NULL CHECK (limit_minor >= 0),
        period TEXT NOT NULL CHECK (period IN ('none', 'day', 'week', 'month')),
        tz TEXT NOT NULL DEFAULT 'UTC',
        soft TEXT NOT NULL DEFAULT '0.8',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        team TEXT NOT NULL REFERENCES budgets(name),
        state TEXT NOT NULL
            CHECK (state IN ('held', 'submitted', 'unknown', 'settled', 'voided')),
        pack TEXT NOT NULL CHECK (pack IN ('video', 'image')),
        currency TEXT NOT NULL,
        est_units_milli INTEGER NOT NULL CHECK (est_units_milli >= 0),
        est_cost_minor INTEGER NOT NULL CHECK (est_cost_minor >= 0),
        units_milli INTEGER,
        cost_minor INTEGER,
        variance_units_milli INTEGER,
        variance_cost_minor INTEGER,
        raw_deduction TEXT,
        reason TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        reserved_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX holds_open ON holds(state) WHERE state IN ('held', 'submitted', 'unknown')",
    """
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        hold_id INTEGER NOT NULL UNIQUE REFERENCES holds(id),
        attached_at TEXT NOT NULL
    )
    """,
    # What each hold counts against each budget on its path, and in which period.
    """
    CREATE TABLE hold_entries (
        hold_id INTEGER NOT NULL REFERENCES holds(id),
        budget TEXT NOT NULL REFERENCES budgets(name),
        depth INTEGER NOT NULL,
        period_key TEXT NOT NULL,
        reserved INTEGER NOT NULL CHECK (reserved >= 0),
        charged INTEGER CHECK (charged IS NULL OR charged >= 0),
        PRIMARY KEY (hold_id, budget)
    ) WITHOUT ROWID
    """,
    # Running balances, updated in the same transaction as every entry.
    """
    CREATE TABLE balances (
        budget TEXT NOT NULL REFERENCES budgets(name),
        period_key TEXT NOT NULL,
        posted INTEGER NOT NULL DEFAULT 0,
        held INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (budget, period_key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        hold_id INTEGER,
        team TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX events_hold ON events(hold_id) WHERE hold_id IS NOT NULL",
    """
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the klingcost event log is append-only'); END
    """,
    """
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the klingcost event log is append-only'); END
    """,
    """
    CREATE VIEW budget_balances AS
    SELECT
        b.name AS budget,
        bal.period_key,
        b.period,
        b.unit,
        b.pack,
        b.limit_minor,
        bal.posted,
        bal.held,
        b.limit_minor - bal.posted - bal.held AS available,
        b.parent,
        b.tz
    FROM balances AS bal JOIN budgets AS b ON b.name = bal.budget
    ORDER BY b.name, bal.period_key DESC
    """,
    """
    CREATE VIEW hold_summary AS
    SELECT
        h.id,
        h.team,
        h.state,
        t.task_id,
        json_extract(h.meta, '$.endpoint') AS endpoint,
        json_extract(h.meta, '$.model') AS model,
        json_extract(h.meta, '$.mode') AS mode,
        json_extract(h.meta, '$.duration') AS duration,
        h.pack,
        h.est_units_milli,
        h.units_milli,
        h.variance_units_milli,
        h.currency,
        h.est_cost_minor,
        h.cost_minor,
        h.variance_cost_minor,
        h.raw_deduction,
        h.reason,
        h.reserved_at,
        h.updated_at,
        h.idempotency_key
    FROM holds AS h LEFT JOIN tasks AS t ON t.hold_id = h.id
    """,
    """
    CREATE VIEW open_holds AS
    SELECT * FROM hold_summary WHERE state IN ('held', 'submitted', 'unknown')
    """,
)

MIGRATIONS: Final[tuple[Migration, ...]] = (Migration("0001_initial", _INITIAL),)


def schema_version() -> int:
    """The ``user_version`` this code writes: the number of migrations it knows."""
    return len(MIGRATIONS)


def check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite, before SQLite touches it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerSchemaError(f"cannot read the ledger {path}: {exc}") from exc
    if header and header != SQLITE_HEADER:
        raise LedgerSchemaError(
            f"{path} is not a SQLite file, so not a klingcost ledger; "
            "choose another file with --ledger or KLINGCOST_LEDGER"
        )


def inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; LedgerSchemaError when it is not ours. Reads only."""
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        }
        applied: Sequence[str] = ()
        if "_klingcost_migrations" in tables:
            applied = [r[0] for r in conn.execute("SELECT name FROM _klingcost_migrations")]
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise LedgerSchemaError(f"{path} is not a readable SQLite database: {exc}") from exc
    if app_id not in (0, APPLICATION_ID) or (tables and "_klingcost_migrations" not in tables):
        raise LedgerSchemaError(
            f"{path} is a SQLite database but not a klingcost ledger (it has other tables); "
            "it was left untouched: choose another file with --ledger"
        )
    known = {m.name for m in MIGRATIONS}
    unknown = sorted(set(applied) - known)
    if version > schema_version() or unknown:
        raise LedgerSchemaError(
            f"{path} was written by a newer klingcost (schema version {version}, "
            f"migrations {', '.join(unknown) or 'unknown'}; this klingcost knows "
            f"version {schema_version()}). Upgrade klingcost; the file was left untouched."
        )
    return version


def migrate(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Apply the pending migrations, each in a write transaction; return their names."""
    done: list[str] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = inspect(conn, path)  # again: another process may have migrated
            if version >= schema_version():
                conn.execute("COMMIT")
                return done
            migration = MIGRATIONS[version]
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _klingcost_migrations"
                " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO _klingcost_migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, datetime.now(UTC).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(migration.name)


def connect(path: Path, *, timeout: float, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open ``path`` as a klingcost ledger: check it, set WAL, and migrate it.

    ``synchronous`` NORMAL (the default) survives a crash of the process; FULL also survives
    losing power, at the cost of an fsync per write.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL (given {synchronous!r})")
    check_header(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
    try:
        inspect(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"cannot put the ledger {path} in WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.OperationalError as exc:
        conn.close()
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LedgerSchemaError(f"{path} is not a usable klingcost ledger: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn
