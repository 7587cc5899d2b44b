"""One row per task: the holds as export rows (amounts as decimal strings, built in SQL),
the newest few, and a snapshot that streams them (SQLite builds whole CSV lines)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from klingcost.budgets import CURRENCY_EXPONENTS
from klingcost.ledger.queries._window import window
from klingcost.money import UNIT_EXPONENT

if TYPE_CHECKING:
    from klingcost.ledger import Ledger


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of the ledger as an export row (:data:`TASK_COLUMNS`; amounts are decimal
    strings in major units of ``currency``, units in Kling units)."""

    hold_id: int
    task_id: str | None
    team: str
    state: str
    reserved_at: str
    updated_at: str
    endpoint: str | None
    model: str | None
    mode: str | None
    duration: str | None
    sound: int | None
    video_reference: int | None
    reference_image: int | None
    n: int | None
    pack: str
    currency: str
    estimated: str
    charged: str | None
    held: str
    variance: str | None
    estimated_units: str
    charged_units: str | None
    variance_units: str | None
    raw_deduction: str | None
    deduction_flag: str | None
    task_status: str | None
    reason: str | None


#: The columns of a task row, in order (the task export's CSV header and JSON keys).
TASK_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in fields(TaskRow))


def sql_decimal(column: str, exponent: int, dialect: str = "sqlite") -> str:
    """SQL that prints an integer of minor units as :func:`klingcost.money.format_minor`."""
    if exponent == 0:
        return column if dialect == "sqlite" else f"{column}::text"
    scale = 10**exponent
    if dialect == "sqlite":
        whole = f"{column} / {scale}"
        fraction = f"printf('%0{exponent}d', abs({column}) % {scale})"
    else:  # PostgreSQL: one type per CASE (text), and lpad for printf
        whole = f"({column} / {scale})::text"
        fraction = f"lpad((abs({column}) % {scale})::text, {exponent}, '0')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} % {scale} = 0 THEN {whole}"
        f" ELSE (CASE WHEN {column} < 0 THEN '-' ELSE '' END) || (abs({column}) / {scale}) || '.'"
        f" || rtrim({fraction}, '0') END"
    )


def _sql_money(column: str, dialect: str = "sqlite") -> str:
    cases = " ".join(
        f"WHEN '{name}' THEN {sql_decimal(column, e, dialect)}"
        for name, e in sorted(CURRENCY_EXPONENTS.items())
        if e
    )
    otherwise = column if dialect == "sqlite" else f"{column}::text"
    return f"CASE h.currency {cases} ELSE {otherwise} END" if cases else otherwise


_OPEN_CASE = "h.state IN ('held', 'submitted', 'unknown')"


def _task_sql(dialect: str = "sqlite") -> str:
    return (
        "SELECT h.id, h.task_id, h.team, h.state, h.reserved_at, h.updated_at, h.endpoint,"
        " h.model, h.mode, h.duration, h.sound, h.video_reference, h.reference_image, h.n,"
        " h.pack, h.currency,"
        f" {_sql_money('h.est_cost_minor', dialect)},"
        f" {_sql_money('h.cost_minor', dialect)},"
        f" {_sql_money(f'(CASE WHEN {_OPEN_CASE} THEN h.est_cost_minor ELSE 0 END)', dialect)},"
        f" {_sql_money('h.variance_cost_minor', dialect)},"
        f" {sql_decimal('h.est_units_milli', UNIT_EXPONENT, dialect)},"
        f" {sql_decimal('h.units_milli', UNIT_EXPONENT, dialect)},"
        f" {sql_decimal('h.variance_units_milli', UNIT_EXPONENT, dialect)},"
        " h.raw_deduction, h.deduction_flag, h.task_status, h.reason FROM holds AS h"
    )


_TASK_SQLS = {"sqlite": _task_sql(), "postgres": _task_sql("postgres")}


def _task_where(
    since: date | None, until: date | None, team: str | None, state: str | None
) -> tuple[str, list[str]]:
    clauses, params = window("h.reserved_at", since, until, inclusive_day=False)
    if team is not None:
        clauses.append("h.team = ?")
        params.append(team)
    if state == "open":
        clauses.append(_OPEN_CASE)
    elif state is not None:
        clauses.append("h.state = ?")
        params.append(state)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " ORDER BY h.id", params


