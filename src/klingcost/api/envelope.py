"""The Kling HTTP protocol's answers, as pure functions: what both clients and the proxy share.

Nothing here does I/O, nor imports httpx. :func:`read_envelope` turns an HTTP status and body
into the answer's JSON or the matching :class:`~klingcost.errors.KlingAPIError`;
:func:`error_for` is the one mapping of (HTTP status, Kling ``code``) to the exception tree;
:func:`parse_task` builds the typed results (its deduction parsed by :mod:`klingcost.deduction`).
What is retried, and how long to wait, is :mod:`klingcost.api.retry`.

Amounts are exact: JSON numbers are read as :class:`~decimal.Decimal` and a deduction is parsed
by :mod:`klingcost.deduction`, never through a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal, get_args

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost.deduction import DEFAULT_DEDUCTION_CAP, Deduction, parse_deduction
from klingcost.money import MAX_DIGITS
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
