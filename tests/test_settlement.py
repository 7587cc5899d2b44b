"""settlement.resolve: every branch, on real ledger files and Task objects (no network)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from klingcost._protocol import Task, TaskStatus, parse_deduction
from klingcost.budgets import HoldAmounts
from klingcost.errors import HoldStateError
from klingcost.ledger import Hold, Ledger
from klingcost.request import Endpoint
from klingcost.settlement import charge_for, resolve

ENDPOINT: Endpoint = "videos/text2video"
#: kling-v1-5, pro, 10 s: 7 units at 15,000 credits a unit.
SEVEN = HoldAmounts(units_milli=7000, pack="video", cost_minor=105_000, currency="credits")
#: Its shape: Kling lists 2 (kling-v1 std) to 20 (kling-v2-master) units for a 10 s clip.
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
    # 10 s clips are listed at 2 to 20 units; with the margin of 1/4, 25 is still booked.
    at_limit = resolve(ledger, held(ledger, task_id="t-25"), task("succeed", "25", "t-25"))
    assert (at_limit.hold.units_milli, at_limit.hold.deduction_flag) == (25_000, "ok")
    assert at_limit.verdict == "drift"  # 25 against 7: booked, and flagged
    hold = held(ledger, task_id="t-big")
    result = resolve(ledger, hold, task("succeed", "25.001", "t-big"))
    assert result.verdict == "implausible"
    assert (
        "final_unit_deduction absurd ('25.001'), implausible: Kling lists 2 to 20 units for its"
        " shape: settled at the estimate" in result.note
    )
    settled = ledger.get_hold(hold.id)
    assert (settled.units_milli, settled.cost_minor) == (7000, 105_000)
    assert (settled.raw_deduction, settled.deduction_flag) == ("25.001", "absurd")
    assert balances(ledger)["team"] == (25 * 15_000 + 105_000, 0)
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