#: Columns that are text in TaskRow though SQLite may hand back an int (amounts of credits).
_TEXT_INDEXES = frozenset(
    TASK_COLUMNS.index(c)
    for c in (
        "duration",
        "estimated",
        "charged",
        "held",
        "variance",
        "estimated_units",
        "charged_units",
        "variance_units",
    )
)


def task_cells(row: Sequence[Any]) -> tuple[Any, ...]:
    """A task row's cells as :class:`TaskRow` types them (text columns as text)."""
    return tuple(
        str(value) if isinstance(value, int) and i in _TEXT_INDEXES else value
        for i, value in enumerate(row)
    )


def task_rows(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """One tuple per hold, in :data:`TASK_COLUMNS` order, amounts as decimal strings; streamed
    from a cursor (memory stays flat however many holds there are)."""
    with task_snapshot(ledger) as tasks:
        yield from tasks.rows(since=since, until=until, team=team, state=state)


def latest_tasks(ledger: Ledger, limit: int = 20) -> list[TaskRow]:
    """The ``limit`` newest tasks, newest first: read backwards along the holds' primary key,
    so it costs the same whatever the ledger holds (the live page reads it every few
    seconds)."""
    sql = f"{_TASK_SQLS[ledger.dialect]} ORDER BY h.id DESC LIMIT {int(limit)}"
    with ledger.reading():
        rows = ledger.execute(sql).fetchall()
    return [TaskRow(*task_cells(row)) for row in rows]


def _split_columns(select: str) -> list[str]:
    """Split a SELECT list on its top-level commas."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in select:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _task_line_sql() -> str:
    """One CSV line per hold, built by SQLite's printf: one string object per row."""
    select = _TASK_SQLS["sqlite"].removeprefix("SELECT ").split(" FROM holds AS h")[0]
    expressions = _split_columns(select)
    if len(expressions) != len(TASK_COLUMNS):  # the two lists are kept by hand
        raise AssertionError(f"{len(expressions)} task expressions, {len(TASK_COLUMNS)} columns")
    template = ",".join(["%s"] * len(expressions))  # printf prints NULL as an empty string
    return f"SELECT printf('{template}', {', '.join(expressions)}) FROM holds AS h"


_TASK_LINE_SQL: Final = _task_line_sql()


class TaskSnapshot:
    """The holds as one consistent snapshot, read on a second, read-only connection: a long
    export never holds the ledger's lock, nor blocks its writers."""

    def __init__(self, conn: Any, dialect: str):
        self._conn = conn
        self._dialect = dialect

    @property
    def builds_lines(self) -> bool:
        """Whether the database builds CSV lines itself (SQLite's printf)."""
        return self._dialect == "sqlite"

    def rows(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        team: str | None = None,
        state: str | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """The holds in the window, by id, as :func:`task_rows` gives them."""
        where, params = _task_where(since, until, team, state)
        yield from self._conn.execute(_TASK_SQLS[self._dialect] + where, params)

    def line_batches(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        team: str | None = None,
        state: str | None = None,
        size: int = 5000,
    ) -> Iterator[list[str]]:
        """SQLite only: the holds in the window, by id, as lines of ``%s`` cells joined by
        commas (NULL an empty cell, nothing quoted), ``size`` at a time."""
        if not self.builds_lines:
            raise NotImplementedError(f"{self._dialect} does not build CSV lines")
        where, params = _task_where(since, until, team, state)
        cursor = self._conn.execute(_TASK_LINE_SQL + where, params)
        while batch := cursor.fetchmany(size):
            yield [line for (line,) in batch]

    def row(self, hold_id: int) -> tuple[Any, ...]:
        """The task row of one hold (in the same snapshot)."""
        sql = f"{_TASK_SQLS[self._dialect]} WHERE h.id = ?"
        return tuple(self._conn.execute(sql, (hold_id,)).fetchone())


@contextmanager
def task_snapshot(ledger: Ledger) -> Iterator[TaskSnapshot]:
    """A :class:`TaskSnapshot` of ``ledger``'s holds, for the length of the block."""
    with ledger.backend.snapshot() as conn:
        yield TaskSnapshot(conn, ledger.dialect)
