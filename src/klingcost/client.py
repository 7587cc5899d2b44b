"""HTTP clients for the Kling API (directly or through the openai-hk proxy).

:class:`KlingClient` and :class:`AsyncKlingClient` mirror each other over the pure logic of
:mod:`klingcost._protocol`; only sending and sleeping differ.

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

import logging
import os
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from fractions import Fraction
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import anyio
import httpx

from klingcost import errors
from klingcost._protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_DEDUCTION_CAP,
    REFUSED,
    Deduction,
    ImageResult,
    RetryPolicy,
    Task,
    TaskStatus,
    VideoResult,
    answer_for,
    parse_task,
    read_envelope,
    redact,
    redact_key,
    retry_after,
    scrub,
    shows_key,
    transport_error,
)
from klingcost.request import Endpoint, normalize_endpoint

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEDUCTION_CAP",
    "AsyncKlingClient",
    "Deduction",
    "ImageResult",
    "KlingClient",
    "RetryPolicy",
    "Task",
    "TaskStatus",
    "VideoResult",
]

logger = logging.getLogger("klingcost.client")

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
TimeoutArg = float | httpx.Timeout | None


def http_timeout(timeout: TimeoutArg) -> httpx.Timeout:
    """``timeout`` for httpx. A bare number bounds reading, writing and the pool, but connecting
    keeps at most :data:`DEFAULT_TIMEOUT`'s 10 s: a host that does not answer is known in
    seconds, while a render may take the whole read timeout."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    connect = DEFAULT_TIMEOUT.connect
    return httpx.Timeout(timeout, connect=timeout if connect is None else min(timeout, connect))


def _url_problem(url: str) -> str | None:
    """Why httpx cannot parse ``url``, or None (returned, so that no httpx error is chained)."""
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        return str(exc)
    try:  # what the resolver will do: a label over 63 characters fails there, as no httpx error
        host.encode("idna")
    except UnicodeError as exc:
        return f"its host cannot be looked up: {exc}"
    return None


