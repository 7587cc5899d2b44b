"""Reconciliation: what each job class was estimated at, against what Kling charged.

    result = reconcile(ledger, since=date(2026, 11, 1), tolerance=Fraction(1, 20))
    for c in result.classes:
        print(c.job.label, c.agreement_rate, c.drift, c.largest_variance)
    result.drifting          # the classes whose drift is beyond the tolerance

A **job class** is what fixes a price: endpoint, model, mode, duration, sound, video reference,
reference image, ``n`` (and the pack it draws on). For each class, over the settled tasks:

* ``compared``: tasks whose ``final_unit_deduction`` was trusted (a positive number below the
  cap) and that did not fail: real observations of the price;
* ``agreeing``: compared tasks charged exactly their estimate; ``agreement_rate`` = agreeing /
  compared;
* ``drift`` = (charged - estimated) / estimated over the compared tasks, signed: ``6/5`` means
  Kling charged 20% more than the sheet says. A class *drifts beyond the tolerance* when
  ``|drift| > tolerance`` (``--tolerance 0.05`` or ``5%``; the default 0 allows none);
* ``largest_variance``: the largest ``|charged - estimated|`` of one task, in units.

The properties are exact Fractions. :meth:`Reconciliation.to_dict` (``reconcile --json``) gives
the ratios (``agreement_rate``, ``drift``, ``ratio``, ``tolerance``) as decimal strings with
exactly 4 places, rounded half to even (``2/3`` is ``"0.6667"``, as a report's
``budget_share``), and ``mean_abs_variance_units`` rounded half to even to the milli-unit, as
units are kept; ``klingcost reconcile`` prints the same ratios as percentages with 2 places.

Charges that look wrong are flagged per task and counted per class:

* ``missing``: settled with no ``final_unit_deduction`` (settled at the estimate);
* ``zero``: the API said ``"0"`` (Kling billed the cash balance, or forgot);
* ``absurd``: unparsable, negative, over the cap, or outside what Kling lists for the task's
  shape (:mod:`klingcost.deduction`): not booked, the task settled at its estimate;
* ``failed_charged``: the task failed, yet a deduction was reported and booked. This needs the
  settler to pass ``task_status`` to :meth:`Ledger.settle`.

Everything but the list of tasks comes from the ``rollup_class`` table; the tasks that disagree
or are flagged come from a partial index that holds only them, so reconcile stays fast however
many tasks agree.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any, Final

from klingcost.display import share_text
from klingcost.errors import ReportError
from klingcost.ledger import Ledger, queries
from klingcost.ledger.queries import StoredClass
from klingcost.money import UNIT_EXPONENT, exact, format_minor

FLAGS: Final[tuple[str, ...]] = ("missing", "zero", "absurd", "failed_charged")


@dataclass(frozen=True, slots=True)
class TaskCheck:
    """One settled task that disagrees with its estimate or is flagged."""

    hold_id: int
    task_id: str | None
    team: str
    reserved_at: str
    estimated_units_milli: int
    charged_units_milli: int
    raw_deduction: str | None
    flags: tuple[str, ...]

    @property
    def variance_units_milli(self) -> int:
        return self.charged_units_milli - self.estimated_units_milli

    def to_dict(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "task_id": self.task_id,
            "team": self.team,
            "reserved_at": self.reserved_at,
            "estimated_units": format_minor(self.estimated_units_milli, UNIT_EXPONENT),
            "charged_units": format_minor(self.charged_units_milli, UNIT_EXPONENT),
            "variance_units": format_minor(self.variance_units_milli, UNIT_EXPONENT),
            "raw_deduction": self.raw_deduction,
            "flags": list(self.flags),
        }


@dataclass(frozen=True, slots=True)
class ClassReconciliation:
    """One job class: counts, units compared, drift, flags, and its worst tasks."""

    job: StoredClass
    settled: int
    voided: int
    compared: int
    agreeing: int
    estimated_units_milli: int
    charged_units_milli: int
    abs_variance_units_milli: int
    largest_variance_units_milli: int
    flags: dict[str, int]
    tasks: tuple[TaskCheck, ...] = ()
    disagreeing: int = 0

    @property
    def agreement_rate(self) -> Fraction | None:
        return Fraction(self.agreeing, self.compared) if self.compared else None

    @property
    def drift(self) -> Fraction | None:
        """(charged - estimated) / estimated over the compared tasks; None without any."""
        if not self.compared or not self.estimated_units_milli:
            return None
        variance = self.charged_units_milli - self.estimated_units_milli
        return Fraction(variance, self.estimated_units_milli)

    @property
    def ratio(self) -> Fraction | None:
        """charged / estimated over the compared tasks (``6/5``: 20% over the sheet)."""
        drift = self.drift
        return None if drift is None else 1 + drift

    @property
    def flagged(self) -> int:
        return sum(self.flags.values())

    def beyond(self, tolerance: Fraction) -> bool:
        drift = self.drift
        return drift is not None and abs(drift) > tolerance

    def to_dict(self, tolerance: Fraction) -> dict[str, Any]:
        def units(milli: int) -> str:
            return format_minor(milli, UNIT_EXPONENT)

        def frac(value: Fraction | None) -> str | None:
            return None if value is None else share_text(value)

        return {
            "class": self.job.to_dict(),
            "label": self.job.label,
            "settled": self.settled,
            "voided": self.voided,
            "compared": self.compared,
            "agreeing": self.agreeing,
            "agreement_rate": frac(self.agreement_rate),
            "estimated_units": units(self.estimated_units_milli),
            "charged_units": units(self.charged_units_milli),
            "drift": frac(self.drift),
            "ratio": frac(self.ratio),
            "beyond_tolerance": self.beyond(tolerance),
            "largest_variance_units": units(self.largest_variance_units_milli),
            "mean_abs_variance_units": (
                units(round(Fraction(self.abs_variance_units_milli, self.compared)))
                if self.compared
                else None
            ),
            "flags": dict(self.flags),
            "disagreeing": self.disagreeing,
            "tasks": [t.to_dict() for t in self.tasks],
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Every job class seen in the window, worst first; and the tolerance used."""

    classes: tuple[ClassReconciliation, ...]
    tolerance: Fraction
    since: date | None = None
    until: date | None = None
    flag_totals: dict[str, int] = field(default_factory=dict)
    #: Budgets charged past their limit in their current period (true charges did it: holds
    #: never go past a limit). Each refuses every hold until it is back under.
    over_limit: tuple[str, ...] = ()

    @property
    def drifting(self) -> tuple[ClassReconciliation, ...]:
        return tuple(c for c in self.classes if c.beyond(self.tolerance))

    @property
    def ok(self) -> bool:
        """No class drifts beyond the tolerance (flags alone do not make it fail)."""
        return not self.drifting

    @property
    def implausible(self) -> int:
        """Settled tasks whose deduction was not booked: outside what Kling lists for their
        shape, over the cap, unparsable or negative (the ``absurd`` flag)."""
        return self.flag_totals.get("absurd", 0)

    def strict_problems(self) -> list[str]:
        """Why ``reconcile --strict`` fails: drift beyond the tolerance, a budget over its
        limit, or a deduction that was not booked. Empty when it passes."""
        problems = []
        if self.drifting:
            labels = ", ".join(c.job.label for c in self.drifting)
            problems.append(
                f"{len(self.drifting)} job class(es) drift beyond the tolerance: {labels}"
            )
        if self.over_limit:
            problems.append(
                f"{len(self.over_limit)} budget(s) charged past their limit, refusing every hold "
                f"until back under: {', '.join(self.over_limit)}"
            )
        if self.implausible:
            problems.append(
                f"{self.implausible} deduction(s) not booked as implausible (absurd), settled "
                "at the estimate: check them against the provider's usage log"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "tolerance": share_text(self.tolerance),
            "ok": self.ok,
            "strict_ok": not self.strict_problems(),
            "over_limit": list(self.over_limit),
            "drifting": [c.job.label for c in self.drifting],
            "flags": dict(self.flag_totals),
            "classes": [c.to_dict(self.tolerance) for c in self.classes],
        }


