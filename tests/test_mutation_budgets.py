"""klingcost.budgets at its boundaries and in its refusals: what mutation testing showed the
other tests never asked. A refusal names the field, the value given and what is allowed."""

from __future__ import annotations

from fractions import Fraction

import pytest

from klingcost.budgets import (
    MAX_MINOR,
    Alert,
    HoldAmounts,
    charge_against,
    counted,
    counts,
    crosses_soft,
    exponent_for,
    make_budget,
    share_used,
)
from klingcost.errors import BudgetConfigError, InvalidAmountError


def refusal(error: type[Exception], build: object) -> str:
    assert callable(build)
    with pytest.raises(error) as caught:
        build()
    return str(caught.value)


# --- what a hold counts ----------------------------------------------------------------------


def test_a_usd_budget_refuses_a_hold_priced_in_another_minor_unit() -> None:
    # A USD budget counts ten-thousandths; a hold in cents would count 100 times too little.
    budget = make_budget("us-team", limit=10_000, unit="usd")
    assert budget.exponent == 4
    cents = HoldAmounts(1000, "video", 14, "usd", exponent=2)
    message = refusal(BudgetConfigError, lambda: charge_against(budget, cents))
    assert message == (
        "budget 'us-team' counts usd to 10^-4, but the hold is priced to 10^-2; set the budget "
        "again (klingcost budget set us-team ...) or give the provider the same exponent"
    )
    # The same hold priced in the budget's own minor unit counts as it is.
    assert charge_against(budget, HoldAmounts(1000, "video", 1400, "usd", exponent=4)) == 1400
    # A hold read back from the ledger carries no exponent: it counts as it is.
    assert charge_against(budget, HoldAmounts(1000, "video", 1400, "usd")) == 1400


def test_a_budget_refuses_a_hold_in_another_currency_naming_both() -> None:
    budget = make_budget("eu", limit=10, unit="eur")
    message = refusal(BudgetConfigError, lambda: charge_against(budget, HoldAmounts(1, "video", 5)))
    assert message == (
        "budget 'eu' counts eur, but the hold is priced in credits; a budget never mixes currencies"
    )


def test_counted_without_a_budget_exponent_takes_the_cost_as_it_is() -> None:
    assert counted("usd", None, HoldAmounts(1, "video", 7, "usd", exponent=2), "t") == 7


# --- defining a budget: the boundaries -------------------------------------------------------


def test_a_budget_keeps_its_parent() -> None:
    child = make_budget("team-a/child", limit=100, parent="team-a")
    assert child.parent == "team-a"
    assert make_budget("team-a", limit=100).parent is None


@pytest.mark.parametrize("limit", [0, 1, MAX_MINOR])
def test_limits_from_zero_to_the_ledger_maximum_are_accepted(limit: int) -> None:
    assert make_budget("t", limit=limit).limit == limit


def test_a_limit_past_the_ledger_maximum_is_refused_naming_the_maximum() -> None:
    message = refusal(BudgetConfigError, lambda: make_budget("t", limit=MAX_MINOR + 1))
    assert message == (
        f"invalid budget 't': limit {MAX_MINOR + 1} is too large: at most {MAX_MINOR} minor units"
    )


@pytest.mark.parametrize(("soft", "expected"), [("1", Fraction(1)), ("1/1000", Fraction(1, 1000))])
def test_a_soft_threshold_of_the_whole_limit_or_a_tiny_share_is_accepted(
    soft: str, expected: Fraction
) -> None:
    assert make_budget("t", limit=10, soft=soft).soft == expected


@pytest.mark.parametrize("soft", ["1.001", "-1/2", "0"])
def test_a_soft_threshold_outside_0_to_1_is_refused(soft: str) -> None:
    message = refusal(BudgetConfigError, lambda: make_budget("t", limit=10, soft=soft))
    assert message == f"invalid budget 't': soft threshold must be in (0, 1] (given {soft})"


@pytest.mark.parametrize(("unit", "exponent"), [("usd", 4), ("eur", 2), ("jpy", 0), ("cny", 3)])
def test_a_known_currency_is_a_valid_unit_with_its_ledger_exponent(
    unit: str, exponent: int
) -> None:
    budget = make_budget("t", limit=10, unit=unit)
    assert (budget.unit, budget.exponent, budget.pack) == (unit, exponent, None)


def test_an_unknown_currency_with_an_exponent_is_accepted() -> None:
    budget = make_budget("t", limit=10, unit="doubloons", exponent=2)
    assert (budget.unit, budget.exponent) == ("doubloons", 2)
    assert budget.unit_label == "doubloons minor units (1e-2)"


