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
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"an amount must be finite (given {value})")
        return Fraction(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                numerator, denominator = text.split("/")
                return Fraction(int(numerator), int(denominator))
            parsed = Decimal(text)
        except (ValueError, ArithmeticError, ZeroDivisionError):
            raise ValueError(f"not an exact amount: {value!r} (write 3.5, 15000 or 4/3)") from None
        if not parsed.is_finite():
            raise ValueError(f"an amount must be finite (given {value!r})")
        return Fraction(parsed)
    if isinstance(value, float):
        raise TypeError(
            f"floats are not exact amounts (given {value!r}); write it as a string, e.g. '{value}'"
        )
    raise TypeError(f"not an amount: {value!r} of type {type(value).__name__}")


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
