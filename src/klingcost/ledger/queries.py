"""The ledger's read models: every question reports, reconcile and calibration ask of the
ledger's tables, as named rows, and the one write calibration makes (the usage-log import).

Only the ledger writes SQL, on tables it defines: the modules that read it call these
functions and never see a cursor. Each function runs in the ledger's own lock or snapshot and
turns the driver's errors into LedgerError, as every other ledger operation does.

* spending: :func:`grouped_sums` (rollups + open holds), :func:`budget_parents`;
* tasks: :data:`TASK_COLUMNS`, :class:`TaskRow`, :func:`task_rows`, :func:`latest_tasks`,
  :func:`task_snapshot` (the CSV export's lines, built by SQLite);
* reconcile: :func:`class_sums` (``rollup_class``), :func:`disagreeing_tasks`;
* calibration: :func:`observed_charges`, :func:`credit_rows`, :func:`store_usage` (one write
  transaction), :func:`unmatched_usage`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from klingcost.budgets import CURRENCY_EXPONENTS
from klingcost.money import UNIT_EXPONENT

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

T = TypeVar("T")


def _window(
    day_column: str, since: date | None, until: date | None, *, inclusive_day: bool = True
) -> tuple[list[str], list[str]]:
    """Clauses and parameters for a window of UTC days, ``since`` and ``until`` inclusive: on
    a day column (``<= until``), or on a timestamp (``< the day after until``)."""
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{day_column} >= ?")
        params.append(since.isoformat())
    if until is not None:
        if inclusive_day:
            clauses.append(f"{day_column} <= ?")
            params.append(until.isoformat())
        else:
            clauses.append(f"{day_column} < ?")
            params.append((until + timedelta(days=1)).isoformat())
    return clauses, params


# --- spending -----------------------------------------------------------------------------


class GroupSums(NamedTuple):
    """The sums of one group of holds: counts, amounts in minor units of the currency, units
    in milli-units of the pack."""

    settled: int
    open: int
    voided: int
    settled_estimate_minor: int
    charged_minor: int
    held_minor: int
    charged_units_milli: int
    held_units_milli: int


_CLOSED_SUMS = (
    "SUM(n_settled), 0, SUM(n_voided), SUM(settled_est_minor), SUM(charged_minor), 0,"
    " SUM(charged_units), 0"
)
_OPEN_SUMS = "0, COUNT(*), 0, 0, 0, SUM(est_cost_minor), 0, SUM(est_units_milli)"
_OPEN_COLUMNS = {
    "day": "{day}",
    "team": "team",
    "endpoint": "COALESCE(endpoint, '')",
    "model": "COALESCE(model, '')",
    "mode": "COALESCE(mode, '')",
    "pack": "pack",
    "currency": "currency",
}
_EMPTY: Final = GroupSums(0, 0, 0, 0, 0, 0, 0, 0)


def grouped_sums(
    ledger: Ledger,
    columns: Sequence[str],
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> dict[tuple[str, ...], GroupSums]:
    """Sums per group of ``columns`` (any of day, month, team, endpoint, model, mode, pack,
    currency), grouped by the database: from the rollups for closed holds, and from the open
    holds (few) through their index. ``since`` and ``until`` are inclusive UTC days."""
    day = ledger.backend.day("reserved_at")  # the UTC day, in the ledger's SQL
    closed_cols = [("substr(day, 1, 7)" if c == "month" else c) for c in columns]
    open_cols = [
        (f"substr({day}, 1, 7)" if c == "month" else _OPEN_COLUMNS[c].format(day=day))
        for c in columns
    ]
    group = ", ".join(str(i + 1) for i in range(len(columns)))
    group_by = f" GROUP BY {group}" if columns else ""

    def where(column: str) -> tuple[str, list[str]]:
        clauses, params = _window(column, since, until)
        if team is not None:
            clauses.append("team = ?")
            params.append(team)
        return "".join(f" AND {c}" for c in clauses), params

    closed_where, params = where("day")
    closed_sql = (
        f"SELECT {', '.join([*closed_cols, _CLOSED_SUMS])} FROM rollup_daily"
        f" WHERE TRUE{closed_where}{group_by}"
    )
    open_where, open_params = where(day)
    open_sql = (
        f"SELECT {', '.join([*open_cols, _OPEN_SUMS])} FROM holds"
        f" WHERE state IN ('held', 'submitted', 'unknown'){open_where}{group_by}"
    )
    width = len(columns)
    merged: dict[tuple[str, ...], GroupSums] = {}
    with ledger.reading():
        for row in ledger.execute(closed_sql, params):
            if row[width] is not None:  # a group with no rows at all (no columns) is skipped
                merged[tuple(row[:width])] = GroupSums(*row[width:])
        for row in ledger.execute(open_sql, open_params):
            found = GroupSums(*row[width:])
            if found.open:
                key = tuple(row[:width])
                sums = merged.get(key, _EMPTY)
                merged[key] = sums._replace(
                    open=sums.open + found.open,
                    held_minor=sums.held_minor + (found.held_minor or 0),
                    held_units_milli=sums.held_units_milli + (found.held_units_milli or 0),
                )
    return merged


class BudgetNode(NamedTuple):
    """A budget's name and its parent's (None at the top)."""

    name: str
    parent: str | None


def budget_parents(ledger: Ledger) -> list[BudgetNode]:
    """Every budget with its parent, by name."""
    with ledger.reading():
        rows = ledger.execute("SELECT name, parent FROM budgets ORDER BY name").fetchall()
    return [BudgetNode(name, parent) for name, parent in rows]


# --- one row per task ---------------------------------------------------------------------

#: The columns of a task row, in order (the task export's CSV header and JSON keys).
TASK_COLUMNS: Final[tuple[str, ...]] = (
    "hold_id",
    "task_id",
    "team",
    "state",
    "reserved_at",
    "updated_at",
    "endpoint",
    "model",
    "mode",
    "duration",
    "sound",
    "video_reference",
    "reference_image",
    "n",
    "pack",
    "currency",
    "estimated",
    "charged",
    "held",
    "variance",
    "estimated_units",
    "charged_units",
    "variance_units",
    "raw_deduction",
    "deduction_flag",
    "task_status",
    "reason",
)


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
    clauses, params = _window("h.reserved_at", since, until, inclusive_day=False)
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


# --- reconcile ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class JobClass:
    """What fixes a task's price. Empty strings and zeros where a field does not apply."""

    endpoint: str
    model: str
    mode: str
    duration: str
    sound: bool
    video_reference: bool
    reference_image: bool
    n: int
    pack: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JobClass:
        """From the nine job-class columns, in field order, as the rollups store them."""
        endpoint, model, mode, duration, sound, video_ref, ref_image, n, pack = row[:9]
        return cls(
            str(endpoint),
            str(model),
            str(mode),
            str(duration),
            bool(sound),
            bool(video_ref),
            bool(ref_image),
            int(n),
            str(pack),
        )

    @property
    def label(self) -> str:
        parts = [self.endpoint or "?", self.model or "?"]
        if self.mode:
            parts.append(self.mode)
        if self.duration:
            parts.append(f"{self.duration}s")
        if self.sound:
            parts.append("sound")
        if self.video_reference:
            parts.append("video-ref")
        if self.reference_image:
            parts.append("ref-image")
        if self.pack == "image" or self.n > 1:
            parts.append(f"n={self.n}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "mode": self.mode or None,
            "duration": self.duration or None,
            "sound": self.sound,
            "video_reference": self.video_reference,
            "reference_image": self.reference_image,
            "n": self.n,
            "pack": self.pack,
        }


