"""The ledger's schema, as a list of named migrations applied when a file opens.

As in llm's ``migrations.py``: each migration has a name, runs once, and is recorded in
``_klingcost_migrations``. ``PRAGMA user_version`` holds how many have run and
``PRAGMA application_id`` marks the file as a klingcost ledger. A file is refused, and never
written to, when it is not SQLite, is a SQLite file of something else, or was written by a
newer klingcost (more migrations than this code knows).

Append new migrations at the end of :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from klingcost._one_path import refuse_a_live_second_path
from klingcost.errors import LedgerError, LedgerSchemaError

#: ``PRAGMA application_id`` of a klingcost ledger: "KLCG".
APPLICATION_ID: Final = 0x4B4C4347
SQLITE_HEADER: Final = b"SQLite format 3\x00"


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
#
# Reports and reconcile read small pre-aggregated tables instead of scanning every hold. The
# rollups count *closed* holds (settled or voided) only: triggers on ``holds`` add a hold when it
# closes, in the same transaction as its settle or void (or as any other write to ``holds``, a
# bulk load included), so ``reserve`` pays nothing for them. Open holds are few (the jobs in
# flight) and are read live through the ``holds_open`` index. ``Ledger.check`` recomputes the
# rollups. A rollup key is built from columns that never change after a hold is written (team,
# day of ``reserved_at`` in UTC, job class, pack, currency).
#
# The SQL below is generated from these tables of expressions: once shipped, they are frozen
# like any other migration (a change needs a new migration).

# Never ``x IN (a, b, c)`` in a trigger: SQLite builds an ephemeral table for the list on every
# run of the trigger program (~55 us a statement, measured); equalities joined by OR cost nothing.
_CLOSED = "({r}.state = 'settled' OR {r}.state = 'voided')"


def _when(row: str, condition: str, value: str) -> str:
    return f"(CASE WHEN {condition.format(r=row)} THEN {value.format(r=row)} ELSE 0 END)"


_SETTLED = "{r}.state = 'settled'"
#: A settled charge that is a real observation of the price: the API's deduction was trusted
#: and the task did not fail.
_COMPARED = (
    "{r}.state = 'settled' AND {r}.deduction_flag IS 'ok' AND {r}.task_status IS NOT 'failed'"
)

_DAILY_KEY: dict[str, str] = {
    "day": "date({r}.reserved_at)",
    "team": "{r}.team",
    "endpoint": "COALESCE({r}.endpoint, '')",
    "model": "COALESCE({r}.model, '')",
    "mode": "COALESCE({r}.mode, '')",
    "pack": "{r}.pack",
    "currency": "{r}.currency",
}
_DAILY_SUMS: dict[str, str] = {
    "n_settled": f"({_SETTLED})",
    "n_voided": "({r}.state = 'voided')",
    "settled_est_minor": _when("{r}", _SETTLED, "{r}.est_cost_minor"),
    "settled_est_units": _when("{r}", _SETTLED, "{r}.est_units_milli"),
    "charged_minor": _when("{r}", _SETTLED, "COALESCE({r}.cost_minor, 0)"),
    "charged_units": _when("{r}", _SETTLED, "COALESCE({r}.units_milli, 0)"),
}
_CLASS_KEY: dict[str, str] = {
    "day": "date({r}.reserved_at)",
    "endpoint": "COALESCE({r}.endpoint, '')",
    "model": "COALESCE({r}.model, '')",
    "mode": "COALESCE({r}.mode, '')",
    "duration": "COALESCE({r}.duration, '')",
    "sound": "COALESCE({r}.sound, 0)",
    "video_reference": "COALESCE({r}.video_reference, 0)",
    "reference_image": "COALESCE({r}.reference_image, 0)",
    "n": "COALESCE({r}.n, 0)",
    "pack": "{r}.pack",
}
_ABS_VAR = "abs(COALESCE({r}.units_milli, 0) - {r}.est_units_milli)"
_CLASS_SUMS: dict[str, str] = {
    "n_settled": f"({_SETTLED})",
    "n_voided": "({r}.state = 'voided')",
    "n_compared": f"({_COMPARED})",
    "n_agree": f"({_COMPARED} AND {{r}}.units_milli IS {{r}}.est_units_milli)",
    "est_units": _when("{r}", _COMPARED, "{r}.est_units_milli"),
    "charged_units": _when("{r}", _COMPARED, "COALESCE({r}.units_milli, 0)"),
    "abs_var_units": _when("{r}", _COMPARED, _ABS_VAR),
    "n_missing": f"({_SETTLED} AND COALESCE({{r}}.deduction_flag, 'absent') = 'absent')",
    "n_zero": f"({_SETTLED} AND {{r}}.deduction_flag IS 'zero')",
    "n_absurd": (
        f"({_SETTLED} AND ({{r}}.deduction_flag IS 'absurd' OR {{r}}.deduction_flag IS 'malformed'"
        " OR {r}.deduction_flag IS 'negative'))"
    ),
    "n_failed_charged": f"({_SETTLED} AND {{r}}.task_status IS 'failed')",
}
#: Kept as a running maximum (a settled hold never changes again, so it never needs lowering).
_CLASS_MAX: dict[str, str] = {"max_abs_var_units": _when("{r}", _COMPARED, _ABS_VAR)}

#: Rollup tables: name -> (key columns, summed columns, max columns).
ROLLUPS: Final[dict[str, tuple[dict[str, str], dict[str, str], dict[str, str]]]] = {
    "rollup_daily": (_DAILY_KEY, _DAILY_SUMS, {}),
    "rollup_class": (_CLASS_KEY, _CLASS_SUMS, _CLASS_MAX),
}


def pg_is(sql: str) -> str:
    """SQLite's ``x IS y`` and ``x IS NOT y`` (y not NULL) in PostgreSQL's spelling:
    ``IS NOT DISTINCT FROM`` and ``IS DISTINCT FROM``."""
    text = re.sub(r"\bIS NOT (?!NULL\b|DISTINCT\b)", "IS DISTINCT FROM ", sql)
    return re.sub(r"\bIS (?!NOT\b|NULL\b|DISTINCT\b)", "IS NOT DISTINCT FROM ", text)


def pg_expression(expression: str) -> str:
    """A rollup expression in PostgreSQL's SQL: :func:`pg_is`, and the UTC day function
    (``klingcost_utc_day``) for SQLite's ``date()``."""
    return pg_is(expression.replace("date(", "klingcost_utc_day("))


