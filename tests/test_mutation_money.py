# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""klingcost.money at its edges: what mutation testing showed the other tests never asked.

Every amount klingcost prints goes through format_amount, so it must stay exact however large
the denominator; an amount refused says what was given and why.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from klingcost.money import exact, format_amount, json_decimal, json_int


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


# --- the bounds of exact(), json_decimal() and json_int() ------------------------------------

BOUNDS = "a number has at most 100 digits and an exponent from -100 to 100"


def test_a_bad_amount_of_40_characters_is_quoted_whole_longer_is_shortened() -> None:
    with pytest.raises(ValueError) as whole:
        exact("x" * 38)  # its repr is 40 characters
    assert str(whole.value) == f"not an exact amount: '{'x' * 38}' (write 3.5, 15000 or 4/3)"
    with pytest.raises(ValueError) as cut:
        exact("x" * 39)
    assert str(cut.value) == (
        f"not an exact amount: '{'x' * 29}...(41 characters) (write 3.5, 15000 or 4/3)"
    )


def test_an_amount_has_at_most_100_digits() -> None:
    assert exact("1" * 100) == int("1" * 100)
    with pytest.raises(ValueError) as caught:
        exact("1" * 101)
    assert str(caught.value) == f"'{'1' * 29}...(103 characters) is out of bounds: {BOUNDS}"


def test_an_exponent_of_100_either_way_is_read_101_is_not() -> None:
    assert exact("1e100") == 10**100
    assert exact("1e-100") == Fraction(1, 10**100)
    with pytest.raises(ValueError) as caught:
        exact("1e101")
    assert str(caught.value) == f"'1e101' is out of bounds: {BOUNDS}"
    with pytest.raises(ValueError) as decimal:
        exact(Decimal("1e-101"))
    assert str(decimal.value) == f"Decimal('1E-101') is out of bounds: {BOUNDS}"


def test_an_integer_has_fewer_than_101_digits_either_sign() -> None:
    largest = 10**100 - 1
    assert (exact(largest), exact(-largest)) == (largest, -largest)
    for value in (10**100, -(10**100)):
        with pytest.raises(ValueError, match="an integer of more than 100 digits"):
            exact(value)


def test_a_text_of_220_characters_is_read_longer_is_refused_unread() -> None:
    assert exact("0" * 219 + "1") == 1
    assert json_decimal("0" * 218 + ".5") == Decimal("0.5")
    with pytest.raises(ValueError) as caught:
        exact("0" * 220 + "1")
    assert str(caught.value) == f"'{'0' * 29}...(223 characters) is out of bounds: {BOUNDS}"
    with pytest.raises(ValueError) as json_caught:
        json_decimal("0" * 220 + "1")
    assert str(json_caught.value) == (
        f"the number '{'0' * 29}...(223 characters) is out of bounds: {BOUNDS}"
    )


def test_json_decimal_reads_exactly_and_names_a_number_out_of_bounds() -> None:
    assert json_decimal("2.5") == Decimal("2.5")
    assert json_decimal("-1e100") == Decimal("-1e100")
    with pytest.raises(ValueError) as caught:
        json_decimal("1e101")
    assert str(caught.value) == f"'1e101' is out of bounds: {BOUNDS}"


def test_json_int_counts_digits_without_the_sign() -> None:
    assert json_int("-123", max_digits=3) == -123
    assert json_int("123", max_digits=3) == 123
    for text in ("1234", "-1234"):
        with pytest.raises(ValueError) as caught:
            json_int(text, max_digits=3)
        assert str(caught.value) == "an integer of 4 digits (at most 3 are read)"


def test_each_side_of_a_fraction_has_at_most_100_digits() -> None:
    largest = 10**100 - 1
    assert exact(f"{largest}/{largest - 1}") == Fraction(largest, largest - 1)
    assert exact(f"-{largest}/3") == Fraction(-largest, 3)
    for text in (f"{10**100}/3", f"-{10**100}/3", f"1/{10**100}"):
        with pytest.raises(ValueError) as caught:
            exact(text)
        shown = repr(text)
        assert (
            str(caught.value)
            == f"{shown[:30]}...({len(shown)} characters) is out of bounds: {BOUNDS}"
        )
