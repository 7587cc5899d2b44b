"""The report rollups: small pre-aggregated tables that triggers on ``holds`` keep, in both
dialects, rendered from one table of expressions.

Reports and reconcile read small pre-aggregated tables instead of scanning every hold. The
rollups count *closed* holds (settled or voided) only: triggers on ``holds`` add a hold when it
closes, in the same transaction as its settle or void (or as any other write to ``holds``, a
bulk load included), so ``reserve`` pays nothing for them. Open holds are few (the jobs in
flight) and are read live through the ``holds_open`` index. ``Ledger.check`` recomputes the
rollups. A rollup key is built from columns that never change after a hold is written (team,
day of ``reserved_at`` in UTC, job class, pack, currency).

Each rollup is written once, in SQLite's SQL, as expressions of a row ``{r}``
(:data:`ROLLUPS`); :func:`rollup_expressions` spells them for PostgreSQL, and :func:`upsert`
renders the one statement that adds a hold's contribution (or takes it away) for either
dialect: SQLite runs it in a trigger body, PostgreSQL in a plpgsql trigger function.

Migration ``0002_rollups`` created the tables and triggers from these expressions: once
shipped, they are frozen like any other migration (a change needs a new migration, and
``tests/test_schema_spec.py`` fails on any change to what a shipped migration runs).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

Sign = Literal["+", "-", "+-"]

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


def upsert(name: str, sign: Sign, dialect: str = "sqlite") -> str:
    """Add (``+``) or take away (``-``) a hold's contribution to rollup ``name``, or move it
    (``+-``: NEW's minus OLD's), as one ``INSERT ... ON CONFLICT DO UPDATE``.

    The one place this statement is written: the dialects differ only in how the stored row
    is named (PostgreSQL needs an alias and the conflict target), and in ``max`` versus
    ``GREATEST``.
    """
    key, sums, maxes = rollup_expressions(name, dialect)
    row = "OLD" if sign == "-" else "NEW"
    keys = [e.format(r=row) for e in key.values()]
    if sign == "-":
        deltas = [f"-{e.format(r='OLD')}" for e in sums.values()]
    elif sign == "+":
        deltas = [e.format(r="NEW") for e in sums.values()]
    else:  # NEW minus OLD
        deltas = [f"{e.format(r='NEW')} - {e.format(r='OLD')}" for e in sums.values()]
    peaks = [e.format(r=row) if sign != "-" else "0" for e in maxes.values()]
    if dialect == "sqlite":
        into, target, stored, greatest = name, "", "", "max"
    else:
        into, target, stored, greatest = f"{name} AS t", f" ({', '.join(key)})", "t.", "GREATEST"
    updates = [f"{c} = {stored}{c} + excluded.{c}" for c in sums]
    updates += [f"{c} = {greatest}({stored}{c}, excluded.{c})" for c in maxes]
    return (
        f"INSERT INTO {into} ({', '.join((*key, *sums, *maxes))})"
        f" VALUES ({', '.join((*keys, *deltas, *peaks))})"
        f" ON CONFLICT{target} DO UPDATE SET {', '.join(updates)};"
    )


def rollup_triggers(name: str, dialect: str = "sqlite") -> tuple[str, ...]:
    """The triggers that keep rollup ``name``: after an insert, an update of a watched column,
    and a delete of a closed hold. SQLite runs :func:`upsert` in each trigger's body (one
    trigger per table and event: two upserts in one body run several times slower);
    PostgreSQL runs it in one plpgsql function the three triggers share."""
    if dialect == "sqlite":
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED if c != "state")
        return (
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON holds WHEN {_CLOSED.format(r='NEW')}"
            f" BEGIN {upsert(name, '+')} END",
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(_WATCHED)} ON holds"
            f" WHEN ({_CLOSED.format(r='OLD')} OR {_CLOSED.format(r='NEW')})"
            f" AND (OLD.state IS NOT NEW.state OR {changed})"
            f" BEGIN {upsert(name, '+-')} END",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON holds WHEN {_CLOSED.format(r='OLD')}"
            f" BEGIN {upsert(name, '-')} END",
        )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED if c != "state")
    function = f"klingcost_{name}"
    return (
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        f" IF TG_OP = 'INSERT' THEN {upsert(name, '+', dialect)}"
        f" ELSIF TG_OP = 'UPDATE' THEN {upsert(name, '+-', dialect)}"
        f" ELSE {upsert(name, '-', dialect)} END IF; RETURN NULL; END $$",
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


__all__ = [
    "ROLLUPS",
    "pg_expression",
    "pg_is",
    "rebuild_rollups",
    "recompute_sql",
    "rollup_expressions",
    "rollup_table",
    "rollup_triggers",
    "upsert",
]
