"""Reading a body file as people save it: the one decoding and detection step of every FILE|-
that holds request bodies (``estimate``, ``submit``).

Decoding (:func:`decode`): :mod:`klingcost._text`'s (a byte-order mark, else UTF-8, else
mark-less UTF-16); anything else is one error naming the byte and what to do.

Detection (:func:`single_document`): a file is one JSON body when it parses as one, and a JSON
Lines batch when its first line is a JSON value on its own. A file that is neither is a body
with a syntax error (a pretty-printed body whose first line is ``{``): it gets one error with
the line and column, never one per line of a batch it is not.
"""

from __future__ import annotations

import json
from typing import IO, Any, Final

import click

from klingcost import _text
from klingcost._json import JSONInputError, loads


def read_source(source: IO[Any], param_hint: str = "FILE") -> str:
    """The whole of a FILE|- argument, decoded by :func:`decode`. click hands a text stream
    (``click.File("r")``); its bytes are read underneath it, so the mark decides."""
    buffer = getattr(source, "buffer", None)
    data = buffer.read() if buffer is not None else source.read()
    if isinstance(data, str):  # a stream with no bytes below it: already text
        return data.removeprefix("\ufeff")
    return decode(data, param_hint)


def decode(data: bytes, param_hint: str = "FILE") -> str:
    """``data`` as text (:func:`klingcost._text.decode`), or one error saying what to do."""
    try:
        return _text.decode(data)
    except _text.TextDecodeError as exc:
        raise click.BadParameter(
            f"{exc}: save the file as UTF-8 (with or without a byte-order mark) or UTF-16",
            param_hint=param_hint,
        ) from None


class _Batch:
    """What :func:`single_document` returns for a JSON Lines batch: not None, which is a body
    too (JSON ``null``, refused later as "not a JSON object")."""

    def __repr__(self) -> str:
        return "BATCH"


BATCH: Final = _Batch()


def single_document(text: str, param_hint: str = "FILE") -> Any:
    """The body when ``text`` is one JSON document; :data:`BATCH` when it is a JSON Lines
    batch (its first line is JSON on its own). click.BadParameter for an empty file, or for a
    document with a syntax error: its message, line and column."""
    stripped = text.strip()
    if not stripped:
        raise click.BadParameter("the file is empty", param_hint=param_hint)
    try:
        return loads(stripped)
    except json.JSONDecodeError as exc:
        if "\n" in stripped and _is_json_line(stripped.split("\n", 1)[0]):
            return BATCH
        raise click.BadParameter(_syntax(text, exc), param_hint=param_hint) from None
    except JSONInputError as exc:  # a number or nesting out of bounds
        # A batch whose first line is JSON on its own gets each line reported by number.
        if "\n" in stripped and _is_json_line(stripped.split("\n", 1)[0]):
            return BATCH
        raise click.BadParameter(f"not JSON: {exc}", param_hint=param_hint) from None


def _is_json_line(line: str) -> bool:
    try:
        loads(line)
    except json.JSONDecodeError:
        return False
    except JSONInputError:  # JSON, though out of bounds
        return True
    return True


def _syntax(text: str, exc: json.JSONDecodeError) -> str:
    """One line: what is wrong, where (line and column of the file as saved), and a hint for
    the usual slip, a trailing comma."""
    # The error's position is in the stripped text: count it in the file as the editor shows.
    lead = len(text) - len(text.lstrip())
    position = lead + exc.pos
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    before = text[:position].rstrip()
    hint = ""
    if before.endswith(",") and text[position : position + 1] in ("}", "]"):
        comma_line = text.count("\n", 0, len(before) - 1) + 1
        hint = f"; remove the trailing comma on line {comma_line}"
    shown = text[position : position + 20].split("\n", 1)[0]
    near = f" (near {shown!r})" if shown else " (at the end)"
    return f"not JSON: {exc.msg} at line {line}, column {column}{near}{hint}"
