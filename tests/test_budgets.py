from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingcost.budgets import (
    Alert,
    BudgetStatus,
    HoldAmounts,
    available,
    charge_against,
    crosses_soft,
    exponent_for,
    fits,
    make_budget,
    parse_limit,
    share_used,
)
from klingcost.errors import BudgetConfigError, InvalidAmountError
from klingcost.periods import window_for


def test_a_default_budget() -> None:
    budget = make_budget("team-a", limit=500000)
    assert (budget.unit, budget.period, budget.soft, budget.tz, budget.pack) == (
        "credits",
        "none",
        Fraction(4, 5),
        "UTC",
        None,
    )
    assert budget.exponent == 0
    assert budget.format(500000) == "500000"


def test_a_units_budget_mirrors_one_pack() -> None:
    budget = make_budget("pack", limit=12500, unit="units", pack="image", period="day")
    assert (budget.exponent, budget.pack) == (3, "image")
    assert budget.format(12500) == "12.5"
    assert "milli-units" in budget.unit_label


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "negative"),
        ({"limit": 1.5}, "int in minor units"),
        ({"limit": True}, "int in minor units"),
        ({"limit": 1, "period": "year"}, "unknown period"),
        ({"limit": 1, "tz": "Nowhere/Land"}, "unknown time zone"),
        ({"limit": 1, "soft": "1.5"}, "soft threshold"),
        ({"limit": 1, "soft": "0"}, "soft threshold"),
        ({"limit": 1, "soft": 0.8}, "floats"),
        ({"limit": 1, "unit": "Credits!"}, "unit"),
        ({"limit": 1, "unit": "units", "pack": "audio"}, "pack"),
        ({"limit": 1, "unit": "doubloons"}, "unknown currency"),
        ({"limit": 1, "parent": "same"}, "own parent"),
    ],
)
def test_invalid_definitions_are_refused(kwargs: dict[str, object], message: str) -> None:
    team = "same"
    with pytest.raises(BudgetConfigError, match=message):
        make_budget(team, **kwargs)  # type: ignore[arg-type]


def test_bad_team_names_are_refused() -> None:
    for name in ["", " team", "a" * 65, "semi;colon"]:
        with pytest.raises(BudgetConfigError, match="team name"):
            make_budget(name, limit=1)


def test_limits_parse_exactly() -> None:
    assert parse_limit("500000", exponent_for("credits")) == 500000
    assert parse_limit("12.5", exponent_for("units")) == 12500
    assert parse_limit("19.99", exponent_for("usd")) == 199_900  # USD to 1/10,000, as priced
    with pytest.raises(BudgetConfigError, match="decimals"):
        parse_limit("12.5", exponent_for("credits"))
    with pytest.raises(BudgetConfigError, match="decimals"):
        parse_limit("1/3", exponent_for("units"))
    with pytest.raises(BudgetConfigError, match="invalid limit"):
        parse_limit("lots", 0)
    assert exponent_for("doubloons", 2) == 2


def test_what_a_hold_counts_against_a_budget() -> None:
    video = HoldAmounts(4000, "video", 60000, "credits")
    image = HoldAmounts(8000, "image", 900, "credits")
    video_pack = make_budget("p", limit=10, unit="units", pack="video")
    credits = make_budget("c", limit=10)
    assert charge_against(video_pack, video) == 4000
    assert charge_against(video_pack, image) == 0  # the other pack counts nothing
    assert charge_against(credits, video) == 60000
    with pytest.raises(BudgetConfigError, match="never mixes currencies"):
        charge_against(credits, HoldAmounts(1, "video", 5, "usd"))


@pytest.mark.parametrize(
    "bad",
    [
        {"units_milli": 1.0},
        {"cost_minor": -1},
        {"cost_minor": True},
        {"pack": "audio"},
        {"currency": "USD"},
    ],
)
def test_hold_amounts_are_ints_in_minor_units(bad: dict[str, object]) -> None:
    values: dict[str, object] = {
        "units_milli": 1,
        "pack": "video",
        "cost_minor": 1,
        "currency": "credits",
    }
    with pytest.raises(InvalidAmountError):
        HoldAmounts(**{**values, **bad})  # type: ignore[arg-type]


def test_fits_at_the_limit_and_not_past_it() -> None:
    assert fits(100, 60, 30, 10)
    assert not fits(100, 60, 30, 11)
    # A budget that true charges drove past its limit admits nothing until it is back under.
    assert not fits(100, 150, 0, 0)
    assert not fits(100, 101, 0, 0)
    assert fits(100, 100, 0, 0)
    assert available(100, 150, 0) == -50


def test_soft_threshold_crossings() -> None:
    soft = Fraction(4, 5)
    assert crosses_soft(100, soft, 79, 80)
    assert not crosses_soft(100, soft, 80, 90)  # already past
    assert not crosses_soft(100, soft, 10, 79)
    assert crosses_soft(3, soft, 2, 3)  # threshold 2.4
    assert not crosses_soft(0, soft, 0, 0)


@given(
    limit=st.integers(0, 10**6),
    num=st.integers(1, 100),
    before=st.integers(0, 2 * 10**6),
    step=st.integers(0, 10**6),
)
def test_soft_crossing_matches_the_exact_definition(
    limit: int, num: int, before: int, step: int
) -> None:
    soft = Fraction(num, 100)
    after = before + step
    expected = before < soft * limit <= after and after > 0
    assert crosses_soft(limit, soft, before, after) == expected


def test_status_and_shares() -> None:
    budget = make_budget("t", limit=200, period="month")
    window = window_for("month", datetime(2026, 11, 2, tzinfo=UTC))
    status = BudgetStatus(budget, window, posted=50, held=100)
    assert (status.team, status.limit, status.used, status.available) == ("t", 200, 150, 50)
    assert status.share_used == Fraction(3, 4)
    assert share_used(0, 0) == 0
    assert share_used(0, 5) == 1
    assert "soft threshold" in str(Alert("soft", "t", "2026-11", 170, 200))
