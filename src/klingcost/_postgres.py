"""The ledger on PostgreSQL (psycopg 3): connecting, the schema's migrations, and writes.

The schema is SQLite's (:mod:`klingcost.migrations`), table for table and column for column,
in PostgreSQL's types: ``BIGINT`` for every amount (minor units, never ``NUMERIC`` or a float),
identity columns for ids, ``TEXT COLLATE "C"`` so that text compares and sorts byte by byte as
in SQLite, plpgsql triggers for the append-only event log and for the rollups, ``jsonb`` in
the views. The same named migrations are recorded in ``_klingcost_migrations``; a schema that
lists a migration this code does not know was written by a newer klingcost and is refused
untouched, as is a schema that holds other tables and no ledger.

The ledger lives in the connection's current schema (``public`` unless the URL says otherwise:
``postgresql://host/db?options=-csearch_path%3Dklingcost``).

Writes run in ``READ COMMITTED`` transactions; the ledger locks the rows it is about to change,
always in one order (a hold, then its budgets by name), so that concurrent workers on any
number of machines serialize per budget and never overspend. A transaction that loses a race
(deadlock, serialization failure, or a unique key another transaction wrote first, such as an
idempotency key) is rolled back and run again, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from klingcost import migrations
from klingcost.backends import DB, Cursor, Dialect, redact, scrub_error
from klingcost.errors import LedgerError, LedgerNotFound, LedgerSchemaError

T = TypeVar("T")

#: SQLSTATEs of a transaction that lost a race and may simply run again: serialization
#: failure, deadlock, and a unique key written by a concurrent transaction (the operation,
#: run again, finds that row and answers as it would have).
RETRYABLE: Final = frozenset({"40001", "40P01", "23505"})
MAX_ATTEMPTS: Final = 30
#: ``pg_advisory_xact_lock`` key taken while migrating ("KLCG", as the SQLite application_id).
MIGRATION_LOCK: Final = migrations.APPLICATION_ID
#: Taken by ``set_budget``: budget trees change rarely, and never two at once (no cycles).
BUDGETS_LOCK: Final = MIGRATION_LOCK + 1


# --- statements ---------------------------------------------------------------------------

_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?|%")


@lru_cache(maxsize=1024)
def translate(sql: str, with_params: bool = True) -> str:
    """A statement written for SQLite, as psycopg and PostgreSQL take it (cached).

    ``?`` becomes ``%s`` and ``%`` becomes ``%%`` (outside string literals; with parameters
    only), ``x IS 'y'`` becomes ``x IS NOT DISTINCT FROM 'y'`` and ``IS NOT`` becomes ``IS
    DISTINCT FROM`` (not before NULL), and SQLite's ``INDEXED BY`` hint goes.
    """
    text = re.sub(r"\bINDEXED BY \w+ ?", "", sql)
    text = migrations.pg_is(text)
    if with_params:

        def swap(match: re.Match[str]) -> str:
            token = match.group(0)
            return "%s" if token == "?" else "%%" if token == "%" else token

        text = _QUOTED_OR_MARK.sub(swap, text)
    return text


class _NumericAsInt(Loader):
    """``SUM`` of a ``BIGINT`` is a ``NUMERIC`` in PostgreSQL; the ledger's sums are whole
    minor units, so they load as ``int`` (a fraction, which the ledger never writes, stays a
    ``Decimal``)."""

    def load(self, data: Buffer) -> int | Decimal:
        text = bytes(data).decode("ascii")
        return int(text) if text.lstrip("-").isdigit() else Decimal(text)


class PgDB:
    """A psycopg connection that takes the ledger's ``?`` statements."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if parameters:
            return self.conn.execute(translate(sql), parameters)
        return self.conn.execute(translate(sql, False))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.conn.cursor()
        cursor.executemany(translate(sql), parameters)
        return cursor


