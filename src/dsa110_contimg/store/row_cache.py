"""A per-process cache of measurement rows for the reads that repeat image after image (the
ESE step's window light curves: the same sources over nearly the same images).

An image's cached rows carry its stamp, ``(images.rows_version, images.measured_at)``,
read again for the images asked for (one primary-key read per image) before every use:
rows of an image whose stamp changed are read again, and only those. Every writer that
changes an existing image's measurement rows (normalised fluxes, a re-measurement, a
duplicate replacing an epoch, replaced sources) bumps ``rows_version`` in its own
transaction, through :func:`bump_rows_version` (or the same expression,
:data:`BUMP`, in an update of the image row it already makes); a new image has a new
``measured_at``. Which images are epochs (exclusions, QC, normalisation status) is the
caller's list, never cached.

Per database URL and flux kind (raw or normalised), per image: the source ids asked for
(sorted), whether each has a row, its flux and error (Jy/beam; NaN where NULL). The
sources asked for grow as the searched set changes; only the new ones are read. At most
:data:`MAX_ROWS` rows are held, each image's entry counting its rows plus :data:`ENTRY_ROWS`
for itself (so that many images of few rows are bounded too); the least recently used images
are dropped first.

The reads that repeat image after image (the same sources over the field's window, one image
more each time) are also kept whole, as a :class:`_Window` per (database, flux kind, set of
sources): dense (source x image) arrays of the last read. A read of the same sources takes the
columns of the images whose stamp is unchanged from it and reads (through the entries above) only
the images that are new or changed, so its cost does not grow with the window's Python-level
work per image; windows hold at most :data:`MAX_WINDOW_CELLS` (source, image) cells.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.schema import images

#: Rows (image, source) held by the process at most (17 bytes each, plus the entries').
MAX_ROWS = 4_000_000
#: What one image's entry costs beyond its rows (its arrays' headers, the entry and its key:
#: ~550 bytes), in rows.
ENTRY_ROWS = 32
#: (source, image) cells of the kept windows held by the process at most (17 bytes each: ~68 MB;
#: a field's window of 40 searched sources over 540 daily epochs is ~22,000 cells, so the
#: windows of ~180 such fields).
MAX_WINDOW_CELLS = 4_000_000
#: Windows kept at most (one per field searched by the process, and per flux kind).
MAX_WINDOWS = 256
#: The update of an image row that marks its measurement rows changed.
BUMP = {"rows_version": images.c.rows_version + 1}
#: :data:`BUMP` as a SET term of a driver-level statement (``store/bulk.py``).
BUMP_SQL = "rows_version = rows_version + 1"


def bump_rows_version(conn: Connection, image_ids: Sequence[int]) -> None:
    """Mark the measurement rows of ``image_ids`` changed (inside the writer's transaction)."""
    ids = [int(i) for i in image_ids]
    for start in range(0, len(ids), bulk.CHUNK):
        conn.execute(images.update().where(images.c.id.in_(ids[start:start + bulk.CHUNK]))
                     .values(**BUMP))


class _Entry:
    """One image's cached rows: ``asked`` (sorted source ids, shared between images read
    together), ``present`` (bool), ``flux`` and ``err`` aligned with it."""

    __slots__ = ("stamp", "asked", "present", "flux", "err")

    def __init__(self, stamp, asked, present, flux, err):
        self.stamp, self.asked, self.present, self.flux, self.err = stamp, asked, present, flux, err


class _Window:
    """The last dense read of a set of sources: ``img`` (image ids, the columns), their stamps
    (``version``, ``measured``) and ``present``/``flux``/``err`` of shape (n_sources, n_img)."""

    __slots__ = ("img", "version", "measured", "present", "flux", "err")

    def __init__(self, img, version, measured, present, flux, err):
        self.img, self.version, self.measured = img, version, measured
        self.present, self.flux, self.err = present, flux, err

    @property
    def cells(self) -> int:
        return int(self.present.size)


class RowCache:
    """Measurement rows by (database, flux kind, image id), validated by the image's stamp."""

    def __init__(self, max_rows: int = MAX_ROWS, max_window_cells: int = MAX_WINDOW_CELLS):
        self.max_rows = int(max_rows)
        self.max_window_cells = int(max_window_cells)
        self._entries: OrderedDict = OrderedDict()
        self._rows = 0
        self._windows: OrderedDict = OrderedDict()
        self._window_cells = 0
        self._last_tokens: dict = {}
        self._shared: dict[bytes, np.ndarray] = {}
        self.enabled = True
        #: Rows read from the database and rows served from the cache, since the start.
        self.read_rows = 0
        self.served_rows = 0

    def clear(self) -> None:
        self._entries.clear()
        self._shared.clear()
        self._rows = 0
        self._windows.clear()
        self._window_cells = 0
        self._last_tokens.clear()

    @property
    def window_cells(self) -> int:
        """(source, image) cells held by the kept windows."""
        return self._window_cells

    def window(self, conn: Connection, source_ids: Sequence[int], image_ids: Sequence[int], *,
               normalized: bool):
        """The successful measurement rows of ``source_ids`` on ``image_ids`` as dense arrays:
        ``(src, present, flux, err)``, ``src`` the sorted unique source ids (the rows), the
        others of shape (n_src, n_img) with the columns in the order of ``image_ids``
        (``present``: a successful row exists; flux and error in Jy/beam, NaN where NULL or
        absent). The same rows as :meth:`rows`; only the images whose stamp differs from the
        kept window of these sources (new or changed images) are looked up, the other columns
        are the window's. None when the cache is disabled."""
        if not self.enabled:
            return None
        src = np.unique(np.asarray(source_ids, np.int64))
        img = np.asarray(image_ids, np.int64)
        db = (str(conn.engine.url), bool(normalized))
        version, measured = _stamp_arrays(conn, img)
        self._last_tokens[db] = (img.copy(), _tokens(img, version, measured))
        key = (db, src.tobytes())
        S, E = src.size, img.size
        present = np.zeros((S, E), bool)
        flux = np.full((S, E), np.nan)
        err = np.full((S, E), np.nan)
        reuse = np.zeros(E, bool)
        old = self._windows.pop(key, None)
        if old is not None:
            self._window_cells -= old.cells
            if old.img.size:
                order = np.argsort(old.img, kind="stable")
                at = np.minimum(np.searchsorted(old.img[order], img), old.img.size - 1)
                col = order[at]
                reuse = (old.img[col] == img) & (old.version[col] == version) & \
                    (old.measured[col] == measured)
                use = col[reuse]
                present[:, reuse] = old.present[:, use]
                flux[:, reuse] = old.flux[:, use]
                err[:, reuse] = old.err[:, use]
        if not reuse.all() and S:
            need = np.flatnonzero(~reuse)
            recs = self.rows(conn, src, img[need], normalized=normalized)
            if recs.shape[0]:
                rows = np.searchsorted(src, recs[:, 0].astype(np.int64))
                order = np.argsort(img[need], kind="stable")
                cols = need[order[np.searchsorted(img[need][order], recs[:, 1].astype(np.int64))]]
                present[rows, cols] = True
                flux[rows, cols], err[rows, cols] = recs[:, 2], recs[:, 3]
        self.served_rows += int(present.sum())
        if S * E <= self.max_window_cells:
            self._windows[key] = _Window(img.copy(), version, measured, present, flux, err)
            self._window_cells += S * E
            while (self._window_cells > self.max_window_cells
                   or len(self._windows) > MAX_WINDOWS) and self._windows:
                _, w = self._windows.popitem(last=False)
                self._window_cells -= w.cells
        return src, present, flux, err

    def _share(self, ids: np.ndarray) -> np.ndarray:
        """One array object per set of source ids, so that images asked the same sources
        are checked once (:meth:`rows` groups them by that object)."""
        key = ids.tobytes()
        got = self._shared.get(key)
        if got is None:
            if len(self._shared) > 4096:
                self._shared.clear()
            got = self._shared[key] = ids
        return got

    def rows(self, conn: Connection, source_ids: Sequence[int], image_ids: Sequence[int], *,
             normalized: bool) -> np.ndarray:
        """The successful measurement rows of ``source_ids`` on ``image_ids`` as
        :func:`~dsa110_contimg.store.lightcurves.fetch_rows` reads them: an array of
        shape (k, 4), columns source id, image id, flux, error (NaN where NULL), ordered
        by image as ``image_ids`` then by source id."""
        from dsa110_contimg.store.lightcurves import fetch_rows

        src = np.unique(np.asarray(source_ids, np.int64))
        img = np.asarray(image_ids, np.int64)
        if not (src.size and img.size):
            return np.empty((0, 4))
        if not self.enabled:
            got = fetch_rows(conn, src, img, normalized=normalized)
            return np.array(got, float).reshape(-1, 4)
        db = (str(conn.engine.url), bool(normalized))
        stamps = _stamps(conn, img)
        stale, groups = [], {}
        for i in img.tolist():
            e = self._entries.get((db, i))
            if e is None or e.stamp != stamps.get(i):
                stale.append(i)
            else:
                groups.setdefault(id(e.asked), (e.asked, []))[1].append(i)
        if stale:
            self._fill(db, stale, src, stamps, fetch_rows(conn, src, stale, normalized=normalized))
        for asked, ids in groups.values():
            more = np.setdiff1d(src, asked, assume_unique=True)
            if more.size:
                self._extend(db, ids, asked, more,
                             fetch_rows(conn, more, ids, normalized=normalized))
        out = self._collect(db, img, src)
        self.served_rows += out.shape[0]
        self._evict()
        return out

    def tokens(self, conn: Connection, image_ids: Sequence[int], *,
               normalized: bool) -> np.ndarray | None:
        """One int64 per image of ``image_ids`` that changes whenever its measurement rows do
        (a mix of its id and stamp, :func:`_tokens`), from the stamps the last :meth:`window`
        of these images read or the entries a :meth:`rows` call just validated; None when one
        is not held (cache disabled, or evicted)."""
        if not self.enabled:
            return None
        db = (str(conn.engine.url), bool(normalized))
        img = np.asarray(image_ids, np.int64)
        last = self._last_tokens.get(db)
        if last is not None and np.array_equal(last[0], img):
            return last[1].copy()
        version = np.empty(img.size, np.int64)
        measured = np.empty(img.size)
        for j, i in enumerate(img.tolist()):
            e = self._entries.get((db, i))
            if e is None:
                return None
            version[j], measured[j] = e.stamp[0], np.nan if e.stamp[1] is None else e.stamp[1]
        return _tokens(img, version, measured)

    def _fill(self, db, ids, src, stamps, recs) -> None:
        """Store the rows ``recs`` of ``src`` on the images ``ids`` (replacing their entries)."""
        by_image = _by_image(recs)
        self.read_rows += len(recs)
        src = self._share(src)
        for i in ids:
            present, flux, err = _aligned(src, by_image.get(i))
            old = self._entries.pop((db, i), None)
            self._rows -= 0 if old is None else old.asked.size + ENTRY_ROWS
            self._entries[(db, i)] = _Entry(stamps.get(i), src, present, flux, err)
            self._rows += src.size + ENTRY_ROWS

    def _extend(self, db, ids, asked, more, recs) -> None:
        """Add the rows ``recs`` of the sources ``more`` to the images ``ids`` (which held
        ``asked``)."""
        by_image = _by_image(recs)
        self.read_rows += len(recs)
        union = self._share(np.union1d(asked, more))
        at_old = np.searchsorted(union, asked)
        at_new = np.searchsorted(union, more)
        for i in ids:
            e = self._entries[(db, i)]
            present = np.zeros(union.size, bool)
            flux = np.full(union.size, np.nan)
            err = np.full(union.size, np.nan)
            present[at_old], flux[at_old], err[at_old] = e.present, e.flux, e.err
            p, f, r = _aligned(more, by_image.get(i))
            present[at_new], flux[at_new], err[at_new] = p, f, r
            self._rows += union.size - e.asked.size
            e.asked, e.present, e.flux, e.err = union, present, flux, err

    def _collect(self, db, img, src) -> np.ndarray:
        """The present rows of ``src`` on ``img`` (every one cached), as :meth:`rows`."""
        entries = []
        for i in img.tolist():
            e = self._entries[(db, i)]
            self._entries.move_to_end((db, i))
            entries.append(e)
        sizes = np.array([e.asked.size for e in entries])
        asked = np.concatenate([e.asked for e in entries])
        keep = np.concatenate([e.present for e in entries]) & np.isin(asked, src)
        image = np.repeat(img, sizes)
        out = np.empty((int(keep.sum()), 4))
        out[:, 0], out[:, 1] = asked[keep], image[keep]
        out[:, 2] = np.concatenate([e.flux for e in entries])[keep]
        out[:, 3] = np.concatenate([e.err for e in entries])[keep]
        return out

    def _evict(self) -> None:
        while self._rows > self.max_rows and self._entries:
            _, e = self._entries.popitem(last=False)
            self._rows -= e.asked.size + ENTRY_ROWS


def _stamps(conn: Connection, img: np.ndarray) -> dict[int, tuple]:
    """``{image id: (rows_version, measured_at)}`` of the images ``img``."""
    return {int(r[0]): (int(r[1] or 0), r[2]) for r in bulk.fetch_in(
        conn, "SELECT id, rows_version, measured_at FROM images WHERE id IN ({in})",
        img.tolist())}


def _stamp_arrays(conn: Connection, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows_version, measured_at)`` of the images ``img`` as arrays aligned with it (-1 and
    NaN for an image not found)."""
    got = np.array(bulk.fetch_in(
        conn, "SELECT id, rows_version, measured_at FROM images WHERE id IN ({in})",
        img.tolist()), float).reshape(-1, 3)
    version = np.full(img.size, -1, np.int64)
    measured = np.full(img.size, np.nan)
    if got.shape[0]:
        ids = got[:, 0].astype(np.int64)
        order = np.argsort(ids)
        at = np.minimum(np.searchsorted(ids[order], img), ids.size - 1)
        found = ids[order][at] == img
        version[found] = np.nan_to_num(got[order][at[found], 1]).astype(np.int64)
        measured[found] = got[order][at[found], 2]
    return version, measured


def _tokens(img: np.ndarray, version: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """One int64 per image that changes with its stamp (a 64-bit mix of its id, rows_version
    and measured_at)."""
    with np.errstate(over="ignore"):
        h = img.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= (version.astype(np.uint64) + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= np.ascontiguousarray(measured, np.float64).view(np.uint64) * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h.view(np.int64)


def _by_image(recs) -> dict[int, np.ndarray]:
    """Rows ``(source, image, flux, err)`` grouped by image id (arrays of shape (k, 4))."""
    arr = np.array(recs, float).reshape(-1, 4)
    if not arr.shape[0]:
        return {}
    order = np.argsort(arr[:, 1], kind="stable")
    arr = arr[order]
    ids, starts = np.unique(arr[:, 1].astype(np.int64), return_index=True)
    ends = np.append(starts[1:], arr.shape[0])
    return {int(i): arr[a:b] for i, a, b in zip(ids.tolist(), starts, ends)}


def _aligned(src: np.ndarray, rows: np.ndarray | None):
    """(present, flux, err) of the sorted ids ``src`` from one image's rows."""
    present = np.zeros(src.size, bool)
    flux = np.full(src.size, np.nan)
    err = np.full(src.size, np.nan)
    if rows is not None and rows.shape[0]:
        at = np.searchsorted(src, rows[:, 0].astype(np.int64))
        present[at], flux[at], err[at] = True, rows[:, 2], rows[:, 3]
    return present, flux, err


#: The process's cache.
CACHE = RowCache()


def cached_rows(conn: Connection, source_ids: Sequence[int], image_ids: Sequence[int], *,
                normalized: bool) -> np.ndarray:
    """:meth:`RowCache.rows` of the process's cache."""
    return CACHE.rows(conn, source_ids, image_ids, normalized=normalized)


__all__ = ["BUMP", "BUMP_SQL", "CACHE", "ENTRY_ROWS", "MAX_ROWS", "MAX_WINDOW_CELLS", "RowCache", "bump_rows_version", "cached_rows"]
