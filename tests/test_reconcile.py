"""Reconcile: per job class agreement, drift, flags, and the tasks that disagree."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from fake_fixtures import _fake_session, fake_server  # noqa: F401
from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.errors import ReportError
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.reconcile import parse_tolerance, reconcile, task_flags
from test_calibrate import JOBS, drifted_ledger

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def meta(model: str, duration: int = 5) -> dict[str, str | int | None]:
    return {
        "endpoint": "videos/text2video",
        "model": model,
        "mode": "std",
        "duration": duration,
        "sound": 0,
        "video_reference": 0,
        "reference_image": 0,
        "n": 1,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger], clock: ManualClock) -> Ledger:
    """A ledger on each backend (conftest.py)."""
    opened = make_ledger(clock=clock)
    opened.set_budget("studio", limit=10**12)
    return opened


def book(
    ledger: Ledger,
    model: str,
    charged_milli: int | None,
    raw: str | None,
    *,
    estimate_milli: int = 1000,
    status: str | None = "succeed",
    duration: int = 5,
) -> int:
    amounts = HoldAmounts(estimate_milli, "video", estimate_milli * 15, "credits")
    hold = ledger.reserve("studio", amounts, meta=meta(model, duration))
    ledger.attach(hold.id, f"task-{hold.id}")
    if charged_milli is None:
        ledger.void(hold.id, reason="task failed")
    else:
        ledger.settle(
            hold.id,
            units_milli=charged_milli,
            cost_minor=charged_milli * 15,
            raw_deduction=raw,
            task_status=status,
        )
    return hold.id


def test_agreement_drift_and_largest_variance(ledger: Ledger) -> None:
    for _ in range(3):
        book(ledger, "kling-v1", 1000, "1")
    worst = book(ledger, "kling-v1", 1500, "1.5")
    book(ledger, "kling-v1", None, None)  # voided: not compared
    result = reconcile(ledger)
    [c] = result.classes
    assert (c.settled, c.voided, c.compared, c.agreeing) == (4, 1, 4, 3)
    assert c.agreement_rate == Fraction(3, 4)
    assert c.drift == Fraction(500, 4000)
    assert c.largest_variance_units_milli == 500
    assert c.disagreeing == 1 and [t.hold_id for t in c.tasks] == [worst]
    assert c.tasks[0].variance_units_milli == 500 and c.tasks[0].flags == ()
    assert not result.ok and result.drifting == (c,)
    assert reconcile(ledger, tolerance="1/8").ok
    assert not reconcile(ledger, tolerance="12%").ok
    data = result.to_dict()
    assert data["classes"][0]["drift"] == "0.1250" and data["classes"][0]["ratio"] == "1.1250"
    assert data["classes"][0]["class"]["duration"] == "5"


def test_rates_in_json_are_fixed_decimals_never_fractions(ledger: Ledger) -> None:
    book(ledger, "kling-v1", 1000, "1")
    book(ledger, "kling-v1", 1000, "1")
    book(ledger, "kling-v1", 1100, "1.1")
    result = reconcile(ledger, tolerance="1/3")
    [c] = result.classes
    assert (c.agreement_rate, c.drift) == (Fraction(2, 3), Fraction(1, 30))  # exact inside
    data = result.to_dict()
    [row] = data["classes"]
    assert (row["agreement_rate"], row["drift"], row["ratio"]) == ("0.6667", "0.0333", "1.0333")
    assert row["mean_abs_variance_units"] == "0.033"  # 1/30 unit, to the milli-unit
    assert data["tolerance"] == "0.3333"


def test_charges_that_look_wrong_are_flagged(ledger: Ledger) -> None:
    book(ledger, "kling-v1", 1000, None)  # succeeded, no final_unit_deduction
    book(ledger, "kling-v1", 1000, "0")
    book(ledger, "kling-v1", 1000, "1e100")
    book(ledger, "kling-v1", 1000, "lots")
    failed = book(ledger, "kling-v1", 1000, "1", status="failed")
    book(ledger, "kling-v1", 1000, "1")
    result = reconcile(ledger, limit=10)
    [c] = result.classes
    assert c.flags == {"missing": 1, "zero": 1, "absurd": 2, "failed_charged": 1}
    assert result.flag_totals == c.flags
    assert (c.settled, c.compared, c.agreeing) == (6, 1, 1)  # only the trusted charge compares
    assert c.drift == 0 and result.ok  # flags alone do not fail --strict
    assert c.disagreeing == 5
    flagged = {t.hold_id: t.flags for t in c.tasks}
    assert flagged[failed] == ("failed_charged",)
    assert sorted(f for flags in flagged.values() for f in flags) == [
        "absurd",
        "absurd",
        "failed_charged",
        "missing",
        "zero",
    ]
    assert len(reconcile(ledger, limit=2).classes[0].tasks) == 2
    assert reconcile(ledger, limit=0).classes[0].tasks == ()


def test_classes_are_apart_and_the_window_applies(ledger: Ledger, clock: ManualClock) -> None:
    book(ledger, "kling-v1", 1000, "1")
    book(ledger, "kling-v1", 2000, "2", estimate_milli=2000, duration=10)
    clock.advance(timedelta(days=2))
    book(ledger, "kling-v1-5", 2400, "2.4", estimate_milli=2000)
    result = reconcile(ledger)
    labels = [c.job.label for c in result.classes]
    assert labels[0] == "videos/text2video kling-v1-5 std 5s"  # drifting first
    assert set(labels) == {
        "videos/text2video kling-v1 std 5s",
        "videos/text2video kling-v1 std 10s",
        "videos/text2video kling-v1-5 std 5s",
    }
    recent = reconcile(ledger, since=date(2026, 11, 22))
    assert [c.job.model for c in recent.classes] == ["kling-v1-5"]
    assert recent.classes[0].tasks[0].charged_units_milli == 2400
    early = reconcile(ledger, until=date(2026, 11, 21))
    assert {c.job.model for c in early.classes} == {"kling-v1"} and early.ok


def test_a_drifted_server_shows_as_drift(tmp_path: Path, fake: FakeKling) -> None:
    with drifted_ledger(tmp_path / "l.db", fake, JOBS[:6]) as ledger:
        result = reconcile(ledger, tolerance="1%")
        drifting = {c.job.label: c.ratio for c in result.drifting}
        assert drifting == {
            "videos/text2video kling-v1-5 std 5s": Fraction(6, 5),
            "videos/text2video kling-v1-5 std 10s": Fraction(6, 5),
            "videos/text2video kling-v1-5 pro 5s": Fraction(6, 5),
        }
        assert all(c.agreement_rate == 1 for c in result.classes if c.job.model == "kling-v1")


def test_tolerance_and_flags_helpers() -> None:
    assert parse_tolerance("5%") == Fraction(1, 20)
    assert parse_tolerance("0.05") == parse_tolerance("1/20") == Fraction(1, 20)
    with pytest.raises(ReportError, match=r"tolerance '-1%' is negative: give a share of 0"):
        parse_tolerance("-1%")
    with pytest.raises(ReportError, match=r"tolerance 'lots' is not a share: give 0.05, 5%"):
        parse_tolerance("lots")
    with pytest.raises(TypeError):
        parse_tolerance(0.05)  # type: ignore[arg-type]
    assert task_flags(None, "succeed") == ("missing",)
    assert task_flags("ok", "failed") == ("failed_charged",)
    assert task_flags("negative", None) == ("absurd",)
    assert task_flags("ok", None) == ()


def test_an_empty_ledger_reconciles(ledger: Ledger) -> None:
    result = reconcile(ledger)
    assert result.classes == () and result.ok
