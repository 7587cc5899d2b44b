"""The sync and async clients against the real fake server, over loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import anyio
import httpx
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.envelope import Task
from klingcost.fake_server import FakeKling


class Api:
    """Runs one client call with the sync or the async client, so each test covers both."""

    def __init__(self, mode: str, base_url: str, **options: Any) -> None:
        self.mode = mode
        self.sleeps: list[float] = []
        self.options: dict[str, Any] = {"base_url": base_url, "random": lambda: 0.5, **options}
        self.options.setdefault("api_key", KEY)

    def client_repr(self) -> str:
        if self.mode == "sync":
            with KlingClient(**self.options) as client:
                return repr(client)
        return anyio.run(self._async_repr)

    async def _async_repr(self) -> str:
        async with AsyncKlingClient(**self.options) as client:
            return repr(client)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            with KlingClient(sleep=self.sleeps.append, **self.options) as client:
                return getattr(client, method)(*args, **kwargs)
        return anyio.run(self._async_call, method, args, kwargs)

    async def _async_call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        async with AsyncKlingClient(sleep=sleep, **self.options) as client:
            return await getattr(client, method)(*args, **kwargs)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, fake: FakeKling) -> Callable[..., Api]:
    def make(**options: Any) -> Api:
        return Api(request.param, options.pop("base_url", fake.base_url), **options)

    return make


def creates(fake: FakeKling) -> int:
    return len(fake.requests("POST"))


# --- the happy path, every endpoint -------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(BODIES))
def test_submit_then_query_each_endpoint(
    api: Callable[..., Api], fake: FakeKling, endpoint: str
) -> None:
    call = api()
    submitted: Task = call("submit", endpoint, BODIES[endpoint])
    assert submitted.status == "submitted"
    assert submitted.endpoint == endpoint
    assert submitted.task_id.isdigit()
    assert submitted.request_id
    assert submitted.deduction.flag == "absent"

    done: Task = call("get_task", endpoint.split("/")[1], submitted.task_id)  # short name
    assert done.status == "succeed"
    assert done.task_id == submitted.task_id
    assert done.deduction.flag == "ok"
    if endpoint == "images/generations":
        assert [image.index for image in done.images] == [0, 1]
        assert done.videos == ()
    else:
        assert len(done.videos) == 1 and done.images == ()
    assert all(url.startswith(f"{fake.base_url}/_fake/files/") for url in done.urls)
    assert fake.charged() == done.deduction.units


def test_seed_example_units(api: Callable[..., Api]) -> None:
    call = api()
    task = call("submit", "videos/text2video", BODIES["videos/text2video"])
    done = call("get_task", "videos/text2video", task.task_id)
    assert done.deduction.raw == "7"  # the seed: kling-v1-5, 10 s, pro
    assert done.deduction.units == Fraction(7)


def test_wait_polls_until_done(api: Callable[..., Api], fake: FakeKling) -> None:
    fake.configure(done_after=0.15)
    call = api()
    task = call("submit", "text2video", {"prompt": "x"})
    done = call("wait", "text2video", task.task_id, interval=0.05, timeout=5)
    assert done.status == "succeed"


def test_wait_times_out(fake: FakeKling) -> None:
    fake.configure(done_after=60)
    with KlingClient(KEY, base_url=fake.base_url) as client:
        task = client.submit("text2video", {"prompt": "x"})
        with pytest.raises(TimeoutError, match="still processing"):
            client.wait("text2video", task.task_id, interval=0.01, timeout=0.03)


def test_list_tasks(api: Callable[..., Api]) -> None:
    call = api()
    first = call("submit", "text2video", {"prompt": "one"})
    second = call("submit", "text2video", {"prompt": "two"})
    call("submit", "image2video", BODIES["videos/image2video"])
    listed = call("list_tasks", "text2video")
    assert [t.task_id for t in listed] == [second.task_id, first.task_id]
    assert call("list_tasks", "text2video", page=2, page_size=1)[0].task_id == first.task_id


def test_query_by_external_task_id(api: Callable[..., Api]) -> None:
    call = api()
    task = call("submit", "text2video", {"prompt": "x", "external_task_id": "order-42"})
    assert task.external_task_id == "order-42"
    found = call("get_task", "text2video", "order-42")
    assert found.task_id == task.task_id and found.external_task_id == "order-42"


def test_failed_task_is_not_charged(api: Callable[..., Api], fake: FakeKling) -> None:
    fake.set_faults({"kind": "fail_task"})
    call = api()
    task = call("submit", "text2video", {"prompt": "x"})
    done = call("get_task", "text2video", task.task_id)
    assert done.status == "failed" and done.status_msg
    assert done.deduction.flag == "absent"
    assert fake.charged() == 0


@pytest.mark.parametrize(
    ("value", "flag", "units"),
    [("1e100", "absurd", Fraction(10**100)), ("abc", "malformed", None), (None, "absent", None)],
)
def test_odd_deductions_are_flagged(
    api: Callable[..., Api], fake: FakeKling, value: str | None, flag: str, units: Fraction | None
) -> None:
    fake.set_faults({"kind": "deduction", "value": value})
    call = api()
    task = call("submit", "text2video", {"prompt": "x"})
    done = call("get_task", "text2video", task.task_id)
    assert (done.deduction.raw, done.deduction.flag, done.deduction.units) == (value, flag, units)


# --- every error class, every fault -------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cls", "status", "code"),
    [
        ({"kind": "rate_limit"}, errors.RateLimitError, 429, 1302),
        ({"kind": "concurrency"}, errors.RateLimitError, 429, 1303),
        ({"kind": "pack_used_up"}, errors.AccountError, 429, 1102),
        ({"kind": "unauthorized"}, errors.AuthenticationError, 401, 1002),
        ({"kind": "policy"}, errors.PolicyError, 400, 1301),
        ({"kind": "server_error"}, errors.ServerError, 500, 5000),
        ({"kind": "unavailable"}, errors.ServerError, 503, 5001),
        ({"kind": "error", "status": 403, "code": 1103}, errors.AccountError, 403, 1103),
        ({"kind": "error", "status": 404, "code": 1203}, errors.InvalidRequestError, 404, 1203),
        ({"kind": "error", "status": 429, "code": 1304}, errors.PolicyError, 429, 1304),
        # Every documented code, through the real server (kling-facts.md's table).
        *(
            ({"kind": "error", "status": 401, "code": c}, errors.AuthenticationError, 401, c)
            for c in (1000, 1001, 1002, 1003, 1004)
        ),
        *(
            ({"kind": "error", "status": 429, "code": c}, errors.AccountError, 429, c)
            for c in (1100, 1101, 1102)
        ),
        *(
            ({"kind": "error", "status": 400, "code": c}, errors.InvalidRequestError, 400, c)
            for c in (1200, 1201)
        ),
        ({"kind": "error", "status": 404, "code": 1202}, errors.InvalidRequestError, 404, 1202),
        ({"kind": "error", "status": 400, "code": 1300}, errors.PolicyError, 400, 1300),
        ({"kind": "error", "status": 504, "code": 5002}, errors.ServerError, 504, 5002),
        ({"kind": "malformed", "status": 504, "body": ""}, errors.ServerError, 504, None),
        ({"kind": "malformed"}, errors.MalformedResponseError, 200, None),
        ({"kind": "malformed", "status": 502, "body": "<html>"}, errors.ServerError, 502, None),
    ],
)
@pytest.mark.parametrize("method", ["submit", "get_task"])
def test_faults_map_to_the_error_tree(
    api: Callable[..., Api],
    fake: FakeKling,
    fault: dict[str, Any],
    cls: type[errors.KlingAPIError],
    status: int,
    code: int | None,
    method: str,
) -> None:
    call = api(max_retries=0)
    task_id = call("submit", "text2video", {"prompt": "x"}).task_id
    args: tuple[Any, ...] = ("text2video", {"prompt": "x"} if method == "submit" else task_id)
    fake.set_faults(fault)
    with pytest.raises(cls) as caught:
        call(method, *args)
    error = caught.value
    assert type(error) is cls
    assert (error.status, error.code) == (status, code)
    if code is not None:
        assert error.request_id and error.message
    assert KEY not in str(error) and KEY not in repr(error)


def test_wrong_key(api: Callable[..., Api]) -> None:
    with pytest.raises(errors.AuthenticationError) as caught:
        api(api_key="hk-not-the-right-one")("submit", "text2video", {"prompt": "x"})
    assert (caught.value.status, caught.value.code) == (401, 1002)
    assert "hk-not-the-right-one" not in str(caught.value)


def test_invalid_body_is_refused_by_the_server(api: Callable[..., Api], fake: FakeKling) -> None:
    with pytest.raises(errors.InvalidRequestError) as caught:
        api()("submit", "text2video", {"prompt": "x", "duration": "7"})
    assert (caught.value.status, caught.value.code) == (400, 1201)
    assert "duration" in caught.value.message
    assert fake.ledger()["tasks"] == []


def test_unknown_task(api: Callable[..., Api]) -> None:
    with pytest.raises(errors.InvalidRequestError) as caught:
        api()("get_task", "text2video", "123")
    assert (caught.value.status, caught.value.code) == (404, 1203)


def test_unknown_endpoint_is_refused_before_sending(api: Callable[..., Api]) -> None:
    with pytest.raises(errors.RequestValidationError, match="endpoint"):
        api()("submit", "videos/lip-sync", {"prompt": "x"})


# --- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rate_limit", "concurrency"])
def test_rate_limits_are_retried_then_succeed(
    api: Callable[..., Api], fake: FakeKling, kind: str
) -> None:
    fake.set_faults({"kind": kind, "times": 2})
    call = api(backoff=0.5)
    task = call("submit", "text2video", {"prompt": "x"})
    assert task.status == "submitted"
    assert call.sleeps == [0.375, 0.75]  # base 0.5 * 2**k, jitter drawn at 0.5: 3/4 of it
    assert creates(fake) == 3
    assert len(fake.ledger()["tasks"]) == 1


def test_rate_limit_retries_run_out(api: Callable[..., Api], fake: FakeKling) -> None:
    fake.set_faults({"kind": "rate_limit", "times": 10})
    call = api(max_retries=3)
    with pytest.raises(errors.RateLimitError):
        call("submit", "text2video", {"prompt": "x"})
    assert len(call.sleeps) == 3
    assert creates(fake) == 4


@pytest.mark.parametrize("kind", ["pack_used_up", "server_error", "unauthorized", "policy"])
def test_other_errors_are_not_retried(api: Callable[..., Api], fake: FakeKling, kind: str) -> None:
    fake.set_faults({"kind": kind})
    call = api()
    with pytest.raises(errors.KlingAPIError):
        call("submit", "text2video", {"prompt": "x"})
    assert call.sleeps == [] and creates(fake) == 1


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_connection_refused_is_retried_then_connect_error(api: Callable[..., Api]) -> None:
    call = api(base_url=closed_port_url(), max_retries=2)
    with pytest.raises(errors.ConnectError) as caught:
        call("submit", "text2video", {"prompt": "x"})
    assert len(call.sleeps) == 2
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# --- ambiguous submissions are never resent -----------------------------------------------


def test_dropped_submission_is_ambiguous_and_not_resent(
    api: Callable[..., Api], fake: FakeKling
) -> None:
    fake.set_faults({"kind": "drop", "create": True})
    call = api()
    with pytest.raises(errors.AmbiguousSubmitError) as caught:
        call("submit", "text2video", {"prompt": "x"})
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    assert creates(fake) == 1 and call.sleeps == []
    assert len(fake.ledger()["tasks"]) == 1  # the task exists, the client cannot know


def test_timeout_after_accept_is_ambiguous_and_not_resent(
    api: Callable[..., Api], fake: FakeKling
) -> None:
    fake.set_faults({"kind": "timeout_after_accept", "ms": 2000})
    call = api(timeout=0.2)
    with pytest.raises(errors.AmbiguousSubmitError) as caught:
        call("submit", "text2video", {"prompt": "x"})
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert creates(fake) == 1 and call.sleeps == []
    [task] = fake.ledger()["tasks"]
    assert task["status"] == "succeed"


def test_slow_answer_within_the_timeout_is_fine(api: Callable[..., Api], fake: FakeKling) -> None:
    fake.set_faults({"kind": "slow", "ms": 50})
    assert api(timeout=2)("submit", "text2video", {"prompt": "x"}).status == "submitted"


@pytest.mark.parametrize(
    "fault", [{"kind": "drop"}, {"kind": "slow", "ms": 1000}], ids=["drop", "timeout"]
)
def test_lost_query_answers_are_retried(
    api: Callable[..., Api], fake: FakeKling, fault: dict[str, Any]
) -> None:
    call = api(timeout=0.2)
    task = call("submit", "text2video", {"prompt": "x"})
    fake.set_faults({**fault, "method": "GET", "times": 2})
    assert call("get_task", "text2video", task.task_id).status == "succeed"
    assert len(call.sleeps) == 2
    assert len(fake.requests("GET")) == 3


def test_lost_query_answers_run_out(api: Callable[..., Api], fake: FakeKling) -> None:
    call = api(max_retries=1)
    task = call("submit", "text2video", {"prompt": "x"})
    fake.set_faults({"kind": "drop", "method": "GET", "times": 5})
    with pytest.raises(errors.TransportError) as caught:
        call("get_task", "text2video", task.task_id)
    assert type(caught.value) is errors.TransportError


# --- the key stays secret -----------------------------------------------------------------


def test_the_key_never_shows(
    api: Callable[..., Api], fake: FakeKling, caplog: pytest.LogCaptureFixture
) -> None:
    call = api()
    shown = call.client_repr()
    assert KEY not in shown and "api_key='hk-…'redacted" in shown
    caplog.set_level(logging.DEBUG, logger="klingcost")
    fake.set_faults(
        {"kind": "rate_limit"},
        {"kind": "error", "status": 400, "code": 1200, "message": f"bad {KEY}"},
    )
    with pytest.raises(errors.InvalidRequestError) as caught:
        call("submit", "text2video", {"prompt": "x"})
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert "<redacted>" in caught.value.message
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)
    task = call("submit", "text2video", {"prompt": "x"})
    assert KEY not in repr(task)


@pytest.mark.anyio
async def test_async_client_shares_one_connection(fake: FakeKling) -> None:
    async with AsyncKlingClient(KEY, base_url=fake.base_url) as client:
        tasks = [await client.submit("text2video", {"prompt": f"p{i}"}) for i in range(3)]
        done = [await client.get_task("text2video", t.task_id) for t in tasks]
    assert {t.status for t in done} == {"succeed"}
