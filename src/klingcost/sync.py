"""``klingcost sync``: settle every open hold from what the API reports.

For each open hold (one team's or all), with a bounded number of queries in flight:

* a hold with a task id: query the task; settle, void or leave it (see :mod:`settlement`);
* a hold without a task id (its submission crashed or timed out) that was sent with an
  ``external_task_id``: query by that id; a task found is attached and settled, and an answer
  that no such task exists (code 1203, HTTP 404) voids the hold, since nothing was created;
* a hold without either stays counted: only a person can tell (``klingcost holds void``);
* a hold whose task the API says does not exist stays counted too, listed as unresolved.

A hold still ``held`` (reserved, no answer recorded yet) may belong to a submission that is in
flight right now: "no such task" voids it only once it is older than :data:`IN_FLIGHT_GRACE`;
an ``unknown`` hold (the guard saw its submission fail) is voided at once.

Each hold is resolved in its own ledger transaction, so an interrupted sync loses nothing and a
rerun picks up where it stopped. Queries run concurrently; ledger writes run in worker threads
(one at a time: the ledger serialises them), so the event loop never waits on the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from anyio import to_thread

from klingcost import errors
from klingcost.client import AsyncKlingClient
from klingcost.ledger import Hold, Ledger
from klingcost.settlement import Resolution, resolve

#: The API's code for "resource or model not found": a task id that does not exist.
NOT_FOUND_CODES = frozenset({1203})
#: How long a ``held`` hold without a task may still be a submission in flight.
IN_FLIGHT_GRACE = timedelta(minutes=15)


@dataclass
class SyncReport:
    """What one pass did: counts per outcome, and the holds that are still open and why."""

    settled: int = 0
    voided: int = 0
    pending: int = 0
    unresolved: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    passes: int = 1
    #: ``sync --wait`` gave up with tasks still running.
    timed_out: bool = False

    @property
    def examined(self) -> int:
        return self.settled + self.voided + self.pending + len(self.unresolved) + len(self.errors)

    def then(self, later: SyncReport) -> SyncReport:
        """This pass followed by ``later``: what both settled and voided, and where the holds
        still open stand after ``later`` (each hold is counted once, where it ended)."""
        return SyncReport(
            settled=self.settled + later.settled,
            voided=self.voided + later.voided,
            pending=later.pending,
            unresolved=later.unresolved,
            errors=later.errors,
            passes=self.passes + later.passes,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined,
            "settled": self.settled,
            "voided": self.voided,
            "pending": self.pending,
            "unresolved": [{"hold": h, "reason": r} for h, r in self.unresolved],
            "errors": [{"hold": h, "error": e} for h, e in self.errors],
            "passes": self.passes,
            "timed_out": self.timed_out,
        }


Progress = Callable[[int], None]


async def sync_holds(
    ledger: Ledger,
    client: AsyncKlingClient,
    *,
    team: str | None = None,
    concurrency: int = 16,
    progress: Progress | None = None,
) -> SyncReport:
    """One pass over the open holds; see the module's docstring."""
    report = SyncReport()
    holds = list(ledger.holds(state="open", team=team))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(hold: Hold) -> None:
        async with gate:
            try:
                outcome = await _resolve_one(ledger, client, hold)
            except (errors.KlingcostError, ValueError) as exc:  # ValueError: an unusable id
                report.errors.append((hold.id, f"{type(exc).__name__}: {exc}"))
                outcome = None
        if isinstance(outcome, Resolution):
            if outcome.action == "settled":
                report.settled += 1
            elif outcome.action == "voided":
                report.voided += 1
            elif outcome.action == "pending":
                report.pending += 1
        elif outcome is not None:
            report.unresolved.append((hold.id, outcome))
        if progress is not None:
            progress(1)

    await asyncio.gather(*(one(hold) for hold in holds))
    return report


async def _resolve_one(ledger: Ledger, client: AsyncKlingClient, hold: Hold) -> Resolution | str:
    endpoint = hold.meta.get("endpoint")
    if not isinstance(endpoint, str):
        return "no endpoint recorded on the hold"
    if hold.task_id is not None:
        try:
            task = await client.get_task(endpoint, hold.task_id)
        except errors.InvalidRequestError as exc:
            if not _not_found(exc):
                raise
            # Not an error of this run: it would fail every rerun alike. A person decides.
            return (
                f"the API has no task {hold.task_id!r} ({type(exc).__name__}: {exc}); if "
                f"nothing was charged: klingcost holds void {hold.id} --reason '...'"
            )
        return await to_thread.run_sync(resolve, ledger, hold, task)
    external = hold.meta.get("external_task_id")
    if not isinstance(external, str) or not external:
        return f"{hold.state} with no task id and no external_task_id: resolve it by hand"
    try:
        task = await client.get_task(endpoint, external)
    except errors.InvalidRequestError as exc:
        if _not_found(exc):
            age = ledger.clock.now() - hold.reserved_at
            if hold.state == "held" and age < IN_FLIGHT_GRACE:
                return f"held, and no task {external!r} yet: its submission may be in flight"
            reason = f"no task {external!r} exists: the submission never created one"
            # unless_task: the guard may have attached a task since this hold was read.
            voided = await to_thread.run_sync(
                lambda: ledger.void(hold.id, reason=reason, unless_task=True)
            )
            return Resolution(voided, "voided", reason)
        raise
    return await to_thread.run_sync(resolve, ledger, hold, task)


def _not_found(exc: errors.InvalidRequestError) -> bool:
    return exc.code in NOT_FOUND_CODES or exc.status == 404