class _StreamDB(PgDB):
    """Statements on server-side cursors: an export streams in flat memory."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.cursors: list[psycopg.ServerCursor[Any]] = []

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cursor = self.conn.cursor(name=f"klingcost_export_{len(self.cursors)}")
        self.cursors.append(cursor)
        cursor.itersize = 2000
        if parameters:
            cursor.execute(translate(sql), parameters)
        else:
            cursor.execute(translate(sql, False))
        return cursor


# --- the schema ---------------------------------------------------------------------------


def _c(statement: str) -> str:
    """Text compares byte by byte, as in SQLite (and whatever the database's locale)."""
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', statement)


_APPEND_ONLY = (
    "CREATE FUNCTION klingcost_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'the klingcost event log is append-only'; END $$"
)

_INITIAL: Final[tuple[str, ...]] = (
    _c(
        """
    CREATE TABLE budgets (
        name TEXT PRIMARY KEY,
        parent TEXT REFERENCES budgets(name),
        unit TEXT NOT NULL,
        pack TEXT CHECK (pack IS NULL OR pack IN ('video', 'image')),
        exponent BIGINT NOT NULL,
        limit_minor BIGINT NOT NULL CHECK (limit_minor >= 0),
        period TEXT NOT NULL CHECK (period IN ('none', 'day', 'week', 'month')),
        tz TEXT NOT NULL DEFAULT 'UTC',
        soft TEXT NOT NULL DEFAULT '0.8',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """
    ),
    _c(
        """
    CREATE TABLE holds (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        team TEXT NOT NULL REFERENCES budgets(name),
        state TEXT NOT NULL
            CHECK (state IN ('held', 'submitted', 'unknown', 'settled', 'voided')),
        pack TEXT NOT NULL CHECK (pack IN ('video', 'image')),
        currency TEXT NOT NULL,
        est_units_milli BIGINT NOT NULL CHECK (est_units_milli >= 0),
        est_cost_minor BIGINT NOT NULL CHECK (est_cost_minor >= 0),
        units_milli BIGINT,
        cost_minor BIGINT,
        variance_units_milli BIGINT,
        variance_cost_minor BIGINT,
        raw_deduction TEXT,
        reason TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        reserved_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """
    ),
    "CREATE INDEX holds_open ON holds(state) WHERE state IN ('held', 'submitted', 'unknown')",
    _c(
        """
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        hold_id BIGINT NOT NULL UNIQUE REFERENCES holds(id),
        attached_at TEXT NOT NULL
    )
    """
    ),
    _c(
        """
    CREATE TABLE hold_entries (
        hold_id BIGINT NOT NULL REFERENCES holds(id),
        budget TEXT NOT NULL REFERENCES budgets(name),
        depth BIGINT NOT NULL,
        period_key TEXT NOT NULL,
        reserved BIGINT NOT NULL CHECK (reserved >= 0),
        charged BIGINT CHECK (charged IS NULL OR charged >= 0),
        PRIMARY KEY (hold_id, budget)
    )
    """
    ),
    _c(
        """
    CREATE TABLE balances (
        budget TEXT NOT NULL REFERENCES budgets(name),
        period_key TEXT NOT NULL,
        posted BIGINT NOT NULL DEFAULT 0,
        held BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (budget, period_key)
    )
    """
    ),
    _c(
        """
    CREATE TABLE events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        hold_id BIGINT,
        team TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    )
    """
    ),
    "CREATE INDEX events_hold ON events(hold_id) WHERE hold_id IS NOT NULL",
    _APPEND_ONLY,
    "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events"
    " FOR EACH ROW EXECUTE FUNCTION klingcost_append_only()",
    "CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events"
    " FOR EACH STATEMENT EXECUTE FUNCTION klingcost_append_only()",
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
        h.meta::jsonb ->> 'endpoint' AS endpoint,
        h.meta::jsonb ->> 'model' AS model,
        h.meta::jsonb ->> 'mode' AS mode,
        h.meta::jsonb ->> 'duration' AS duration,
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

_INTS = ("sound", "video_reference", "reference_image", "n")
_ROLLUPS_0002: Final[tuple[str, ...]] = (
    *(
        _c(f"ALTER TABLE holds ADD COLUMN {c} {'BIGINT' if c in _INTS else 'TEXT'}")
        for c in migrations.CLASS_COLUMNS
    ),
    _c("ALTER TABLE holds ADD COLUMN task_id TEXT"),
    _c("ALTER TABLE holds ADD COLUMN deduction_flag TEXT"),
    _c("ALTER TABLE holds ADD COLUMN task_status TEXT"),
    "UPDATE holds SET "
    + ", ".join(
        f"{c} = (meta::jsonb ->> '{c}')::bigint" if c in _INTS else f"{c} = meta::jsonb ->> '{c}'"
        for c in migrations.CLASS_COLUMNS
    )
    + ", task_id = (SELECT t.task_id FROM tasks AS t WHERE t.hold_id = holds.id)",
    "CREATE INDEX holds_disagree ON holds(reserved_at) WHERE state = 'settled' AND"
    " (units_milli <> est_units_milli OR deduction_flag IS DISTINCT FROM 'ok'"
    " OR task_status IS NOT DISTINCT FROM 'failed')",
    # ``rowid`` keeps the import order, as SQLite's implicit rowid does.
    _c(
        """
    CREATE TABLE usage_rows (
        reqid TEXT PRIMARY KEY,
        model TEXT,
        fen TEXT NOT NULL,
        yufen TEXT,
        at TEXT,
        hold_id BIGINT REFERENCES holds(id),
        matched_by TEXT,
        raw TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE
    )
    """
    ),
    # The UTC day of an ISO timestamp, as SQLite's date() gives it.
    "CREATE FUNCTION klingcost_utc_day(t text) RETURNS text LANGUAGE sql STABLE STRICT AS"
    " $$ SELECT to_char(t::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD') $$",
)


#: See migrations.PUBLISHED_SHEETS_0004: published sheets (append-only), settings, and the
#: sha256 of the sheet each hold was priced with.
_PUBLISHED_SHEETS_0004: Final[tuple[str, ...]] = (
    _c(
        """
    CREATE TABLE pricing_sheets (
        version BIGINT PRIMARY KEY CHECK (version > 0),
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        canonical TEXT NOT NULL,
        origin TEXT NOT NULL,
        published_at TEXT NOT NULL
    )
    """
    ),
    "CREATE FUNCTION klingcost_sheets_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'published price sheets are append-only'; END $$",
    "CREATE TRIGGER pricing_sheets_append_only BEFORE UPDATE OR DELETE ON pricing_sheets"
    " FOR EACH ROW EXECUTE FUNCTION klingcost_sheets_append_only()",
    _c(
        """
    CREATE TABLE ledger_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """
    ),
    _c("ALTER TABLE holds ADD COLUMN sheet_sha256 TEXT"),
)


#: See migrations.API_KEYS_0005: the proxy's keys (hashes only) and the key of each hold.
_API_KEYS_0005: Final[tuple[str, ...]] = (
    _c(
        """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        team TEXT NOT NULL,
        name TEXT,
        key_hash TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
        access_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        max_concurrent BIGINT CHECK (max_concurrent IS NULL OR max_concurrent > 0)
    )
    """
    ),
    "CREATE INDEX api_keys_team ON api_keys(team)",
    _c("ALTER TABLE holds ADD COLUMN key_id TEXT"),
    "CREATE INDEX holds_open_key ON holds(key_id) WHERE key_id IS NOT NULL"
    " AND (state = 'held' OR state = 'submitted' OR state = 'unknown')",
    "CREATE INDEX events_refused ON events(id) WHERE kind = 'refused'",
)


def render_0006(statement: str) -> str:
    """A statement of :data:`klingcost.migrations.ALERTS_0006` in PostgreSQL's types: identity
    ids, ``BIGINT`` integers, byte-ordered text, and no ``WITHOUT ROWID``."""
    text = statement.replace(
        "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    text = re.sub(r"\bINTEGER\b", "BIGINT", text).replace(" WITHOUT ROWID", "")
    return _c(text)


def _backfill_0002(db: DB) -> None:
    from klingcost.deduction import parse_deduction

    rows = db.execute("SELECT id, raw_deduction FROM holds WHERE state = 'settled'").fetchall()
    if rows:
        db.executemany(
            "UPDATE holds SET deduction_flag = ? WHERE id = ?",
            [(parse_deduction(raw).flag, hold_id) for hold_id, raw in rows],
        )
    for name in migrations.ROLLUPS:
        db.execute(migrations.rollup_table(name, "postgres"))
        for statement in migrations.pg_rollup_triggers(name):
            db.execute(statement)
    migrations.rebuild_rollups(db, "postgres")


#: The same migrations as SQLite's, by name, in PostgreSQL's SQL.
MIGRATIONS: Final[tuple[tuple[str, tuple[str, ...], Callable[[DB], None] | None], ...]] = (
    ("0001_initial", _INITIAL, None),
    ("0002_rollups", _ROLLUPS_0002, _backfill_0002),
    ("0003_currency_exponents", migrations.CURRENCY_EXPONENTS_0003, None),
    ("0004_published_sheets", _PUBLISHED_SHEETS_0004, None),
    ("0005_api_keys", _API_KEYS_0005, None),
    ("0006_alerts", tuple(render_0006(s) for s in migrations.ALERTS_0006), None),
)
if [m[0] for m in MIGRATIONS] != [m.name for m in migrations.MIGRATIONS]:  # not an assert: -O
    raise ImportError(
        "klingcost's PostgreSQL migrations do not match its SQLite ones by name and order; "
        "this install is broken: reinstall klingcost"
    )


def inspect(db: DB, where: str) -> int:
    """The schema's version (migrations applied); LedgerSchemaError when it is not ours."""
    row = db.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise LedgerSchemaError(
            f"{where}: no schema to hold the ledger (the search_path names none that exists); "
            "create one, or point the URL at one with ?options=-csearch_path%3D<schema>"
        )
    schema = row[0]
    tables = {
        r[0]
        for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (schema,)
        )
    }
    if tables and "_klingcost_migrations" not in tables:
        raise LedgerSchemaError(
            f"{where}: schema {schema!r} holds other tables and no klingcost ledger; it was "
            "left untouched: use a database or schema of its own "
            "(?options=-csearch_path%3D<schema>)"
        )
    applied: list[str] = []
    if tables:
        applied = [r[0] for r in db.execute("SELECT name FROM _klingcost_migrations")]
    known = [m.name for m in migrations.MIGRATIONS]
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise LedgerSchemaError(
            f"{where} was written by a newer klingcost (schema version {len(applied)}, "
            f"migrations {', '.join(unknown)}; this klingcost knows version "
            f"{migrations.schema_version()}). Upgrade klingcost; the ledger was left untouched."
        )
    return len(applied)


def migrate(conn: psycopg.Connection[Any], where: str) -> list[str]:
    """Apply the pending migrations, each in one transaction; return their names."""
    db = PgDB(conn)
    if inspect(db, where) >= migrations.schema_version():
        return []
    done: list[str] = []
    while True:
        with conn.transaction():
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            version = inspect(db, where)  # again: another process may have migrated
            if version >= migrations.schema_version():
                return done
            name, statements, backfill = MIGRATIONS[version]
            db.execute(
                "CREATE TABLE IF NOT EXISTS _klingcost_migrations"
                ' (name TEXT COLLATE "C" PRIMARY KEY, applied_at TEXT NOT NULL)'
            )
            for statement in statements:
                conn.execute(statement)
            if backfill is not None:
                backfill(db)
            db.execute(
                "INSERT INTO _klingcost_migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat()),
            )
        done.append(name)


# --- the backend --------------------------------------------------------------------------


def connect(url: str, *, timeout: float, read_only: bool = False) -> psycopg.Connection[Any]:
    """Connect to ``url`` (autocommit: the ledger says BEGIN and COMMIT) and migrate.

    ``read_only`` neither migrates nor lets a transaction write (the schema is still checked:
    an empty, foreign, newer or older one is refused). No password of ``url`` reaches an error:
    messages are scrubbed, and the driver's exception is not chained (it quotes the URL).
    """
    where = redact(url)
    error: LedgerError | None = None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(timeout)))
    except Exception as exc:  # psycopg's errors, and whatever a malformed URL raises
        error = LedgerError(f"cannot open the ledger {where}: {scrub_error(exc, url)}")
    if error is not None:
        raise error  # outside the except block: the driver's error is not even the context
    try:
        conn.adapters.register_loader("numeric", _NumericAsInt)
        conn.execute("SET TIME ZONE 'UTC'")
        # A write waits this long for a row another worker has locked, then fails (busy).
        conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        conn.execute("SET application_name = 'klingcost'")
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
            _check_readable(PgDB(conn), where)
        else:
            migrate(conn, where)
    except psycopg.Error as exc:
        conn.close()
        error = LedgerError(f"cannot open the ledger {where}: {scrub_error(exc, url)}")
    except BaseException:
        conn.close()
        raise
    if error is not None:
        raise error
    return conn


