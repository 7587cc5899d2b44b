"""The SQLite ledger's schema history: the named migrations every ledger file has run.

As in llm's ``migrations.py``: each migration has a name, runs once, and is recorded in
``_klingcost_migrations``. ``PRAGMA user_version`` holds how many have run and
``PRAGMA application_id`` marks the file as a klingcost ledger (:mod:`klingcost.ledger._sqlite`
applies them when a file opens). PostgreSQL runs the same names in its own SQL
(:mod:`klingcost.ledger.migrations_postgres`).

This module is history, kept as data: the statements below are what ledgers in the field ran,
so they must stay byte for byte what they were (``tests/test_schema_spec.py`` holds a digest of
each). It is one concept, if longer than a module should be. The schema as it is *now* is
described once in :mod:`klingcost.ledger.schema`; the next migration is written from there
(its docstring says how), appended at the end of :data:`MIGRATIONS`. Never edit one that has
shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from klingcost.ledger.rollups import rebuild_rollups, rollup_table, rollup_triggers

#: ``PRAGMA application_id`` of a klingcost ledger: "KLCG".
APPLICATION_ID: Final = 0x4B4C4347


@dataclass(frozen=True, slots=True)
class Migration:
    """A named step: SQL ``statements``, then an optional ``backfill`` in the same transaction."""

    name: str
    statements: tuple[str, ...]
    backfill: Callable[[sqlite3.Connection], None] | None = None


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

# --- 0002_rollups: job-class columns, rollup tables kept by triggers, and their indexes ----------
# (the rollups themselves: klingcost.ledger.rollups)

#: The job class columns 0002 added to ``holds``, each read from the hold's ``meta``: frozen
#: here, as shipped (the current list is ``schema.CLASS_COLUMNS``).
CLASS_COLUMNS_0002: Final[tuple[str, ...]] = (
    "endpoint",
    "model",
    "mode",
    "duration",
    "sound",
    "video_reference",
    "reference_image",
    "n",
)
_CLASS_TYPES = {"sound": "INTEGER", "video_reference": "INTEGER", "reference_image": "INTEGER"}


def _backfill_0002(conn: sqlite3.Connection) -> None:
    from klingcost.deduction import parse_deduction  # pure: opening a ledger loads no httpx

    rows = conn.execute("SELECT id, raw_deduction FROM holds WHERE state = 'settled'").fetchall()
    conn.executemany(
        "UPDATE holds SET deduction_flag = ? WHERE id = ?",
        [(parse_deduction(raw).flag, hold_id) for hold_id, raw in rows],
    )
    # The rollups and their triggers come after the flags, so that the backfill above does not
    # fire a trigger per row; then one pass over the holds fills them.
    for statement in _ROLLUP_DDL:
        conn.execute(statement)
    rebuild_rollups(conn)


_ROLLUP_DDL: Final[tuple[str, ...]] = (
    rollup_table("rollup_daily"),
    rollup_table("rollup_class"),
    *rollup_triggers("rollup_daily"),
    *rollup_triggers("rollup_class"),
)

_ROLLUPS_0002 = (
    *(
        f"ALTER TABLE holds ADD COLUMN {c} {_CLASS_TYPES.get(c, 'INTEGER' if c == 'n' else 'TEXT')}"
        for c in CLASS_COLUMNS_0002
    ),
    # A copy of tasks.task_id, so that an export streams holds without a join.
    "ALTER TABLE holds ADD COLUMN task_id TEXT",
    # parse_deduction(raw_deduction).flag, written at settlement: ok, absent, zero, malformed,
    # negative or absurd.
    "ALTER TABLE holds ADD COLUMN deduction_flag TEXT",
    # The task's status when it was settled ('succeed' or 'failed'), when the caller said.
    "ALTER TABLE holds ADD COLUMN task_status TEXT",
    "UPDATE holds SET "
    + ", ".join(f"{c} = json_extract(meta, '$.{c}')" for c in CLASS_COLUMNS_0002)
    + ", task_id = (SELECT t.task_id FROM tasks AS t WHERE t.hold_id = holds.id)",
    # The tasks reconcile lists: settled at a charge other than the estimate, or flagged.
    "CREATE INDEX holds_disagree ON holds(reserved_at) WHERE state = 'settled' AND"
    " (units_milli <> est_units_milli OR deduction_flag IS NOT 'ok' OR task_status IS 'failed')",
    """
    CREATE TABLE usage_rows (
        reqid TEXT PRIMARY KEY,
        model TEXT,
        fen TEXT NOT NULL,
        yufen TEXT,
        at TEXT,
        hold_id INTEGER REFERENCES holds(id),
        matched_by TEXT,
        raw TEXT NOT NULL,
        imported_at TEXT NOT NULL
    )
    """,
)

#: USD and CNY budgets were kept to 10^-2, while the sheet prices them to 10^-4 and 10^-3 and
#: holds add their costs as they are: the limits move to the sheet's exponents (the balances
#: were already in them). SQL that PostgreSQL runs too.
CURRENCY_EXPONENTS_0003 = (
    # A limit too large to scale stays at the largest a column holds (no limit, in effect).
    "UPDATE budgets SET exponent = 4, limit_minor = CASE"
    " WHEN limit_minor > 9223372036854775807 / 100 THEN 9223372036854775807"
    " ELSE limit_minor * 100 END WHERE unit = 'usd' AND exponent = 2",
    "UPDATE budgets SET exponent = 3, limit_minor = CASE"
    " WHEN limit_minor > 9223372036854775807 / 10 THEN 9223372036854775807"
    " ELSE limit_minor * 10 END WHERE unit = 'cny' AND exponent = 2",
    # The view gains the exponent (last, so existing columns keep their places), so that a
    # reader in Datasette can tell 140000 minor units of usd from 14 dollars.
    "DROP VIEW budget_balances",
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
        b.tz,
        b.exponent
    FROM balances AS bal JOIN budgets AS b ON b.name = bal.budget
    ORDER BY b.name, bal.period_key DESC
    """,
)