@dataclass(frozen=True, slots=True)
class ClassSums:
    """One job class's sums from ``rollup_class``: counts, units (milli) and flags."""

    job: JobClass
    settled: int
    voided: int
    compared: int
    agreeing: int
    estimated_units_milli: int
    charged_units_milli: int
    abs_variance_units_milli: int
    largest_variance_units_milli: int
    missing: int
    zero: int
    absurd: int
    failed_charged: int


_KEY = "endpoint, model, mode, duration, sound, video_reference, reference_image, n, pack"
_CLASS_SQL = (
    f"SELECT {_KEY}, SUM(n_settled), SUM(n_voided), SUM(n_compared), SUM(n_agree),"
    " SUM(est_units), SUM(charged_units), SUM(abs_var_units), MAX(max_abs_var_units),"
    " SUM(n_missing), SUM(n_zero), SUM(n_absurd), SUM(n_failed_charged)"
    f" FROM rollup_class{{where}} GROUP BY {_KEY}"
)


def class_sums(
    ledger: Ledger, *, since: date | None = None, until: date | None = None
) -> list[ClassSums]:
    """The sums of every job class with holds closed between two UTC days (inclusive)."""
    clauses, params = _window("day", since, until)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with ledger.reading():
        rows = ledger.execute(_CLASS_SQL.format(where=where), params).fetchall()
    return [ClassSums(JobClass.from_row(row), *(int(v) for v in row[9:21])) for row in rows]


