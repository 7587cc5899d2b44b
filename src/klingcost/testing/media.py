"""The result files the fake Kling API serves: a small valid PNG and a small valid MP4, built here.

A client that downloads its result (the npm ``kling-api`` saves it to disk, and checks a PNG's
magic bytes) must get a real file, not a 404 from a host that does not exist. Both are built
from bytes in code, so the fake needs no image or video library and no binary in the tree.

* :func:`png`: a solid-colour RGB PNG, 300x300 by default: large enough for Kling's own input
  rule (at least 300 px a side), so the same file works as an ``image`` a client sends.
* :func:`mp4`: an ISO base media file (``ftyp``, ``moov`` with one video track of the given
  duration, and an empty ``mdat``): what a player or ``ffprobe`` needs to read its shape.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

__all__ = ["mp4", "png"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@lru_cache(maxsize=8)
def png(width: int = 300, height: int = 300, rgb: tuple[int, int, int] = (32, 96, 160)) -> bytes:
    """A ``width`` x ``height`` PNG of one colour (8-bit RGB, no interlace)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    pixels = zlib.compress(row * height, 9)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


# The identity transformation matrix that mvhd and tkhd carry (16.16 and 2.30 fixed point).
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@lru_cache(maxsize=32)
def mp4(seconds: int = 5, width: int = 1280, height: int = 720) -> bytes:
    """An MP4 of ``seconds`` with one (sample-less) video track of ``width`` x ``height``."""
    scale = 1000
    duration = seconds * scale
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, scale, duration),
        struct.pack(">IH", 0x10000, 0x100),  # rate 1.0, volume 1.0
        bytes(10),  # reserved
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", 2),  # next_track_ID
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, duration),
        bytes(8),  # reserved
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate group, volume, reserved
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, scale, duration, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"video\x00")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    empty_table = struct.pack(">I", 0)
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, empty_table),
        _full_box(b"stts", 0, 0, empty_table),
        _full_box(b"stsc", 0, 0, empty_table),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, empty_table),
    )
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", vmhd, dinf, stbl)))
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2mp41")
    return ftyp + _box(b"moov", mvhd, trak) + _box(b"mdat")
