"""Bytes of a file as people save it, as text: the one decoding of every file klingcost reads
that a person may have saved by hand (request bodies, usage logs).

A byte-order mark says the encoding (UTF-8 from Notepad, UTF-16 from Windows PowerShell's
``>``, UTF-32) and is dropped; without one the bytes must be UTF-8, or UTF-16 whose every other
byte is zero (PowerShell without a mark, as ASCII-heavy JSON shows it). Anything else raises
:class:`TextDecodeError`, naming the encoding tried and the first byte it could not read.
"""

from __future__ import annotations

import codecs

__all__ = ["TextDecodeError", "decode"]

#: Byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's mark).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class TextDecodeError(ValueError):
    """The bytes are not text in ``encoding``: ``byte`` at ``position`` (in the file)."""

    def __init__(self, encoding: str, byte: int, position: int) -> None:
        self.encoding = encoding
        self.byte = byte
        self.position = position
        super().__init__(f"not {encoding} text (byte {byte:#04x} at position {position})")


def decode(data: bytes) -> str:
    """``data`` as text: by its byte-order mark, else UTF-8, else mark-less UTF-16."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise _failed(exc, encoding, offset=len(bom)) from None
    utf16 = _markless_utf16(data)  # before UTF-8, which takes its zero bytes for text
    if utf16 is not None:
        return utf16
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _failed(exc, "utf-8") from None


def _markless_utf16(data: bytes) -> str | None:
    if len(data) < 2 or len(data) % 2:
        return None
    for encoding, zeros in (("utf-16-le", data[1::2]), ("utf-16-be", data[0::2])):
        if zeros.count(0) >= len(zeros) * 3 // 4:
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


def _failed(exc: UnicodeDecodeError, encoding: str, offset: int = 0) -> TextDecodeError:
    return TextDecodeError(encoding.upper(), exc.object[exc.start], exc.start + offset)
