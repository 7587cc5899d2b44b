"""Reading a body file as people save it: the one decoding and detection step of every FILE|-
that holds request bodies (``estimate``, ``submit``).

Decoding (:func:`decode`): a byte-order mark says the encoding (UTF-8 from Notepad, UTF-16
from Windows PowerShell's ``>``, UTF-32) and is dropped; without one the bytes must be UTF-8,
or UTF-16 whose every other byte is zero (PowerShell without a mark). Anything else is one
error naming the byte and what to do.

Detection (:func:`single_document`): a file is one JSON body when it parses as one, and a JSON
Lines batch when its first line is a JSON value on its own. A file that is neither is a body
with a syntax error (a pretty-printed body whose first line is ``{``): it gets one error with
the line and column, never one per line of a batch it is not.
"""

from __future__ import annotations

import codecs
import json
from typing import IO, Any, Final, NoReturn

import click

from klingcost._json import JSONInputError, loads

#: Byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's mark).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_source(source: IO[Any], param_hint: str = "FILE") -> str:
    """The whole of a FILE|- argument, decoded by :func:`decode`. click hands a text stream
    (``click.File("r")``); its bytes are read underneath it, so the mark decides."""
    buffer = getattr(source, "buffer", None)
    data = buffer.read() if buffer is not None else source.read()
    if isinstance(data, str):  # a stream with no bytes below it: already text
        return data.removeprefix("\ufeff")
    return decode(data, param_hint)


def decode(data: bytes, param_hint: str = "FILE") -> str:
    """``data`` as text: by its byte-order mark, else UTF-8, else mark-less UTF-16."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                _bad(exc, encoding.upper(), param_hint, offset=len(bom))
    utf16 = _markless_utf16(data)  # before UTF-8, which takes its zero bytes for text
    if utf16 is not None:
        return utf16
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _bad(exc, "UTF-8", param_hint)


def _markless_utf16(data: bytes) -> str | None:
    """UTF-16 without a mark, as ASCII-heavy JSON shows it: zeros in every other byte."""
    if len(data) < 2 or len(data) % 2:
        return None
    for encoding, zeros in (("utf-16-le", data[1::2]), ("utf-16-be", data[0::2])):
        if zeros.count(0) >= len(zeros) * 3 // 4:
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


def _bad(exc: UnicodeDecodeError, encoding: str, param_hint: str, offset: int = 0) -> NoReturn:
    byte = exc.object[exc.start]
    raise click.BadParameter(
        f"not {encoding} text (byte {byte:#04x} at position {exc.start + offset}): save the "
        "file as UTF-8 (with or without a byte-order mark) or UTF-16",
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
