"""Settlement: apply the deduction verdict to a hold.

One shell around one rule book, used by the guard's ``wait``, by ``klingcost sync`` and by the
callback server, so a task settles the same way whichever of them sees it first (and only
once: the ledger's settle and void are idempotent). The rule book itself is
:func:`klingcost.deduction.decide` (pure); this module gathers what it needs (the hold's
estimate, its shape, what Kling lists for that shape) and posts the decision:

* a task that **succeeded** is settled at ``final_unit_deduction`` whenever the figure is
  plausible, i.e. within what the bundled sheet (Kling's list) and the ledger's published
  sheet list for the hold's shape; far from the estimate it is flagged ``drift`` and the
  hold's budgets are alerted. Absent, zero, malformed or implausible: settled at the estimate
  (brought into the listed range), the raw text kept for ``klingcost reconcile``;
* a task that **failed** is voided, unless the API reports a plausible positive deduction
  for it: then it was charged, and is settled at that charge;
* a task still ``submitted`` or ``processing`` is left open.

The charge in the provider's currency is the charged units at the rate the hold was priced
with: ``cost = estimate.cost x charged units / estimated units``, rounded up. This keeps a
settlement independent of later edits to the price sheet.

Pure core, thin shell: :func:`decide` (the verdict for a hold, given the task and the sheets)
and :func:`posting` (the amounts a settle books) are pure; :func:`resolve` gathers the sheets,
asks :func:`decide`, and posts the decision through the ledger it is handed. The module imports
no I/O (the ledger is a parameter, its type only checked), so a settlement can be read, and
tested, without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final, Literal

from klingcost import deduction
from klingcost.deduction import Decision, Listed, Shape, listed_range
from klingcost.money import UNIT_EXPONENT, to_minor

if TYPE_CHECKING:  # types only: settling imports neither the ledger's I/O nor the client's
    from klingcost.api.envelope import Task
    from klingcost.ledger import Hold, Ledger
    from klingcost.sheet import PriceSheet

Action = Literal["settled", "voided", "pending", "unchanged"]

#: Parsed published sheets by sha256: a ledger's sheet changes rarely, and parsing it is
#: milliseconds, so it is parsed once per version per process.
_PUBLISHED: Final[dict[str, PriceSheet]] = {}


@dataclass(frozen=True, slots=True)
class Resolution:
    """What happened to a hold: the hold after it, the action, and why."""

    hold: Hold
    action: Action
    note: str = ""
    #: The verdict (``ok``, ``drift``, ``implausible``, ``estimate``, ``void``, ``pending``),
    #: empty when nothing was decided (the hold had already ended).
    verdict: str = ""


def charge_for(hold: Hold, units: Fraction) -> tuple[int, int]:
    """``(units_milli, cost_minor)`` for ``units`` charged against ``hold``, rounded up."""
    units_milli = to_minor(units, UNIT_EXPONENT)
    estimate = hold.estimate
    if estimate.units_milli == 0:
        return units_milli, 0
    cost = Fraction(estimate.cost_minor * units_milli, estimate.units_milli)
    return units_milli, to_minor(cost, 0)


def kling_list(ledger: Ledger) -> list[PriceSheet]:
    """The sheets a deduction is judged against: the bundled one (Kling's own price list) and
    the ledger's published one, if any. Never a submitter's local overlay: that is the figure
    under test, not the reference."""
    from klingcost.sheet import bundled_sheet, sheet_from_canonical

    sheets = [bundled_sheet()]
    published = ledger.published_sheet()
    if published is not None:
        sheet = _PUBLISHED.get(published.sha256)
        if sheet is None:
            origin = f"the ledger's published sheet v{published.version}"
            sheet = _PUBLISHED[published.sha256] = sheet_from_canonical(
                published.canonical, origin=origin
            )
        sheets.append(sheet)
    return sheets


def listed_for(hold: Hold, sheets: list[PriceSheet]) -> Listed | None:
    """What the sheets list for the hold's shape (its endpoint, duration and n)."""
    return listed_range(Shape.from_meta(hold.meta, pack=hold.estimate.pack), sheets)


def decide(hold: Hold, task: Task, sheets: list[PriceSheet]) -> Decision:
    """The verdict on ``task``'s report for ``hold``, judged against ``sheets`` (pure).

    ``sheets`` are what the deduction is checked against (:func:`kling_list`: the bundled
    sheet and the ledger's published one). The rule book is :func:`klingcost.deduction.decide`.
    """
    return deduction.decide(
        task.status,
        task.deduction,
        estimate=Fraction(hold.estimate.units_milli, 10**UNIT_EXPONENT),
        listed=listed_for(hold, sheets),
        status_msg=task.status_msg,
    )


def posting(hold: Hold, decision: Decision) -> tuple[int, int]:
    """``(units_milli, cost_minor)`` that a settle ``decision`` books on ``hold`` (pure).

    Settled at the estimate itself: the hold's own amounts, to the minor unit. Otherwise the
    decided units, charged at the rate the hold was priced with (:func:`charge_for`).
    """
    assert decision.units is not None, "only a settle decision books amounts"
    estimate = hold.estimate
    if decision.basis == "estimate" and decision.units == Fraction(estimate.units_milli, 1000):
        return estimate.units_milli, estimate.cost_minor
    return charge_for(hold, decision.units)


def resolve(ledger: Ledger, hold: Hold, task: Task) -> Resolution:
    """Apply ``task``'s reported state to ``hold``; safe to call any number of times.

    The shell around :func:`decide`: it reads the sheets, attaches a task found by its
    external id, and posts the decision (settle or void) to ``ledger``.
    """
    if not hold.is_open:
        return Resolution(hold, "unchanged", f"hold already {hold.state}")
    if hold.task_id is None:
        hold = ledger.attach(hold.id, task.task_id)
    decision = decide(hold, task, kling_list(ledger))
    if decision.action == "pending":
        return Resolution(hold, "pending", decision.note, decision.verdict)
    if decision.action == "void":
        voided = ledger.void(hold.id, reason=decision.note)
        return Resolution(voided, "voided", decision.note, decision.verdict)
    units_milli, cost_minor = posting(hold, decision)
    settled = ledger.settle(
        hold.id,
        units_milli=units_milli,
        cost_minor=cost_minor,
        raw_deduction=task.deduction.raw,
        task_status=task.status,
        deduction_flag=decision.flag,
        verdict=decision.verdict,
    )
    return Resolution(settled, "settled", decision.note, decision.verdict)