def _pg_summand(expression: str) -> str:
    """PostgreSQL cannot sum a boolean: a condition becomes 1 or 0 (a CASE stays as it is)."""
    text = pg_expression(expression)
    return text if text.startswith("(CASE") else f"(CASE WHEN {text} THEN 1 ELSE 0 END)"


def rollup_expressions(
    name: str, dialect: str = "sqlite"
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Rollup ``name``'s key, summed and max expressions (``{r}`` for the row) in ``dialect``."""
    key, sums, maxes = ROLLUPS[name]
    if dialect == "sqlite":
        return key, sums, maxes
    return (
        {c: pg_expression(e) for c, e in key.items()},
        {c: _pg_summand(e) for c, e in sums.items()},
        {c: pg_expression(e) for c, e in maxes.items()},
    )


def rollup_table(name: str, dialect: str = "sqlite") -> str:
    """The ``CREATE TABLE`` of rollup ``name``."""
    key, sums, maxes = ROLLUPS[name]
    text, whole, suffix = "TEXT", "INTEGER", " WITHOUT ROWID"
    if dialect != "sqlite":
        text, whole, suffix = 'TEXT COLLATE "C"', "BIGINT", ""
    ints = ("sound", "video_reference", "reference_image", "n")
    columns = [f"{c} {whole if c in ints else text} NOT NULL" for c in key]
    columns += [f"{c} {whole} NOT NULL DEFAULT 0" for c in (*sums, *maxes)]
    return f"CREATE TABLE {name} ({', '.join(columns)}, PRIMARY KEY ({', '.join(key)})){suffix}"


def _upsert(name: str, sign: str) -> str:
    """Add (``+``) or take away (``-``) a hold's contribution: NEW's minus OLD's, or OLD's."""
    key, sums, maxes = ROLLUPS[name]
    row = "OLD" if sign == "-" else "NEW"
    keys = [e.format(r=row) for e in key.values()]
    if sign == "-":
        deltas = [f"-{e.format(r='OLD')}" for e in sums.values()]
    elif sign == "+":
        deltas = [e.format(r="NEW") for e in sums.values()]
    else:  # NEW minus OLD
        deltas = [f"{e.format(r='NEW')} - {e.format(r='OLD')}" for e in sums.values()]
    peaks = [e.format(r=row) if sign != "-" else "0" for e in maxes.values()]
    updates = [f"{c} = {c} + excluded.{c}" for c in sums]
    updates += [f"{c} = max({c}, excluded.{c})" for c in maxes]
    return (
        f"INSERT INTO {name} ({', '.join((*key, *sums, *maxes))})"
        f" VALUES ({', '.join((*keys, *deltas, *peaks))})"
        f" ON CONFLICT DO UPDATE SET {', '.join(updates)};"
    )


def _triggers(name: str) -> tuple[str, ...]:
    # One trigger per table: SQLite runs two upserts in one trigger body several times slower.
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED if c != "state")
    return (
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON holds WHEN {_CLOSED.format(r='NEW')}"
        f" BEGIN {_upsert(name, '+')} END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(_WATCHED)} ON holds"
        f" WHEN ({_CLOSED.format(r='OLD')} OR {_CLOSED.format(r='NEW')})"
        f" AND (OLD.state IS NOT NEW.state OR {changed})"
        f" BEGIN {_upsert(name, '+-')} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON holds WHEN {_CLOSED.format(r='OLD')}"
        f" BEGIN {_upsert(name, '-')} END",
    )