class _BaseKlingClient:
    """What both clients share: configuration, request building, answer handling, retries."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        deduction_cap: Fraction,
        random: Callable[[], float] | None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("KLINGCOST_API_KEY", "")
        if not key.strip():
            raise errors.AuthenticationError(
                "no Kling API key: pass api_key= or set KLINGCOST_API_KEY"
            )
        key = key.strip()
        # httpx sends header values as ASCII and h11 refuses control characters: such a key
        # would only fail later, inside httpx, with an error quoting the key (or a part of it).
        # The message names no character of the key.
        if not (key.isascii() and key.isprintable()):
            raise errors.AuthenticationError(
                "the API key has characters an HTTP header cannot carry (control characters "
                "such as a newline, or non-ASCII characters): check how it was copied"
            )
        self._api_key = key
        url = base_url or os.environ.get("KLINGCOST_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        # httpx.Client would raise httpx.InvalidURL, which is no KlingAPIError (the guard would
        # count the hold as unknown): refuse the URL here with a definite error instead.
        problem = _url_problem(self.base_url)
        if problem is not None:
            raise scrub(
                errors.ConnectError(
                    f"the base URL {self.base_url!r} is not a valid URL ({problem}); "
                    "the request was not sent"
                ),
                self._api_key,
            )
        self.retry = RetryPolicy(max_retries=max_retries, base_delay=backoff, max_delay=max_backoff)
        self.deduction_cap = deduction_cap
        self._random = random or _random.random

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"api_key={redact_key(self._api_key)})"
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    # --- one attempt's outcome, and whether to try again -------------------------------

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        location = response.headers.get("location")
        try:
            return read_envelope(response.status_code, response.content, location=location)
        except errors.KlingAPIError as error:
            failure = scrub(error, self._api_key)
        # Raised outside the except block: inside it Python would chain the unscrubbed error
        # as ``__context__`` (``from None`` only hides it from tracebacks).
        raise failure

    def _failed(
        self, exc: httpx.TransportError | httpx.InvalidURL, *, idempotent: bool, what: str
    ) -> errors.KlingAPIError:
        return scrub(transport_error(exc, idempotent=idempotent, what=what), self._api_key)

    def _cause(self, exc: BaseException | None) -> BaseException | None:
        """``exc``, to chain to the error raised, unless its text shows the key.

        h11 quotes a refused header (``Illegal header value b'Bearer ...'``): such a chain would
        print the key with the traceback.
        """
        return None if exc is None or shows_key(exc, self._api_key) else exc

    def _backoff(
        self,
        error: errors.KlingAPIError,
        attempt: int,
        *,
        idempotent: bool,
        what: str,
        headers: Mapping[str, str] | None,
        cause: BaseException | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if isinstance(cause, REFUSED):  # httpx would refuse the same request again
            return None
        if attempt >= self.retry.max_retries or not self.retry.retryable(
            error, idempotent=idempotent
        ):
            return None
        wait = self.retry.delay(attempt + 1, self._random(), retry_after(headers or {}))
        logger.warning(
            "%s failed (%s: %s); retry %d of %d in %.2f s",
            what,
            type(error).__name__,
            error,
            attempt + 1,
            self.retry.max_retries,
            wait,
        )
        return wait

    # --- requests ------------------------------------------------------------------------

    @staticmethod
    def _create(endpoint: str, body: Mapping[str, Any]) -> tuple[Endpoint, str, str]:
        name = normalize_endpoint(endpoint)
        if not isinstance(body, Mapping):
            raise TypeError(f"a request body is a mapping (given {type(body).__name__})")
        return name, f"/v1/{name}", f"POST {name}"

    @staticmethod
    def _query(endpoint: str, task_id: str) -> tuple[Endpoint, str, str]:
        name = normalize_endpoint(endpoint)
        task = str(task_id).strip()
        if not task or "/" in task:
            raise errors.InvalidTaskIdError(
                f"task id {task_id!r} is not one: give the id the API answered (not empty, no "
                '"/"), or your external_task_id'
            )
        # Ids are the API's or the caller's own (external_task_id): quote what a path cannot hold.
        return name, f"/v1/{name}/{quote(task, safe='')}", f"GET {name}/{task}"

    def _task(self, endpoint: Endpoint, payload: Mapping[str, Any], data: object = None) -> Task:
        failure: errors.KlingAPIError | None = None
        try:
            task = parse_task(endpoint, payload, cap=self.deduction_cap, data=data)
        except errors.KlingAPIError as error:
            failure = scrub(error, self._api_key)
        if failure is not None:
            raise failure  # outside the except block, as in _answer
        # The texts a settlement stores (the failure message, the raw deduction) are the API's:
        # an answer echoing the key must not carry it into the ledger.
        msg, raw = self.redact(task.status_msg), task.deduction.raw
        if msg != task.status_msg or (raw is not None and self.redact(raw) != raw):
            deduction = task.deduction
            if raw is not None and self.redact(raw) != raw:
                deduction = replace(deduction, raw=self.redact(raw))
            task = replace(task, status_msg=msg, deduction=deduction)
        return task

    def _asked(self, task: Task, asked: str) -> Task:
        """The answer, if it is about the task asked for (see :func:`answer_for`)."""
        try:
            return answer_for(task, str(asked).strip())
        except errors.KlingAPIError as error:
            failure = scrub(error, self._api_key)
        raise failure  # outside the except block, as in _answer

    def redact(self, text: str) -> str:
        """``text`` with any run of 8 or more characters of the API key replaced."""
        return redact(text, self._api_key)

    def _tasks(self, endpoint: Endpoint, payload: Mapping[str, Any]) -> list[Task]:
        data = payload.get("data")
        if not isinstance(data, list):
            raise errors.MalformedResponseError("the list answer's 'data' is not a list")
        return [self._task(endpoint, payload, item) for item in data]


class KlingClient(_BaseKlingClient):
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
        """Query the task every ``interval`` s until done; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get_task(endpoint, task_id)
            if task.done:
                return task
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout} s")
            self._sleep(interval)

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
                response = self._http.request(
                    method, path, json=None if body is None else dict(body), params=params
                )
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


class AsyncKlingClient(_BaseKlingClient):
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
        """Query the task every ``interval`` s until done; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get_task(endpoint, task_id)
            if task.done:
                return task
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout} s")
            await self._sleep(interval)

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
                response = await self._http.request(
                    method, path, json=None if body is None else dict(body), params=params
                )
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
