"""settlement.resolve: every branch, on real ledger files and Task objects (no network)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from klingcost.api.envelope import Task, TaskStatus
from klingcost.budgets import HoldAmounts
from klingcost.deduction import Decision, Shape, listed_range, parse_deduction
from klingcost.errors import BudgetExceeded, HoldStateError
from klingcost.ledger import Hold, Ledger
from klingcost.request import Endpoint
from klingcost.settlement import (
    Resolution,
    charge_for,
    decide,
    kling_list,
    listed_for,
    posting,
    resolve,
)
from klingcost.sheet import load_sheet, parse_sheet

ENDPOINT: Endpoint = "videos/text2video"
#: kling-v1-5, pro, 10 s: 7 units at 15,000 credits a unit.
SEVEN = HoldAmounts(units_milli=7000, pack="video", cost_minor=105_000, currency="credits")
#: Its shape: Kling lists 2 (kling-v1 std) to 30 (kling-v3 4k) units for a 10 s clip.
SHAPE = {"endpoint": ENDPOINT, "model": "kling-v1-5", "mode": "pro", "duration": 10, "n": 1}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        opened.set_budget("company", limit=10_000_000, period="month")
        opened.set_budget("team", limit=1_000_000, period="month", parent="company")
        yield opened


def held(ledger: Ledger, amounts: HoldAmounts = SEVEN, task_id: str | None = "task-1") -> Hold:
    hold = ledger.reserve("team", amounts, meta=SHAPE)
    return ledger.attach(hold.id, task_id) if task_id else hold


def task(
    status: TaskStatus, deduction: object = None, task_id: str = "task-1", msg: str = ""
) -> Task:
    return Task(
        endpoint=ENDPOINT,
        task_id=task_id,
        status=status,
        status_msg=msg,
        deduction=parse_deduction(deduction),
    )


def balances(ledger: Ledger) -> dict[str, tuple[int, int]]:
    return {s.team: (s.posted, s.held) for s in ledger.budgets()}


# --- succeeded tasks ----------------------------------------------------------------------


def test_succeeded_task_settles_at_its_deduction(ledger: Ledger) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task("succeed", "7"))
    assert result.action == "settled"
    assert "final_unit_deduction 7" in result.note
    settled = ledger.get_hold(hold.id)
    assert settled.state == "settled"
    assert (settled.units_milli, settled.cost_minor) == (7000, 105_000)
    assert (settled.variance_units_milli, settled.variance_cost_minor) == (0, 0)
    assert settled.raw_deduction == "7"
    assert balances(ledger) == {"company": (105_000, 0), "team": (105_000, 0)}
    assert ledger.check() == []


def test_a_deduction_beyond_what_kling_lists_for_the_shape_is_not_booked(ledger: Ledger) -> None:
    ledger.set_budget("team", limit=10_000_000, period="month", parent="company")
    # 10 s clips are listed at 2 to 30 units; with the margin of 1/4, 37.5 is still booked.
    at_limit = resolve(ledger, held(ledger, task_id="t-37"), task("succeed", "37.5", "t-37"))
    assert (at_limit.hold.units_milli, at_limit.hold.deduction_flag) == (37_500, "ok")
    assert at_limit.verdict == "drift"  # 37.5 against 7: booked, and flagged
    hold = held(ledger, task_id="t-big")
    result = resolve(ledger, hold, task("succeed", "37.501", "t-big"))
    assert result.verdict == "implausible"
    assert (
        "final_unit_deduction absurd ('37.501'), implausible: Kling lists 2 to 30 units for its"
        " shape: settled at the estimate" in result.note
    )
    settled = ledger.get_hold(hold.id)
    assert (settled.units_milli, settled.cost_minor) == (7000, 105_000)
    assert (settled.raw_deduction, settled.deduction_flag) == ("37.501", "absurd")
    assert balances(ledger)["team"] == (37_500 * 15 + 105_000, 0)
    # A failed task with such a figure was not charged it: voided.
    failed = resolve(ledger, held(ledger, task_id="t-f"), task("failed", "900", "t-f"))
    assert failed.action == "voided"


def test_a_settler_flag_must_be_a_known_one(ledger: Ledger) -> None:
    hold = held(ledger)
    with pytest.raises(HoldStateError, match="deduction_flag must be one of"):
        ledger.settle(hold.id, units_milli=7000, cost_minor=1, deduction_flag="fine")
    assert ledger.get_hold(hold.id).state == "submitted"


def test_drift_is_charged_at_the_hold_rate_and_recorded_as_variance(ledger: Ledger) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task("succeed", "7.7"))
    assert result.hold.units_milli == 7700
    assert result.hold.cost_minor == 115_500  # 105,000 x 7.7 / 7
    assert (result.hold.variance_units_milli, result.hold.variance_cost_minor) == (700, 10_500)
    cheaper = resolve(ledger, held(ledger, task_id="task-2"), task("succeed", "3.5", "task-2"))
    assert (cheaper.hold.units_milli, cheaper.hold.cost_minor) == (3500, 52_500)
    assert cheaper.hold.variance_cost_minor == -52_500
    assert balances(ledger)["team"] == (115_500 + 52_500, 0)


def test_charge_is_rounded_up() -> None:
    now = datetime.now(UTC)
    hold = Hold(1, "k", "team", "submitted", HoldAmounts(3000, "video", 10_000), now, now)
    assert charge_for(hold, Fraction(1)) == (1000, 3334)  # 10,000 / 3 = 3,333.3...
    assert charge_for(hold, Fraction(1, 3000)) == (1, 4)  # a third of a milli-unit is one
    free = Hold(1, "k", "team", "submitted", HoldAmounts(0, "video", 0), now, now)
    assert charge_for(free, Fraction(2)) == (2000, 0)


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (None, "absent"),
        ("", "absent"),
        ("0", "zero"),
        ("0.000", "zero"),
        ("abc", "malformed"),
        ("4 units", "malformed"),
        ("-3", "negative"),
        ("1e100", "absurd"),
        ("1e999999", "absurd"),
        ("5000", "absurd"),
    ],
)
def test_untrusted_deduction_settles_at_the_estimate(
    ledger: Ledger, raw: str | None, flag: str
) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task("succeed", raw))
    assert result.action == "settled"
    assert f"final_unit_deduction {flag}" in result.note and "estimate" in result.note
    assert (result.hold.units_milli, result.hold.cost_minor) == (7000, 105_000)
    assert result.hold.variance_cost_minor == 0
    assert result.hold.raw_deduction == raw  # kept for reconcile to flag
    assert ledger.get_hold(hold.id).raw_deduction == raw
    assert balances(ledger)["team"] == (105_000, 0)


# --- failed tasks -------------------------------------------------------------------------


def test_failed_task_is_voided(ledger: Ledger) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task("failed", msg="content refused"))
    assert result.action == "voided"
    assert result.hold.state == "voided"
    assert result.hold.reason == "task failed: content refused"
    assert balances(ledger) == {"company": (0, 0), "team": (0, 0)}
    bare = resolve(ledger, held(ledger, task_id="task-2"), task("failed", task_id="task-2"))
    assert bare.hold.reason == "task failed"
    assert ledger.check() == []


def test_failed_but_charged_task_is_settled_at_the_charge(ledger: Ledger) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task("failed", "2"))
    assert result.action == "settled"
    assert "failed task charged 2 units" in result.note
    assert (result.hold.units_milli, result.hold.cost_minor) == (2000, 30_000)
    assert result.hold.raw_deduction == "2"
    assert balances(ledger)["team"] == (30_000, 0)


@pytest.mark.parametrize("raw", ["0", "-1", "1e100", "abc"])
def test_failed_task_with_an_untrusted_deduction_is_voided(ledger: Ledger, raw: str) -> None:
    result = resolve(ledger, held(ledger), task("failed", raw))
    assert result.action == "voided"
    assert balances(ledger)["team"] == (0, 0)


# --- unfinished tasks ---------------------------------------------------------------------


@pytest.mark.parametrize("status", ["submitted", "processing"])
def test_running_task_leaves_the_hold_open(ledger: Ledger, status: TaskStatus) -> None:
    hold = held(ledger)
    result = resolve(ledger, hold, task(status))
    assert result.action == "pending"
    assert result.note == f"task {status}"
    assert ledger.get_hold(hold.id).state == "submitted"
    assert balances(ledger)["team"] == (0, 105_000)


def test_a_hold_without_its_task_id_gets_it_attached(ledger: Ledger) -> None:
    hold = held(ledger, task_id=None)
    ledger.mark_unknown(hold.id, "outcome unknown: timeout")
    pending = resolve(ledger, ledger.get_hold(hold.id), task("processing", task_id="found-1"))
    assert pending.action == "pending"
    assert pending.hold.state == "submitted" and pending.hold.task_id == "found-1"
    assert ledger.hold_for_task("found-1") == ledger.get_hold(hold.id)
    done = resolve(ledger, pending.hold, task("succeed", "7", task_id="found-1"))
    assert done.action == "settled" and done.hold.task_id == "found-1"


def test_an_unknown_hold_settles_directly(ledger: Ledger) -> None:
    hold = held(ledger, task_id=None)
    unknown = ledger.mark_unknown(hold.id, "outcome unknown")
    result = resolve(ledger, unknown, task("succeed", "7", task_id="late"))
    assert result.action == "settled" and result.hold.task_id == "late"
    assert balances(ledger)["team"] == (105_000, 0)


# --- idempotence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("final", "action"), [(task("succeed", "7.7"), "settled"), (task("failed"), "voided")]
)
def test_resolving_again_changes_nothing(ledger: Ledger, final: Task, action: str) -> None:
    hold = held(ledger)
    first = resolve(ledger, hold, final)
    assert first.action == action
    after = (balances(ledger), len(ledger.events()))
    again = resolve(ledger, ledger.get_hold(hold.id), final)
    assert again.action == "unchanged"
    assert again.note == f"hold already {first.hold.state}"
    # a caller holding the stale, still-open hold object (a hook racing a sync) books nothing
    stale = resolve(ledger, hold, final)
    assert stale.hold.state == first.hold.state
    assert (balances(ledger), len(ledger.events())) == after
    assert ledger.check() == []


def test_a_settled_hold_ignores_a_later_failed_report(ledger: Ledger) -> None:
    hold = held(ledger)
    resolve(ledger, hold, task("succeed", "7"))
    later = resolve(ledger, ledger.get_hold(hold.id), task("failed"))
    assert later.action == "unchanged"
    assert ledger.get_hold(hold.id).state == "settled"


def test_a_stale_open_hold_cannot_settle_a_voided_one(ledger: Ledger) -> None:
    hold = held(ledger)
    ledger.void(hold.id, reason="voided by hand")
    with pytest.raises(HoldStateError):
        resolve(ledger, hold, task("succeed", "7"))
    assert ledger.get_hold(hold.id).state == "voided"
    assert balances(ledger)["team"] == (0, 0)


def test_each_resolution_names_the_hold_after_it_the_action_the_note_and_the_verdict(
    ledger: Ledger,
) -> None:
    voided = resolve(ledger, held(ledger), task("failed", msg="content refused"))
    after = ledger.get_hold(voided.hold.id)
    assert voided == Resolution(after, "voided", "task failed: content refused", "void")
    hold = held(ledger, task_id="t-2")
    pending = resolve(ledger, hold, task("processing", task_id="t-2"))
    assert pending == Resolution(ledger.get_hold(hold.id), "pending", "task processing", "pending")
    settled = resolve(ledger, held(ledger, task_id="t-3"), task("succeed", "7", task_id="t-3"))
    after = ledger.get_hold(settled.hold.id)
    assert settled == Resolution(after, "settled", "settled at final_unit_deduction 7", "ok")
    again = resolve(ledger, after, task("succeed", "7", task_id="t-3"))
    assert again == Resolution(after, "unchanged", "hold already settled", "")  # nothing decided


@pytest.mark.parametrize(("status", "deduction"), [("succeed", "7"), ("failed", "2")])
def test_a_settlement_keeps_the_tasks_final_status(
    ledger: Ledger, status: TaskStatus, deduction: str
) -> None:
    result = resolve(ledger, held(ledger), task(status, deduction))
    assert result.action == "settled"
    assert result.hold.task_status == status == ledger.get_hold(result.hold.id).task_status


def test_a_published_sheet_is_parsed_once_per_version(ledger: Ledger) -> None:
    assert len(kling_list(ledger)) == 1  # none published: Kling's list alone
    ledger.publish_sheet(load_sheet())
    first, second = kling_list(ledger), kling_list(ledger)
    assert len(first) == 2 and first[1] is second[1]


# --- issue 13 item 4: settlement trusts the figure Kling lists, not the estimate -------------

#: kling-v1, std, 5 s: 1 unit, 15,000 credits. Kling lists 1 to 15 units for a 5 s clip.
ONE = HoldAmounts(units_milli=1000, pack="video", cost_minor=15_000, currency="credits")
FIVE_SECONDS = {"endpoint": ENDPOINT, "model": "kling-v1", "mode": "std", "duration": 5, "n": 1}


def test_a_true_charge_past_the_limit_is_booked_alerted_and_blocks_the_budget(
    make_ledger: Callable[..., Ledger],
) -> None:
    # The attack: 9.86 units against a 1-unit estimate was booked as "ok" and took the team to
    # 213% of its limit (and its parent over too) with only a warning. Kling lists up to 15
    # units for a 5 s clip, so the figure may be true: it is booked, flagged drift, both
    # budgets' owners get an event, and neither admits another hold until back under.
    ledger = make_ledger()
    ledger.set_budget("company", limit=100_000)
    ledger.set_budget("team", limit=69_450, parent="company")
    hold = ledger.attach(ledger.reserve("team", ONE, meta=FIVE_SECONDS).id, "t-1")
    result = resolve(ledger, hold, task("succeed", "9.86", "t-1"))
    assert (result.action, result.verdict) == ("settled", "drift")
    assert (result.hold.units_milli, result.hold.cost_minor) == (9860, 147_900)
    assert result.hold.deduction_flag == "ok"
    assert balances(ledger) == {"company": (147_900, 0), "team": (147_900, 0)}
    assert round(ledger.budget_status("team").share_used * 100) == 213  # 147,900 of 69,450
    alerted = {e.team: e.data for e in ledger.events(kind="deduction_drift")}
    assert set(alerted) == {"team", "company"}
    assert alerted["company"]["booked_units_milli"] == 9860
    assert alerted["company"]["estimated_units_milli"] == 1000
    assert {e.team for e in ledger.events(kind="over_limit")} == {"team", "company"}
    # Over its limit, each budget refuses every hold, even one that counts nothing.
    for amounts in (ONE, HoldAmounts(0, "video", 0)):
        with pytest.raises(BudgetExceeded, match="'team' refused") as caught:
            ledger.reserve("team", amounts)
        assert "past its limit (147900 credits used): it refuses every hold" in str(caught.value)
    ledger.set_budget("other", limit=10**6, parent="company")
    with pytest.raises(BudgetExceeded, match=r"'company' .*refused"):
        ledger.reserve("other", ONE)
    # Back under (a higher limit), it admits holds again.
    ledger.set_budget("company", limit=10**6)
    ledger.set_budget("team", limit=10**6, parent="company")
    assert ledger.reserve("team", ONE).state == "held"
    assert ledger.check() == []


def test_an_overlays_tiny_estimate_cannot_make_the_real_charge_look_absurd(
    make_ledger: Callable[..., Ledger],
) -> None:
    # The attack: an overlay priced a kling-v1 10 s pro clip at 0.001 units (15 credits); the
    # API's real "7" was more than 10x that, so it was thrown away and 0.001 booked.
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**6)
    tiny = HoldAmounts(units_milli=1, pack="video", cost_minor=15, currency="credits")
    meta = {**SHAPE, "model": "kling-v1"}
    hold = ledger.attach(ledger.reserve("team", tiny, meta=meta).id, "t-7")
    result = resolve(ledger, hold, task("succeed", "7", "t-7"))
    assert (result.verdict, result.hold.deduction_flag) == ("drift", "ok")
    assert (result.hold.units_milli, result.hold.cost_minor) == (7000, 105_000)
    assert [e.team for e in ledger.events(kind="deduction_drift")] == ["team"]


def test_an_implausible_figure_is_not_booked_and_alerts_the_owners(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**6)
    hold = ledger.attach(ledger.reserve("team", ONE, meta=FIVE_SECONDS).id, "t-1")
    result = resolve(ledger, hold, task("succeed", "19", "t-1"))  # 5 s clips: at most 15 (+1/4)
    assert (result.verdict, result.hold.deduction_flag) == ("implausible", "absurd")
    assert (result.hold.units_milli, result.hold.cost_minor) == (1000, 15_000)
    [event] = ledger.events(kind="implausible_deduction")
    assert (event.team, event.data["raw_deduction"]) == ("team", "19")
    # The same figure for a 10 s clip (listed up to 30) is plausible, and booked.
    other = ledger.attach(ledger.reserve("team", ONE, meta=SHAPE).id, "t-2")
    assert resolve(ledger, other, task("succeed", "19", "t-2")).hold.units_milli == 19_000


def test_a_published_sheet_is_part_of_what_kling_lists(make_ledger: Callable[..., Ledger]) -> None:
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**7)
    data = load_sheet().model_dump(mode="json", exclude={"origin"})
    data["video"]["models"]["kling-v9"] = {"flat": {"factor": 40, "source": "inferred"}}
    published = ledger.publish_sheet(parse_sheet(data, origin="ours.yaml"))
    reserved = ledger.reserve("team", ONE, meta=FIVE_SECONDS, sheet_sha256=published.sha256)
    hold = ledger.attach(reserved.id, "t")
    assert resolve(ledger, hold, task("succeed", "40", "t")).hold.units_milli == 40_000


# --- the listed range is priced from the sheet's catalogue (kling-v3, 4k, 15 s) ------------


def _v3_hold(ledger: Ledger, body: dict[str, object], task_id: str) -> Hold:
    """A hold for ``body`` as the guard makes it: the real estimate and the meta it records."""
    from klingcost.pricing import estimate

    priced = estimate("videos/text2video", {"model_name": "kling-v3", "prompt": "a ship", **body})
    amounts = HoldAmounts(
        units_milli=int(priced.units * 1000),
        pack="video",
        cost_minor=priced.cost.minor,
        currency="credits",
    )
    meta = {"endpoint": ENDPOINT, "model": "kling-v3", "duration": priced.request.duration, "n": 1}
    return ledger.attach(ledger.reserve("team", amounts, meta=meta).id, task_id)


def test_a_kling_v3_4k_clip_of_10_seconds_charged_30_is_booked_as_30(
    make_ledger: Callable[..., Ledger],
) -> None:
    # The review's case: 10 s clips were listed at 2 to 20 units (no per-second model), so the
    # true charge of 30 was judged implausible and 20 was booked: 10 units spent, not counted.
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**7)
    hold = _v3_hold(ledger, {"mode": "4k", "duration": "10"}, "t-4k")
    assert hold.estimate.units_milli == 30_000
    result = resolve(ledger, hold, task("succeed", "30", "t-4k"))
    assert (result.verdict, result.hold.deduction_flag) == ("ok", "ok")
    assert (result.hold.units_milli, result.hold.cost_minor) == (30_000, hold.estimate.cost_minor)
    assert balances(ledger)["team"] == (hold.estimate.cost_minor, 0)
    assert ledger.events(kind="implausible_deduction") == []


def test_a_kling_v3_text2video_of_15_seconds_is_judged_against_its_range(
    make_ledger: Callable[..., Ledger],
) -> None:
    # 15 s was listed as nothing, so any figure under the cap (1000) was booked for it.
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**8)
    pro = _v3_hold(ledger, {"mode": "pro", "duration": 15, "sound": "on"}, "t-pro")
    assert pro.estimate.units_milli == 18_000  # 1.2 units/s
    booked = resolve(ledger, pro, task("succeed", "18", "t-pro"))
    assert (booked.verdict, booked.hold.units_milli) == ("ok", 18_000)
    # 45 (4k) is the top of 9 to 45; 56.25 is the edge with the margin, above it is not booked.
    std = _v3_hold(ledger, {"mode": "std", "duration": 15}, "t-std")
    edge = resolve(ledger, std, task("succeed", "56.25", "t-std"))
    assert (edge.verdict, edge.hold.units_milli) == ("drift", 56_250)
    over = _v3_hold(ledger, {"mode": "std", "duration": 15}, "t-over")
    refused = resolve(ledger, over, task("succeed", "56.26", "t-over"))
    assert (refused.verdict, refused.hold.deduction_flag) == ("implausible", "absurd")
    assert refused.hold.units_milli == over.estimate.units_milli == 9_000
    assert "Kling lists 9 to 45 units for its shape" in refused.note
    [event] = ledger.events(kind="implausible_deduction")
    assert event.data["raw_deduction"] == "56.26"


# --- the pure decision (issue 11 item 1): decide and posting touch no ledger ----------------


def test_decide_is_pure_and_resolve_books_what_it_decided(ledger: Ledger) -> None:
    hold = held(ledger)
    events = len(ledger.events())
    sheets = [load_sheet()]
    decision = decide(hold, task("succeed", "6.3"), sheets)
    assert (decision.action, decision.units) == ("settle", Fraction(63, 10))
    assert posting(hold, decision) == (6300, 94_500)  # at the hold's rate: 15,000 a unit
    assert len(ledger.events()) == events and ledger.get_hold(hold.id).state == "submitted"
    result = resolve(ledger, hold, task("succeed", "6.3"))
    assert (result.hold.units_milli, result.hold.cost_minor) == posting(hold, decision)


def test_decide_on_a_failed_or_running_task_books_nothing(ledger: Ledger) -> None:
    hold = held(ledger)
    assert decide(hold, task("failed"), [load_sheet()]).action == "void"
    assert decide(hold, task("processing"), [load_sheet()]).action == "pending"


def test_a_settlement_at_the_estimate_books_the_holds_own_amounts(ledger: Ledger) -> None:
    odd = HoldAmounts(units_milli=7000, pack="video", cost_minor=105_001, currency="credits")
    hold = held(ledger, odd)
    decision = decide(hold, task("succeed", None), [load_sheet()])  # absent: at the estimate
    assert decision.basis == "estimate"
    assert posting(hold, decision) == (7000, 105_001)  # not re-derived from a rate


def test_only_a_settlement_at_the_estimate_books_a_zero_unit_holds_own_cost(
    ledger: Ledger,
) -> None:
    # A hold of 0 units that costs something (an overlay's flat fee): no rate turns its units
    # into its cost, so only the shortcut for a settlement at the estimate books the cost.
    free = HoldAmounts(units_milli=0, pack="video", cost_minor=100, currency="credits")
    hold = held(ledger, free)
    at_estimate = Decision("settle", "estimate", "ok", units=Fraction(0))
    assert posting(hold, at_estimate) == (0, 100)
    booked = Decision("settle", "booked", "ok", units=Fraction(0))  # the API's own figure, 0
    assert posting(hold, booked) == (0, 0)


def test_a_hold_without_its_endpoint_is_judged_against_its_packs_list(ledger: Ledger) -> None:
    image = HoldAmounts(units_milli=1000, pack="image", cost_minor=15_000, currency="credits")
    hold = ledger.reserve("team", image, meta={"n": 1})  # an older hold: no endpoint recorded
    sheets = [load_sheet()]
    images = listed_range(Shape(n=1, pack="image"), sheets)
    assert listed_for(hold, sheets) == images != listed_range(Shape(n=1), sheets)


def test_the_settlement_module_imports_no_io() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, klingcost.settlement\n"
        "io = {'httpx', 'sqlite3', 'anyio', 'asyncio', 'click', 'starlette', 'psycopg'}\n"
        "print(sorted(io & set(sys.modules)))"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
