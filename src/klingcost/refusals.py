"""Refused submissions, recorded: what every guard (``GuardedClient``, ``AsyncGuardedClient``,
``klingcost submit``, ``klingcost proxy``) calls after a refusal.

The refused reserve wrote nothing (its transaction rolled back); the refusal is then recorded in
a short transaction of its own, as an event of kind ``refused`` (:meth:`Ledger.record_refusal`),
which ``klingcost holds --refused`` and ``klingcost report`` show and alerts can follow.
Recording never changes the answer: if it fails, that is logged and the caller raises the
refusal it had.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from klingcost import errors
from klingcost.ledger.schema import CLASS_COLUMNS

if TYPE_CHECKING:
    from klingcost.ledger import Ledger, MetaValue

logger = logging.getLogger("klingcost.refusals")

#: The refusals recorded, by reason.
REASONS: Final = ("budget", "cannot_count", "concurrency", "unpriced")


def reason_for(refused: BaseException) -> str | None:
    """The recorded reason of a refusal, or None for an error that is not one."""
    if isinstance(refused, errors.BudgetExceeded):
        return "budget"
    if isinstance(refused, errors.BudgetCannotCount):
        return "cannot_count"
    if isinstance(refused, errors.ConcurrencyExceeded):
        return "concurrency"
    if isinstance(refused, errors.UnpricedRequestError):
        return "unpriced"
    return None


def record_refusal(
    ledger: Ledger,
    refused: BaseException,
    *,
    team: str,
    job_class: Mapping[str, MetaValue] | None = None,
    key_id: str | None = None,
    source: str = "guard",
) -> bool:
    """Record ``refused`` (a BudgetExceeded, BudgetCannotCount, ConcurrencyExceeded or
    UnpricedRequestError) for ``team``; True when it was recorded. Never raises: a failure
    to record is logged, and the caller goes on to raise ``refused`` as it is."""
    reason = reason_for(refused)
    if reason is None:
        return False
    needed = left = None
    unit = period = budget = None
    if isinstance(refused, errors.BudgetExceeded):
        needed, left = refused.needed, refused.available
        unit, period, budget = refused.unit, refused.period, refused.team
    elif isinstance(refused, errors.BudgetCannotCount):
        budget = refused.budget
    elif isinstance(refused, errors.ConcurrencyExceeded):
        needed, left = 1, max(0, refused.limit - refused.open_holds)
        unit = "jobs"
    kept = {name: job_class[name] for name in CLASS_COLUMNS if job_class and name in job_class}
    try:
        ledger.record_refusal(
            team,
            reason=reason,
            needed=needed,
            left=left,
            period=period,
            job_class=kept,
            key_id=key_id,
            source=source,
            unit=unit,
            budget=budget,
        )
    except Exception as exc:  # the refusal stands whatever happens here
        logger.warning(
            "refusal of team %r (%s) not recorded: %s: %s", team, reason, type(exc).__name__, exc
        )
        return False
    return True


__all__ = ["REASONS", "reason_for", "record_refusal"]
