"""The postage-stamp cutouts kept on disk, within a size bound (least recently used out).

A cutout is one small file (its geometry and FITS header as JSON, then its float32
pixels: read back with one ``read`` and no parsing of the pixels), stored under a key
naming what it was cut from (the image file's path, size
and modification time, the position and the width), so a changed or replaced image is
cut again and nothing needs invalidating. Files are written atomically (a temporary
name, then renamed); reading one touches it, and writing beyond ``max_bytes`` removes the
least recently used files down to 80 % of the bound. One process (the site) owns the
directory; its total is counted once at start-up and kept up to date.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg.science.cutout import Cutout

SUFFIX = ".stamp"
MAGIC = b"CONTIMG-STAMP-1\n"
#: Fraction of the bound the cache is brought down to when it overflows.
LOW_WATER = 0.8


def _encode(c: Cutout) -> bytes:
    """``MAGIC``, the metadata's length (4 bytes), the metadata (JSON: geometry, shape and
    the FITS header text), then the pixels (float32, C order)."""
    meta = json.dumps({"x": c.x, "y": c.y, "beam": c.beam_pix, "north": c.north_rad,
                       "shape": list(c.data.shape), "header": c.header.tostring()}).encode()
    return MAGIC + struct.pack("<I", len(meta)) + meta + np.ascontiguousarray(c.data, np.float32).tobytes()


def _decode(body: bytes) -> Cutout:
    if not body.startswith(MAGIC):
        raise ValueError("not a stamp file")
    n = struct.unpack_from("<I", body, len(MAGIC))[0]
    start = len(MAGIC) + 4
    meta = json.loads(body[start:start + n])
    data = np.frombuffer(body, np.float32, offset=start + n).reshape(meta["shape"])
    return Cutout(data=data, header=fits.Header.fromstring(meta["header"]), x=meta["x"], y=meta["y"],
                  beam_pix=tuple(meta["beam"]) if meta["beam"] else None, north_rad=meta["north"])


def cutout_key(path: str, stat: os.stat_result, ra_deg: float, dec_deg: float, half_width_deg: float) -> str:
    """The cache key of a cutout of the file at ``path`` (as it is now: ``stat``)."""
    ident = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{ra_deg:.8f}|{dec_deg:.8f}|{half_width_deg:.8f}|1"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:40]


class StampCache:
    """Cutouts on disk under ``directory``, at most ``max_bytes`` in all."""

    def __init__(self, directory: str | Path, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._total = sum(p.stat().st_size for p in self.directory.glob("*" + SUFFIX))

    @property
    def total_bytes(self) -> int:
        return self._total

    def _file(self, key: str) -> Path:
        return self.directory / (key + SUFFIX)

    def get(self, key: str) -> Cutout | None:
        """The cutout stored under ``key`` (and marks it used), or None."""
        path = self._file(key)
        try:
            body = path.read_bytes()
            os.utime(path)
            return _decode(body)
        except (OSError, ValueError, KeyError):   # absent, evicted meanwhile, or torn
            return None

    def put(self, key: str, cutout: Cutout) -> None:
        """Store ``cutout`` under ``key``; evict the least recently used past the bound."""
        body = _encode(cutout)
        final = self._file(key)
        tmp = final.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        with self._lock:
            old = final.stat().st_size if final.exists() else 0
            os.replace(tmp, final)
            self._total += len(body) - old
            if self._total > self.max_bytes:
                self._evict(int(LOW_WATER * self.max_bytes))

    def _evict(self, target: int) -> None:
        entries = []
        for p in self.directory.glob("*" + SUFFIX):
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime_ns, st.st_size, p))
        self._total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if self._total <= target:
                break
            try:
                p.unlink()
                self._total -= size
            except OSError:
                pass
