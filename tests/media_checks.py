"""Checks that a PNG or an MP4 is a whole, well-formed file (the fake's results, a client's saves).

No image or video library is needed: each walks the file's chunks or boxes and checks that every
length adds up (and, for a PNG, every CRC and the pixel data).
"""

from __future__ import annotations

import struct
import zlib


def png_size(raw: bytes) -> tuple[int, int]:
    """Walk a PNG's chunks, checking each CRC and the pixel data; (width, height)."""
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(raw):
        (length,) = struct.unpack(">I", raw[at : at + 4])
        kind, data = raw[at + 4 : at + 8], raw[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", raw[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        chunks[kind] = data
        at += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert at == len(raw) and b"IEND" in chunks
    return width, height


def mp4_boxes(raw: bytes, start: int = 0, end: int | None = None) -> dict[bytes, bytes]:
    """The boxes of an ISO media file, each size checked to fit exactly."""
    end = len(raw) if end is None else end
    boxes, at = {}, start
    while at < end:
        size, kind = struct.unpack(">I4s", raw[at : at + 8])
        assert size >= 8 and at + size <= end, kind
        boxes[kind] = raw[at + 8 : at + size]
        at += size
    assert at == end
    return boxes
