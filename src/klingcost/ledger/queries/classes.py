"""Job classes: reconcile's sums per class (``rollup_class``) and the settled tasks that
disagree with their estimate, and the trusted charges calibration fits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from klingcost.jobclass import COLUMNS, JobClass
from klingcost.ledger.queries._window import window

if TYPE_CHECKING:
    from klingcost.ledger import Ledger


@dataclass(frozen=True, slots=True)
class Unclassified:
    """What stands for the job class of holds reserved without one (a library caller gave
    ``reserve`` no class in ``meta``): they are listed as ``? ?`` with their pack, and no sheet
    prices them. It reads like a :class:`~klingcost.jobclass.JobClass` with nothing set."""

    pack: str
    endpoint: ClassVar[str] = ""
    model: ClassVar[str] = ""
    mode: ClassVar[None] = None
    duration: ClassVar[None] = None
    sound: ClassVar[bool] = False
    video_reference: ClassVar[bool] = False
    reference_image: ClassVar[bool] = False
    n: ClassVar[int] = 0

    @property
    def label(self) -> str:
        return "? ? n=0" if self.pack == "image" else "? ?"

    def to_dict(self) -> dict[str, Any]:
        return {
            **dict.fromkeys(("endpoint", "model"), ""),
            **dict.fromkeys(("mode", "duration")),
            **dict.fromkeys(("sound", "video_reference", "reference_image"), False),
            "n": 0,
            "pack": self.pack,
        }

    def sort_key(self) -> tuple[str, str, str, str, bool, bool, bool, int, str, bool, str, bool]:
        return ("", "", "", "", False, False, False, 0, self.pack, False, "", False)


#: The job class of a stored hold, or what stands for it when it was reserved without one.
StoredClass = JobClass | Unclassified


def stored_class(values: Sequence[Any], pack: str) -> StoredClass:
    """The class of the eight stored columns (:data:`klingcost.jobclass.COLUMNS`, in order)."""
    job = JobClass.from_row(dict(zip(COLUMNS, values, strict=True)))
    return job if job is not None else Unclassified(str(pack))


@dataclass(frozen=True, slots=True)
class ClassSums:
    """One job class's sums from ``rollup_class``: counts, units (milli) and flags."""

    job: StoredClass
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
    clauses, params = window("day", since, until)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with ledger.reading():
        rows = ledger.execute(_CLASS_SQL.format(where=where), params).fetchall()
    return [ClassSums(stored_class(row[:8], row[8]), *(int(v) for v in row[9:21])) for row in rows]


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
    job: StoredClass


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
    clauses, params = window("reserved_at", since, until, inclusive_day=False)
    sql = _TASKS_SQL.format(where="".join(f" AND {c}" for c in clauses))
    with ledger.reading():
        cursor = ledger.execute(sql, params)
        while batch := cursor.fetchmany(2000):
            for row in batch:
                hold_id, task_id, team, at, estimated, charged, raw, flag, status = row[:9]
                job = stored_class(row[9:17], row[17])
                yield SettledTask(
                    hold_id, task_id, team, at, estimated, charged, raw, flag, status, job
                )


class Charge(NamedTuple):
    """How many trusted tasks of one job class were charged ``units_milli``."""

    job: StoredClass
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
    return [Charge(stored_class(row[:8], row[8]), int(row[9]), int(row[10])) for row in rows]