#: A shared ledger keeps the price sheet its holds are priced by (``klingcost pricing
#: publish``): each published version, append-only, as canonical JSON with its sha256; the
#: ledger's settings (whether a submitter may price with a local overlay instead); and, on
#: every hold, the sha256 of the sheet that priced it (NULL for holds from before, or from a
#: caller that gave none).
PUBLISHED_SHEETS_0004 = (
    """
    CREATE TABLE pricing_sheets (
        version INTEGER PRIMARY KEY CHECK (version > 0),
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        canonical TEXT NOT NULL,
        origin TEXT NOT NULL,
        published_at TEXT NOT NULL
    )
    """,
    """
    CREATE TRIGGER pricing_sheets_append_only_update BEFORE UPDATE ON pricing_sheets
    BEGIN SELECT RAISE(ABORT, 'published price sheets are append-only'); END
    """,
    """
    CREATE TRIGGER pricing_sheets_append_only_delete BEFORE DELETE ON pricing_sheets
    BEGIN SELECT RAISE(ABORT, 'published price sheets are append-only'); END
    """,
    """
    CREATE TABLE ledger_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    "ALTER TABLE holds ADD COLUMN sheet_sha256 TEXT",
)

#: Keys of ``klingcost proxy``, one row per key (:mod:`klingcost.keys`). The row holds nothing
#: a reader of the file could authenticate with: the bearer key only as its sha256, and no
#: secret key at all (each is derived from a server secret kept outside the ledger). Keys are
#: revoked, never deleted, so a hold's ``key_id`` always names a row. ``team`` is not a foreign
#: key: a key outlives nothing it needs, and a budget's rename or deletion stays the budget's
#: business (a key of a team without a budget is refused when used). Refusals are events of
#: kind ``refused``, listed through their own partial index.
API_KEYS_0005 = (
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
        max_concurrent INTEGER CHECK (max_concurrent IS NULL OR max_concurrent > 0)
    )
    """,
    "CREATE INDEX api_keys_team ON api_keys(team)",
    # Not a foreign key: keys are never deleted, and a check on every hold insert costs time.
    "ALTER TABLE holds ADD COLUMN key_id TEXT",
    # The open holds of one key: what ``reserve`` counts under ``--max-concurrent``. Only open
    # holds are in it (a few per key), so the count never walks a key's history; the query
    # repeats this condition word for word, so that SQLite sees it may use the index.
    "CREATE INDEX holds_open_key ON holds(key_id) WHERE key_id IS NOT NULL"
    " AND (state = 'held' OR state = 'submitted' OR state = 'unknown')",
    "CREATE INDEX events_refused ON events(id) WHERE kind = 'refused'",
)

