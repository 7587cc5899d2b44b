"""``klingcost sync``: settle every open hold from what the API reports.

For each open hold (one team's or all), with a bounded number of queries in flight:

* a hold with a task id: query the task; settle, void or leave it (see :mod:`settlement`);
* a hold without a task id (its submission crashed or timed out) that was sent with an
  ``external_task_id``: query by that id; a task found is attached and settled. An answer that
  no such task exists (Kling's code 1203) is recorded on the hold (a ``not_found`` event), and
  the hold is voided only on evidence that lasts: at least :data:`NOT_FOUND_ANSWERS` such
  answers, the first and the last at least :data:`NOT_FOUND_WINDOW` apart, longer than the
  API takes to index a new task. Until then it stays counted and is listed as awaiting
  evidence. A 404 without Kling's code (an HTML error page, a proxy's own answer) or an answer
  that cannot be read is no evidence at all;
* a hold without either stays counted: only a person can tell (``klingcost holds void``);
* a hold whose task the API says does not exist stays counted too, listed as unresolved;
* an answer about another task than the one asked about is ignored and reported as an error.

A hold still ``held`` (reserved, no answer recorded yet) may belong to a submission that is in
flight right now: "no such task" is not even recorded for it until it is older than
:data:`IN_FLIGHT_GRACE`. If a hold is voided and its submission's acceptance arrives after all,
attaching the task restores the hold (the API's acceptance wins).

First of all, sync replays the accepted-tasks journal (:mod:`klingcost.journal`): task ids the
API accepted that the guard could not record in the ledger are attached to their holds.

Each hold is resolved in its own ledger transaction, so an interrupted sync loses nothing and a
rerun picks up where it stopped. Queries run concurrently (an anyio task group); ledger writes
run in worker threads (one at a time: the ledger serialises them), so the event loop never
waits on the ledger.

:func:`settle_until_done` is ``klingcost sync --wait``: passes repeated under the poll policy
of :mod:`klingcost.polling` until no task is running or the deadline comes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
from anyio import to_thread

from klingcost import errors, journal
from klingcost.api.client import AsyncKlingClient
from klingcost.ledger import Hold, Ledger
from klingcost.polling import PollPolicy
from klingcost.settlement import Resolution, resolve

#: The API's code for "resource or model not found": a task id that does not exist.
NOT_FOUND_CODES = frozenset({1203})
#: How long a ``held`` hold without a task may still be a submission in flight.
IN_FLIGHT_GRACE = timedelta(minutes=15)
#: A hold whose answer was lost is voided after this many "no such task" answers...
NOT_FOUND_ANSWERS = 3
#: ... the first and the last at least this far apart. The API can take a while to index a new
#: task (a query right after a create may say "not found"); an hour is far beyond that.
NOT_FOUND_WINDOW = timedelta(hours=1)


@dataclass
class SyncReport:
    """What one pass did: counts per outcome, and the holds that are still open and why."""

    settled: int = 0
    voided: int = 0
    pending: int = 0
    unresolved: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: Holds whose answer was lost and that the API says it has no task for, not yet long or
    #: often enough to void them: they stay counted.
    awaiting: list[tuple[int, str]] = field(default_factory=list)
    #: Task ids attached from the accepted-tasks journal.
    replayed: int = 0
    passes: int = 1
    #: ``sync --wait`` gave up with tasks still running.
    timed_out: bool = False

    @property
    def examined(self) -> int:
        return (
            self.settled
            + self.voided
            + self.pending
            + len(self.unresolved)
            + len(self.errors)
            + len(self.awaiting)
        )

    def then(self, later: SyncReport) -> SyncReport:
        """This pass followed by ``later``: what both settled and voided, and where the holds
        still open stand after ``later`` (each hold is counted once, where it ended)."""
        return SyncReport(
            settled=self.settled + later.settled,
            voided=self.voided + later.voided,
            pending=later.pending,
            unresolved=later.unresolved,
            errors=later.errors,
            awaiting=later.awaiting,
            replayed=self.replayed + later.replayed,
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
            "awaiting_evidence": [{"hold": h, "reason": r} for h, r in self.awaiting],
            "replayed": self.replayed,
            "passes": self.passes,
            "timed_out": self.timed_out,
        }


Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class _Awaiting:
    """A lost hold's "no such task" answer, recorded; not yet evidence enough to void it."""

    reason: str


async def sync_holds(
    ledger: Ledger,
    client: AsyncKlingClient,
    *,
    team: str | None = None,
    concurrency: int = 16,
    progress: Progress | None = None,
    not_found_answers: int = NOT_FOUND_ANSWERS,
    not_found_window: timedelta = NOT_FOUND_WINDOW,
) -> SyncReport:
    """One pass over the open holds; see the module's docstring.

    ``not_found_answers`` and ``not_found_window``: the evidence that voids a hold whose
    answer was lost (at least that many "no such task" answers, at least that far apart).
    """
    if not_found_answers < 2:
        raise ValueError(
            f"not_found_answers must be at least 2 (given {not_found_answers}): one answer "
            "is no lasting evidence"
        )
    if not_found_window < timedelta(0):
        raise ValueError(f"not_found_window cannot be negative (given {not_found_window})")
    report = SyncReport()
    report.replayed, failures = await to_thread.run_sync(journal.replay, ledger)
    report.unresolved.extend(failures)
    holds = list(ledger.holds(state="open", team=team))
    gate = anyio.Semaphore(max(1, concurrency))
    evidence = (not_found_answers, not_found_window)

    async def one(hold: Hold) -> None:
        async with gate:
            try:
                outcome = await _resolve_one(ledger, client, hold, evidence)
            except (errors.KlingcostError, ValueError) as exc:  # ValueError: an unusable id
                report.errors.append((hold.id, client.redact(f"{type(exc).__name__}: {exc}")))
                outcome = None
        if isinstance(outcome, Resolution):
            if outcome.action == "settled":
                report.settled += 1
            elif outcome.action == "voided":
                report.voided += 1
            elif outcome.action == "pending":
                report.pending += 1
        elif isinstance(outcome, _Awaiting):
            report.awaiting.append((hold.id, outcome.reason))
        elif outcome is not None:
            report.unresolved.append((hold.id, outcome))
        if progress is not None:
            progress(1)

    try:
        async with anyio.create_task_group() as group:
            for hold in holds:
                group.start_soon(one, hold)
    except BaseExceptionGroup as failed:
        # One failure cancels the others (each hold is its own transaction: nothing is half
        # done); the caller meets that failure itself, as it would from a plain loop.
        raise _first(failed) from None
    return report