def test_a_units_budget_counts_the_video_pack_unless_told() -> None:
    budget = make_budget("t", limit=10, unit="units")
    assert budget.pack == "video"
    assert budget.unit_label == "milli-units (video)"


def test_every_problem_of_a_definition_is_named_in_one_line() -> None:
    message = refusal(
        BudgetConfigError,
        lambda: make_budget(
            " x",
            limit=-5,
            unit="Usd",
            period="year",
            soft="2",
            tz="No/Where",
            parent=" x",
        ),
    )
    assert "\n" not in message
    assert message == (
        "invalid budget ' x': team name ' x' must be 1-64 letters, digits or _.:@/-, starting "
        "with a letter or digit; budget ' x' cannot be its own parent; limit cannot be negative "
        "(given -5); unit must be 'units' or a lowercase currency name (given 'Usd'); unknown "
        "period 'year' (allowed: none, day, week, month); soft threshold must be in (0, 1] "
        "(given 2); unknown time zone 'No/Where' (use an IANA name such as 'UTC' or "
        "'Europe/Paris')"
    )


def test_an_unreadable_soft_threshold_and_a_bad_pack_are_named() -> None:
    message = refusal(
        BudgetConfigError, lambda: make_budget("x", limit=1, unit="units", pack="audio", soft="x")
    )
    assert message == (
        "invalid budget 'x': soft threshold: not an exact amount: 'x' (write 3.5, 15000 or 4/3); "
        "pack must be one of video, image (given 'audio')"
    )


def test_an_unknown_currency_without_an_exponent_lists_the_known_ones() -> None:
    message = refusal(BudgetConfigError, lambda: exponent_for("doubloons"))
    assert message == (
        "unknown currency 'doubloons': give its exponent "
        "(known: units, cny, credits, eur, gbp, hkd, jpy, usd)"
    )


# --- hold amounts ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, MAX_MINOR])
def test_hold_amounts_from_zero_to_the_ledger_maximum_are_accepted(value: int) -> None:
    hold = HoldAmounts(value, "image", value)
    assert (hold.units_milli, hold.cost_minor) == (value, value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"units_milli": 1.0},
            "units_milli must be an int in minor units (given 1.0); floats are refused",
        ),
        ({"cost_minor": -1}, "cost_minor cannot be negative (given -1)"),
        (
            {"cost_minor": MAX_MINOR + 1},
            f"cost_minor is past what the ledger holds, 2**63 - 1 (given {MAX_MINOR + 1})",
        ),
        ({"pack": "audio"}, "pack must be one of video, image (given 'audio')"),
        ({"currency": "USD"}, "currency must be a lowercase name (given 'USD')"),
    ],
)
def test_a_bad_hold_amount_is_refused_naming_field_and_value(
    values: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"units_milli": 1, "pack": "video", "cost_minor": 1}
    assert refusal(InvalidAmountError, lambda: HoldAmounts(**{**fields, **values})) == message  # type: ignore[arg-type]


# --- shares and alerts -----------------------------------------------------------------------


def test_a_zero_limit_budget_with_anything_used_is_fully_used() -> None:
    assert share_used(0, 1) == 1
    assert share_used(0, 0) == 0


def test_an_over_alert_says_the_limit_was_passed() -> None:
    assert str(Alert("over", "t", "2026-11", 250, 200)) == (
        "budget 't' was charged past its limit: 250 of 200 used in 2026-11"
    )
    assert str(Alert("soft", "t", "2026-11", 170, 200)) == (
        "budget 't' passed its soft threshold: 170 of 200 used in 2026-11"
    )


def test_a_budget_keeps_its_period_and_time_zone() -> None:
    budget = make_budget("t", limit=10, period="day", tz="Europe/Paris")
    assert (budget.period, budget.tz) == ("day", "Europe/Paris")
    assert make_budget("t", limit=10, period="month").period == "month"


def test_the_first_unit_of_a_one_unit_budget_crosses_a_soft_threshold_of_1() -> None:
    assert crosses_soft(1, Fraction(1), 0, 1)
    assert not crosses_soft(1, Fraction(1), 1, 2)  # already past


def test_a_units_budget_counts_only_its_own_pack_a_currency_budget_either() -> None:
    video = HoldAmounts(units_milli=5000, pack="video", cost_minor=75_000)
    image = HoldAmounts(units_milli=4000, pack="image", cost_minor=1_500)
    assert counts("units", "video", video) is True
    assert counts("units", "video", image) is False  # refused at reserve, never held as 0
    assert counts("units", "image", image) is True
    assert counts("credits", None, image) is True
    assert counts("credits", None, video) is True