def pg_rollup_triggers(name: str) -> tuple[str, ...]:
    """PostgreSQL's triggers for rollup ``name``: the SQLite ones, as one plpgsql function."""
    key, sums, maxes = rollup_expressions(name, "postgres")

    def upsert(sign: str) -> str:
        row = "OLD" if sign == "-" else "NEW"
        keys = [e.format(r=row) for e in key.values()]
        if sign == "-":
            deltas = [f"-{e.format(r='OLD')}" for e in sums.values()]
        elif sign == "+":
            deltas = [e.format(r="NEW") for e in sums.values()]
        else:  # NEW minus OLD
            deltas = [f"{e.format(r='NEW')} - {e.format(r='OLD')}" for e in sums.values()]
        peaks = [e.format(r=row) if sign != "-" else "0" for e in maxes.values()]
        updates = [f"{c} = t.{c} + excluded.{c}" for c in sums]
        updates += [f"{c} = GREATEST(t.{c}, excluded.{c})" for c in maxes]
        return (
            f"INSERT INTO {name} AS t ({', '.join((*key, *sums, *maxes))})"
            f" VALUES ({', '.join((*keys, *deltas, *peaks))})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(updates)};"
        )

    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED if c != "state")
    function = f"klingcost_{name}"
    return (
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        f" IF TG_OP = 'INSERT' THEN {upsert('+')}"
        f" ELSIF TG_OP = 'UPDATE' THEN {upsert('+-')}"
        f" ELSE {upsert('-')} END IF; RETURN NULL; END $$",
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON holds FOR EACH ROW"
        f" WHEN {_CLOSED.format(r='NEW')} EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(_WATCHED)} ON holds"
        f" FOR EACH ROW WHEN (({_CLOSED.format(r='OLD')} OR {_CLOSED.format(r='NEW')})"
        f" AND (OLD.state IS DISTINCT FROM NEW.state OR {changed}))"
        f" EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON holds FOR EACH ROW"
        f" WHEN {_CLOSED.format(r='OLD')} EXECUTE FUNCTION {function}()",
    )


