"""What the sync and async Kling clients share: the key, the base URL, building requests,
reading answers and deciding retries. Everything but sending and sleeping.

The key is checked here, once, and never shown: a repr prints its prefix only, every error is
scrubbed of it (:func:`klingcost.api.redact.scrub`), and an exception whose text shows it is
not chained to the error raised.
"""

from __future__ import annotations

import logging
import os
import random as _random
from collections.abc import Callable, Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Any, Final
from urllib.parse import quote

import httpx

from klingcost import errors
from klingcost.api.envelope import DEFAULT_BASE_URL, Task, answer_for, parse_task, read_envelope
from klingcost.api.redact import redact, redact_key, scrub, shows_key
from klingcost.api.retry import REFUSED, RetryPolicy, retry_after, transport_error
from klingcost.request import Endpoint, normalize_endpoint

# The logger keeps the name it had before the api/ package: log filters name it.
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


class BaseKlingClient:
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