def parse_tolerance(text: str | Fraction | int) -> Fraction:
    """``"0.05"``, ``"5%"`` or ``"1/20"`` as an exact share (never a float); ReportError."""
    try:
        if isinstance(text, str) and text.strip().endswith("%"):
            value = exact(text.strip()[:-1]) / 100
        else:
            value = exact(text)
    except ValueError as exc:  # a float stays a TypeError: a programming error, not input
        raise ReportError(
            f"tolerance {text!r} is not a share: give 0.05, 5% or 1/20 ({exc})"
        ) from exc
    if value < 0:
        raise ReportError(
            f"tolerance {text!r} is negative: give a share of 0 or more (0.05, 5% or 1/20)"
        )
    return value


def task_flags(deduction_flag: str | None, task_status: str | None) -> tuple[str, ...]:
    """The flags of one settled task (see the module docstring)."""
    flags = []
    if deduction_flag in (None, "absent"):
        flags.append("missing")
    elif deduction_flag == "zero":
        flags.append("zero")
    elif deduction_flag in ("absurd", "malformed", "negative"):
        flags.append("absurd")
    if task_status == "failed":
        flags.append("failed_charged")
    return tuple(flags)


def _disagreeing(
    ledger: Ledger, since: date | None, until: date | None, limit: int
) -> tuple[dict[StoredClass, list[tuple[int, int, TaskCheck]]], dict[StoredClass, int]]:
    worst: dict[StoredClass, list[tuple[int, int, TaskCheck]]] = {}
    counts: dict[StoredClass, int] = {}
    for task in queries.disagreeing_tasks(ledger, since=since, until=until):
        job = task.job
        counts[job] = counts.get(job, 0) + 1
        if limit <= 0:
            continue
        flags = task_flags(task.deduction_flag, task.task_status)
        charged = (
            task.charged_units_milli
            if task.charged_units_milli is not None
            else task.estimated_units_milli
        )
        check = TaskCheck(
            task.hold_id,
            task.task_id,
            task.team,
            task.reserved_at,
            task.estimated_units_milli,
            charged,
            task.raw_deduction,
            flags,
        )
        # Keep the ``limit`` worst: flagged first, then the largest variance.
        rank = (len(flags), abs(check.variance_units_milli))
        heap = worst.setdefault(job, [])
        item = (rank[0] * 10**15 + rank[1], -task.hold_id, check)
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return worst, counts


