"""Reading JSON that comes from outside (files, stdin, callbacks, API answers) without trusting it.

:func:`loads` is ``json.loads`` with three bounds, each failing as :class:`JSONInputError` (a
ValueError) with a one-line reason instead of a hang or an unexpected exception:

* numbers: integers of at most ``max_digits`` digits, and (with ``decimals=True``) other numbers
  read as exact Decimals within the bounds of :func:`klingcost.money.exact`; ``1e99999999`` is
  refused here, before anything computes ``10**99999999`` from it;
* nesting: at most :data:`MAX_DEPTH` levels (a deeper document raised RecursionError, and one
  just under Python's limit would raise it later, in a repr or a validator);
* text: bytes must be UTF-8 (or the UTF-16/32 that ``json.loads`` detects), and with
  ``valid_text=True`` no string may hold a lone surrogate (the escape ``"\\ud800"``), which
  cannot be stored or encoded again. A request body is read without it, so that validation
  names the field.

Syntax errors stay :class:`json.JSONDecodeError` (also a ValueError), with their position.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache, partial
from typing import Any, Final

from klingcost.money import JSON_INT_DIGITS, json_decimal, json_int

#: No document klingcost reads is more than a handful of levels deep (a Kling body is 4).
MAX_DEPTH: Final = 64


class JSONInputError(ValueError):
    """JSON that parses but that klingcost will not read: a number or nesting out of bounds,
    or bytes that are not text. Its message is one line, fit for a user."""


def loads(
    document: str | bytes,
    *,
    decimals: bool = False,
    max_digits: int = JSON_INT_DIGITS,
    valid_text: bool = False,
) -> Any:
    """``document`` parsed. ``decimals``: numbers with a fraction or exponent become Decimals
    (else floats, as ``json.loads`` makes them); ``max_digits``: the longest integer read;
    ``valid_text``: refuse a string or key holding a lone surrogate."""
    if isinstance(document, bytes | bytearray):
        try:  # strict: UTF-8-encoded surrogates are no UTF-8 either
            document = bytes(document).decode(json.detect_encoding(document))
        except UnicodeDecodeError as exc:
            raise JSONInputError(
                f"not UTF-8 text (byte {document[exc.start]:#04x} at position {exc.start})"
            ) from None
    if document.startswith("\ufeff"):  # as json.loads says it (decode() does not look)
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", document, 0)
    try:
        value = _decoder(decimals, max_digits).decode(document)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # from json_int or json_decimal: already one line
        raise JSONInputError(str(exc)) from None
    if document.count("[") + document.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise JSONInputError(f"nested more than {MAX_DEPTH} levels deep")
    if valid_text and _SURROGATE.search(document):  # a pair matches too: look closer
        where = _lone_surrogate(value)
        if where is not None:
            raise JSONInputError(f"{where} holds a lone surrogate: text must be valid Unicode")
    return value


@lru_cache(maxsize=8)
def _decoder(decimals: bool, max_digits: int) -> json.JSONDecoder:
    """One decoder per kind, made once: ``json.loads`` with ``parse_int`` builds a new one per
    call, which cost a batch of 100,000 lines about a tenth of its time."""
    parse_float: Any = json_decimal if decimals else float
    return json.JSONDecoder(
        parse_int=partial(json_int, max_digits=max_digits), parse_float=parse_float
    )


#: A surrogate escape, or a surrogate itself: where a lone surrogate may hide.
_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> str | None:
    """The dotted path of the first string or key holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [("(top)", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if not _encodes(node):
                return path
        elif isinstance(node, dict | list):
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                shown = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
                field = shown if path == "(top)" else f"{path}.{shown}"
                if isinstance(key, str) and not _encodes(key):
                    return f"the key {field}"
                stack.append((field, child))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
