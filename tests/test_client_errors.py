"""The client's pure core: error mapping, deduction parsing, task parsing, retry decisions.

Network behaviour is exercised here with ``httpx.MockTransport`` only; the real loopback tests
against the fake server are in test_client.py.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingcost import errors
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.envelope import error_class, error_for, parse_task, read_envelope
from klingcost.api.redact import scrub
from klingcost.api.retry import RetryPolicy, transport_error
from klingcost.deduction import parse_deduction
from klingcost.guard import GuardedClient
from klingcost.guard_core import DEFINITE_FAILURES
from klingcost.ledger import Ledger

KEY = "hk-unit-SECRET-0a1b2c3d4e5f"

# --- error mapping ------------------------------------------------------------------------

CODES = [
    *[(401, c, errors.AuthenticationError) for c in range(1000, 1005)],
    *[(429, c, errors.AccountError) for c in (1100, 1101, 1102)],
    (403, 1103, errors.AccountError),
    *[(400, c, errors.InvalidRequestError) for c in (1200, 1201)],
    *[(404, c, errors.InvalidRequestError) for c in (1202, 1203)],
    *[(400, c, errors.PolicyError) for c in (1300, 1301)],
    (429, 1304, errors.PolicyError),
    *[(429, c, errors.RateLimitError) for c in (1302, 1303)],
    (500, 5000, errors.ServerError),
    (503, 5001, errors.ServerError),
    (504, 5002, errors.ServerError),
]


@pytest.mark.parametrize(("status", "code", "cls"), CODES)
def test_documented_codes(status: int, code: int, cls: type[errors.KlingAPIError]) -> None:
    assert error_class(status, code) is cls
    assert error_class(None, code) is cls  # the code alone decides


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (502, None, errors.ServerError),
        (500, 1200, errors.ServerError),  # any 5xx: its outcome is unknown
        (401, None, errors.AuthenticationError),
        (403, None, errors.AccountError),
        (429, None, errors.RateLimitError),
        (404, 9999, errors.InvalidRequestError),
        (413, None, errors.InvalidRequestError),
        (200, 9999, None),
        (302, None, None),
    ],
)
def test_status_decides_when_the_code_does_not(
    status: int, code: int | None, cls: type[errors.KlingAPIError] | None
) -> None:
    assert error_class(status, code) is cls


def test_error_for_carries_its_data() -> None:
    error = error_for(status=429, code=1102, message="pack used up", request_id="r-1")
    assert type(error) is errors.AccountError
    assert (error.status, error.code, error.message, error.request_id) == (
        429,
        1102,
        "pack used up",
        "r-1",
    )
    assert str(error) == "pack used up | code 1102 | HTTP 429 | request r-1"
    assert type(error_for(status=200, code=4242, message="?")) is errors.KlingAPIError


def envelope(code: Any = 0, **extra: Any) -> bytes:
    return json.dumps({"code": code, "message": "m", "request_id": "rid", **extra}).encode()


@pytest.mark.parametrize(
    ("status", "content", "cls", "code"),
    [
        (200, b"<html>oops</html>", errors.MalformedResponseError, None),
        (200, b'{"code": 0, "data": {', errors.MalformedResponseError, None),
        (200, b"[1, 2]", errors.MalformedResponseError, None),
        (200, b'{"message": "no code"}', errors.MalformedResponseError, None),
        (200, b'{"code": true}', errors.MalformedResponseError, None),
        (502, b"<html>bad gateway</html>", errors.ServerError, None),
        (429, b"slow down", errors.RateLimitError, None),
        (200, envelope(1303), errors.RateLimitError, 1303),
        (400, envelope(0), errors.InvalidRequestError, None),
        (400, envelope("1201"), errors.InvalidRequestError, 1201),
        (401, b'{"error": {"message": "bad key", "code": 1002}}', errors.AuthenticationError, 1002),
    ],
)
def test_read_envelope_errors(
    status: int, content: bytes, cls: type[errors.KlingAPIError], code: int | None
) -> None:
    with pytest.raises(errors.KlingAPIError) as caught:
        read_envelope(status, content)
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code) == (status, code)


def test_read_envelope_keeps_the_request_id_and_reads_numbers_exactly() -> None:
    with pytest.raises(errors.RateLimitError) as caught:
        read_envelope(429, envelope(1302))
    assert caught.value.request_id == "rid"
    payload = read_envelope(200, b'{"code": 0, "data": {"x": 0.1}}')
    assert payload["data"]["x"] == Decimal("0.1")


# --- deductions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "raw", "units", "flag"),
    [
        ("4", "4", Fraction(4), "ok"),
        ("0.6", "0.6", Fraction(3, 5), "ok"),
        (" 7 ", " 7 ", Fraction(7), "ok"),
        ("1000", "1000", Fraction(1000), "ok"),
        ("1000.001", "1000.001", Fraction(1000001, 1000), "absurd"),
        ("0", "0", Fraction(0), "zero"),
        ("-0", "-0", Fraction(0), "zero"),
        ("0e999999", "0e999999", Fraction(0), "zero"),
        (None, None, None, "absent"),
        ("", "", None, "absent"),
        ("   ", "   ", None, "absent"),
        ("abc", "abc", None, "malformed"),
        ("4/3", "4/3", None, "malformed"),
        ("NaN", "NaN", None, "malformed"),
        ("Infinity", "Infinity", None, "malformed"),
        ("1_000", "1_000", None, "malformed"),
        ("0x10", "0x10", None, "malformed"),
        ("1" * 65, "1" * 65, None, "malformed"),
        ("1e-999999", "1e-999999", None, "malformed"),
        ("1e100", "1e100", Fraction(10**100), "absurd"),
        ("1e999999999", "1e999999999", None, "absurd"),
        ("-3.5", "-3.5", Fraction(-7, 2), "negative"),
        ("-1e999999999", "-1e999999999", None, "negative"),
        (4, "4", Fraction(4), "ok"),
        (Decimal("2.5"), "2.5", Fraction(5, 2), "ok"),
        (2.5, "2.5", None, "malformed"),  # a float is never read as an amount
        (True, "true", None, "malformed"),
        ({"quota": 1}, '{"quota": 1}', None, "malformed"),
    ],
)
def test_parse_deduction(value: object, raw: str | None, units: Fraction | None, flag: str) -> None:
    deduction = parse_deduction(value)
    assert (deduction.raw, deduction.units, deduction.flag) == (raw, units, flag)
    assert deduction.trusted == (flag in ("ok", "zero"))


def test_deduction_cap_is_configurable() -> None:
    assert parse_deduction("1500").flag == "absurd"
    assert parse_deduction("1500", cap=Fraction(2000)).flag == "ok"
    assert parse_deduction("3", cap=Fraction(2)).flag == "absurd"


@given(st.one_of(st.text(max_size=80), st.from_regex(r"-?\d{1,70}(\.\d{0,5})?(e-?\d{1,12})?")))
def test_parse_deduction_never_raises(text: str) -> None:
    deduction = parse_deduction(text)
    assert deduction.raw == text
    assert deduction.units is None or isinstance(deduction.units, Fraction)
    assert (deduction.units is None) == (
        deduction.flag in ("absent", "malformed") or deduction.units is None
    )


# --- tasks --------------------------------------------------------------------------------

#: The seed's O1 query answer, verbatim but for the shortened URL.
SEED_O1 = {
    "code": 0,
    "data": {
        "created_at": 1770000156527,
        "final_unit_deduction": "4",
        "task_id": "847130448077000794",
        "task_info": {},
        "task_result": {
            "videos": [
                {"duration": "5.041", "id": "847130448194441245", "url": "https://v1.example/x.mp4"}
            ]
        },
        "task_status": "succeed",
        "task_status_msg": "",
        "updated_at": 1770000219604,
    },
    "message": "SUCCEED",
    "request_id": "3a856e3c-7f79-45cf-a97a-a73630712883",
}
SEED_IMAGE = {
    "code": 0,
    "message": "ok",
    "request_id": "Clo_MGbfunoAAAAAABB5XA",
    "data": {
        "task_id": "Clo_MGbfunoAAAAAABB5XA",
        "task_status": "succeed",
        "task_status_msg": "",
        "created_at": 1725977118293,
        "updated_at": 1725977125849,
        "task_result": {
            "images": [{"index": 0, "url": "https://cdn.example/0.png"}],
            "videos": None,
        },
    },
}


def test_parse_seed_answers() -> None:
    task = parse_task("videos/omni-video", SEED_O1)
    assert task.status == "succeed" and task.done and task.succeeded
    assert task.deduction.units == 4 and task.deduction.flag == "ok"
    assert task.videos[0].duration == "5.041" and task.urls == ("https://v1.example/x.mp4",)
    assert (task.created_at, task.updated_at) == (1770000156527, 1770000219604)
    assert task.request_id == "3a856e3c-7f79-45cf-a97a-a73630712883"
    image = parse_task("images/generations", SEED_IMAGE)
    assert image.images[0].index == 0 and image.videos == ()
    assert image.deduction.flag == "absent"


def test_balance_deduction_is_kept_raw() -> None:
    data = {**SEED_O1["data"], "final_balance_deduction": {"quota": "1.2", "list_price": "1.4"}}  # type: ignore[dict-item]
    data.pop("final_unit_deduction")
    task = parse_task("videos/omni-video", {"data": data})
    assert task.balance_deduction == {"quota": "1.2", "list_price": "1.4"}
    assert task.deduction.flag == "absent"


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"task_status": "succeed"},
        {"task_id": "1", "task_status": "done"},
        {"task_id": "1", "task_status": "succeed", "task_result": "nope"},
        {"task_id": "1", "task_status": "succeed", "task_result": {"videos": [{"id": "x"}]}},
        {"task_id": "1", "task_status": "succeed", "task_result": {"images": {"url": "x"}}},
    ],
)
def test_wrong_shapes_are_malformed(data: object) -> None:
    with pytest.raises(errors.MalformedResponseError):
        parse_task("videos/text2video", {"code": 0, "data": data})


# --- retry decisions ----------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=5)
    assert [policy.delay(k, 0.0) for k in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [policy.delay(k, 1.0) for k in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(1, 0.0, retry_after=3) == 3
    assert policy.delay(1, 0.0, retry_after=60) == 5
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


@pytest.mark.parametrize(
    ("exc", "idempotent", "cls", "retried"),
    [
        (httpx.ConnectError("refused"), False, errors.ConnectError, True),
        (httpx.ConnectTimeout("slow"), False, errors.ConnectError, True),
        (httpx.PoolTimeout("busy"), False, errors.ConnectError, True),
        (httpx.ReadTimeout("late"), False, errors.AmbiguousSubmitError, False),
        (httpx.WriteTimeout("late"), False, errors.AmbiguousSubmitError, False),
        (httpx.ReadError("reset"), False, errors.AmbiguousSubmitError, False),
        (httpx.RemoteProtocolError("closed"), False, errors.AmbiguousSubmitError, False),
        (httpx.ReadTimeout("late"), True, errors.TransportError, True),
        (httpx.RemoteProtocolError("closed"), True, errors.TransportError, True),
    ],
)
def test_transport_errors(
    exc: httpx.TransportError, idempotent: bool, cls: type[errors.KlingAPIError], retried: bool
) -> None:
    error = transport_error(exc, idempotent=idempotent, what="POST x")
    assert type(error) is cls
    assert (error.status, error.code) == (None, None)
    assert RetryPolicy().retryable(error, idempotent=idempotent) is retried


def test_only_rate_limits_are_retried_among_api_errors() -> None:
    policy = RetryPolicy()
    for cls in (errors.AccountError, errors.ServerError, errors.MalformedResponseError):
        assert not policy.retryable(cls("x"), idempotent=True)
    assert policy.retryable(errors.RateLimitError("x"), idempotent=False)


# --- the clients over a MockTransport -----------------------------------------------------

OK = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "r",
    "data": {"task_id": "9", "task_status": "submitted"},
}


def mock(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


def client(
    transport: httpx.BaseTransport, sleeps: list[float] | None = None, **kw: Any
) -> KlingClient:
    record: Callable[[float], None] = (sleeps if sleeps is not None else []).append
    return KlingClient(
        KEY,
        base_url="https://kling.example/kling",
        transport=transport,
        sleep=record,
        random=lambda: 1.0,
        **kw,
    )


def test_request_shape() -> None:
    transport, seen = mock(httpx.Response(200, json=OK), httpx.Response(200, json=OK))
    with client(transport) as kling:
        kling.submit("text2video", {"prompt": "x"})
        kling.get_task("videos/text2video", "9")
    post, get = seen
    assert str(post.url) == "https://kling.example/kling/v1/videos/text2video"
    assert post.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(post.content) == {"prompt": "x"}
    assert (get.method, str(get.url)) == (
        "GET",
        "https://kling.example/kling/v1/videos/text2video/9",
    )


def test_retry_after_is_honoured() -> None:
    limited = httpx.Response(
        429, json={"code": 1302, "message": "slow"}, headers={"Retry-After": "3"}
    )
    transport, seen = mock(limited, httpx.Response(200, json=OK))
    sleeps: list[float] = []
    with client(transport, sleeps, backoff=0.1) as kling:
        assert kling.submit("text2video", {"prompt": "x"}).task_id == "9"
    assert sleeps == [3.0] and len(seen) == 2


def test_ambiguous_submit_is_sent_once() -> None:
    transport, seen = mock(httpx.ReadTimeout("late"), httpx.Response(200, json=OK))
    with client(transport) as kling, pytest.raises(errors.AmbiguousSubmitError) as caught:
        kling.submit("text2video", {"prompt": "x"})
    assert len(seen) == 1 and isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_connect_errors_are_retried_max_retries_times(caplog: pytest.LogCaptureFixture) -> None:
    transport, seen = mock(*[httpx.ConnectError("refused")] * 3)
    sleeps: list[float] = []
    with client(transport, sleeps, max_retries=2) as kling, pytest.raises(errors.ConnectError):
        kling.submit("text2video", {"prompt": "x"})
    assert len(seen) == 3 and sleeps == [0.5, 1.0]
    assert [r.name for r in caplog.records] == ["klingcost.client"] * 2
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def _async_submit(transport: httpx.AsyncBaseTransport) -> list[float]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with AsyncKlingClient(
        KEY, base_url="https://k.example", transport=transport, sleep=sleep, random=lambda: 0.0
    ) as kling:
        await kling.submit("omni-video", {"prompt": "x"})
    return sleeps


@pytest.mark.anyio
async def test_async_client_retries_rate_limits() -> None:
    transport, seen = mock(httpx.Response(429, json={"code": 1303}), httpx.Response(200, json=OK))
    assert await _async_submit(transport) == [0.25]
    assert str(seen[0].url) == "https://k.example/v1/videos/omni-video"


def test_the_key_is_redacted_everywhere() -> None:
    echo = httpx.Response(
        400, json={"code": 1200, "message": f"bad header Bearer {KEY}", "request_id": KEY}
    )
    transport, _ = mock(echo)
    with client(transport) as kling:
        assert KEY not in repr(kling) and "'hk-…'redacted" in repr(kling)
        with pytest.raises(errors.InvalidRequestError) as caught:
            kling.submit("text2video", {"prompt": "x"})
    error = caught.value
    assert KEY not in str(error) and KEY not in repr(error) and KEY not in error.message
    assert error.request_id == "<redacted>"


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINGCOST_API_KEY", "hk-from-env-123456789")
    monkeypatch.setenv("KLINGCOST_BASE_URL", "https://api-singapore.klingai.com/")
    with KlingClient() as kling:
        assert kling.base_url == "https://api-singapore.klingai.com"
        assert "hk-from-env" not in repr(kling)
    monkeypatch.delenv("KLINGCOST_API_KEY")
    monkeypatch.delenv("KLINGCOST_BASE_URL")
    with pytest.raises(errors.AuthenticationError, match="KLINGCOST_API_KEY"):
        KlingClient()
    with KlingClient("hk-x") as kling:
        assert kling.base_url == "https://api.openai-hk.com/kling"


def test_bad_arguments() -> None:
    transport, seen = mock()
    with client(transport) as kling:
        with pytest.raises(errors.RequestValidationError):
            kling.submit("videos/extend", {"prompt": "x"})
        with pytest.raises(ValueError, match="task id"):
            kling.get_task("text2video", "../etc")
    assert seen == []


def test_unknown_status_in_a_success_is_malformed(caplog: pytest.LogCaptureFixture) -> None:
    bad = {**OK, "data": {"task_id": "9", "task_status": "exploded"}}
    transport, _ = mock(httpx.Response(200, json=bad))
    with client(transport) as kling, pytest.raises(errors.MalformedResponseError, match="exploded"):
        kling.submit("text2video", {"prompt": "x"})


def test_logging_does_not_leak_on_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport, _ = mock(httpx.Response(429, json={"code": 1302}), httpx.Response(200, json=OK))
    with client(transport) as kling:
        kling.submit("text2video", {"prompt": "x"})
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)


# --- requests that never left the client are definite failures ----------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.LocalProtocolError("Illegal header value b'x\\ny'"),
        httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
        httpx.InvalidURL("URL too long"),
        httpx.ProxyError("407 Proxy Authentication Required"),
    ],
    ids=type,
)
def test_unsent_httpx_errors_are_definite(exc: httpx.TransportError) -> None:
    error = transport_error(exc, idempotent=False, what="POST x")
    assert type(error) is errors.ConnectError
    assert isinstance(error, DEFINITE_FAILURES)
    assert "the request was not sent" in str(error) and type(exc).__name__ in str(error)


@pytest.mark.parametrize("base_url", ["ftp://x", "notaurl"])
def test_a_base_url_that_is_not_http_fails_definitely_and_once(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps: list[float] = []
    # The real transport: httpx refuses the URL before opening any connection.
    kling = KlingClient(KEY, base_url=base_url, sleep=sleeps.append)
    with kling, pytest.raises(errors.ConnectError, match="UnsupportedProtocol") as caught:
        kling.submit("text2video", {"prompt": "x"})
    assert "not sent" in str(caught.value)
    assert sleeps == [] and caplog.records == []  # the same request would be refused again


@pytest.mark.anyio
async def test_the_async_client_maps_a_bad_scheme_too() -> None:
    async with AsyncKlingClient(KEY, base_url="ftp://x") as kling:
        with pytest.raises(errors.ConnectError, match="not sent"):
            await kling.submit("text2video", {"prompt": "x"})


@pytest.mark.parametrize("cls", [KlingClient, AsyncKlingClient])
def test_an_invalid_base_url_is_refused_when_the_client_is_built(
    cls: type[KlingClient] | type[AsyncKlingClient],
) -> None:
    # httpx.InvalidURL is no TransportError and used to escape from the client's constructor.
    with pytest.raises(errors.ConnectError) as caught:
        cls(KEY, base_url="https://[::1")
    assert "https://[::1" in str(caught.value) and "not a valid URL" in str(caught.value)
    assert isinstance(caught.value, DEFINITE_FAILURES)
    assert KEY not in str(caught.value) and caught.value.__context__ is None
    # A host label over 63 characters fails in the resolver with a bare UnicodeError.
    with pytest.raises(errors.ConnectError, match="its host cannot be looked up"):
        cls(KEY, base_url=f"https://{'a' * 64}.example/kling")


def test_a_url_httpx_cannot_build_sends_nothing() -> None:
    transport, seen = mock()
    sleeps: list[float] = []
    with client(transport, sleeps) as kling, pytest.raises(errors.ConnectError, match="InvalidURL"):
        kling.get_task("text2video", "9" * 70_000)  # over httpx's URL length limit
    assert seen == [] and sleeps == []


# --- key hygiene --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["hk-abc\ndef-123456", "hk-abc\x00def", "hk-abcé123456", "hk-€"])
@pytest.mark.parametrize("cls", [KlingClient, AsyncKlingClient])
def test_a_key_a_header_cannot_carry_is_refused(
    key: str, cls: type[KlingClient] | type[AsyncKlingClient]
) -> None:
    with pytest.raises(errors.AuthenticationError, match="header cannot carry") as caught:
        cls(key, base_url="https://kling.example")
    text = f"{caught.value} {caught.value!r}"
    assert "hk-abc" not in text and "def" not in text and "123456" not in text
    assert caught.value.__context__ is None


def test_scrub_replaces_every_form_of_the_key() -> None:
    key = "sk-x\ny'z"
    shown = [key, repr(key), repr(f"Bearer {key}".encode()), ascii(key), f"Bearer {key}"]
    error = errors.AuthenticationError(" / ".join(shown), request_id=repr(key))
    clean = scrub(error, key)
    for text in (str(clean), repr(clean), clean.message, clean.request_id or ""):
        assert "x\ny" not in text and "x\\ny" not in text and "y'z" not in text
    assert "Bearer <redacted>" in clean.message
    assert scrub(errors.AuthenticationError("nothing"), key).message == "nothing"


def _refused_header(request: httpx.Request) -> httpx.Response:
    # What h11 raises on a header it cannot write, chained to an inner error (as httpcore does).
    value = next(v for k, v in request.headers.raw if k.lower() == b"authorization")
    try:
        raise ValueError(f"header value {value!r}")
    except ValueError:
        raise httpx.LocalProtocolError(f"Illegal header value {value!r}") from None


def _chain_text(error: BaseException) -> str:
    """The text of ``error`` and of every exception chained to it, and its printed traceback."""
    texts: list[str] = traceback.format_exception(error)
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current)]
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


def test_a_refused_header_never_shows_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _refused_header(request)

    sleeps: list[float] = []
    kling = client(httpx.MockTransport(handler), sleeps)
    with kling, pytest.raises(errors.ConnectError) as caught:
        kling.submit("text2video", {"prompt": "x"})
    error = caught.value
    assert "not sent" in str(error) and "Bearer <redacted>" in str(error)
    assert KEY not in _chain_text(error)
    assert len(seen) == 1 and sleeps == []


@pytest.mark.anyio
async def test_the_async_client_never_shows_the_key_either() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return _refused_header(request)

    async with AsyncKlingClient(
        KEY, base_url="https://k.example", transport=httpx.MockTransport(handler)
    ) as kling:
        with pytest.raises(errors.ConnectError) as caught:
            await kling.submit("text2video", {"prompt": "x"})
    assert KEY not in _chain_text(caught.value)


def test_a_scrubbed_answer_error_does_not_chain_the_original() -> None:
    # raise scrub(error) from None inside the except block kept the original as __context__.
    echo = httpx.Response(400, json={"code": 1200, "message": f"bad header Bearer {KEY}"})
    transport, _ = mock(echo)
    with client(transport) as kling, pytest.raises(errors.InvalidRequestError) as caught:
        kling.submit("text2video", {"prompt": "x"})
    assert KEY not in _chain_text(caught.value)


def test_a_failure_with_a_clean_text_keeps_its_cause() -> None:
    transport, _ = mock(httpx.ReadTimeout("late"))
    with client(transport) as kling, pytest.raises(errors.AmbiguousSubmitError) as caught:
        kling.submit("text2video", {"prompt": "x"})
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_the_guard_stores_no_key_and_voids_the_hold(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.set_budget("studio", limit=1_000_000, period="month")
        guard = GuardedClient(
            "studio", ledger=ledger, client=client(httpx.MockTransport(_refused_header))
        )
        with guard, pytest.raises(errors.ConnectError):
            guard.submit("videos/text2video", {"prompt": "p", "mode": "pro"})
        [hold] = ledger.holds()
        assert hold.state == "voided"
        stored = repr(list(ledger.events())) + repr(hold)
    assert KEY not in stored
    assert all(KEY.encode() not in f.read_bytes() for f in tmp_path.iterdir() if f.is_file())


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_definite_failure(status: int) -> None:
    target = "https://api.openai-hk.com/kling/v1/videos/text2video"
    moved = httpx.Response(status, headers={"Location": target}, text="<html>moved</html>")
    transport, seen = mock(moved, httpx.Response(200, json=OK))
    with client(transport) as kling, pytest.raises(errors.InvalidRequestError) as caught:
        kling.submit("text2video", {"prompt": "x"})
    error = caught.value
    assert isinstance(error, DEFINITE_FAILURES) and error.status == status
    assert f"HTTP {status}, a redirect to {target}: check the base URL" in str(error)
    assert len(seen) == 1  # neither followed nor retried


def test_read_envelope_maps_any_3xx() -> None:
    for status in (300, 304, 399):
        with pytest.raises(errors.InvalidRequestError, match=f"HTTP {status}: check") as caught:
            read_envelope(status, b'{"code": 0, "data": {}}')
        assert caught.value.status == status
    with pytest.raises(errors.InvalidRequestError, match="a redirect to /elsewhere"):
        read_envelope(302, b"", location="/elsewhere")


def test_a_redirected_submission_voids_the_guarded_hold(tmp_path: Path) -> None:
    moved = httpx.Response(301, headers={"Location": "https://kling.example/elsewhere"})
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.set_budget("studio", limit=1_000_000, period="month")
        guard = GuardedClient("studio", ledger=ledger, client=client(mock(moved)[0]))
        with guard, pytest.raises(errors.InvalidRequestError):
            guard.submit("videos/text2video", {"prompt": "p", "mode": "pro"})
        [hold] = ledger.holds()
        assert hold.state == "voided"