def reconcile(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    tolerance: Fraction | str | int = 0,
    limit: int = 10,
) -> Reconciliation:
    """Reconcile every job class with tasks settled or voided in the window (UTC days,
    inclusive). ``limit`` caps the tasks listed per class (flagged first, then the largest
    variance)."""
    tol = parse_tolerance(tolerance) if not isinstance(tolerance, Fraction) else tolerance
    sums = queries.class_sums(ledger, since=since, until=until)
    worst, counts = _disagreeing(ledger, since, until, limit)
    classes = []
    totals = dict.fromkeys(FLAGS, 0)
    for row in sums:
        job = row.job
        flags = dict(
            zip(FLAGS, (row.missing, row.zero, row.absurd, row.failed_charged), strict=True)
        )
        for name, value in flags.items():
            totals[name] += value
        tasks = tuple(t for *_, t in sorted(worst.get(job, []), reverse=True))
        classes.append(
            ClassReconciliation(
                job=job,
                settled=row.settled,
                voided=row.voided,
                compared=row.compared,
                agreeing=row.agreeing,
                estimated_units_milli=row.estimated_units_milli,
                charged_units_milli=row.charged_units_milli,
                abs_variance_units_milli=row.abs_variance_units_milli,
                largest_variance_units_milli=row.largest_variance_units_milli,
                flags=flags,
                tasks=tasks,
                disagreeing=counts.get(job, 0),
            )
        )
    classes.sort(
        key=lambda c: (not c.beyond(tol), -c.flagged, -abs(c.drift or 0), c.job.sort_key())
    )
    over = tuple(status.team for status in ledger.budgets() if status.used > status.limit)
    return Reconciliation(tuple(classes), tol, since, until, totals, over)


__all__ = [
    "FLAGS",
    "ClassReconciliation",
    "Reconciliation",
    "TaskCheck",
    "parse_tolerance",
    "reconcile",
    "task_flags",
]
