"""The byte-level layout of a FITS file, read with bounded effort.

:func:`fits_layout` follows the headers of every HDU (2880-byte blocks, at most
``max_header_bytes`` in all, never the data) and says how long the file must be and
where its last data bytes lie; :func:`check_fits_complete` applies it to a path,
opening it non-blocking and reading only a regular file. The image model uses it to
refuse truncated files, and the daemon's intake to decide when a file being written is
complete (:mod:`dsa110_contimg.service.intake`).
"""

from __future__ import annotations

import math
import os
import stat as stat_mod
from dataclasses import dataclass
from typing import Callable

from dsa110_contimg.core.errors import CorruptImage, TruncatedImage

FITS_BLOCK = 2880
_CARD = 80
#: Default bound of the bytes read while looking for END cards (8 MiB).
MAX_HEADER_BYTES = 8 * 1024 * 1024
#: Bytes at the end of the data checked for "still zero-filled".
TAIL_BYTES = 512
#: At most this many HDUs are followed.
MAX_HDUS = 1000


def file_type(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words (``FIFO``, ``socket``, ...)."""
    for test, what in ((stat_mod.S_ISFIFO, "FIFO"), (stat_mod.S_ISSOCK, "socket"),
                       (stat_mod.S_ISCHR, "character device"), (stat_mod.S_ISBLK, "block device"),
                       (stat_mod.S_ISDIR, "directory"), (stat_mod.S_ISLNK, "symlink")):
        if test(mode):
            return what
    return "special file"


@dataclass(frozen=True)
class Layout:
    """What the headers say about a file.

    Attributes
    ----------
    size : int
        Expected file size (bytes): header and data blocks of every HDU.
    cards : dict
        ``keyword -> raw value string`` of the primary header (first occurrence).
    data_tail : tuple of (int, int)
        ``(offset, length)`` of the last up-to-512 data bytes of the last HDU
        that has data (padding excluded), or None when no HDU has data.
    """

    size: int
    cards: dict
    data_tail: tuple[int, int] | None


def _parse_header(read_at, name, offset: int, size: int, budget: int) -> tuple[dict, int] | None:
    """One header starting at ``offset``: ``(cards, header_bytes)``; None when the bytes
    there are not an extension header (trailing bytes, ignored)."""
    cards: dict[str, str] = {}
    pos = offset
    first = True
    while True:
        if pos - offset >= budget:
            raise CorruptImage(f"no END card in the first {budget} header bytes at offset {offset} "
                               "(not a FITS header, or absurdly long)", name)
        block = read_at(pos, FITS_BLOCK)
        if first:
            if offset == 0:
                if block.startswith(b"\x1f\x8b"):
                    raise CorruptImage("gzip-compressed file: decompress it first (memory-mapped "
                                       "photometry needs a plain FITS file)", name)
                if len(block) == 0:
                    raise CorruptImage("empty file, not a FITS image", name)
                if not block.startswith(b"SIMPLE  ="):
                    raise CorruptImage("not a FITS file (first card is not SIMPLE)", name)
            elif not block.startswith(b"XTENSION="):
                return None
        if len(block) < FITS_BLOCK:
            raise TruncatedImage(f"file ends inside the header at byte {size} (no END card)", name)
        first = False
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptImage(f"non-ASCII bytes in the header block at byte {pos}", name) from None
        pos += FITS_BLOCK
        for i in range(0, FITS_BLOCK, _CARD):
            card = text[i:i + _CARD]
            key = card[:8].strip()
            if key == "END":
                return cards, pos - offset
            if card[8:10] == "= " and key not in cards:
                cards[key] = card[10:].split("/")[0].strip()


def _card_int(cards: dict, key: str, name, default=None) -> int:
    if key not in cards:
        if default is not None:
            return default
        raise CorruptImage(f"header lacks the mandatory keyword {key}", name)
    try:
        return int(cards[key])
    except ValueError:
        raise CorruptImage(f"header keyword {key}={cards[key]!r} is not an integer", name) from None


def fits_layout(read_at: Callable[[int, int], bytes], size: int, name, *,
                max_header_bytes: int = MAX_HEADER_BYTES) -> Layout:
    """Parse the headers of a FITS file of ``size`` bytes through ``read_at(offset, n)``.

    Reads at most ``max_header_bytes`` of headers in total and never reads data.

    Raises
    ------
    CorruptImage
        Not FITS, or headers beyond the bounds, or absurd values.
    TruncatedImage
        Shorter than its headers imply (partial write or damage).
    """
    offset = 0
    primary: dict | None = None
    tail = None
    budget = int(max_header_bytes)
    for _ in range(MAX_HDUS):
        parsed = _parse_header(read_at, name, offset, size, budget)
        if parsed is None:  # trailing bytes that are not an extension: ignored
            break
        cards, hbytes = parsed
        budget -= hbytes
        if primary is None:
            primary = cards
        bitpix = _card_int(cards, "BITPIX", name)
        if bitpix not in (8, 16, 32, 64, -32, -64):
            raise CorruptImage(f"invalid BITPIX {bitpix}", name)
        naxis = _card_int(cards, "NAXIS", name)
        if not 0 <= naxis <= 999:
            raise CorruptImage(f"invalid NAXIS {naxis}", name)
        dims = [_card_int(cards, f"NAXIS{i}", name) for i in range(1, naxis + 1)]
        if any(d < 0 for d in dims):
            raise CorruptImage(f"negative axis length in NAXISn {dims}", name)
        if offset > 0 or "GROUPS" in cards:
            pcount = _card_int(cards, "PCOUNT", name, 0)
            gcount = _card_int(cards, "GCOUNT", name, 1)
        else:
            pcount, gcount = 0, 1
        if pcount < 0 or gcount < 0:
            raise CorruptImage(f"negative PCOUNT/GCOUNT ({pcount}, {gcount})", name)
        if "GROUPS" in cards and dims and dims[0] == 0:
            dims = dims[1:]
        nelem = math.prod(dims) if dims else 0
        raw = abs(bitpix) // 8 * gcount * (pcount + nelem)
        dbytes = -(-raw // FITS_BLOCK) * FITS_BLOCK
        if raw:
            n = min(raw, TAIL_BYTES)
            tail = (offset + hbytes + raw - n, n)
        offset += hbytes + dbytes
        if size < offset:
            raise TruncatedImage(
                f"file is {size} bytes but its header implies at least {offset} bytes "
                "(truncated or still being written)", name)
        if size == offset:
            break
    else:
        raise CorruptImage(f"more than {MAX_HDUS} HDUs", name)
    return Layout(offset, primary or {}, tail)


def check_fits_complete(path: str | os.PathLike, *, max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    """Check that a regular FITS file is as long as its headers say; return that size.

    Bounded: opened non-blocking, only a regular file is read, at most
    ``max_header_bytes`` of headers. Raises :class:`CorruptImage` /
    :class:`TruncatedImage` (with the file's name) otherwise.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise CorruptImage(f"cannot open the file: {exc.strerror or exc}", name) from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise CorruptImage(f"not a regular file ({file_type(st.st_mode)})", name)
        return fits_layout(lambda off, n: os.pread(fd, n, off), st.st_size, name,
                           max_header_bytes=max_header_bytes).size
    except OSError as exc:
        raise CorruptImage(f"cannot read the file: {exc.strerror or exc}", name) from None
    finally:
        os.close(fd)


#: Header keywords that make a file a mosaic (the DSA-110 mosaic builder writes NIMAGES).
MOSAIC_KEYWORDS = ("NIMAGES",)


def header_is_mosaic(header) -> bool:
    """The one mosaic rule for headers, shared by the daemon's classifier and the manager.

    A file is a mosaic when it lies under a configured mosaic directory (decided by the
    caller) **or** its header (any mapping of cards) has one of :data:`MOSAIC_KEYWORDS`.
    A missing BMAJ is not a mosaic marker. Kept here, free of numpy/astropy, so that the
    daemon's main loop can apply it without a multi-second import.
    """
    return any(k in header for k in MOSAIC_KEYWORDS)


__all__ = ["FITS_BLOCK", "MAX_HEADER_BYTES", "MOSAIC_KEYWORDS", "TAIL_BYTES", "Layout",
           "check_fits_complete", "file_type", "fits_layout", "header_is_mosaic"]