@dataclass(frozen=True, slots=True)
class SettledTask:
    """A settled task as reconcile lists it: its units estimated and charged (milli), what
    the API said, and its job class."""

    hold_id: int
    task_id: str | None
    team: str
    reserved_at: str
    estimated_units_milli: int
    charged_units_milli: int | None
    raw_deduction: str | None
    deduction_flag: str | None
    task_status: str | None
    job: JobClass


_DISAGREE = (
    "state = 'settled' AND (units_milli <> est_units_milli OR deduction_flag IS NOT 'ok'"
    " OR task_status IS 'failed')"
)
_TASKS_SQL = (
    "SELECT id, task_id, team, reserved_at, est_units_milli, units_milli, raw_deduction,"
    " deduction_flag, task_status, COALESCE(endpoint, ''), COALESCE(model, ''),"
    " COALESCE(mode, ''), COALESCE(duration, ''), COALESCE(sound, 0),"
    " COALESCE(video_reference, 0), COALESCE(reference_image, 0), COALESCE(n, 0), pack"
    f" FROM holds INDEXED BY holds_disagree WHERE {_DISAGREE}{{where}}"
)


def disagreeing_tasks(
    ledger: Ledger, *, since: date | None = None, until: date | None = None
) -> Iterator[SettledTask]:
    """The settled tasks reserved in the window that were charged other than their estimate,
    or are flagged, or failed: read through a partial index that holds only them, streamed."""
    clauses, params = _window("reserved_at", since, until, inclusive_day=False)
    sql = _TASKS_SQL.format(where="".join(f" AND {c}" for c in clauses))
    with ledger.reading():
        cursor = ledger.execute(sql, params)
        while batch := cursor.fetchmany(2000):
            for row in batch:
                hold_id, task_id, team, at, estimated, charged, raw, flag, status = row[:9]
                job = JobClass.from_row(row[9:])
                yield SettledTask(
                    hold_id, task_id, team, at, estimated, charged, raw, flag, status, job
                )


# --- calibration --------------------------------------------------------------------------


class Charge(NamedTuple):
    """How many trusted tasks of one job class were charged ``units_milli``."""

    job: JobClass
    units_milli: int
    tasks: int


_OBSERVED_SQL = (
    "SELECT COALESCE(endpoint, ''), COALESCE(model, ''), COALESCE(mode, ''),"
    " COALESCE(duration, ''), COALESCE(sound, 0), COALESCE(video_reference, 0),"
    " COALESCE(reference_image, 0), COALESCE(n, 0), pack, units_milli, COUNT(*)"
    " FROM holds WHERE state = 'settled' AND deduction_flag = 'ok'"
    " AND task_status IS NOT 'failed' GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
)


def observed_charges(ledger: Ledger) -> list[Charge]:
    """Every (job class, charge) of the trusted settled tasks (a deduction that parsed, on a
    task that did not fail), with how many tasks got it."""
    with ledger.reading():
        rows = ledger.execute(_OBSERVED_SQL).fetchall()
    return [Charge(JobClass.from_row(row), int(row[9]), int(row[10])) for row in rows]


class CreditRow(NamedTuple):
    """One usage-log row matched to a settled hold: its pack, the credits the proxy charged
    (``fen``, an exact decimal string) and the units Kling charged (milli)."""

    pack: str
    fen: str
    units_milli: int


_CREDIT_SQL: Final = (
    "SELECT h.pack, u.fen, h.units_milli FROM usage_rows AS u JOIN holds AS h"
    " ON h.id = u.hold_id WHERE h.state = 'settled' AND h.units_milli > 0"
)


