"""The budget guard: estimate -> reserve -> submit -> attach, for one team.

    with GuardedClient("team-a") as guard:
        submission = guard.submit("videos/text2video", body)   # BudgetExceeded: nothing sent
        resolution = guard.wait(submission)                      # settled from the API's charge

What happens on the wire decides what happens to the hold:

* the API accepted the task: the task id is attached to the hold;
* a **definite** failure (the API refused the request, the key, the account or the rate, or
  the connection failed before anything was sent): the hold is voided and the error re-raised;
* an **ambiguous** failure (a timeout after sending, a 5xx, an unreadable answer, a crash or an
  interrupt): the hold is marked ``unknown`` and keeps counting against every budget until
  ``klingcost sync`` (or a person) resolves it. The request is never sent twice.

``GuardedClient`` and ``AsyncGuardedClient`` mirror each other over :class:`_GuardCore`. The
async guard holds and attaches on the event loop's thread (see ``AsyncGuardedClient.submit``)
and settles in a worker thread, so a settlement never stalls the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
from anyio import to_thread

from klingcost import errors
from klingcost._protocol import Task
from klingcost._testpoints import reach
from klingcost.budgets import HoldAmounts
from klingcost.client import DEFAULT_TIMEOUT, AsyncKlingClient, KlingClient, TimeoutArg
from klingcost.ledger import Hold, Ledger, journal
from klingcost.money import UNIT_EXPONENT, to_minor
from klingcost.pricing import Estimate, estimate, price
from klingcost.refusals import record_refusal
from klingcost.settlement import Resolution, resolve
from klingcost.sheet import PRICING_ENV, PriceSheet, load_sheet, sheet_from_canonical, sheet_hash

logger = logging.getLogger("klingcost.guard")

Redactor = Callable[[str], str]

#: Failures of one status query that a later query may not meet: ``wait`` polls on.
TRANSIENT_QUERY_FAILURES: tuple[type[errors.KlingAPIError], ...] = (
    errors.TransportError,
    errors.ServerError,
    errors.RateLimitError,
    errors.MalformedResponseError,
)

#: API errors after which the task certainly was not created: the hold is released.
DEFINITE_FAILURES: tuple[type[errors.KlingAPIError], ...] = (
    errors.ConnectError,
    errors.AuthenticationError,
    errors.AccountError,
    errors.InvalidRequestError,
    errors.PolicyError,
    errors.RateLimitError,
)


@dataclass(frozen=True, slots=True)
class Submission:
    """A guarded submission: what it was priced at, its hold, and the task the API created.

    ``task`` is None when an earlier call with the same key already submitted (or tried to).
    """

    estimate: Estimate
    hold: Hold
    task: Task | None

    @property
    def task_id(self) -> str | None:
        return self.hold.task_id


class _GuardCore:
    """What the sync and async guards share: pricing, the hold, and the outcome rules."""

    def __init__(
        self,
        team: str,
        ledger: Ledger | str | None,
        sheet: PriceSheet | None,
        provider: str | None,
        hook_url: str | None,
        external_ids: bool,
    ) -> None:
        self.team = team
        self._owns_ledger = not isinstance(ledger, Ledger)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger.open(ledger)
        #: Without a sheet of the caller's (``sheet`` or ``KLINGCOST_PRICING``), the guard
        #: prices with the sheet the ledger publishes, so every submitter prices alike.
        self._ledger_priced = sheet is None and not os.environ.get(PRICING_ENV)
        try:
            self.sheet = sheet if sheet is not None else self._default_sheet()
        except BaseException:
            self.close()
            raise
        self.provider = provider
        self.hook_url = hook_url
        self.external_ids = external_ids

    def _default_sheet(self) -> PriceSheet:
        if not self._ledger_priced:
            return load_sheet()
        published = self.ledger.published_sheet()
        if published is None:
            return load_sheet()
        return sheet_from_canonical(
            published.canonical, origin=f"the ledger's published sheet v{published.version}"
        )

    def estimate(self, endpoint: str, body: Mapping[str, Any]) -> Estimate:
        return estimate(endpoint, body, sheet=self.sheet, provider=self.provider)

    def hold(
        self,
        priced: Estimate,
        amounts: HoldAmounts,
        key: str,
        meta: dict[str, Any],
        *,
        key_id: str | None = None,
        max_open_for_key: int | None = None,
        source: str = "guard",
    ) -> tuple[Estimate, Hold]:
        """Reserve, priced with ``self.sheet``. A guard that prices with the ledger's sheet
        and meets a newer one (published since it started) reprices once with it. A refusal
        (budget, or a proxy key's ``max_open_for_key``) is recorded in the ledger, then
        raised as it was (:mod:`klingcost.refusals`)."""
        try:
            try:
                hold = self.ledger.reserve(
                    self.team,
                    amounts,
                    key=key,
                    meta=meta,
                    sheet_sha256=sheet_hash(self.sheet),
                    key_id=key_id,
                    max_open_for_key=max_open_for_key,
                )
            except errors.SheetMismatchError:
                if not self._ledger_priced:
                    raise
                self.sheet = self._default_sheet()
                priced = price(priced.request, sheet=self.sheet, provider=self.provider)
                hold = self.ledger.reserve(
                    self.team,
                    _amounts(priced),
                    key=key,
                    meta=meta,
                    sheet_sha256=sheet_hash(self.sheet),
                    key_id=key_id,
                    max_open_for_key=max_open_for_key,
                )
        except (
            errors.BudgetExceeded,
            errors.BudgetCannotCount,
            errors.ConcurrencyExceeded,
        ) as refused:
            record_refusal(
                self.ledger, refused, team=self.team, job_class=meta, key_id=key_id, source=source
            )
            raise
        return priced, hold

    def reserve(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        key: str | None,
        *,
        extra_meta: Mapping[str, str | int | None] | None = None,
        **options: Any,
    ) -> tuple[Estimate, Hold, dict[str, Any] | None]:
        """Price and hold; returns the body to send, or None when the key was used before.

        With a caller's ``key`` the ledger's reserve is the one arbiter: it returns the hold
        already under that key (from an earlier call, or a concurrent one that got there
        first), and only the call whose own ``claim`` comes back sends the request.
        ``extra_meta`` is kept on the hold beside the request's shape, and ``options`` go to
        :meth:`hold` (``key_id``, ``max_open_for_key``, ``source``: for ``klingcost proxy``).
        """
        priced = self.estimate(endpoint, body)
        outgoing = dict(body)
        if self.hook_url and not outgoing.get("notify_hook"):
            outgoing["notify_hook"] = self.hook_url
        claim = uuid.uuid4().hex
        given = key is not None
        key = key if key is not None else claim
        if self.external_ids and not outgoing.get("external_task_id"):
            outgoing["external_task_id"] = key
        _check_json(priced.endpoint, outgoing)
        amounts = _amounts(priced)
        meta = {
            **job_class(priced),
            "provider": priced.cost.provider,
            "external_task_id": outgoing.get("external_task_id"),
        }
        if extra_meta:
            meta.update(extra_meta)
        if given:
            meta["claim"] = claim
        priced, hold = self.hold(priced, amounts, key, meta, **options)
        if given and hold.meta.get("claim") != claim:
            return priced, hold, None
        return priced, hold, outgoing

    def accepted(self, hold: Hold, task: Task, redact: Redactor) -> Hold:
        """Attach the task the API accepted; on any failure keep its id where sync finds it.

        The API will charge for the task whatever happens here, so its id must survive: it is
        appended to the accepted-tasks journal (:mod:`klingcost.ledger.journal`, replayed by
        ``klingcost sync``), the hold is marked ``unknown`` with the id in its reason when the
        ledger still takes writes, and the error raised names the task id.
        """
        try:
            return self.ledger.attach(hold.id, task.task_id, reserved=hold)
        except BaseException as exc:
            failure = self._unrecorded(hold, task.task_id, exc, redact)
            if isinstance(exc, Exception):
                raise failure from exc
            exc.add_note(str(failure))  # an interrupt stays an interrupt
            raise

    def _unrecorded(
        self, hold: Hold, task_id: str, exc: BaseException, redact: Redactor
    ) -> errors.TaskNotRecorded:
        cause = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        reason = f"the API accepted task {task_id}, not attached: {cause}"
        where: str | None
        try:
            where = str(
                journal.record(self.ledger, hold_id=hold.id, task_id=task_id, reason=reason)
            )
            kept = f"its id is kept in {where}, and `klingcost sync` attaches it"
        except OSError as journal_error:
            where = None
            why = journal_error.strerror or journal_error
            kept = (
                f"the journal could not be written either ({why}): "
                "note the task id; `klingcost sync` finds it only if it was sent with an "
                "external_task_id"
            )
        if not isinstance(exc, errors.LedgerError):  # a ledger that failed is not asked again
            try:
                self.ledger.mark_unknown(hold.id, reason)
            except Exception:  # the journal and the error carry the id
                logger.warning("hold %s: could not be marked unknown", hold.id)
        return errors.TaskNotRecorded(
            f"the API accepted task {task_id} for hold {hold.id} on {self.team!r}, but the "
            f"ledger could not record it ({cause}); {kept}. The hold keeps counting until then",
            hold_id=hold.id,
            task_id=task_id,
            journal=where,
        )

    def failed(self, hold: Hold, exc: BaseException, redact: Redactor) -> None:
        """Void the hold after a definite failure; otherwise keep it counting as unknown.

        A note on ``exc`` says which hold it was and what became of it. The reason stored on
        the hold is redacted of the key (an error may echo it, in any case or cut short).
        """
        cause = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, DEFINITE_FAILURES):
            self.ledger.void(hold.id, reason=f"submission refused: {cause}")
            exc.add_note(f"hold {hold.id} on {self.team!r} was voided: nothing is charged")
            return
        try:
            self.ledger.mark_unknown(hold.id, f"outcome unknown: {cause}")
        finally:  # even when marking fails (a second Ctrl-C), say which hold counts
            exc.add_note(stays_counted(hold, self.team))

    def unanswered(self, target: Submission | Hold | int, exc: errors.KlingAPIError) -> Resolution:
        """A poll whose query failed for now: the hold stays as it is, and ``wait`` goes on."""
        hold = _hold_of(target, self.ledger)
        note = f"the status query failed ({type(exc).__name__}: {exc}); still waiting"
        logger.warning("hold %s: %s", hold.id, note)
        return Resolution(hold, "pending", note)

    def endpoint_of(self, hold: Hold) -> str:
        endpoint = hold.meta.get("endpoint")
        if not isinstance(endpoint, str):
            raise errors.HoldStateError(f"hold {hold.id} has no endpoint recorded")
        return endpoint

    def close(self) -> None:
        if self._owns_ledger:
            self.ledger.close()


def stays_counted(hold: Hold, team: str) -> str:
    """What to tell a person about a hold whose submission's outcome is not known."""
    if hold.task_id is not None:
        how = f"task {hold.task_id}; `klingcost sync` settles it when the task ends"
    elif hold.meta.get("external_task_id"):
        how = "`klingcost sync` settles it (it finds the task by its external_task_id)"
    else:
        how = (
            "`klingcost sync` settles it once it knows the task (sent without "
            "--external-ids, it may need `klingcost holds void` by a person who knows "
            "nothing was made)"
        )
    return f"hold {hold.id} on {team!r} stays counted: {how}"


def job_class(priced: Estimate) -> dict[str, str | int | None]:
    """What fixes a job's price, as a hold's meta records it (reports and reconcile group by
    it; a refusal records it too)."""
    return priced.request.job.to_meta()


def _amounts(priced: Estimate) -> HoldAmounts:
    return HoldAmounts(
        units_milli=to_minor(priced.units, UNIT_EXPONENT),
        pack=priced.pack,
        cost_minor=priced.cost.minor,
        currency=priced.cost.currency,
        exponent=priced.cost.exponent,
    )


def _check_json(endpoint: str, body: Mapping[str, Any]) -> None:
    """Refuse, before any hold, a body that cannot be sent as JSON (a Decimal, a NaN, a lone
    surrogate in a hook URL from the environment: httpx encodes the body as UTF-8)."""
    try:
        json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        problems = []
        for name, value in body.items():
            try:
                json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                problems.append(
                    errors.Problem(name, value, "JSON strings, numbers, lists, objects", str(exc))
                )
        problems = problems or [
            errors.Problem("body", body, "a JSON object", "the body cannot be sent as JSON")
        ]
        raise errors.RequestValidationError(endpoint=endpoint, problems=problems) from None


def _hold_of(target: Submission | Hold | int, ledger: Ledger) -> Hold:
    if isinstance(target, Submission):
        return ledger.get_hold(target.hold.id)
    if isinstance(target, Hold):
        return ledger.get_hold(target.id)
    return ledger.get_hold(target)


class GuardedClient:
    """A :class:`KlingClient` that refuses over-budget work and books every task.

    ``ledger`` is a :class:`Ledger` or a path (default: ``KLINGCOST_LEDGER``, then
    ``$KLINGCOST_HOME/ledger.db``). ``hook_url`` fills ``notify_hook`` for ``klingcost hooks
    serve``; ``external_ids`` sends the hold's key as ``external_task_id`` (Kling's own API
    supports it; the proxy does not document it), which lets ``sync`` find a task whose
    submission outcome was lost.
    """

    def __init__(
        self,
        team: str,
        *,
        ledger: Ledger | str | None = None,
        client: KlingClient | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        sheet: PriceSheet | None = None,
        provider: str | None = None,
        hook_url: str | None = None,
        external_ids: bool = False,
    ) -> None:
        self._core = _GuardCore(team, ledger, sheet, provider, hook_url, external_ids)
        self._owns_client = client is None
        try:
            self.client = client or KlingClient(
                api_key, base_url=base_url, transport=transport, timeout=timeout
            )
        except BaseException:
            self._core.close()  # no key: do not leak the ledger we opened
            raise

    @property
    def team(self) -> str:
        return self._core.team

    @property
    def ledger(self) -> Ledger:
        return self._core.ledger

    def __repr__(self) -> str:
        return f"GuardedClient(team={self.team!r}, ledger={self.ledger!r}, client={self.client!r})"

    def estimate(self, endpoint: str, body: Mapping[str, Any]) -> Estimate:
        return self._core.estimate(endpoint, body)

    def submit(
        self, endpoint: str, body: Mapping[str, Any], *, key: str | None = None
    ) -> Submission:
        """Reserve the estimate, then send. ``key`` makes a retried call submit at most once."""
        priced, hold, outgoing = self._core.reserve(endpoint, body, key)
        if outgoing is None:
            return Submission(priced, hold, None)
        try:
            reach("after_reserve")
            task = self.client.submit(priced.endpoint, outgoing)
        except BaseException as exc:  # includes Ctrl-C: the request may be out
            self._core.failed(hold, exc, self.client.redact)
            raise
        reach("after_send")
        attached = self._core.accepted(hold, task, self.client.redact)
        reach("after_attach")
        return Submission(priced, attached, task)

    def settle(self, target: Submission | Hold | int) -> Resolution:
        """Query the task once and settle or void its hold if it has ended."""
        hold = _hold_of(target, self.ledger)
        if hold.task_id is None:
            return Resolution(hold, "unchanged", "no task id: nothing to query")
        task = self.client.get_task(self._core.endpoint_of(hold), hold.task_id)
        return resolve(self.ledger, hold, task)

    def wait(
        self, target: Submission | Hold | int, *, interval: float = 5.0, timeout: float = 900.0
    ) -> Resolution:
        """Poll until the task ends, then settle (or void) its hold.

        A query that fails for now (a lost answer, a 5xx, a rate limit) is logged and tried
        again at the next poll; TimeoutError once ``timeout`` seconds have passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                resolution = self.settle(target)
            except TRANSIENT_QUERY_FAILURES as exc:
                resolution = self._core.unanswered(target, exc)
            if resolution.action != "pending":
                return resolution
            if time.monotonic() + interval > deadline:
                raise TimeoutError(
                    f"hold {resolution.hold.id}: {resolution.note} after {timeout} s"
                )
            time.sleep(interval)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGuardedClient:
    """The asynchronous twin of :class:`GuardedClient`, over :class:`AsyncKlingClient`."""

    def __init__(
        self,
        team: str,
        *,
        ledger: Ledger | str | None = None,
        client: AsyncKlingClient | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        sheet: PriceSheet | None = None,
        provider: str | None = None,
        hook_url: str | None = None,
        external_ids: bool = False,
    ) -> None:
        self._core = _GuardCore(team, ledger, sheet, provider, hook_url, external_ids)
        self._owns_client = client is None
        try:
            self.client = client or AsyncKlingClient(
                api_key, base_url=base_url, transport=transport, timeout=timeout
            )
        except BaseException:
            self._core.close()  # no key: do not leak the ledger we opened
            raise

    @property
    def team(self) -> str:
        return self._core.team

    @property
    def ledger(self) -> Ledger:
        return self._core.ledger

    def __repr__(self) -> str:
        return (
            f"AsyncGuardedClient(team={self.team!r}, ledger={self.ledger!r}, "
            f"client={self.client!r})"
        )

    def estimate(self, endpoint: str, body: Mapping[str, Any]) -> Estimate:
        return self._core.estimate(endpoint, body)

    async def submit(
        self, endpoint: str, body: Mapping[str, Any], *, key: str | None = None
    ) -> Submission:
        # The hold and the attach run on the event loop's thread, with no await point between
        # them and the send: a cancellation can then only land inside the send itself (the
        # hold is marked unknown), never between a hold and its request or between an answer
        # and its task id. Each is one short transaction; settling runs in a worker thread.
        priced, hold, outgoing = self._core.reserve(endpoint, body, key)
        if outgoing is None:
            return Submission(priced, hold, None)
        try:
            task = await self.client.submit(priced.endpoint, outgoing)
        except BaseException as exc:  # includes cancellation: the request may be out
            self._core.failed(hold, exc, self.client.redact)
            raise
        return Submission(priced, self._core.accepted(hold, task, self.client.redact), task)

    async def settle(self, target: Submission | Hold | int) -> Resolution:
        hold = await to_thread.run_sync(_hold_of, target, self.ledger)
        if hold.task_id is None:
            return Resolution(hold, "unchanged", "no task id: nothing to query")
        task = await self.client.get_task(self._core.endpoint_of(hold), hold.task_id)
        return await to_thread.run_sync(resolve, self.ledger, hold, task)

    async def wait(
        self, target: Submission | Hold | int, *, interval: float = 5.0, timeout: float = 900.0
    ) -> Resolution:
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            try:
                resolution = await self.settle(target)
            except TRANSIENT_QUERY_FAILURES as exc:
                resolution = self._core.unanswered(target, exc)
            if resolution.action != "pending":
                return resolution
            if time.monotonic() + interval > deadline:
                raise TimeoutError(
                    f"hold {resolution.hold.id}: {resolution.note} after {timeout} s"
                )
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
        self._core.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
