"""The test host's screen: the one picture every screenshot of it streams.

libvirt's test driver streams a fixed 1120x832 8-bit greyscale PNG; this one
has that size and format (what a tool reading the header sees) and pyvirt's
own content: a grey ramp in a white frame, drawn here and encoded once.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache

WIDTH, HEIGHT = 1120, 832
_FRAME = 16     # pixels of white border


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _rows() -> bytes:
    inner = WIDTH - 2 * _FRAME
    ramp = bytes(32 + (192 * x) // inner for x in range(inner))
    white = b"\x00" + b"\xff" * WIDTH                       # filter byte 0, then the pixels
    framed = b"\x00" + b"\xff" * _FRAME + ramp + b"\xff" * _FRAME
    return white * _FRAME + framed * (HEIGHT - 2 * _FRAME) + white * _FRAME


@cache
def png() -> bytes:
    """The PNG file's bytes (greyscale, 8 bits, no interlace)."""
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(_rows(), 9)) + _chunk(b"IEND", b""))
