"""sync_holds against the real fake Kling API: settle, void, wait, resolve lost answers, rerun."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import AsyncKlingClient
from klingcost.clock import ManualClock, SystemClock
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient, Submission
from klingcost.ledger import Hold, Ledger
from klingcost.sync import IN_FLIGHT_GRACE, SyncReport, settle_until_done, sync_holds

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits
COST = 105_000


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        opened.set_budget("company", limit=100_000_000, period="month")
        opened.set_budget("studio", limit=50_000_000, period="month", parent="company")
        opened.set_budget("ads", limit=50_000_000, period="month", parent="company")
        yield opened


def submit(
    fake: FakeKling,
    ledger: Ledger,
    n: int = 1,
    *,
    team: str = "studio",
    fault: dict[str, Any] | None = None,
    external_ids: bool = True,
    timeout: float = 30.0,
) -> list[Submission | Hold]:
    """``n`` guarded submissions; one that fails ambiguously yields its (unknown) hold."""
    out: list[Submission | Hold] = []
    with GuardedClient(
        team,
        ledger=ledger,
        api_key=KEY,
        base_url=fake.base_url,
        external_ids=external_ids,
        timeout=timeout,
    ) as guard:
        for _ in range(n):
            if fault is not None:
                fake.set_faults(fault)
            try:
                out.append(guard.submit(ENDPOINT, BODY))
            except errors.KlingAPIError:
                out.append(list(ledger.holds())[-1])
    return out


def sync(ledger: Ledger, fake: FakeKling, **options: Any) -> SyncReport:
    async def run() -> SyncReport:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            return await sync_holds(ledger, client, **options)

    return anyio.run(run)


def states(ledger: Ledger) -> list[str]:
    return [h.state for h in ledger.holds()]


def settle_events(ledger: Ledger) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    for event in ledger.events(kind="settle"):
        counts[event.hold_id] = counts.get(event.hold_id, 0) + 1
    return counts


# --- one pass -----------------------------------------------------------------------------


def test_settles_succeeded_voids_failed_and_leaves_running(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 3)
    submit(fake, ledger, 2, fault={"kind": "fail_task"})
    fake.configure(done_after=30)
    submit(fake, ledger, 2)
    report = sync(ledger, fake, concurrency=3)
    assert (report.settled, report.voided, report.pending) == (3, 2, 2)
    assert report.unresolved == [] and report.errors == [] and report.examined == 7
    assert states(ledger) == ["settled"] * 3 + ["voided"] * 2 + ["submitted"] * 2
    status = ledger.budget_status("studio")
    assert (status.posted, status.held) == (3 * COST, 2 * COST)
    assert ledger.check() == []


def test_settles_at_the_reported_deduction(fake: FakeKling, ledger: Ledger) -> None:
    fake.configure(drift={"kling-v1-5": "0.9"})
    submit(fake, ledger)
    fake.set_faults({"kind": "deduction", "value": "1e100"})
    submit(fake, ledger)
    assert sync(ledger, fake).settled == 2
    drifted, absurd = ledger.holds()
    assert (drifted.units_milli, drifted.cost_minor, drifted.variance_cost_minor) == (
        6300,
        94_500,
        -10_500,
    )
    assert (absurd.cost_minor, absurd.raw_deduction) == (COST, "1e100")  # at the estimate


def test_only_one_team(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 2)
    submit(fake, ledger, 1, team="ads")
    report = sync(ledger, fake, team="ads")
    assert report.settled == 1 and report.examined == 1
    assert [h.state for h in ledger.holds(team="studio")] == ["submitted"] * 2


def test_progress_is_reported_per_hold(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 5)
    ticks: list[int] = []
    sync(ledger, fake, progress=ticks.append)
    assert ticks == [1] * 5


def test_concurrency_is_bounded(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 12)
    in_flight = peak = 0

    class Counting(AsyncKlingClient):
        async def get_task(self, endpoint: str, task_id: str) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await anyio.sleep(0.01)
                return await super().get_task(endpoint, task_id)
            finally:
                in_flight -= 1

    async def run() -> SyncReport:
        async with Counting(KEY, base_url=fake.base_url) as client:
            return await sync_holds(ledger, client, concurrency=3)

    assert anyio.run(run).settled == 12
    assert peak == 3


def test_a_failing_query_is_an_error_and_the_hold_stays(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 2)
    fake.set_faults({"kind": "server_error", "method": "GET"})
    report = sync(ledger, fake, concurrency=1)
    assert report.settled == 1 and len(report.errors) == 1
    hold_id, error = report.errors[0]
    assert error.startswith("ServerError:")
    assert ledger.get_hold(hold_id).state == "submitted"
    assert report.to_dict()["errors"] == [{"hold": hold_id, "error": error}]
    assert sync(ledger, fake).settled == 1  # the next pass settles it


# --- holds whose submission outcome was lost ----------------------------------------------


def test_an_unknown_hold_is_found_by_external_task_id(fake: FakeKling, ledger: Ledger) -> None:
    [lost] = submit(fake, ledger, fault={"kind": "drop", "create": True})
    assert isinstance(lost, Hold) and lost.state == "unknown"
    [task] = fake.ledger()["tasks"]
    report = sync(ledger, fake)
    assert report.settled == 1
    hold = ledger.get_hold(lost.id)
    assert hold.state == "settled" and hold.task_id == task["task_id"]
    assert hold.cost_minor == COST
    assert len(fake.requests("POST")) == 1  # found, never resubmitted


def test_an_unknown_hold_still_running_gets_its_task_attached(
    fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=30)
    fault = {"kind": "timeout_after_accept", "ms": 600}
    [lost] = submit(fake, ledger, fault=fault, timeout=0.2)
    assert isinstance(lost, Hold) and lost.state == "unknown"
    report = sync(ledger, fake)
    assert report.pending == 1
    hold = ledger.get_hold(lost.id)
    assert hold.state == "submitted" and hold.task_id == fake.ledger()["tasks"][0]["task_id"]
    assert ledger.budget_status("studio").held == COST


def test_an_unknown_hold_with_no_such_task_is_voided_on_lasting_evidence(
    fake: FakeKling, ledger: Ledger
) -> None:
    [lost] = submit(fake, ledger, fault={"kind": "server_error"})  # refused before creating
    assert isinstance(lost, Hold) and lost.state == "unknown"
    assert fake.ledger()["tasks"] == []
    report = sync(ledger, fake, not_found_answers=2, not_found_window=timedelta(0))
    assert report.voided == 0 and [h for h, _ in report.awaiting] == [lost.id]
    report = sync(ledger, fake, not_found_answers=2, not_found_window=timedelta(0))
    assert report.voided == 1
    hold = ledger.get_hold(lost.id)
    assert hold.state == "voided" and "never created one" in (hold.reason or "")
    assert ledger.budget_status("studio").held == 0


def test_an_unknown_hold_without_ids_stays_counted(fake: FakeKling, ledger: Ledger) -> None:
    [lost] = submit(fake, ledger, fault={"kind": "drop", "create": True}, external_ids=False)
    assert isinstance(lost, Hold)
    report = sync(ledger, fake)
    assert report.unresolved == [
        (lost.id, "unknown with no task id and no external_task_id: resolve it by hand")
    ]
    assert ledger.get_hold(lost.id).state == "unknown"
    assert ledger.budget_status("studio").held == COST
    assert fake.requests("GET") == []  # nothing it could ask


def test_a_held_hold_in_flight_is_not_voided(fake: FakeKling, tmp_path: Path) -> None:
    """A reservation whose request is still on its way: "no such task" yet is no proof."""
    clock = ManualClock(SystemClock().now())
    with Ledger.open(tmp_path / "clocked.db", clock=clock) as ledger:
        ledger.set_budget("studio", limit=10_000_000)
        with GuardedClient(
            "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url, external_ids=True
        ) as guard:
            _, hold, outgoing = guard._core.reserve(ENDPOINT, BODY, None)  # not sent yet
        assert outgoing is not None and hold.state == "held"
        report = sync(ledger, fake)
        assert report.voided == 0 and len(report.unresolved) == 1
        assert "may be in flight" in report.unresolved[0][1]
        assert ledger.get_hold(hold.id).state == "held"
        clock.advance(IN_FLIGHT_GRACE + timedelta(seconds=1))
        evidence: dict[str, Any] = {"not_found_answers": 2, "not_found_window": timedelta(0)}
        assert sync(ledger, fake, **evidence).voided == 0  # the first answer counted
        assert sync(ledger, fake, **evidence).voided == 1  # long gone: nothing was ever created
        assert ledger.get_hold(hold.id).state == "voided"


def test_a_held_hold_whose_task_exists_is_settled(fake: FakeKling, ledger: Ledger) -> None:
    """The process died between sending and recording the answer: the task is found."""
    with GuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url, external_ids=True
    ) as guard:
        _, hold, outgoing = guard._core.reserve(ENDPOINT, BODY, None)
        assert outgoing is not None
        task = guard.client.submit(ENDPOINT, outgoing)  # ... and the process dies here
    assert sync(ledger, fake).settled == 1
    assert ledger.get_hold(hold.id).task_id == task.task_id


def test_an_unusable_external_id_is_an_error_not_a_crash(fake: FakeKling, ledger: Ledger) -> None:
    with GuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url, external_ids=True
    ) as guard:
        _, hold, _ = guard._core.reserve(ENDPOINT, BODY, "batch/7")
    ledger.mark_unknown(hold.id, "outcome unknown")
    submit(fake, ledger)
    report = sync(ledger, fake)
    assert report.settled == 1
    assert [h for h, _ in report.errors] == [hold.id]


# --- reruns and interruptions -------------------------------------------------------------


def test_a_rerun_changes_nothing(fake: FakeKling, ledger: Ledger) -> None:
    submit(fake, ledger, 4)
    submit(fake, ledger, 1, fault={"kind": "fail_task"})
    first = sync(ledger, fake)
    assert (first.settled, first.voided) == (4, 1)
    snapshot = (states(ledger), ledger.budget_status("studio"), len(ledger.events()))
    again = sync(ledger, fake)
    assert again.examined == 0
    assert (states(ledger), ledger.budget_status("studio"), len(ledger.events())) == snapshot


def test_interrupted_by_ctrl_c_then_rerun_settles_the_rest_once(
    fake: FakeKling, ledger: Ledger
) -> None:
    submit(fake, ledger, 20)
    seen = 0

    def interrupt(step: int) -> None:
        nonlocal seen
        seen += step
        if seen == 8:  # Ctrl-C, as a user presses it: a real SIGINT to this process
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        sync(ledger, fake, concurrency=4, progress=interrupt)
    done = states(ledger).count("settled")
    assert 8 <= done < 20
    assert ledger.check() == []
    rest = sync(ledger, fake)
    # A settle already in a worker thread at Ctrl-C (at most `concurrency` of them) may land
    # after the count above; the rerun settles what is left, and nothing twice.
    assert 20 - done - 4 <= rest.settled <= 20 - done
    assert states(ledger) == ["settled"] * 20
    assert set(settle_events(ledger).values()) == {1}  # each hold settled exactly once
    assert ledger.budget_status("studio").posted == 20 * COST


def test_cancelled_mid_query_then_rerun_settles_the_rest_once(
    fake: FakeKling, ledger: Ledger
) -> None:
    submissions = submit(fake, ledger, 10)
    stuck = submissions[3]
    assert isinstance(stuck, Submission) and stuck.task_id is not None
    fake.set_faults({"kind": "slow", "ms": 5000, "method": "GET", "path": stuck.task_id})

    async def run() -> None:
        async with AsyncKlingClient(KEY, base_url=fake.base_url) as client:
            with anyio.move_on_after(1.0):
                await sync_holds(ledger, client, concurrency=2)

    anyio.run(run)
    assert states(ledger).count("settled") == 9
    assert ledger.get_hold(stuck.hold.id).state == "submitted"
    rest = sync(ledger, fake)
    assert (rest.examined, rest.settled) == (1, 1)
    assert set(settle_events(ledger).values()) == {1} and len(settle_events(ledger)) == 10
    assert ledger.check() == []


# --- sync --wait: settle_until_done under the poll policy ---------------------------------


def test_settle_until_done_passes_until_no_task_runs(fake: FakeKling, ledger: Ledger) -> None:
    fake.configure(done_after=3.0)  # past the first pass, even on a loaded machine
    submit(fake, ledger, 3)
    passes: list[int] = []

    @contextlib.contextmanager
    def bar(total: int) -> Iterator[Callable[[int], None]]:
        passes.append(total)
        yield lambda step: None

    client = AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0)
    report = settle_until_done(ledger, client, interval=0.2, timeout=30.0, progress=bar)
    assert (report.settled, report.pending, report.timed_out) == (3, 0, False)
    assert report.passes >= 2 and passes[0] == 3 and len(passes) == report.passes
    assert states(ledger) == ["settled"] * 3


def test_settle_until_done_gives_up_before_a_pass_past_the_timeout(
    fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=30)
    submit(fake, ledger, 2)
    client = AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0)
    report = settle_until_done(ledger, client, interval=1.0, timeout=0.5)
    assert (report.pending, report.timed_out, report.settled) == (2, True, 0)
    assert report.passes == 1  # the next pass, 1 s later, would start past the 0.5 s deadline


def test_settle_until_done_without_wait_is_one_pass(fake: FakeKling, ledger: Ledger) -> None:
    fake.configure(done_after=30)
    submit(fake, ledger, 1)
    client = AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0)
    report = settle_until_done(ledger, client, wait=False, interval=0.01, timeout=10.0)
    assert (report.passes, report.pending, report.timed_out) == (1, 1, False)
