"""Reading JSON that comes from outside (files, stdin, callbacks, API answers) without trusting it.

:func:`loads` is ``json.loads`` with three bounds, each failing as :class:`JSONInputError` (a
ValueError) with a one-line reason instead of a hang or an unexpected exception:

* numbers: integers of at most ``max_digits`` digits, and (with ``decimals=True``) other numbers
  read as exact Decimals within the bounds of :func:`klingcost.money.exact`; ``1e99999999`` is
  refused here, before anything computes ``10**99999999`` from it;
* nesting: at most :data:`MAX_DEPTH` levels (a deeper document raised RecursionError, and one
  just under Python's limit would raise it later, in a repr or a validator);
* encoding: bytes must be UTF-8 (or the UTF-16/32 that ``json.loads`` detects).

Syntax errors stay :class:`json.JSONDecodeError` (also a ValueError), with their position.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Final

from klingcost.money import JSON_INT_DIGITS, json_decimal, json_int

#: No document klingcost reads is more than a handful of levels deep (a Kling body is 4).
MAX_DEPTH: Final = 64


class JSONInputError(ValueError):
    """JSON that parses but that klingcost will not read: a number or nesting out of bounds,
    or bytes that are not text. Its message is one line, fit for a user."""


def loads(
    document: str | bytes, *, decimals: bool = False, max_digits: int = JSON_INT_DIGITS
) -> Any:
    """``document`` parsed. ``decimals``: numbers with a fraction or exponent become Decimals
    (else floats, as ``json.loads`` makes them); ``max_digits``: the longest integer read."""
    if isinstance(document, bytes):
        try:
            document = document.decode(json.detect_encoding(document), "surrogatepass")
        except UnicodeDecodeError as exc:
            raise JSONInputError(
                f"not UTF-8 text (byte {document[exc.start]:#04x} at position {exc.start})"
            ) from None
    parse_float: Any = json_decimal if decimals else float
    try:
        value = json.loads(
            document, parse_int=partial(json_int, max_digits=max_digits), parse_float=parse_float
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # from json_int or json_decimal: already one line
        raise JSONInputError(str(exc)) from None
    if document.count("[") + document.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects, found without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > MAX_DEPTH:
            return level
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


__all__ = ["MAX_DEPTH", "JSONInputError", "loads"]