def credit_rows(ledger: Ledger) -> list[CreditRow]:
    """Every imported usage row matched to a settled hold that was charged units."""
    with ledger.reading():
        return [CreditRow(*row) for row in ledger.execute(_CREDIT_SQL).fetchall()]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage-log row as the ledger keeps it (amounts as exact decimal strings, ``raw``
    the row's JSON)."""

    reqid: str
    model: str | None
    fen: str
    yufen: str | None
    at: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class StoredUsage:
    """What storing a usage log did, and the credit rows it now gives (all rows, old too)."""

    new: int
    matched_by_id: int
    matched_by_order: int
    credits: list[CreditRow]


def store_usage(
    ledger: Ledger,
    records: Sequence[UsageRecord],
    *,
    imported_at: str,
    then: Callable[[StoredUsage], T],
) -> T:
    """In one write transaction: store ``records`` once each (by ``reqid``), match them to
    holds, and call ``then`` with the result before the commit. Should ``then`` (or anything)
    raise, nothing is kept. The transaction may be retried (a busy file, a lost race): ``then``
    is called again each time, and its last answer is returned.

    A row matches the hold whose task id, or whose key (sent as ``external_task_id``), equals
    its ``reqid``; the rest are paired with the unmatched settled holds of the same model,
    newest with newest (the ledger does not keep the proxy's request ids: the fallback)."""

    def operation(conn: Any) -> T:
        new = 0
        for r in records:
            hold_id = _match(conn, r.reqid)
            cursor = conn.execute(
                "INSERT INTO usage_rows (reqid, model, fen, yufen, at, hold_id, matched_by, raw,"
                " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reqid) DO NOTHING",
                (
                    r.reqid,
                    r.model,
                    r.fen,
                    r.yufen,
                    r.at,
                    hold_id,
                    "id" if hold_id is not None else None,
                    r.raw,
                    imported_at,
                ),
            )
            new += cursor.rowcount
        by_order = _match_by_order(conn)
        (by_id,) = conn.execute(
            "SELECT COUNT(*) FROM usage_rows WHERE matched_by = 'id'"
        ).fetchone()
        credits = [CreditRow(*row) for row in conn.execute(_CREDIT_SQL).fetchall()]
        return then(StoredUsage(new, by_id, by_order, credits))

    return ledger._write(operation)


def _match(conn: Any, reqid: str) -> int | None:
    row = conn.execute("SELECT hold_id FROM tasks WHERE task_id = ?", (reqid,)).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM holds WHERE idempotency_key = ?", (reqid,)).fetchone()
    return None if row is None else int(row[0])


def _match_by_order(conn: Any) -> int:
    """Pair unmatched rows with unmatched settled holds of the same model, newest first."""
    paired = 0
    models = [
        model
        for (model,) in conn.execute(
            "SELECT DISTINCT model FROM usage_rows WHERE hold_id IS NULL AND model IS NOT NULL"
        )
    ]
    for model in models:
        reqids = [
            reqid
            for (reqid,) in conn.execute(
                "SELECT reqid FROM usage_rows WHERE hold_id IS NULL AND model = ?"
                " ORDER BY COALESCE(at, ''), rowid",
                (model,),
            )
        ]
        reqids.reverse()  # newest first
        holds = [
            hold_id
            for (hold_id,) in conn.execute(
                "SELECT h.id FROM holds AS h WHERE h.state = 'settled' AND h.model = ?"
                " AND NOT EXISTS (SELECT 1 FROM usage_rows AS u WHERE u.hold_id = h.id)"
                " ORDER BY h.reserved_at DESC, h.id DESC LIMIT ?",
                (model, len(reqids)),
            )
        ]
        for reqid, hold_id in zip(reqids, holds, strict=False):
            conn.execute(
                "UPDATE usage_rows SET hold_id = ?, matched_by = 'order' WHERE reqid = ?",
                (hold_id, reqid),
            )
            paired += 1
    return paired


def unmatched_usage(ledger: Ledger, limit: int = 50) -> tuple[str, ...]:
    """The first ``limit`` request ids (by id) of usage rows matched to no hold."""
    with ledger.reading():
        rows = ledger.execute(
            f"SELECT reqid FROM usage_rows WHERE hold_id IS NULL ORDER BY reqid LIMIT {int(limit)}"
        )
        return tuple(reqid for (reqid,) in rows)


__all__ = [
    "TASK_COLUMNS",
    "BudgetNode",
    "Charge",
    "ClassSums",
    "CreditRow",
    "GroupSums",
    "JobClass",
    "SettledTask",
    "StoredUsage",
    "TaskRow",
    "TaskSnapshot",
    "UsageRecord",
    "budget_parents",
    "class_sums",
    "credit_rows",
    "disagreeing_tasks",
    "grouped_sums",
    "latest_tasks",
    "observed_charges",
    "sql_decimal",
    "store_usage",
    "task_cells",
    "task_rows",
    "unmatched_usage",
]