def recompute_sql(name: str, dialect: str = "sqlite") -> str:
    """A query that recomputes rollup ``name`` from ``holds`` (its columns in table order)."""
    key, sums, maxes = rollup_expressions(name, dialect)
    parts = [f"{e.format(r='h')} AS {c}" for c, e in key.items()]
    parts += [f"SUM({e.format(r='h')}) AS {c}" for c, e in sums.items()]
    parts += [f"MAX({e.format(r='h')}) AS {c}" for c, e in maxes.items()]
    group = ", ".join(str(i + 1) for i in range(len(key)))
    return (
        f"SELECT {', '.join(parts)} FROM holds AS h WHERE {_CLOSED.format(r='h')} GROUP BY {group}"
    )


def rebuild_rollups(conn: Any, dialect: str = "sqlite") -> None:
    """Recompute every rollup table from ``holds`` (inside the caller's transaction)."""
    for name in ROLLUPS:
        conn.execute(f"DELETE FROM {name}")
        conn.execute(f"INSERT INTO {name} {recompute_sql(name, dialect)}")


#: Columns of ``holds`` whose change moves a hold's contribution to the rollups.
_WATCHED: Final[tuple[str, ...]] = (
    "state",
    "est_cost_minor",
    "est_units_milli",
    "cost_minor",
    "units_milli",
    "deduction_flag",
    "task_status",
)

#: The job class columns added to ``holds``, each read from the hold's ``meta`` by ``reserve``.
CLASS_COLUMNS: Final[tuple[str, ...]] = (
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
    *_triggers("rollup_daily"),
    *_triggers("rollup_class"),
)

_ROLLUPS_0002 = (
    *(
        f"ALTER TABLE holds ADD COLUMN {c} {_CLASS_TYPES.get(c, 'INTEGER' if c == 'n' else 'TEXT')}"
        for c in CLASS_COLUMNS
    ),
    # A copy of tasks.task_id, so that an export streams holds without a join.
    "ALTER TABLE holds ADD COLUMN task_id TEXT",
    # parse_deduction(raw_deduction).flag, written at settlement: ok, absent, zero, malformed,
    # negative or absurd.
    "ALTER TABLE holds ADD COLUMN deduction_flag TEXT",
    # The task's status when it was settled ('succeed' or 'failed'), when the caller said.
    "ALTER TABLE holds ADD COLUMN task_status TEXT",
    "UPDATE holds SET "
    + ", ".join(f"{c} = json_extract(meta, '$.{c}')" for c in CLASS_COLUMNS)
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

#: Alerts that reach people (:mod:`klingcost._outbox`): rules (a team's alert kinds sent to a
#: webhook, Slack, Feishu or DingTalk URL), the outbox (one row per alert event and matching
#: rule, written in the event's transaction, delivered at least once with backoff), and the
#: marks that fold a burst (refusals, over-limit settlements, forecasts) into one alert.
#: Written once for both dialects: PostgreSQL renders it (``_postgres.render_0006``).
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

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration("0001_initial", _INITIAL),
    Migration("0002_rollups", _ROLLUPS_0002, _backfill_0002),
    Migration("0003_currency_exponents", CURRENCY_EXPONENTS_0003),
    Migration("0004_published_sheets", PUBLISHED_SHEETS_0004),
    Migration("0005_api_keys", API_KEYS_0005),
    Migration("0006_alerts", ALERTS_0006),
)


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
            if migration.backfill is not None:
                migration.backfill(conn)
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
        version = inspect(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"cannot put the ledger {path} in WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Read and in WAL mode, this connection holds its locks: another live process using the
        # file through another path's log is refused before anything is written here.
        refuse_a_live_second_path(path)
        if version < schema_version():
            # Only a file that needs migrating takes the write lock: opening an up-to-date
            # ledger must not wait behind a writer (a reader would stall behind a stuck one).
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
