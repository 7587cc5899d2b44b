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

``GuardedClient`` and ``AsyncGuardedClient`` mirror each other over
:class:`~klingcost.guard_core.GuardCore` (the hold and the outcome rules); ``wait`` polls under
the one poll policy (:mod:`klingcost.polling`). The async guard holds and attaches on the event
loop's thread (see ``AsyncGuardedClient.submit``) and settles in a worker thread (anyio), so a
settlement never stalls the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
from anyio import to_thread

from klingcost._testpoints import reach
from klingcost.api.base import DEFAULT_TIMEOUT, TimeoutArg
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.envelope import Task
from klingcost.guard_core import GuardCore
from klingcost.ledger import Hold, Ledger
from klingcost.polling import TRANSIENT_QUERY_FAILURES, PollPolicy
from klingcost.pricing import Estimate
from klingcost.settlement import Resolution, resolve
from klingcost.sheet import PriceSheet


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
        self._core = GuardCore(team, ledger, sheet, provider, hook_url, external_ids)
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
        poll = PollPolicy(interval, timeout).start(time.monotonic())
        while True:
            try:
                resolution = self.settle(target)
            except TRANSIENT_QUERY_FAILURES as exc:
                resolution = self._core.unanswered(_hold_of(target, self.ledger), exc)
            if resolution.action != "pending":
                return resolution
            if (pause := poll.wait(time.monotonic())) is None:
                raise TimeoutError(
                    f"hold {resolution.hold.id}: {resolution.note} after {timeout} s"
                )
            time.sleep(pause)

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
        self._core = GuardCore(team, ledger, sheet, provider, hook_url, external_ids)
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
        """Poll until the task ends, then settle (or void) its hold; as ``GuardedClient.wait``."""
        poll = PollPolicy(interval, timeout).start(time.monotonic())
        while True:
            try:
                resolution = await self.settle(target)
            except TRANSIENT_QUERY_FAILURES as exc:
                hold = await to_thread.run_sync(_hold_of, target, self.ledger)
                resolution = self._core.unanswered(hold, exc)
            if resolution.action != "pending":
                return resolution
            if (pause := poll.wait(time.monotonic())) is None:
                raise TimeoutError(
                    f"hold {resolution.hold.id}: {resolution.note} after {timeout} s"
                )
            await anyio.sleep(pause)

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
