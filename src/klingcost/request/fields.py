"""How a field's value is read as the API reads it: whole numbers given as numbers or digit
strings, numbers that are not booleans, JSON booleans.

Pure functions, shared by the pydantic models (as their ``BeforeValidator``) and by the reader
of plain bodies (:mod:`~klingcost.request.plain`), so that both accept and refuse alike. Each
returns the value to keep or raises ValueError with a text that is ours to show.
"""

from __future__ import annotations

from typing import Any


def parse_whole(value: Any, *, signed: bool) -> Any:
    """Accept 5 and "5" as the API does; refuse what it refuses: booleans, floats (5.0 too) and
    strings that are not plain ASCII digits ("5.0", " 10 ", full-width "１０")."""
    if type(value) is int:  # the usual case first: pydantic calls this on every estimate
        return value
    if isinstance(value, bool):  # True is an int to Python, not to the API
        raise ValueError("a boolean, not a whole number")
    if isinstance(value, float):  # 5.0, NaN: pydantic would take 5.0 as 5
        raise ValueError("a decimal number, not a whole number")
    if isinstance(value, str):
        digits = value.removeprefix("-") if signed else value
        # isascii(): str.isdigit() also takes "１" and "²", which the API refuses.
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError("not a whole number")
        try:
            return int(value)
        except ValueError:  # over Python's 4300-digit limit; its message must not reach the user
            raise ValueError("too many digits for a whole number") from None
    return value


def whole_number(value: Any) -> Any:
    """A signed whole number (an element id, a trajectory point)."""
    return parse_whole(value, signed=True)


def count(value: Any) -> Any:
    """A count (duration, n): "-5" is no count of anything."""
    if type(value) is str and len(value) < 10 and value.isascii() and value.isdigit():
        return int(value)  # "10", as most bodies give it (a long one: parse_whole's care)
    return parse_whole(value, signed=False)


def fraction_number(value: Any) -> Any:
    """A number in a range (cfg_scale, a camera axis): a boolean is not one."""
    if type(value) is float:  # the usual case: nothing to refuse
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean, not a number")
    return value


def flag(value: Any) -> Any:
    """A JSON boolean: "true" or 1 are not what the API documents."""
    if not isinstance(value, bool):
        raise ValueError("not true or false")
    return value
