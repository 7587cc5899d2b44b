"""The Kling HTTP protocol as pure functions: what the sync and async clients share.

Nothing here does I/O. :func:`read_envelope` turns an HTTP status and body into the answer's JSON
or the matching :class:`~klingcost.errors.KlingAPIError`; :func:`error_for` is the one mapping of
(HTTP status, Kling ``code``) to the exception tree; :func:`parse_task` builds the typed
results (its deduction parsed by :mod:`klingcost.deduction`); :class:`RetryPolicy` decides what
is retried and how long to wait.

Amounts are exact: JSON numbers are read as :class:`~decimal.Decimal` and a deduction is parsed
by :mod:`klingcost.deduction`, never through a float.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal, get_args

import httpx

from klingcost import errors
from klingcost._json import JSONInputError, loads

# The deduction's parsing and verdict live in klingcost.deduction; the client re-exports them.
from klingcost.deduction import DEFAULT_DEDUCTION_CAP as DEFAULT_DEDUCTION_CAP
from klingcost.deduction import Deduction as Deduction
from klingcost.deduction import DeductionFlag as DeductionFlag
from klingcost.deduction import parse_deduction as parse_deduction
from klingcost.money import MAX_DIGITS
from klingcost.redaction import redact as _redact
from klingcost.redaction import secret_forms
from klingcost.request import Endpoint

DEFAULT_BASE_URL: Final = "https://api.openai-hk.com/kling"

TaskStatus = Literal["submitted", "processing", "succeed", "failed"]
TASK_STATUSES: Final[tuple[str, ...]] = get_args(TaskStatus)


# --- results ------------------------------------------------------------------------------


_ABSENT: Final = Deduction(None, None, "absent")


@dataclass(frozen=True, slots=True)
class ImageResult:
    index: int
    url: str


@dataclass(frozen=True, slots=True)
class VideoResult:
    id: str
    url: str
    duration: str | None  # seconds, as the API's string ("5.041")


@dataclass(frozen=True, slots=True)
class Task:
    """A Kling task as a create or query answer describes it."""

    endpoint: Endpoint
    task_id: str
    status: TaskStatus
    status_msg: str = ""
    created_at: int | None = None  # ms since the epoch
    updated_at: int | None = None
    images: tuple[ImageResult, ...] = ()
    videos: tuple[VideoResult, ...] = ()
    request_id: str | None = None
    deduction: Deduction = _ABSENT
    #: ``final_balance_deduction`` as sent (Kling's ``{quota, list_price}`` or a string), or None.
    balance_deduction: object = None
    external_task_id: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeed", "failed")

    @property
    def succeeded(self) -> bool:
        return self.status == "succeed"

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(i.url for i in self.images) + tuple(v.url for v in self.videos)


def _as_text(value: object) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


# --- errors -------------------------------------------------------------------------------

_CODE_CLASSES: Final[tuple[tuple[frozenset[int], type[errors.KlingAPIError]], ...]] = (
    (frozenset(range(1000, 1005)), errors.AuthenticationError),
    (frozenset(range(1100, 1104)), errors.AccountError),
    (frozenset(range(1200, 1204)), errors.InvalidRequestError),
    (frozenset({1300, 1301, 1304}), errors.PolicyError),
    (frozenset({1302, 1303}), errors.RateLimitError),
    (frozenset(range(5000, 5003)), errors.ServerError),
)
_STATUS_CLASSES: Final[dict[int, type[errors.KlingAPIError]]] = {
    401: errors.AuthenticationError,
    403: errors.AccountError,
    429: errors.RateLimitError,
}


def error_class(status: int | None, code: int | None) -> type[errors.KlingAPIError] | None:
    """The exception class for an HTTP status and a Kling ``code``; None if neither says.

    Any 5xx is a :class:`~klingcost.errors.ServerError` whatever its code (on a submission its
    outcome is unknown); otherwise a known code decides, then the status (401 authentication,
    403 account, 429 rate limit, other 4xx invalid request).
    """
    if status is not None and status >= 500:
        return errors.ServerError
    if code is not None:
        for codes, cls in _CODE_CLASSES:
            if code in codes:
                return cls
    if status is not None:
        if status in _STATUS_CLASSES:
            return _STATUS_CLASSES[status]
        if 400 <= status < 500:
            return errors.InvalidRequestError
    return None


def error_for(
    *, status: int | None, code: int | None, message: str, request_id: str | None = None
) -> errors.KlingAPIError:
    """The error for an answer that is not a success; unknown codes give a plain KlingAPIError."""
    cls = error_class(status, code) or errors.KlingAPIError
    return cls(message, code=code, status=status, request_id=request_id)


def read_envelope(status: int, content: bytes, *, location: str | None = None) -> dict[str, Any]:
    """The JSON envelope of a successful answer, or raise the error the answer stands for.

    Success is HTTP 2xx with ``{"code": 0, ...}``. JSON numbers are read as Decimal.
    ``location`` is the answer's ``Location`` header, named in the error for a redirect.
    """
    if 300 <= status < 400:
        raise _redirect(status, location)
    unread = ""
    try:
        # Bounded numbers: an "index" of 1e99999999 must not become int(10**99999999) later.
        payload = loads(content, decimals=True, max_digits=MAX_DIGITS)
    except JSONInputError as exc:
        payload, unread = None, f"JSON klingcost will not read ({exc})"
    except ValueError:  # JSONDecodeError
        payload = None
    if not isinstance(payload, dict):
        shown = _snippet(content)
        cls = errors.MalformedResponseError if 200 <= status < 300 else error_class(status, None)
        what = (unread or "not a JSON object") if payload is None else "JSON but not an object"
        raise (cls or errors.MalformedResponseError)(
            f"the answer is {what}: {shown}", status=status
        )
    request_id = payload.get("request_id")
    request_id = str(request_id) if isinstance(request_id, str | int) else None
    code, message = _code_and_message(payload)
    if code == 0 and 200 <= status < 300:
        return payload
    if code is None and 200 <= status < 300:
        raise errors.MalformedResponseError(
            f"the answer has no integer 'code': {_snippet(content)}",
            status=status,
            request_id=request_id,
        )
    text = message or f"the API answered HTTP {status} with code {code}"
    raise error_for(status=status, code=code or None, message=text, request_id=request_id)


def _redirect(status: int, location: str | None) -> errors.InvalidRequestError:
    # The client follows no redirect (it would resend the key and, on a 301/302, turn the POST
    # into a GET), so a 3xx answer means the request reached something that did not process it
    # as an API call: no task was created, and the error is a definite one, not an ambiguous
    # MalformedResponseError that would keep a guarded hold counting.
    target = f", a redirect to {_shorten(location)}" if location else ""
    return errors.InvalidRequestError(
        f"the API answered HTTP {status}{target}: check the base URL (https, path); "
        "the request was not processed",
        status=status,
    )


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _code_and_message(payload: Mapping[str, Any]) -> tuple[int | None, str]:
    code: object = payload.get("code")
    message: object = payload.get("message")
    error = payload.get("error")
    if code is None and isinstance(error, Mapping):  # an OpenAI-style proxy error
        code, message = error.get("code"), error.get("message")
    if isinstance(code, str):
        try:  # "1302" is a code; "²" passes isdigit() but is no number
            code = int(code.strip())
        except ValueError:
            code = None
    if isinstance(code, bool) or not isinstance(code, int):
        code = None
    return code, message if isinstance(message, str) else ""


def _snippet(content: bytes, limit: int = 200) -> str:
    text = content.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- tasks --------------------------------------------------------------------------------


def parse_task(
    endpoint: Endpoint,
    payload: Mapping[str, Any],
    *,
    cap: Fraction = DEFAULT_DEDUCTION_CAP,
    data: object = None,
) -> Task:
    """A :class:`Task` from an answer envelope (``data`` overrides ``payload["data"]``)."""
    request_id = payload.get("request_id")
    request_id = str(request_id) if isinstance(request_id, str | int) else None
    if data is None:
        data = payload.get("data")
    if not isinstance(data, Mapping):
        raise errors.MalformedResponseError(
            f"the answer's 'data' is not an object (given {_as_text(data)[:80]})",
            request_id=request_id,
        )
    task_id = data.get("task_id")
    status = data.get("task_status")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
        raise _shape("data.task_id", task_id, "a string", request_id)
    if status not in TASK_STATUSES:
        raise _shape("data.task_status", status, ", ".join(TASK_STATUSES), request_id)
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, Mapping) else None
    images, videos = _results(data.get("task_result"), request_id)
    msg = data.get("task_status_msg")
    return Task(
        endpoint=endpoint,
        task_id=str(task_id),
        status=status,
        status_msg=msg if isinstance(msg, str) else "",
        created_at=_ms(data.get("created_at")),
        updated_at=_ms(data.get("updated_at")),
        images=images,
        videos=videos,
        request_id=request_id,
        deduction=parse_deduction(data.get("final_unit_deduction"), cap=cap),
        balance_deduction=data.get("final_balance_deduction"),
        external_task_id=str(external) if isinstance(external, str | int) else None,
    )


def answer_for(task: Task, asked: str) -> Task:
    """``task`` when it is the task that was asked about (by its id or its external id);
    otherwise a MalformedResponseError: an answer about another task is never applied.

    A query by external id is answered with the API's own task id, so the answer must carry
    the asked id in ``task_info.external_task_id``; an answer without it is not accepted.
    """
    if asked in (task.task_id, task.external_task_id):
        return task
    return_id = task.task_id if len(task.task_id) <= 80 else task.task_id[:80] + "..."
    raise errors.MalformedResponseError(
        f"the answer is about task {return_id!r}, not the asked {asked!r} (its "
        f"external_task_id is {task.external_task_id!r}): ignored",
        request_id=task.request_id,
    )


def _ms(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _results(
    result: object, request_id: str | None
) -> tuple[tuple[ImageResult, ...], tuple[VideoResult, ...]]:
    if result is None:
        return (), ()
    if not isinstance(result, Mapping):
        raise _shape("data.task_result", result, "an object", request_id)
    images, videos = result.get("images") or [], result.get("videos") or []
    if not isinstance(images, list) or not isinstance(videos, list):
        raise _shape("data.task_result", result, "lists of images and videos", request_id)
    try:
        return (
            tuple(ImageResult(int(i.get("index", n)), str(i["url"])) for n, i in enumerate(images)),
            tuple(
                VideoResult(str(v.get("id", "")), str(v["url"]), _opt_str(v.get("duration")))
                for v in videos
            ),
        )
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError, ArithmeticError):
        # OverflowError: an index of Infinity (numbers arrive as Decimal, and int(inf) fails).
        raise _shape("data.task_result", result, "items with a 'url'", request_id) from None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _shape(field: str, given: object, allowed: str, request_id: str | None) -> Exception:
    return errors.MalformedResponseError(
        f"the answer's {field} is {_as_text(given)[:80]}; expected {allowed}",
        request_id=request_id,
    )


# --- retries ------------------------------------------------------------------------------

#: httpx errors raised before the request left the client: always safe to send again.
#: (ProxyError: the proxy tunnel or SOCKS handshake failed, before the request was written.)
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
#: httpx refusing the request itself: a URL it cannot build (InvalidURL, which is no
#: TransportError) or send (UnsupportedProtocol: not http(s)), a header h11 cannot write
#: (LocalProtocolError, raised while h11 checks the request line and headers, before any byte
#: is written). Nothing was sent, and the same request would be refused again: not retried.
REFUSED: Final = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt ``k`` (from 1) waits about ``base * 2**(k-1)``.

    The wait is drawn in ``[d/2, d]`` (d capped at ``max_delay``), raised to the API's
    ``Retry-After`` when it asks for longer (still capped).
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (given {self.max_retries})")

    def delay(self, attempt: int, rand: float, retry_after: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait = ceiling / 2 + rand * ceiling / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait

    def retryable(self, error: errors.KlingAPIError, *, idempotent: bool) -> bool:
        """Rate limits and unsent requests always; other transport failures on queries only."""
        if isinstance(error, errors.RateLimitError | errors.ConnectError):
            return True
        return idempotent and type(error) is errors.TransportError


def transport_error(
    exc: httpx.TransportError | httpx.InvalidURL, *, idempotent: bool, what: str
) -> errors.TransportError:
    """Map an httpx failure: unsent -> ConnectError; after sending -> ambiguous (or retryable).

    Only an error that httpx raises before writing the request is definite: a submission that
    may have been written must stay ambiguous, but one that certainly was not must not (the
    budget guard keeps an ambiguous submission's hold counting until someone resolves it).
    """
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, REFUSED):
        return errors.ConnectError(
            f"{what}: httpx refused the request ({detail}); the request was not sent"
        )
    if isinstance(exc, NOT_SENT):
        return errors.ConnectError(
            f"{what}: could not connect ({detail}); the request was not sent"
        )
    if idempotent:
        return errors.TransportError(f"{what}: no answer ({detail})")
    return errors.AmbiguousSubmitError(
        f"{what}: the request was sent but no answer came ({detail}); "
        "the task may exist: it is not resent"
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        seconds = float(value)  # a time, not an amount
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# --- the key ------------------------------------------------------------------------------


def redact_key(key: str) -> str:
    """How a key shows in a repr: its prefix (``hk-``) and nothing more."""
    prefix = key.split("-", 1)[0] + "-" if "-" in key[:6] and len(key) >= 12 else ""
    return f"'{prefix}…'redacted"


def key_forms(key: str) -> tuple[str, ...]:
    """Every way ``key`` can show in an error's text, longest first (see
    :func:`klingcost.redaction.secret_forms`)."""
    return secret_forms(key)


def redact(text: str, key: str) -> str:
    """``text`` with every run of 8 or more characters of ``key`` replaced, in any case and
    any escaped form (:func:`klingcost.redaction.redact`)."""
    return _redact(text, key) if key else text


def shows_key(exc: BaseException, key: str) -> bool:
    """Whether ``exc`` or an exception chained to it shows ``key`` when printed or repr'd.

    The whole ``__cause__``/``__context__`` chain counts: a traceback prints it, and even a
    suppressed context stays reachable as ``__context__``.
    """
    if not key:
        return False
    seen: set[int] = set()
    chain: list[BaseException | None] = [exc]
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        text = "".join(traceback.format_exception_only(current)) + repr(current)
        if redact(text, key) != text:
            return True
        chain += [current.__cause__, current.__context__]
    return False


def scrub(error: errors.KlingAPIError, key: str) -> errors.KlingAPIError:
    """The same error with every form of ``key`` in its message replaced.

    When the key shows anywhere (its message or a chained exception) the answer is a fresh
    error with no chain: raise it outside any ``except`` block, or Python chains the original
    back as ``__context__``.
    """
    if not shows_key(error, key):
        return error
    return type(error)(
        redact(error.message, key),
        code=error.code,
        status=error.status,
        request_id=redact(error.request_id, key) if error.request_id else None,
    )
