"""GuardedClient and AsyncGuardedClient against the real fake Kling API, over loopback.

Each behaviour runs with the sync and the async guard (the ``guard`` fixture). What the fake
server saw (``fake.requests()``) is the evidence that a refused job sent nothing and that an
ambiguous one was sent exactly once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.fake_server import FakeKling
from klingcost.guard import AsyncGuardedClient, GuardedClient, Submission
from klingcost.ledger import Ledger

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # kling-v1-5, pro, 10 s: 7 units = 105,000 credits
COST = 105_000


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        opened.set_budget("company", limit=1_000_000, period="month")
        opened.set_budget("studio", limit=400_000, period="month", parent="company")
        yield opened


class Guard:
    """Runs one guard call with the sync or the async guard, each call with a fresh guard."""

    def __init__(self, mode: str, ledger: Ledger, base_url: str, **options: Any) -> None:
        self.mode = mode
        self.ledger = ledger
        self.options: dict[str, Any] = {"ledger": ledger, "base_url": base_url, **options}
        self.options.setdefault("api_key", KEY)
        self.team = self.options.pop("team", "studio")
        self.client_options: dict[str, Any] | None = self.options.pop("client_options", None)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return self._sync(lambda guard: getattr(guard, method)(*args, **kwargs))
        return anyio.run(self._async_call, method, args, kwargs)

    def _sync(self, call: Callable[[GuardedClient], Any]) -> Any:
        options = dict(self.options)
        client = None
        if self.client_options is not None:
            client = KlingClient(
                options.pop("api_key"), base_url=options.pop("base_url"), **self.client_options
            )
        try:
            with GuardedClient(self.team, client=client, **options) as guard:
                return call(guard)
        finally:
            if client is not None:
                client.close()

    async def _async_call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        options = dict(self.options)
        client = None
        if self.client_options is not None:
            client = AsyncKlingClient(
                options.pop("api_key"),
                base_url=options.pop("base_url"),
                **{**self.client_options, "sleep": _no_async_sleep},
            )
        try:
            async with AsyncGuardedClient(self.team, client=client, **options) as guard:
                return await getattr(guard, method)(*args, **kwargs)
        finally:
            if client is not None:
                await client.aclose()

    def repr(self) -> str:
        if self.mode == "sync":
            return str(self._sync(repr))
        return anyio.run(self._async_repr)

    async def _async_repr(self) -> str:
        async with AsyncGuardedClient(self.team, **self.options) as guard:
            return repr(guard)


async def _no_async_sleep(seconds: float) -> None:
    pass


@pytest.fixture(params=["sync", "async"])
def guard(request: pytest.FixtureRequest, fake: FakeKling, ledger: Ledger) -> Callable[..., Guard]:
    def make(**options: Any) -> Guard:
        return Guard(request.param, ledger, options.pop("base_url", fake.base_url), **options)

    return make


#: A client that does not wait between retries, and gives up after one.
FAST_RETRIES: dict[str, Any] = {"max_retries": 1, "backoff": 0.001}


def creates(fake: FakeKling) -> int:
    return len(fake.requests("POST"))


def held(ledger: Ledger, team: str = "studio") -> int:
    return ledger.budget_status(team).held


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the happy path -----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(BODIES))
def test_submission_is_held_sent_and_attached(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger, endpoint: str
) -> None:
    submission: Submission = guard()("submit", endpoint, BODIES[endpoint])
    assert submission.task is not None
    assert submission.task_id == submission.task.task_id
    hold = ledger.get_hold(submission.hold.id)
    assert hold.state == "submitted" and hold.task_id == submission.task_id
    assert hold.team == "studio" and hold.meta["endpoint"] == endpoint
    assert hold.estimate.cost_minor == submission.estimate.cost.minor > 0
    assert ledger.hold_for_task(submission.task.task_id) == hold
    assert held(ledger) == held(ledger, "company") == hold.estimate.cost_minor
    assert creates(fake) == 1
    assert ledger.check() == []


# --- budgets refuse before anything is sent -----------------------------------------------


def test_over_budget_raises_and_sends_nothing(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    for _ in range(3):  # 3 x 105,000 of 400,000
        call("submit", ENDPOINT, BODY)
    before = len(fake.requests())
    with pytest.raises(errors.BudgetExceeded) as caught:
        call("submit", ENDPOINT, BODY)
    refused = caught.value
    assert (refused.team, refused.needed, refused.available) == ("studio", COST, 85_000)
    assert refused.period == "month" and refused.unit == "credits"
    assert len(fake.requests()) == before  # no HTTP request at all
    assert held(ledger) == 3 * COST
    assert len(list(ledger.holds())) == 3


def test_parent_budget_refuses_too(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    ledger.set_budget("company", limit=150_000, period="month")
    ledger.set_budget("ads", limit=400_000, period="month", parent="company")
    guard(team="ads")("submit", ENDPOINT, BODY)
    with pytest.raises(errors.BudgetExceeded) as caught:
        guard()("submit", ENDPOINT, BODY)  # studio has room; company does not
    assert caught.value.team == "company" and caught.value.requested_by == "studio"
    assert "on the path of 'studio'" in str(caught.value)
    assert creates(fake) == 1
    assert held(ledger, "studio") == 0


def test_a_team_without_a_budget_sends_nothing(
    guard: Callable[..., Guard], fake: FakeKling
) -> None:
    with pytest.raises(errors.BudgetNotFound):
        guard(team="nobody")("submit", ENDPOINT, BODY)
    assert fake.requests() == []


def test_an_invalid_body_sends_nothing_and_holds_nothing(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    with pytest.raises(errors.RequestValidationError):
        guard()("submit", ENDPOINT, {**BODY, "duration": "7"})
    assert fake.requests() == [] and list(ledger.holds()) == []


def test_a_body_that_is_not_json_is_refused_before_the_hold(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    from decimal import Decimal

    with pytest.raises(errors.RequestValidationError) as caught:
        guard()("submit", ENDPOINT, {**BODY, "cfg_scale": Decimal("0.5")})
    assert caught.value.problems[0].field == "cfg_scale"
    assert fake.requests() == [] and list(ledger.holds()) == []


# --- definite failures void the hold ------------------------------------------------------

DEFINITE = [
    pytest.param({"kind": "unauthorized"}, errors.AuthenticationError, id="401"),
    pytest.param({"kind": "pack_used_up"}, errors.AccountError, id="1102"),
    pytest.param({"kind": "policy"}, errors.PolicyError, id="1301"),
    pytest.param(
        {"kind": "error", "status": 400, "code": 1201, "message": "bad value"},
        errors.InvalidRequestError,
        id="1201",
    ),
    pytest.param(
        {"kind": "error", "status": 403, "code": 1103, "message": "no permission"},
        errors.AccountError,
        id="1103",
    ),
]


@pytest.mark.parametrize(("fault", "error"), DEFINITE)
def test_definite_failure_voids_the_hold(
    guard: Callable[..., Guard],
    fake: FakeKling,
    ledger: Ledger,
    fault: dict[str, Any],
    error: type[errors.KlingAPIError],
) -> None:
    fake.set_faults(fault)
    with pytest.raises(error):
        guard()("submit", ENDPOINT, BODY)
    [hold] = ledger.holds()
    assert hold.state == "voided"
    assert hold.reason is not None and hold.reason.startswith(
        f"submission refused: {error.__name__}"
    )
    assert held(ledger) == held(ledger, "company") == 0
    assert creates(fake) == 1 and fake.ledger()["tasks"] == []


def test_a_wrong_key_voids_the_hold(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    with pytest.raises(errors.AuthenticationError) as caught:
        guard(api_key="hk-wrong-key-0000000000")("submit", ENDPOINT, BODY)
    assert caught.value.status == 401
    [hold] = ledger.holds()
    assert hold.state == "voided" and held(ledger) == 0


@pytest.mark.parametrize("kind", ["rate_limit", "concurrency"])
def test_rate_limit_after_retries_voids_the_hold(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger, kind: str
) -> None:
    fake.set_faults({"kind": kind, "times": 2})
    with pytest.raises(errors.RateLimitError) as caught:
        guard(client_options=FAST_RETRIES)("submit", ENDPOINT, BODY)
    assert caught.value.code == (1302 if kind == "rate_limit" else 1303)
    assert creates(fake) == 2  # the first try and one retry, neither created a task
    [hold] = ledger.holds()
    assert hold.state == "voided" and held(ledger) == 0


def test_a_rate_limit_that_clears_is_retried_within_one_hold(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "rate_limit", "times": 1})
    submission = guard(client_options=FAST_RETRIES)("submit", ENDPOINT, BODY)
    assert submission.hold.state == "submitted"
    assert creates(fake) == 2 and len(list(ledger.holds())) == 1


def test_connection_refused_voids_the_hold(guard: Callable[..., Guard], ledger: Ledger) -> None:
    with pytest.raises(errors.ConnectError):
        guard(base_url=closed_port_url(), client_options=FAST_RETRIES)("submit", ENDPOINT, BODY)
    [hold] = ledger.holds()
    assert hold.state == "voided" and "ConnectError" in (hold.reason or "")
    assert held(ledger) == 0


# --- ambiguous failures keep the hold counting, as unknown --------------------------------

AMBIGUOUS = [
    pytest.param({"kind": "drop", "create": True}, errors.AmbiguousSubmitError, True, id="drop"),
    pytest.param({"kind": "drop"}, errors.AmbiguousSubmitError, False, id="drop-before-create"),
    pytest.param(
        {"kind": "timeout_after_accept", "ms": 1500},
        errors.AmbiguousSubmitError,
        True,
        id="timeout_after_accept",
    ),
    pytest.param({"kind": "server_error"}, errors.ServerError, False, id="500"),
    pytest.param({"kind": "unavailable"}, errors.ServerError, False, id="503"),
    pytest.param(
        {"kind": "server_error", "create": True}, errors.ServerError, True, id="500-created"
    ),
    pytest.param(
        {"kind": "malformed", "create": True}, errors.MalformedResponseError, True, id="malformed"
    ),
    pytest.param(
        {"kind": "malformed", "body": "[1, 2]"},
        errors.MalformedResponseError,
        False,
        id="not-object",
    ),
    pytest.param(
        {"kind": "malformed", "body": '{"code": 0, "data": {"task_status": "submitted"}}'},
        errors.MalformedResponseError,
        False,
        id="no-task-id",
    ),
    pytest.param(
        {"kind": "error", "status": 200, "code": 9999, "message": "who knows"},
        errors.KlingAPIError,
        False,
        id="unknown-code",
    ),
]


@pytest.mark.parametrize(("fault", "error", "created"), AMBIGUOUS)
def test_ambiguous_failure_marks_the_hold_unknown(
    guard: Callable[..., Guard],
    fake: FakeKling,
    ledger: Ledger,
    fault: dict[str, Any],
    error: type[errors.KlingAPIError],
    created: bool,
) -> None:
    fake.set_faults(fault)
    with pytest.raises(error):
        guard(timeout=0.3)("submit", ENDPOINT, BODY)
    [hold] = ledger.holds()
    assert hold.state == "unknown" and hold.task_id is None
    assert hold.reason is not None and hold.reason.startswith("outcome unknown:")
    assert held(ledger) == held(ledger, "company") == COST  # still counting
    assert creates(fake) == 1  # sent once, never resent
    assert len(fake.ledger()["tasks"]) == int(created)


def test_an_unknown_hold_still_blocks_the_budget(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    fake.set_faults({"kind": "unavailable", "times": 3})
    for _ in range(3):
        with pytest.raises(errors.ServerError):
            call("submit", ENDPOINT, BODY)
    with pytest.raises(errors.BudgetExceeded):
        call("submit", ENDPOINT, BODY)
    assert creates(fake) == 3


def test_an_exception_inside_submit_marks_the_hold_unknown(
    guard: Callable[..., Guard], ledger: Ledger
) -> None:
    def crash(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("the worker crashed mid-request")

    with pytest.raises(RuntimeError):
        guard(transport=httpx.MockTransport(crash))("submit", ENDPOINT, BODY)
    [hold] = ledger.holds()
    assert hold.state == "unknown"
    assert hold.reason == "outcome unknown: RuntimeError: the worker crashed mid-request"
    assert held(ledger) == COST


def test_keyboard_interrupt_mid_request_marks_the_hold_unknown(
    fake: FakeKling, ledger: Ledger
) -> None:
    """A real SIGINT while the guard waits for the (slow) API's answer."""
    fake.set_faults({"kind": "slow", "ms": 3000})
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    timer = threading.Timer(0.3, signal.pthread_kill, args=(main, signal.SIGINT))
    with GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as kling:
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt) as caught:
                kling.submit(ENDPOINT, BODY)
        finally:
            timer.cancel()
    [hold] = ledger.holds()
    assert hold.state == "unknown" and hold.reason == "outcome unknown: KeyboardInterrupt"
    # Issue 13, item 20: the interrupt says which hold stays counted, and what settles it.
    assert caught.value.__notes__ == [
        f"hold {hold.id} on 'studio' stays counted: `klingcost sync` settles it once it knows "
        "the task (sent without --external-ids, it may need `klingcost holds void` by a person "
        "who knows nothing was made)"
    ]
    assert held(ledger) == COST
    assert creates(fake) == 1


