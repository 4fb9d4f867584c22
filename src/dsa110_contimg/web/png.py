"""PNG files from numpy arrays (zlib from the standard library; no imaging package).

An 8-bit RGB image of ``h x w`` pixels is one IDAT chunk of ``h`` filtered rows; the "up"
filter (each byte minus the one above) makes the smooth parts of an image compress well.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_rgb(rgb: np.ndarray, *, level: int = 6) -> bytes:
    """The PNG file of ``rgb`` (uint8, shape (height, width, 3), row 0 at the top)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an RGB image of shape (h, w, 3) is needed, not {rgb.shape}")
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, w * 3)
    up = np.empty((h, w * 3 + 1), np.uint8)
    up[:, 0] = 2                                   # filter type 2: "up"
    up[0, 1:] = rows[0]
    up[1:, 1:] = rows[1:] - rows[:-1]              # uint8 arithmetic wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(up.tobytes(), level)) + \
        _chunk(b"IEND", b"")
