"""HTTP clients for the Kling API (directly or through the openai-hk proxy).

:class:`KlingClient` and :class:`AsyncKlingClient` mirror each other over the pure logic of
:mod:`klingcost.api.base` (itself over the pure :mod:`klingcost.api.envelope` and
:mod:`klingcost.api.retry`); only sending and sleeping differ.

    with KlingClient() as kling:                      # KLINGCOST_API_KEY, KLINGCOST_BASE_URL
        task = kling.submit("text2video", {"prompt": "a ship in space", "duration": "5"})
        task = kling.wait("text2video", task.task_id)
        print(task.status, task.deduction.units, task.urls)

What is retried (with exponential backoff and jitter, ``max_retries`` times, logged on the
``klingcost.client`` logger): rate limits (codes 1302, 1303) and connections that failed before
the request was sent; a task query is also retried when its answer was lost. A submission whose
answer was lost raises :class:`~klingcost.errors.AmbiguousSubmitError` and is never resent; a 5xx
on a submission raises :class:`~klingcost.errors.ServerError` (its outcome is unknown too).
A request httpx refuses to build or send (a bad base URL) raises
:class:`~klingcost.errors.ConnectError` at once, and a redirect (3xx: no redirect is followed)
an :class:`~klingcost.errors.InvalidRequestError`: nothing was created, in both cases.

The API key is never shown: not in a repr, an error message or a log line.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from fractions import Fraction
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

from klingcost import errors
from klingcost.api.base import DEFAULT_TIMEOUT, BaseKlingClient, TimeoutArg, http_timeout
from klingcost.api.envelope import Task
from klingcost.api.wire import SHARDS, Wire
from klingcost.deduction import DEFAULT_DEDUCTION_CAP
from klingcost.polling import PollPolicy
from klingcost.request import normalize_endpoint

__all__ = ["AsyncKlingClient", "KlingClient"]


class KlingClient(BaseKlingClient):
    """A synchronous Kling API client; see the module's docstring. Close it, or use ``with``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        deduction_cap: Fraction = DEFAULT_DEDUCTION_CAP,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            deduction_cap=deduction_cap,
            random=random,
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=http_timeout(timeout),
            transport=transport,
        )
        self._wire = Wire(self._http, self.base_url)

    def submit(self, endpoint: str, body: Mapping[str, Any]) -> Task:
        """Create a task (``POST /v1/{endpoint}``); the answer's task is ``submitted``."""
        name, path, what = self._create(endpoint, body)
        return self._task(name, self._send("POST", path, what, idempotent=False, body=body))

    def get_task(self, endpoint: str, task_id: str) -> Task:
        """Query one task (``GET /v1/{endpoint}/{task_id}``); ``task_id`` or external id."""
        name, path, what = self._query(endpoint, task_id)
        task = self._task(name, self._send("GET", path, what, idempotent=True))
        return self._asked(task, task_id)

    def list_tasks(self, endpoint: str, *, page: int = 1, page_size: int = 30) -> list[Task]:
        """One page of the endpoint's tasks, newest first (``GET /v1/{endpoint}?pageNum=...``)."""
        name = normalize_endpoint(endpoint)
        params = {"pageNum": page, "pageSize": page_size}
        payload = self._send("GET", f"/v1/{name}", f"GET {name}", idempotent=True, params=params)
        return self._tasks(name, payload)

    def wait(
        self, endpoint: str, task_id: str, *, interval: float = 5.0, timeout: float = 900.0
    ) -> Task:
        """Query the task every ``interval`` s until done; TimeoutError after ``timeout`` s
        (the poll policy of :mod:`klingcost.polling`)."""
        poll = PollPolicy(interval, timeout).start(time.monotonic())
        while True:
            task = self.get_task(endpoint, task_id)
            if task.done:
                return task
            if (wait := poll.wait(time.monotonic())) is None:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout} s")
            self._sleep(wait)

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        idempotent: bool,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            headers: Mapping[str, str] | None = None
            cause: BaseException | None = None
            try:
                json = None if body is None else dict(body)
                request = self._wire.build(method, path, json=json, params=_pairs(params))
                response = self._wire.send(request)
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                error, cause = self._failed(exc, idempotent=idempotent, what=what), exc
            else:
                try:
                    return self._answer(response)
                except errors.KlingAPIError as exc:
                    error, headers = exc, response.headers
            wait = self._backoff(
                error, attempt, idempotent=idempotent, what=what, headers=headers, cause=cause
            )
            if wait is None:
                if cause is None:  # the answer's error, already scrubbed
                    raise error
                # Outside the except block, so nothing is chained but what _cause allows.
                raise error from self._cause(cause)
            self._sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncKlingClient(BaseKlingClient):
    """The asynchronous twin of :class:`KlingClient` (same arguments; ``sleep`` is async)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        deduction_cap: Fraction = DEFAULT_DEDUCTION_CAP,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            deduction_cap=deduction_cap,
            random=random,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=http_timeout(timeout),
            transport=transport,
        )
        self._wire = Wire(self._http, self.base_url, shards=SHARDS if transport is None else 1)

    async def submit(self, endpoint: str, body: Mapping[str, Any]) -> Task:
        """Create a task (``POST /v1/{endpoint}``); the answer's task is ``submitted``."""
        name, path, what = self._create(endpoint, body)
        return self._task(name, await self._send("POST", path, what, idempotent=False, body=body))

    async def get_task(self, endpoint: str, task_id: str) -> Task:
        """Query one task (``GET /v1/{endpoint}/{task_id}``); ``task_id`` or external id."""
        name, path, what = self._query(endpoint, task_id)
        task = self._task(name, await self._send("GET", path, what, idempotent=True))
        return self._asked(task, task_id)

    async def list_tasks(self, endpoint: str, *, page: int = 1, page_size: int = 30) -> list[Task]:
        """One page of the endpoint's tasks, newest first (``GET /v1/{endpoint}?pageNum=...``)."""
        name = normalize_endpoint(endpoint)
        params = {"pageNum": page, "pageSize": page_size}
        payload = await self._send(
            "GET", f"/v1/{name}", f"GET {name}", idempotent=True, params=params
        )
        return self._tasks(name, payload)

    async def wait(
        self, endpoint: str, task_id: str, *, interval: float = 5.0, timeout: float = 900.0
    ) -> Task:
        """Query the task every ``interval`` s until done; TimeoutError after ``timeout`` s
        (the poll policy of :mod:`klingcost.polling`)."""
        poll = PollPolicy(interval, timeout).start(time.monotonic())
        while True:
            task = await self.get_task(endpoint, task_id)
            if task.done:
                return task
            if (wait := poll.wait(time.monotonic())) is None:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout} s")
            await self._sleep(wait)

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        idempotent: bool,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            headers: Mapping[str, str] | None = None
            cause: BaseException | None = None
            try:
                json = None if body is None else dict(body)
                request = self._wire.build(method, path, json=json, params=_pairs(params))
                response = await self._wire.asend(request)
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                error, cause = self._failed(exc, idempotent=idempotent, what=what), exc
            else:
                try:
                    return self._answer(response)
                except errors.KlingAPIError as exc:
                    error, headers = exc, response.headers
            wait = self._backoff(
                error, attempt, idempotent=idempotent, what=what, headers=headers, cause=cause
            )
            if wait is None:
                if cause is None:  # the answer's error, already scrubbed
                    raise error
                # Outside the except block, so nothing is chained but what _cause allows.
                raise error from self._cause(cause)
            await self._sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._wire.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _pairs(params: Mapping[str, int] | None) -> list[tuple[str, int]] | None:
    return list(params.items()) if params else None