def _first(group: BaseExceptionGroup) -> BaseException:
    """The failure a task group stands for: an interrupt (Ctrl-C) before an error, an error
    before a cancellation."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending = list(current.exceptions) + pending
        else:
            leaves.append(current)
    cancelled = anyio.get_cancelled_exc_class()

    def rank(leaf: BaseException) -> int:
        return 2 if isinstance(leaf, cancelled) else 1 if isinstance(leaf, Exception) else 0

    return min(leaves, key=rank)  # the first of the best rank


PassProgress = Callable[[int], AbstractContextManager[Progress | None]]


def settle_until_done(
    ledger: Ledger,
    client: AsyncKlingClient,
    *,
    team: str | None = None,
    wait: bool = True,
    interval: float = 5.0,
    timeout: float = 900.0,
    concurrency: int = 16,
    progress: PassProgress | None = None,
    not_found_answers: int = NOT_FOUND_ANSWERS,
    not_found_window: timedelta = NOT_FOUND_WINDOW,
) -> SyncReport:
    """``klingcost sync [--wait]``: one pass, or (``wait``) passes every ``interval`` seconds
    until no task is running; the passes' counts add up (:meth:`SyncReport.then`). When the
    next pass would start past ``timeout`` seconds, the report is returned ``timed_out``.

    Runs its own event loop (anyio) and closes ``client`` when done. ``progress``, if given,
    is called with each pass's number of open holds and gives a context manager whose value
    is called with 1 per hold examined (a click progress bar's ``update``).
    """
    policy = PollPolicy(interval, timeout)

    async def run() -> SyncReport:
        report: SyncReport | None = None
        async with client:
            poll = policy.start(time.monotonic())
            while True:
                total = sum(1 for _ in ledger.holds(state="open", team=team)) if progress else 0
                bar = progress(total) if progress is not None and total else nullcontext(None)
                with bar as step:
                    one = await sync_holds(
                        ledger,
                        client,
                        team=team,
                        concurrency=concurrency,
                        progress=step,
                        not_found_answers=not_found_answers,
                        not_found_window=not_found_window,
                    )
                report = one if report is None else report.then(one)
                if not wait or report.pending == 0:
                    return report
                if (pause := poll.wait(time.monotonic())) is None:
                    report.timed_out = True
                    return report
                await anyio.sleep(pause)

    return anyio.run(run)


async def _resolve_one(
    ledger: Ledger, client: AsyncKlingClient, hold: Hold, evidence: tuple[int, timedelta]
) -> Resolution | _Awaiting | str:
    endpoint = hold.meta.get("endpoint")
    if not isinstance(endpoint, str):
        return "no endpoint recorded on the hold"
    if hold.task_id is not None:
        try:
            # The client refuses an answer about another task (MalformedResponseError).
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
        if exc.code in NOT_FOUND_CODES:
            return await _not_found_answer(ledger, hold, external, exc, evidence)
        if exc.status == 404:
            return (
                f"the API answered HTTP 404 for {external!r} without Kling's code 1203 "
                f"({exc}): no evidence either way; it stays counted"
            )
        raise
    if task.external_task_id != external:  # a query by external id must be answered with it
        raise errors.MalformedResponseError(
            f"the answer for external_task_id {external!r} is task {task.task_id!r}, which "
            f"carries external_task_id {task.external_task_id!r}: ignored"
        )
    return await to_thread.run_sync(resolve, ledger, hold, task)


async def _not_found_answer(
    ledger: Ledger,
    hold: Hold,
    external: str,
    exc: errors.InvalidRequestError,
    evidence: tuple[int, timedelta],
) -> Resolution | _Awaiting | str:
    answers, window = evidence
    age = ledger.clock.now() - hold.reserved_at
    if hold.state == "held" and age < IN_FLIGHT_GRACE:
        return f"held, and no task {external!r} yet: its submission may be in flight"
    seen = await to_thread.run_sync(
        lambda: ledger.note_not_found(hold.id, asked=external, detail=f"code {exc.code}")
    )
    span = seen[-1] - seen[0] if seen else timedelta(0)
    if len(seen) < answers or span < window:
        return _Awaiting(
            f"no task {external!r} so far ({len(seen)} of {answers} not-found answers, "
            f"{_minutes(span)} of {_minutes(window)} apart): it stays counted until the "
            "evidence lasts"
        )
    reason = (
        f"no task {external!r} exists: {len(seen)} not-found answers over {_minutes(span)}; "
        "the submission never created one"
    )
    # unless_task: the guard may have attached a task since this hold was read.
    voided = await to_thread.run_sync(lambda: ledger.void(hold.id, reason=reason, unless_task=True))
    return Resolution(voided, "voided", reason)


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min"


def _not_found(exc: errors.InvalidRequestError) -> bool:
    return exc.code in NOT_FOUND_CODES or exc.status == 404
