"""klingcost.money at its edges: what mutation testing showed the other tests never asked.

Every amount klingcost prints goes through format_amount, so it must stay exact however large
the denominator; an amount refused says what was given and why.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from klingcost.money import exact, format_amount


def test_a_terminating_amount_prints_exactly_however_many_places() -> None:
    # 10**400 is past what a float holds: the digits come from integer arithmetic alone.
    assert format_amount(Fraction(1, 10**400)) == "0." + "0" * 399 + "1"
    assert format_amount(Fraction(-3, 2**300)) == format_amount(Fraction(-3 * 5**300, 10**300))
    assert exact(format_amount(Fraction(7, 5**40))) == Fraction(7, 5**40)


def test_an_amount_with_a_large_non_terminating_denominator_prints_as_a_fraction() -> None:
    # 2 x (2**53 + 1): halving it in floating point would round the odd part away and print a
    # truncated decimal for an amount that has none.
    denominator = 2 * (2**53 + 1)
    assert format_amount(Fraction(1, denominator)) == f"1/{denominator}"
    assert format_amount(Fraction(-1, 5 * (2**53 + 1))) == f"-1/{5 * (2**53 + 1)}"


def test_a_negative_amount_keeps_its_sign_and_zero_has_none() -> None:
    assert format_amount(Fraction(-1, 4)) == "-0.25"
    assert format_amount(Fraction(0)) == "0"
    assert format_amount(Fraction(1, 4)) == "0.25"


@pytest.mark.parametrize("text", ["Infinity", "-inf", "NaN"])
def test_a_non_finite_string_is_refused_naming_what_was_given(text: str) -> None:
    with pytest.raises(ValueError, match="must be finite") as caught:
        exact(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(("value", "kind"), [(None, "NoneType"), ([1], "list"), (b"1", "bytes")])
def test_a_value_of_another_type_is_refused_naming_its_type(value: object, kind: str) -> None:
    with pytest.raises(TypeError) as caught:
        exact(value)
    assert str(caught.value) == f"not an amount: {value!r} of type {kind}"
