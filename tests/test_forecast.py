"""The forecast: exact arithmetic (hypothesis), which days it fits, the ledger's daily
series on both backends, and the forecast warning written once per period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.errors import BudgetNotFound
from klingcost.forecast import HORIZON_DAYS, Forecast, forecast_for, project, slope
from klingcost.ledger import Ledger

TODAY = date(2026, 12, 10)
amounts = st.integers(min_value=0, max_value=10**12)


def _series(values: list[int], end: date = TODAY) -> dict[date, int]:
    first = end - timedelta(days=len(values) - 1)
    return {first + timedelta(days=i): v for i, v in enumerate(values)}


@given(st.integers(1, 60), amounts)
def test_a_constant_spend_is_its_own_rate_exactly(days: int, daily: int) -> None:
    assert slope([daily] * days) == daily


@given(st.lists(amounts, min_size=1, max_size=60))
def test_the_rate_lies_between_the_smallest_and_the_largest_day(values: list[int]) -> None:
    rate = slope(values)
    assert isinstance(rate, Fraction)
    assert min(values) <= rate <= max(values)


@given(st.lists(amounts, min_size=1, max_size=30), st.integers(0, 1000))
def test_the_rate_scales_with_the_spend(values: list[int], k: int) -> None:
    assert slope([k * v for v in values]) == k * slope(values)


@given(
    st.lists(st.integers(0, 10**9), min_size=1, max_size=14),
    st.integers(-(10**9), 10**12),
)
def test_the_run_out_day_is_today_plus_the_whole_days_the_room_lasts(
    values: list[int], available: int
) -> None:
    series = _series(values)
    f = project(
        series,
        today=TODAY,
        available=available,
        first_day=min(series),  # the budget began with the series: every day of it is fitted
        period_start=None,
        period_end=None,
    )
    rate = slope(values)
    assert f.rate_per_day == rate and f.days == len(values)
    if available <= 0:
        assert f.runs_out_on == TODAY
    elif rate == 0 or available / rate >= HORIZON_DAYS + 1:
        assert f.runs_out_on is None
    else:
        assert f.runs_out_on is not None
        days = (f.runs_out_on - TODAY).days
        assert days * rate <= available < (days + 1) * rate  # floor(available / rate), exactly


def test_which_days_are_fitted() -> None:
    spend = _series([100] * 40)
    common: dict[str, Any] = {"today": TODAY, "available": 1000, "first_day": date(2026, 1, 1)}
    # A period that started long ago: the last 14 days.
    f = project(spend, **common, period_start=date(2026, 12, 1) - timedelta(days=30),
                period_end=date(2026, 12, 31))  # fmt: skip
    assert f.days == 14 and "2026-11-27 to 2026-12-10" in f.method
    # A period 10 days old: its own days only.
    f = project(spend, **common, period_start=date(2026, 12, 1), period_end=date(2026, 12, 31))
    assert f.days == 10 and "2026-12-01 to 2026-12-10" in f.method
    # A period 2 days old is too young: the days before it count too.
    f = project(spend, **common, period_start=date(2026, 12, 9), period_end=date(2026, 12, 31))
    assert f.days == 14 and "reaching before this period (it is 2 days old)" in f.method
    # Never before the budget existed.
    f = project(spend, today=TODAY, available=1000, first_day=date(2026, 12, 8),
                period_start=None, period_end=None)  # fmt: skip
    assert f.days == 3
    assert f.method.endswith("open holds excluded")


def test_runs_out_early_and_the_json_shape() -> None:
    f = project(
        _series([3000] * 5),
        today=TODAY,
        available=10_000,
        first_day=date(2026, 12, 6),  # the budget is 5 days old
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 31),
        exponent=2,
    )
    assert f.rate_per_day == 3000 and f.runs_out_on == date(2026, 12, 13)
    assert f.runs_out_early and f.period_ends_on == date(2026, 12, 31)
    assert f.to_dict() == {"rate_per_day": "30", "runs_out_on": "2026-12-13", "method": f.method}
    later = Forecast(Fraction(1, 3), date(2027, 1, 5), "m", date(2026, 12, 31), 3, 2)
    assert not later.runs_out_early
    assert later.rate_text == "0.01"  # 1/3 of a minor unit, shown rounded up
    assert Forecast(Fraction(0), None, "m").to_dict()["runs_out_on"] is None


# --- from the ledger (both backends) ---------------------------------------------------------


def _spend(ledger: Ledger, team: str, cost: int) -> None:
    hold = ledger.reserve(team, HoldAmounts(1000, "video", cost, "credits"))
    ledger.settle(hold.id, units_milli=1000, cost_minor=cost)


def test_the_ledger_forecasts_a_parent_from_its_childrens_settled_charges(
    make_ledger: Callable[..., Ledger],
) -> None:
    clock = ManualClock(datetime(2026, 12, 1, 9, tzinfo=UTC))
    ledger = make_ledger(clock=clock)
    ledger.deliver_in_background = False
    ledger.set_budget("acme", limit=100_000, period="month")
    ledger.set_budget("dev", limit=100_000, parent="acme")
    for day in range(4):
        _spend(ledger, "dev", 5_000)
        _spend(ledger, "acme", 1_000)
        ledger.reserve("dev", HoldAmounts(1000, "video", 7_000, "credits"))  # open: not fitted
        if day < 3:
            clock.advance(days=1)
    charges = ledger.daily_charges("acme", since=date(2026, 11, 1), until=date(2026, 12, 31))
    assert charges == {date(2026, 12, d): 6_000 for d in range(1, 5)}
    assert ledger.daily_charges("dev", since=date(2026, 12, 1), until=date(2026, 12, 4)) == {
        date(2026, 12, d): 5_000 for d in range(1, 5)
    }
    f = forecast_for(ledger, "acme")
    # Three whole days and today's 9 hours (3/8 of a day) of 6,000 a day, fitted.
    assert f.rate_per_day == slope([6_000] * 4, Fraction(3, 8)) and f.days == 4
    assert 6_000 < f.rate_per_day < 7_000
    # 100,000 - 24,000 settled - 28,000 held = 48,000 left.
    assert f.runs_out_on == date(2026, 12, 4) + timedelta(days=int(48_000 / f.rate_per_day))
    assert f.runs_out_early
    assert ledger.forecast("dev").rate_per_day == slope([5_000] * 4, Fraction(3, 8))
    with pytest.raises(BudgetNotFound):
        ledger.forecast("nosuch")


def test_a_forecast_warning_is_written_once_per_period(make_ledger: Callable[..., Ledger]) -> None:
    clock = ManualClock(datetime(2026, 12, 1, 9, tzinfo=UTC))
    ledger = make_ledger(clock=clock)
    ledger.deliver_in_background = False
    ledger.set_budget("acme", limit=100_000, period="month")
    ledger.set_budget("calm", limit=100_000, period="month")
    ledger.set_budget("forever", limit=10_000)  # no period: nothing to run out before
    rule = ledger.add_alert_rule("acme", channel="webhook", url="https://a.example/h")
    for _ in range(3):
        _spend(ledger, "acme", 10_000)  # 10,000 a day: runs out on day 10 of 31
        _spend(ledger, "calm", 100)
        _spend(ledger, "forever", 1_000)
        clock.advance(days=1)
    assert ledger.warn_forecasts() == ["acme"]
    clock.advance(hours=1)
    assert ledger.warn_forecasts() == []  # once per period
    (event,) = ledger.events(kind="forecast_warning")
    assert event.team == "acme" and event.data["period_key"] == "2026-12"
    # 10,000 on each of three days, nothing yet in today's 9 hours: 70,000 left lasts 7 days.
    assert slope([10_000, 10_000, 10_000, 0], Fraction(3, 8)) == 9_280
    assert event.data["runs_out_on"] == "2026-12-11"
    assert [row.rule_id for row in ledger.alert_outbox()] == [rule.id]
    clock.set(datetime(2027, 1, 5, tzinfo=UTC))
    for _ in range(3):
        _spend(ledger, "acme", 20_000)
    assert ledger.warn_forecasts() == ["acme"]  # a new period, a new warning
    assert len(ledger.events(kind="forecast_warning")) == 2


def test_forecasts_are_looked_for_at_most_every_five_minutes(
    make_ledger: Callable[..., Ledger],
) -> None:
    clock = ManualClock(datetime(2026, 12, 5, 9, tzinfo=UTC))
    ledger = make_ledger(clock=clock)
    ledger.set_budget("acme", limit=10_000, period="month")
    assert ledger.warn_forecasts() == []
    _spend(ledger, "acme", 5_000)  # now it would warn ...
    clock.advance(minutes=4)
    assert ledger.warn_forecasts() == []  # ... but the last look was 4 minutes ago
    clock.advance(minutes=1)
    assert ledger.warn_forecasts() == ["acme"]


def test_today_counts_as_the_part_of_it_gone_and_at_least_a_quarter() -> None:
    spend = {TODAY: 1_000}
    common: dict[str, Any] = {"today": TODAY, "available": 10**6, "first_day": TODAY}
    half = project(spend, **common, period_start=None, period_end=None, today_share=Fraction(1, 2))
    assert half.rate_per_day == 2_000
    early = project(spend, **common, period_start=None, period_end=None,
                    today_share=Fraction(1, 288))  # fmt: skip
    assert early.rate_per_day == 4_000  # five minutes in: counted as six hours
    with pytest.raises(ValueError, match="today_share"):
        project(spend, **common, period_start=None, period_end=None, today_share=Fraction(2))