def _check_readable(db: DB, where: str) -> None:
    """A read-only open reads only a schema as new as this klingcost's (it cannot migrate)."""
    version = inspect(db, where)
    if version == 0:
        raise LedgerNotFound(
            f"no ledger at {where}: check --ledger / KLINGCOST_LEDGER "
            "(`klingcost budget set` starts one)"
        )
    if version < migrations.schema_version():
        raise LedgerError(
            f"the ledger {where} has schema version {version}, older than this klingcost's "
            f"{migrations.schema_version()}: run any klingcost command that writes once, with "
            "a role that may change the schema, to upgrade it"
        )


class PostgresBackend:
    """A ledger in a PostgreSQL database: one connection, READ COMMITTED and row locks."""

    dialect: Dialect = "postgres"
    row_lock = " FOR NO KEY UPDATE"

    def __init__(self, url: str, *, timeout: float, read_only: bool = False) -> None:
        self._url = url  # never shown: ``location`` is the URL without its passwords
        self.location: Path | str = redact(url)
        self.timeout = timeout
        self.read_only = read_only
        self.raw = connect(url, timeout=timeout, read_only=read_only)
        self.db: DB = PgDB(self.raw)

    def _rollback(self) -> None:
        if self.raw.info.transaction_status != TransactionStatus.IDLE and not self.raw.closed:
            # If the connection is gone, the server has rolled back already.
            with contextlib.suppress(psycopg.Error):
                self.raw.execute("ROLLBACK")

    def write(self, operation: Callable[[DB], T]) -> T:
        if self.read_only:
            raise LedgerError(f"ledger {self.location} was opened read-only: nothing was written")
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                self.raw.execute("BEGIN")
                try:
                    result = operation(self.db)
                    self.raw.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                return result
            except psycopg.Error as exc:
                state = exc.sqlstate
                if state in RETRYABLE and attempt < MAX_ATTEMPTS and time.monotonic() < deadline:
                    time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                if isinstance(exc, pg_errors.LockNotAvailable):
                    message = f"ledger {self.location} stayed busy for {self.timeout} s: {exc}"
                    raise LedgerError(message) from exc
                raise LedgerError(f"ledger {self.location}: {exc}") from exc

    def read(self, operation: Callable[[DB], T]) -> T:
        try:
            self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                result = operation(self.db)
                self.raw.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            return result
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self.location}: {exc}") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[DB]:
        conn = connect(self._url, timeout=self.timeout, read_only=True)
        db = _StreamDB(conn)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield db
            for cursor in db.cursors:
                cursor.close()
            conn.execute("COMMIT")
        finally:
            conn.close()

    def snapshot(self) -> AbstractContextManager[DB]:
        return self._snapshot()

    def day(self, column: str) -> str:
        return f"klingcost_utc_day({column})"

    def damage(self, *, full: bool = False) -> list[str]:
        """Nothing to check from a client: the server keeps and recovers its own pages (a
        damaged page fails the query that reads it, which ``ledger check`` then reports)."""
        return []

    def close(self) -> None:
        self.raw.close()


__all__ = ["MIGRATIONS", "PgDB", "PostgresBackend", "connect", "inspect", "migrate", "translate"]
