"""Inline images: a URL passes as it is; base64 must decode to a jpg or png of allowed size
and shape (Kling's limits), read from its header alone."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Final

from klingcost.errors import Problem
from klingcost.request.catalog import MAX_IMAGE_BYTES, MIN_IMAGE_SIDE


def check_image(field: str, value: str, problems: list[Problem]) -> None:
    """A URL passes as it is; inline base64 must decode to a jpg/png of allowed size and shape."""
    if value.startswith(("http://", "https://")):
        return
    if value.startswith("data:"):
        problems.append(
            Problem(
                field, value, "plain base64 without a data: prefix, or a URL", "data: URI prefix"
            )
        )
        return
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append(
            Problem(field, value, "an http(s) URL or base64 image data", "not a URL or base64")
        )
        return
    if len(raw) > MAX_IMAGE_BYTES:
        problems.append(Problem(field, f"{len(raw)} bytes", "at most 10 MB", "image too large"))
    size = image_size(raw)
    if size is None:
        problems.append(
            Problem(field, raw[:8], "a jpg/jpeg or png image", "not a jpg or png image")
        )
        return
    width, height = size
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        problems.append(
            Problem(field, f"{width}x{height} px", "at least 300x300 px", "image too small")
        )
    if width * 2 > height * 5 or height * 2 > width * 5:
        problems.append(
            Problem(
                field,
                f"{width}x{height} px",
                "an aspect ratio from 1:2.5 to 2.5:1",
                "image too narrow",
            )
        )


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG from its header; None for anything else."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24 and raw[12:16] == b"IHDR":
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_size(raw)
    return None


_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 4 <= len(raw):
        if raw[index] != 0xFF:
            return None
        marker = raw[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", raw[index + 2 : index + 4])
        if marker in _SOF_MARKERS:
            if index + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None
