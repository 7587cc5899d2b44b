"""klingcost.money: exact amounts in, exact amounts out; floats refused; minor units round up."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingcost.money import exact, format_amount, format_minor, from_minor, to_minor


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (15000, Fraction(15000)),
        ("3.5", Fraction(7, 2)),
        (" 3.5 ", Fraction(7, 2)),
        ("0.1", Fraction(1, 10)),
        ("0.0035", Fraction(35, 10000)),
        ("4/3", Fraction(4, 3)),
        ("-1/3", Fraction(-1, 3)),
        ("1e3", Fraction(1000)),
        (Decimal("0.14"), Fraction(14, 100)),
        (Fraction(2, 3), Fraction(2, 3)),
    ],
)
def test_exact_accepts_exact_inputs(value: object, expected: Fraction) -> None:
    result = exact(value)
    assert result == expected
    assert type(result) is Fraction


def test_exact_decimal_string_is_not_the_float() -> None:
    # 0.1 as a float is 3602879701896397/36028797018963968; the string is exactly one tenth.
    assert exact("0.1") * 10 == 1
    assert Fraction(0.1) * 10 != 1


@pytest.mark.parametrize("value", [0.5, 3.5, 1.0, float("nan")])
def test_exact_refuses_floats(value: float) -> None:
    with pytest.raises(TypeError, match="float"):
        exact(value)


@pytest.mark.parametrize("value", [True, False])
def test_exact_refuses_booleans(value: bool) -> None:
    with pytest.raises(TypeError, match="boolean"):
        exact(value)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"1", object()])
def test_exact_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        exact(value)


@pytest.mark.parametrize(
    "value", ["", "abc", "1/0", "1/2/3", "NaN", "Infinity", "-inf", "3,5", "1/x"]
)
def test_exact_refuses_text_that_is_not_an_exact_finite_amount(value: str) -> None:
    with pytest.raises(ValueError):
        exact(value)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_exact_refuses_non_finite_decimals(value: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        exact(value)


@pytest.mark.parametrize(
    ("amount", "exponent", "minor"),
    [
        (Fraction(7), 0, 7),
        (Fraction(7, 2), 0, 4),  # 3.5 credits -> 4: a quote never understates
        (Fraction(7, 2), 1, 35),
        (Fraction(1, 3), 0, 1),
        (Fraction(1, 3), 3, 334),
        (Fraction(3, 5), 3, 600),  # 0.6 units -> 600 milli-units, exactly
        (Fraction(49, 100), 4, 4900),  # USD 0.49 in 1/10000
        (Fraction(-1, 3), 0, 0),  # towards +infinity
        (Fraction(0), 2, 0),
    ],
)
def test_to_minor_rounds_up(amount: Fraction, exponent: int, minor: int) -> None:
    assert to_minor(amount, exponent) == minor


def test_from_minor() -> None:
    assert from_minor(1800, 3) == Fraction(9, 5)
    assert from_minor(4900, 4) == Fraction(49, 100)
    assert format_minor(1800, 3) == "1.8"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Fraction(7), "7"),
        (Fraction(0), "0"),
        (Fraction(7, 2), "3.5"),
        (Fraction(-7, 2), "-3.5"),
        (Fraction(35, 10000), "0.0035"),
        (Fraction(7, 20), "0.35"),
        (Fraction(-1, 8), "-0.125"),
        (Fraction(4, 3), "4/3"),
        (Fraction(-1, 3), "-1/3"),
        (Fraction(90000), "90000"),
        # More digits than Decimal's default context (28) holds: still exact.
        (Fraction(10**30 + 1, 2), "500000000000000000000000000000.5"),
    ],
)
def test_format_amount(amount: Fraction, text: str) -> None:
    assert format_amount(amount) == text


@given(
    st.fractions(max_denominator=10**6)
    | st.builds(
        lambda n, p2, p5: Fraction(n, 2**p2 * 5**p5),
        st.integers(-(10**40), 10**40),
        st.integers(0, 12),
        st.integers(0, 12),
    )
)
def test_format_amount_round_trips_exactly(amount: Fraction) -> None:
    text = format_amount(amount)
    assert exact(text) == amount
    assert "e" not in text.lower()


@given(st.fractions(), st.integers(0, 9))
def test_to_minor_is_the_least_minor_amount_not_below(amount: Fraction, exponent: int) -> None:
    minor = to_minor(amount, exponent)
    assert from_minor(minor, exponent) >= amount
    assert from_minor(minor - 1, exponent) < amount


def test_fixed_rounds_half_to_even_exactly() -> None:
    from klingcost.money import fixed

    assert fixed(Fraction(2, 3), 4) == "0.6667"
    assert fixed(Fraction(-1, 30), 4) == "-0.0333"
    assert fixed(Fraction(1, 8), 2) == "0.12"  # 12.5 hundredths: half to even
    assert fixed(Fraction(3, 8), 2) == "0.38"
    assert fixed(Fraction(5), 0) == "5" and fixed(Fraction(0), 4) == "0.0000"