@pytest.mark.anyio
async def test_cancelling_an_async_submit_marks_the_hold_unknown(
    fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "slow", "ms": 3000})
    async with AsyncGuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url
    ) as kling:
        with anyio.move_on_after(0.3) as scope:
            await kling.submit(ENDPOINT, BODY)
    assert scope.cancelled_caught
    [hold] = ledger.holds()
    assert hold.state == "unknown" and "CancelledError" in (hold.reason or "")
    assert held(ledger) == COST


@pytest.mark.anyio
async def test_an_async_settle_waiting_on_a_busy_ledger_leaves_the_loop_free(
    fake: FakeKling, ledger: Ledger, tmp_path: Path
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with AsyncGuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url
    ) as kling:
        submission = await kling.submit(ENDPOINT, BODY)
        # Another process's write transaction holds the ledger file for 0.5 s.
        other = sqlite3.connect(
            tmp_path / "ledger.db", isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            resolution = await kling.settle(submission)
            tasks.cancel_scope.cancel()
        other.close()
    assert resolution.action == "settled"
    assert ticks >= 20  # the loop ran on while the settlement waited for the file's lock


# --- the idempotency key ------------------------------------------------------------------


def test_the_same_key_submits_once(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    first = call("submit", ENDPOINT, BODY, key="job-42")
    again = call("submit", ENDPOINT, BODY, key="job-42")
    assert first.task is not None and again.task is None
    assert again.hold.id == first.hold.id and again.task_id == first.task_id
    assert again.hold.key == "job-42"
    assert creates(fake) == 1
    assert held(ledger) == COST  # reserved once


def test_the_same_key_after_an_ambiguous_failure_sends_nothing(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    fake.set_faults({"kind": "drop", "create": True})
    with pytest.raises(errors.AmbiguousSubmitError):
        call("submit", ENDPOINT, BODY, key="job-7")
    retried = call("submit", ENDPOINT, BODY, key="job-7")
    assert retried.task is None and retried.hold.state == "unknown"
    assert creates(fake) == 1


def test_the_same_key_after_a_definite_failure_sends_again(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    fake.set_faults({"kind": "pack_used_up"})  # 1102: refused, nothing created: voided
    with pytest.raises(errors.AccountError):
        call("submit", ENDPOINT, BODY, key="job-8")
    retried = call("submit", ENDPOINT, BODY, key="job-8")
    assert retried.task is not None and retried.hold.state == "submitted"
    assert retried.hold.key == "job-8"
    assert creates(fake) == 2 and len(fake.ledger()["tasks"]) == 1
    assert held(ledger) == COST  # the voided attempt holds nothing
    assert call("submit", ENDPOINT, BODY, key="job-8").task is None  # and once only


def test_the_same_key_for_another_job_is_refused(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    call("submit", ENDPOINT, BODY, key="job-1")
    with pytest.raises(errors.HoldStateError, match="job-1"):
        call("submit", ENDPOINT, {**BODY, "duration": "5"}, key="job-1")
    with pytest.raises(errors.HoldStateError):
        guard(team="company")("submit", ENDPOINT, BODY, key="job-1")
    assert creates(fake) == 1


def test_concurrent_submits_with_one_key_send_once(fake: FakeKling, tmp_path: Path) -> None:
    """Eight threads, eight ledger connections to one file, one key: one request."""
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10_000_000)
    fake.set_faults({"kind": "slow", "ms": 100})
    start = threading.Barrier(8)
    results: list[Submission] = []

    def worker() -> None:
        with GuardedClient("studio", ledger=str(path), api_key=KEY, base_url=fake.base_url) as g:
            start.wait()
            results.append(g.submit(ENDPOINT, BODY, key="same"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len({r.hold.id for r in results}) == 1
    assert sum(r.task is not None for r in results) == 1
    assert creates(fake) == 1


# --- wait and settle ----------------------------------------------------------------------


def test_wait_settles_at_the_deduction(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=1.0)
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    resolution = call("wait", submission, interval=0.02, timeout=10)
    assert resolution.action == "settled"
    hold = resolution.hold
    assert hold.state == "settled" and hold.raw_deduction == "7"
    assert (hold.units_milli, hold.cost_minor, hold.variance_cost_minor) == (7000, COST, 0)
    assert ledger.budget_status("studio").posted == COST and held(ledger) == 0
    assert len(fake.requests("GET")) >= 2  # it polled while the task ran


def test_wait_records_drift_as_variance(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(drift={"kling-v1-5": "1.1"})
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    hold = call("wait", submission.hold, interval=0.01).hold
    assert hold.raw_deduction == "7.7"
    assert (hold.units_milli, hold.cost_minor) == (7700, 115_500)
    assert (hold.variance_units_milli, hold.variance_cost_minor) == (700, 10_500)
    assert ledger.budget_status("company").posted == 115_500
    assert ledger.check() == []


def test_wait_voids_a_failed_task(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "fail_task"})
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    resolution = call("wait", submission.hold.id, interval=0.01)
    assert resolution.action == "voided"
    assert resolution.hold.reason == "task failed: the fake task failed"
    assert held(ledger) == 0 and ledger.budget_status("studio").posted == 0


def test_wait_settles_an_absent_deduction_at_the_estimate(
    guard: Callable[..., Guard], fake: FakeKling
) -> None:
    fake.set_faults({"kind": "deduction", "value": None})
    call = guard()
    resolution = call("wait", call("submit", ENDPOINT, BODY), interval=0.01)
    assert resolution.action == "settled" and "absent" in resolution.note
    assert resolution.hold.cost_minor == COST


def test_wait_polls_on_after_a_failed_status_query(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    fake.set_faults(
        {"kind": "server_error", "method": "GET"}, {"kind": "malformed", "method": "GET"}
    )
    with caplog.at_level("WARNING", logger="klingcost.guard"):
        resolution = call("wait", submission, interval=0.01, timeout=10)
    assert resolution.action == "settled" and held(ledger) == 0
    assert len(fake.requests("GET")) == 3  # two failed queries, then the answer
    failures = [r.getMessage() for r in caplog.records if "status query failed" in r.getMessage()]
    assert len(failures) == 2 and "ServerError" in failures[0]


def test_wait_times_out_and_leaves_the_hold(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=30)
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    with pytest.raises(TimeoutError, match="task processing"):
        call("wait", submission, interval=0.05, timeout=0.2)
    assert ledger.get_hold(submission.hold.id).state == "submitted"


def test_wait_on_a_hold_without_a_task_changes_nothing(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "server_error"})
    call = guard()
    with pytest.raises(errors.ServerError):
        call("submit", ENDPOINT, BODY)
    [hold] = ledger.holds()
    resolution = call("wait", hold, interval=0.01)
    assert resolution.action == "unchanged" and resolution.hold.state == "unknown"


def test_settle_twice_books_once(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    call = guard()
    submission = call("submit", ENDPOINT, BODY)
    assert call("settle", submission).action == "settled"
    assert call("settle", submission).action == "unchanged"
    assert ledger.budget_status("studio").posted == COST


# --- notify_hook and external_task_id -----------------------------------------------------


def test_notify_hook_is_filled_when_a_hook_url_is_set(
    guard: Callable[..., Guard], fake: FakeKling
) -> None:
    hook = closed_port_url() + "/hooks/secret-0123456789abcdef"
    submission = guard(hook_url=hook)("submit", ENDPOINT, BODY)
    assert fake.state.tasks[submission.task_id].body["notify_hook"] == hook
    own = guard(hook_url=hook)("submit", ENDPOINT, {**BODY, "notify_hook": "https://mine/x"})
    assert fake.state.tasks[own.task_id].body["notify_hook"] == "https://mine/x"
    bare = guard()("submit", ENDPOINT, BODY)
    assert "notify_hook" not in fake.state.tasks[bare.task_id].body


def test_external_task_id_is_sent_when_asked(
    guard: Callable[..., Guard], fake: FakeKling, ledger: Ledger
) -> None:
    submission = guard(external_ids=True)("submit", ENDPOINT, BODY, key="job-9")
    assert fake.state.tasks[submission.task_id].body["external_task_id"] == "job-9"
    assert submission.task.external_task_id == "job-9"
    assert submission.hold.meta["external_task_id"] == "job-9"
    generated = guard(external_ids=True)("submit", ENDPOINT, BODY)
    sent = fake.state.tasks[generated.task_id].body["external_task_id"]
    assert sent == generated.hold.key == generated.hold.meta["external_task_id"]
    plain = guard()("submit", ENDPOINT, BODY)
    assert "external_task_id" not in fake.state.tasks[plain.task_id].body
    assert plain.hold.meta["external_task_id"] is None


# --- the key never shows ------------------------------------------------------------------


def test_the_api_key_never_reaches_the_ledger_logs_reprs_or_errors(
    guard: Callable[..., Guard],
    fake: FakeKling,
    ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    call = guard(client_options=FAST_RETRIES, external_ids=True)
    shown = [guard().repr()]
    fake.set_faults(
        {"kind": "rate_limit", "message": f"slow down {KEY}"},
        {"kind": "error", "status": 400, "code": 1200, "message": f"bad key {KEY}"},
        {"kind": "error", "status": 500, "code": 5000, "message": f"boom {KEY}"},
        {"kind": "malformed", "body": f'{{"echo": "{KEY}"', "create": True},
    )
    for error in (errors.InvalidRequestError, errors.ServerError, errors.MalformedResponseError):
        with pytest.raises(error) as caught:
            call("submit", ENDPOINT, BODY)
        shown += [str(caught.value), repr(caught.value), repr(caught.value.args)]
    fake.configure(drift={"kling-v1-5": "1.1"})
    submission = call("submit", ENDPOINT, BODY, key="job-key")
    shown += [repr(submission), repr(call("wait", submission, interval=0.01))]
    with pytest.raises(errors.BudgetExceeded) as refused:
        master = {"model_name": "kling-v2-master", "prompt": "x", "duration": "10"}
        guard()("submit", ENDPOINT, master)
    shown += [str(refused.value), repr(refused.value)]
    shown += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert caplog.records  # the retry was logged
    assert all(KEY not in text for text in shown)
    assert any("<redacted>" in text for text in shown)
    holds = list(ledger.holds())
    assert [h.state for h in holds] == ["voided", "unknown", "unknown", "settled"]
    assert isinstance(ledger.path, Path)  # a SQLite file: its WAL is read below
    files = sorted(ledger.path.parent.glob(ledger.path.name + "*"))
    assert {f.name for f in files} >= {"ledger.db", "ledger.db-wal"}
    secret = KEY.encode()
    for raw in (f.read_bytes() for f in files):
        assert secret not in raw and KEY.encode("utf-16-le") not in raw
    ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert secret not in ledger.path.read_bytes()
    assert os.path.getsize(ledger.path) > 0


def test_no_key_closes_the_ledger_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLINGCOST_API_KEY", raising=False)
    opened: list[Ledger] = []
    closed: list[Ledger] = []
    real_open, real_close = Ledger.open, Ledger.close

    def spy_open(*args: Any, **kwargs: Any) -> Ledger:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    def spy_close(self: Ledger) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Ledger, "open", spy_open)
    monkeypatch.setattr(Ledger, "close", spy_close)
    with pytest.raises(errors.AuthenticationError, match="no Kling API key"):
        GuardedClient("studio", ledger=str(tmp_path / "owned.db"))
    with pytest.raises(errors.AuthenticationError):
        AsyncGuardedClient("studio", ledger=str(tmp_path / "owned.db"))
    assert len(opened) == 2 and closed == opened
