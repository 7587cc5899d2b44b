"""klingcost.polling: the one poll policy every wait loop uses (pure: no clock, no sleeping)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from klingcost import errors
from klingcost.polling import PollPolicy, is_transient


def test_a_poll_waits_the_interval_until_the_next_one_would_pass_the_deadline() -> None:
    poll = PollPolicy(interval=5.0, timeout=12.0).start(now=100.0)
    assert poll.deadline == 112.0
    assert poll.wait(now=100.0) == 5.0  # the poll at 105 is before the deadline
    assert poll.wait(now=107.0) == 5.0  # 112: exactly at the deadline still polls
    assert poll.wait(now=107.5) is None  # 112.5 would be past it: give up now, not after


def test_a_timeout_shorter_than_the_interval_allows_one_poll_only() -> None:
    poll = PollPolicy(interval=5.0, timeout=1.0).start(now=0.0)
    assert poll.wait(now=0.0) is None


def test_no_deadline_polls_for_ever() -> None:
    poll = PollPolicy(interval=60.0, timeout=math.inf).start(now=0.0)
    assert poll.wait(now=1e12) == 60.0


@pytest.mark.parametrize(
    ("rand", "expected"), [(0.0, 8.0), (0.5, 10.0), (1.0, 12.0)]
)  # fmt: skip
def test_jitter_spreads_a_wait_over_the_interval_plus_or_minus_its_share(
    rand: float, expected: float
) -> None:
    assert PollPolicy(interval=10.0, jitter=0.2).delay(rand) == pytest.approx(expected)


def test_without_jitter_every_wait_is_the_interval() -> None:
    policy = PollPolicy(interval=3.0)
    assert {policy.delay(r) for r in (0.0, 0.3, 0.99)} == {3.0}


def test_the_jittered_wait_is_what_the_deadline_is_checked_against() -> None:
    poll = PollPolicy(interval=10.0, timeout=11.0, jitter=0.2).start(now=0.0)
    assert poll.wait(now=0.0, rand=0.0) == pytest.approx(8.0)
    assert poll.wait(now=0.0, rand=1.0) is None  # 12 s would pass the 11 s deadline


def test_a_phase_starts_a_periodic_pass_within_one_interval() -> None:
    policy = PollPolicy(interval=30.0)
    assert (policy.phase(0.0), policy.phase(0.5)) == (0.0, 15.0)


@pytest.mark.parametrize(
    "error",
    [
        errors.TransportError("lost"),
        errors.ConnectError("refused"),
        errors.ServerError("500", status=500),
        errors.RateLimitError("1302", code=1302),
        errors.MalformedResponseError("not JSON"),
    ],
)
def test_failures_a_later_query_may_not_meet_are_transient(error: errors.KlingAPIError) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.AuthenticationError("bad key", code=1001),
        errors.AccountError("arrears", code=1102),
        errors.InvalidRequestError("no such task", code=1203),
        errors.PolicyError("refused", code=1301),
        errors.KlingAPIError("unknown code", code=9999),
        ValueError("not an API error"),
    ],
)
def test_failures_every_poll_would_meet_again_are_not(error: Exception) -> None:
    assert not is_transient(error)


def test_the_policy_imports_no_io() -> None:
    probe = (
        "import sys, klingcost.polling\n"
        "io = {'httpx', 'anyio', 'asyncio', 'sqlite3', 'socket', 'threading'}\n"
        "print(sorted(io & set(sys.modules)))"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
