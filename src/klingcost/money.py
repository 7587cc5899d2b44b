"""Exact amounts: the one door through which every price, factor and charge enters klingcost.

Rules, written down once:

* Every price, factor, unit count and credit amount is a :class:`fractions.Fraction` built by
  :func:`exact`. Floats are refused outright (``0.1`` is not one tenth), and so are booleans.
* The ledger stores integers in *minor units*: an amount times ``10 ** exponent`` of its unit
  (Kling units are kept in thousandths, ``UNIT_EXPONENT``; credits in whole credits).
* Turning an exact amount into minor units rounds **up** (:func:`to_minor`): a hold or a quoted
  cost never understates what may be charged. Every sheet price in klingcost is exact in minor
  units already, so in practice nothing is rounded; the rule only decides the odd case.
* Exact amounts print as plain decimals (:func:`format_amount`); an amount whose decimal form
  would not terminate (such as 4/3) prints as a fraction, never as a rounded decimal.
* An amount is bounded where it comes in (:data:`MAX_DIGITS`, :data:`MAX_EXPONENT`): building
  ``Fraction("1e999999999")`` means computing ``10**999999999``, which hangs for minutes, and a
  number past 4,300 digits cannot even be printed. :func:`json_int` and :func:`json_decimal`
  put the same bounds on numbers read from JSON.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Final

#: Kling units are kept in the ledger in thousandths (0.6 units/s x 3 s = 1800 milli-units).
UNIT_EXPONENT: Final = 3

#: The minor unit each known currency is kept in: a price sheet's provider in one of these
#: must use this exponent (the sheet loader refuses another), and a budget in it counts in it,
#: so a hold's cost adds to a budget as it is, never 100 times too large or too small. USD goes
#: to 1/10,000 and CNY to 1/1,000 because Kling's own prices do (USD 0.0035 an image unit).
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "credits": 0,
    "usd": 4,
    "cny": 3,
    "hkd": 2,
    "eur": 2,
    "gbp": 2,
    "jpy": 0,
}

Exactish = int | str | Decimal | Fraction

#: The most significant digits an amount may have (each side of a fraction ``p/q`` too).
MAX_DIGITS: Final = 100
#: The largest exponent, either way, of an amount written as a decimal (``1e100``, ``1e-100``).
MAX_EXPONENT: Final = 100
#: Longer text is refused before it is parsed at all.
_MAX_TEXT: Final = 2 * MAX_DIGITS + 20
_INT_BOUND: Final = 10**MAX_DIGITS
_BOUNDS: Final = (
    f"a number has at most {MAX_DIGITS} digits and an exponent from -{MAX_EXPONENT} "
    f"to {MAX_EXPONENT}"
)
#: Python refuses to convert longer digit strings to int (sys.get_int_max_str_digits()).
JSON_INT_DIGITS: Final = 4300


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} characters)"


def _bounded_decimal(value: Decimal, given: object) -> Decimal:
    """``value`` when it is finite and within the bounds; else ValueError, in one line."""
    if not value.is_finite():
        raise ValueError(f"an amount must be finite (given {_shown(given)})")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if len(digits) > MAX_DIGITS or abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"{_shown(given)} is out of bounds: {_BOUNDS}")
    return value


def exact(value: object) -> Fraction:
    """Build an exact amount from an int, a decimal or fraction string, a Decimal or a Fraction.

    >>> exact("3.5"), exact("4/3"), exact(15000)
    (Fraction(7, 2), Fraction(4, 3), Fraction(15000, 1))
    """
    if isinstance(value, bool):
        raise TypeError(f"an amount cannot be a boolean (given {value!r})")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        if not -_INT_BOUND < value < _INT_BOUND:
            # str() itself fails past 4,300 digits: do not quote the value.
            raise ValueError(f"an integer of more than {MAX_DIGITS} digits: {_BOUNDS}")
        return Fraction(value)
    if isinstance(value, Decimal):
        return Fraction(_bounded_decimal(value, value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise ValueError(f"{_shown(value)} is out of bounds: {_BOUNDS}")
        try:
            if "/" in text:
                numerator, denominator = text.split("/")
                fraction = Fraction(int(numerator), int(denominator))
                if abs(fraction.numerator) >= _INT_BOUND or fraction.denominator >= _INT_BOUND:
                    raise OverflowError
                return fraction
            parsed = Decimal(text)
        except OverflowError:
            raise ValueError(f"{_shown(value)} is out of bounds: {_BOUNDS}") from None
        except (ValueError, ArithmeticError, ZeroDivisionError):
            raise ValueError(
                f"not an exact amount: {_shown(value)} (write 3.5, 15000 or 4/3)"
            ) from None
        return Fraction(_bounded_decimal(parsed, value))
    if isinstance(value, float):
        raise TypeError(
            f"floats are not exact amounts (given {value!r}); write it as a string, e.g. '{value}'"
        )
    raise TypeError(f"not an amount: {value!r} of type {type(value).__name__}")


def json_decimal(text: str) -> Decimal:
    """A JSON number with a fraction or an exponent as an exact Decimal (``parse_float``).

    Bounded as :func:`exact` bounds amounts, so that nothing later (``int()``, ``Fraction()``)
    computes ``10**99999999`` from ``1e99999999``: ValueError otherwise.
    """
    if len(text) > _MAX_TEXT:
        raise ValueError(f"the number {_shown(text)} is out of bounds: {_BOUNDS}")
    return _bounded_decimal(Decimal(text), text)


def json_int(text: str, *, max_digits: int = JSON_INT_DIGITS) -> int:
    """A JSON integer (``parse_int``) of at most ``max_digits`` digits; ValueError otherwise.

    Without it, one of over 4,300 digits raises Python's own ValueError, whose advice
    (``sys.set_int_max_str_digits()``) means nothing to a user."""
    digits = len(text) - text.startswith("-")
    if digits > max_digits:
        raise ValueError(f"an integer of {digits} digits (at most {max_digits} are read)")
    return int(text)


def to_minor(amount: Fraction, exponent: int) -> int:
    """``amount`` in minor units of ``10 ** -exponent``, rounded up (towards +infinity)."""
    scaled: Fraction = amount * 10**exponent
    return -((-scaled.numerator) // scaled.denominator)


def fixed(value: Fraction, places: int) -> str:
    """``value`` as a decimal with exactly ``places`` places, rounded half to even, exactly
    (``Fraction.__round__``, no float): ``fixed(Fraction(2, 3), 4) == "0.6667"``. For ratios
    and shares shown to people or spreadsheets, never for money."""
    whole = round(value * 10**places)
    sign = "-" if whole < 0 else ""
    digits = str(abs(whole)).rjust(places + 1, "0")
    return f"{sign}{digits[: len(digits) - places]}.{digits[-places:]}" if places else sign + digits


def from_minor(minor: int, exponent: int) -> Fraction:
    return Fraction(minor, 10**exponent)


def format_amount(amount: Fraction) -> str:
    """A plain decimal string when the amount has one ('7', '2.7', '0.0035'); else 'p/q'."""
    if amount.denominator == 1:
        return str(amount.numerator)
    denominator = amount.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{amount.numerator}/{amount.denominator}"
    places = max(twos, fives)
    # Integer arithmetic only: Decimal.scaleb would round to the context's 28 digits.
    sign = "-" if amount < 0 else ""  # pragma: no mutate (0 returned above: `<=` is the same)
    digits = str(abs(amount.numerator) * 10**places // amount.denominator).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def format_minor(minor: int, exponent: int) -> str:
    return format_amount(from_minor(minor, exponent))
