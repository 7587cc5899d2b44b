"""Settlement: turn what the API reports about a task into a ledger posting.

One rule book, used by the guard's ``wait``, by ``klingcost sync`` and by the callback server,
so a task settles the same way whichever of them sees it first (and only once: the ledger's
settle and void are idempotent).

* A task that **succeeded** is settled at ``final_unit_deduction`` when the value is trusted
  (a positive number below the cap, and at most :data:`OUTLIER_FACTOR` times the estimate).
  When it is absent or zero (Kling then bills the cash balance, ``final_balance_deduction``)
  or looks wrong (malformed, negative, absurd), the task is settled at its **estimate**, never
  at the suspicious figure, and the raw text is kept for ``klingcost reconcile`` to flag.
* A task that **failed** is voided, unless the API reports a positive deduction for it: then it
  was charged, and is settled at that charge so that the budget tells the truth (reconcile flags
  it as a charged failure). A failed task's untrusted figure (an absurd one too) is not a
  charge: the hold is voided.
* A task still ``submitted`` or ``processing`` is left open.

The charge in the provider's currency is the charged units at the rate the hold was priced
with: ``cost = estimate.cost x charged units / estimated units``, rounded up. This keeps a
settlement independent of later edits to the price sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from klingcost._protocol import Deduction, Task
from klingcost.ledger import Hold, Ledger
from klingcost.money import UNIT_EXPONENT, to_minor

Action = Literal["settled", "voided", "pending", "unchanged"]

#: A deduction more than this many times the hold's estimate is flagged ``absurd``: no price
#: sheet is that wrong (a wrong tier, mode, duration or sound factor is 2-5x), so the figure
#: is a fault of the report, and booking it would wreck a budget over one bad number. A person
#: sees it in ``klingcost reconcile`` and can settle it by hand if it was real.
OUTLIER_FACTOR: Final = 10


@dataclass(frozen=True, slots=True)
class Resolution:
    """What happened to a hold: the hold after it, the action, and why."""

    hold: Hold
    action: Action
    note: str = ""


def charge_for(hold: Hold, units: Fraction) -> tuple[int, int]:
    """``(units_milli, cost_minor)`` for ``units`` charged against ``hold``, rounded up."""
    units_milli = to_minor(units, UNIT_EXPONENT)
    estimate = hold.estimate
    if estimate.units_milli == 0:
        return units_milli, 0
    cost = Fraction(estimate.cost_minor * units_milli, estimate.units_milli)
    return units_milli, to_minor(cost, 0)


def judged(deduction: Deduction, hold: Hold) -> Deduction:
    """``deduction`` flagged ``absurd`` when it is over :data:`OUTLIER_FACTOR` x the estimate."""
    estimated = hold.estimate.units_milli
    if deduction.flag != "ok" or deduction.units is None or estimated == 0:
        return deduction
    if deduction.units * 1000 > OUTLIER_FACTOR * estimated:
        return Deduction(deduction.raw, deduction.units, "absurd")
    return deduction


def resolve(ledger: Ledger, hold: Hold, task: Task) -> Resolution:
    """Apply ``task``'s reported state to ``hold``; safe to call any number of times."""
    if not hold.is_open:
        return Resolution(hold, "unchanged", f"hold already {hold.state}")
    if hold.task_id is None:
        hold = ledger.attach(hold.id, task.task_id)
    deduction = judged(task.deduction, hold)
    if task.status == "succeed":
        if deduction.flag == "ok" and deduction.units is not None:
            units_milli, cost_minor = charge_for(hold, deduction.units)
            note = f"settled at final_unit_deduction {deduction.raw}"
        else:
            units_milli, cost_minor = hold.estimate.units_milli, hold.estimate.cost_minor
            note = (
                f"final_unit_deduction {deduction.flag} ({deduction.raw!r}): "
                "settled at the estimate"
            )
        settled = ledger.settle(
            hold.id,
            units_milli=units_milli,
            cost_minor=cost_minor,
            raw_deduction=deduction.raw,
            task_status=task.status,
            deduction_flag=deduction.flag,
        )
        return Resolution(settled, "settled", note)
    if task.status == "failed":
        if deduction.flag == "ok" and deduction.units is not None:
            units_milli, cost_minor = charge_for(hold, deduction.units)
            settled = ledger.settle(
                hold.id,
                units_milli=units_milli,
                cost_minor=cost_minor,
                raw_deduction=deduction.raw,
                task_status=task.status,
                deduction_flag=deduction.flag,
            )
            return Resolution(settled, "settled", f"failed task charged {deduction.raw} units")
        reason = f"task failed: {task.status_msg}" if task.status_msg else "task failed"
        return Resolution(ledger.void(hold.id, reason=reason), "voided", reason)
    return Resolution(hold, "pending", f"task {task.status}")
