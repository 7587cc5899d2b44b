"""Numbers as a person or a spreadsheet reads them: shares, percentages, grouped digits, and
the CSV cell a spreadsheet will not run as a formula.

A leaf: it imports nothing of klingcost but :mod:`klingcost.money`, so that reports,
reconcile, the live page and the CLI can all share one way of showing a number.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Final

from klingcost.money import fixed


def share_text(share: Fraction | None) -> str:
    """A share (a ratio: 1 is 100%) as a decimal rounded half-even to 4 places ("0.8125",
    "1.2500"); "" for none. Every ratio klingcost prints in CSV or JSON uses it."""
    return "" if share is None else fixed(share, 4)


def percent_text(share: Fraction) -> str:
    """A share as a percentage with 2 places, rounded half-even: the 4-place share of
    :func:`share_text`, times 100 (``Fraction(2, 3)`` -> ``"66.67%"``)."""
    return f"{fixed(share * 100, 2)}%"


def group_digits(text: str) -> str:
    """``"-1245000.5"`` -> ``"-1,245,000.5"``: for people; CSV and JSON keep plain decimals."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.removeprefix("-").partition(".")
    if not whole.isdigit():
        return text
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return sign + ",".join([whole, *groups]) + dot + fraction


#: A plain unsigned number as a spreadsheet reads one (a regex); such a cell, signed or not,
#: is never changed by :func:`csv_cell`.
PLAIN_NUMBER: Final = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER = re.compile(rf"[+-]?{PLAIN_NUMBER}")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """``value`` as safe to open in a spreadsheet: text that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a line break gets a ``'`` in front, unless it is a plain number
    (``-1``, ``2.5``); anything else (numbers, None) is returned as it is.

    Line breaks inside text become ``\n``: ``csv.writer`` quotes a cell holding ``\n`` (the
    line end) but not one holding a lone ``\r``, which a reader would take for a new row."""
    if not isinstance(value, str):
        return value
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if value.startswith(_FORMULA_STARTS) and _NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


__all__ = ["PLAIN_NUMBER", "csv_cell", "group_digits", "percent_text", "share_text"]