#: Alerts that reach people (:mod:`klingcost.ledger.outbox`): rules (a team's alert kinds sent to a
#: webhook, Slack, Feishu or DingTalk URL), the outbox (one row per alert event and matching
#: rule, written in the event's transaction, delivered at least once with backoff), and the
#: marks that fold a burst (refusals, over-limit settlements, forecasts) into one alert.
#: Written once for both dialects: PostgreSQL renders it (``migrations_postgres.render_0006``).
#: ``event_id`` is no foreign key: events are never deleted, and PostgreSQL would answer a
#: ``TRUNCATE events`` with the key's error instead of the log's append-only one.
ALERTS_0006 = (
    """
    CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL,
        channel TEXT NOT NULL CHECK (channel IN ('webhook', 'slack', 'feishu', 'dingtalk')),
        url TEXT NOT NULL,
        on_soft INTEGER NOT NULL CHECK (on_soft IN (0, 1)),
        on_refused INTEGER NOT NULL CHECK (on_refused IN (0, 1)),
        on_over INTEGER NOT NULL CHECK (on_over IN (0, 1)),
        on_forecast INTEGER NOT NULL CHECK (on_forecast IN (0, 1)),
        created_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX alert_rules_team ON alert_rules(team)",
    """
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY,
        event_id INTEGER NOT NULL,
        rule_id INTEGER NOT NULL REFERENCES alert_rules(id),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        delivered_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (event_id, rule_id)
    )
    """,
    "CREATE INDEX alert_outbox_due ON alert_outbox(next_attempt_at)"
    " WHERE next_attempt_at IS NOT NULL",
    "CREATE INDEX alert_outbox_rule ON alert_outbox(rule_id)",
    """
    CREATE TABLE alert_marks (
        team TEXT NOT NULL,
        kind TEXT NOT NULL,
        mark TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (team, kind)
    ) WITHOUT ROWID
    """,
)

#: PostgreSQL's ``TRUNCATE pricing_sheets`` is refused from 0007 on (0004 refused only UPDATE
#: and DELETE). SQLite has no TRUNCATE, so its step is empty: the version still counts it.
SHEETS_TRUNCATE_0007: Final[tuple[str, ...]] = ()

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration("0001_initial", _INITIAL),
    Migration("0002_rollups", _ROLLUPS_0002, _backfill_0002),
    Migration("0003_currency_exponents", CURRENCY_EXPONENTS_0003),
    Migration("0004_published_sheets", PUBLISHED_SHEETS_0004),
    Migration("0005_api_keys", API_KEYS_0005),
    Migration("0006_alerts", ALERTS_0006),
    Migration("0007_sheets_truncate", SHEETS_TRUNCATE_0007),
)


def schema_version() -> int:
    """The ``user_version`` this code writes: the number of migrations it knows."""
    return len(MIGRATIONS)


__all__ = ["APPLICATION_ID", "CLASS_COLUMNS_0002", "MIGRATIONS", "Migration", "schema_version"]
