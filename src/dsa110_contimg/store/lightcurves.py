"""Repository functions for light curves, running statistics, baselines and ESE candidates.

Light curves are read through the *images* that can contain a source (image
centres within a radius, found with the ``ra_center_deg`` / ``dec_center_deg``
indexes; RA wraps at 0/360) and then the ``(image_id, source_id)`` primary
key of ``measurements``: one index seek per image, no index led by source. One source's
whole light curve (:func:`source_lightcurve`) seeks only on the images whose recorded range of
source ids (``images.source_id_min``/``source_id_max``, kept by every writer of an image's
rows) holds it, so a source measured on few epochs of a long history reads about those. A
measurement's epoch is its image's ``mjd``.
"""

from __future__ import annotations

import json
import time
from typing import Iterable, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.core.geometry import angular_separation_deg
from dsa110_contimg.store.values import clean as _clean
from dsa110_contimg.store.values import finite_or_none as _f
from dsa110_contimg.store import bulk
from dsa110_contimg.store import review_log
from dsa110_contimg.store.rank_keys import KEY_COLUMNS, as_sql, rank_key
from dsa110_contimg.store.sky import cone_box, cone_box_sql
from dsa110_contimg.store.schema import (
    CANDIDATE_RANK_SQL,
    METRIC_COLUMNS,
    RUNNING_SUM_COLUMNS,
    ese_candidates,
    images,
    measurements,
    snr_column,
    sources,
)

_CHUNK = 900


def _chunks(values: Sequence, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


#: The columns of :func:`images_near`.
_FIELD_COLUMNS = ("id", "mjd", "ra_center_deg", "dec_center_deg", "qc_status", "norm_status",
                  "norm_factor", "norm_factor_err", "norm_ref_ids", "excluded")


def images_near(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float, *,
                exclude_qc_failed: bool = True, include_excluded: bool = False,
                since_mjd: float | None = None,
                before_mjd: float | None = None,
                holding: int | None = None) -> dict[str, np.ndarray]:
    """The epochs whose image centre lies within ``radius_deg`` of (ra, dec), deg; with
    ``since_mjd``, only those of epoch ``>= since_mjd`` (MJD; images without an epoch are
    left out); with ``before_mjd``, only those of epoch ``< before_mjd`` or without one (the
    rest of a field read with ``since_mjd``); with ``holding`` (a source id), only the images
    that may hold a measurement of it (:func:`holds_source`).

    Duplicates (``duplicate_of`` set: the same data stored under another path) are never
    epochs; images an operator excluded are left out unless ``include_excluded`` (for
    displays that mark them). Returns columns ``id, mjd, ra_center_deg, dec_center_deg,
    qc_status, norm_status, norm_factor, norm_factor_err, norm_ref_ids, excluded`` (object
    arrays for text).
    """
    # the query holds only the box (and the window's epoch range), so that it reads through the
    # position index (a status term would let the planner pick a status index and read every
    # image with that status); duplicates, QC failures and exclusions are dropped from the
    # box's rows here
    box, params = cone_box_sql("ra_center_deg", "dec_center_deg", ra_deg, dec_deg, radius_deg)
    terms = [box]
    if since_mjd is not None:
        terms.append("mjd >= ?")
        params += (float(since_mjd),)
    if before_mjd is not None:
        terms.append("(mjd < ? OR mjd IS NULL)")
        params += (float(before_mjd),)
    if holding is not None:
        terms.append("(source_id_min IS NULL OR (source_id_min <= ? AND source_id_max >= ?))")
        params += (int(holding), int(holding))
    cols = _FIELD_COLUMNS
    rows = bulk.rows(conn, f"SELECT {', '.join(cols)}, duplicate_of FROM images "
                           f"WHERE {' AND '.join(terms)} ORDER BY id", params)
    # one transpose of the rows, then a column at a time (None -> NaN in the float columns)
    columns = list(zip(*rows)) if rows else [()] * (len(cols) + 1)
    out = {}
    for c, values in zip(cols, columns):
        out[c] = np.empty(len(rows), dtype=object)
        out[c][:] = values
    if rows:
        ra = np.array(columns[2], dtype=float)
        dec = np.array(columns[3], dtype=float)
        keep = angular_separation_deg(ra, dec, ra_deg, dec_deg) <= radius_deg
        keep &= np.array([d is None for d in columns[-1]], bool)
        if exclude_qc_failed:
            keep &= out["qc_status"] != "failed"
        if not include_excluded:
            keep &= ~out["excluded"].astype(bool)
        out = {k: v[keep] for k, v in out.items()}
    out["id"] = out["id"].astype(np.int64)
    out["mjd"] = np.array(out["mjd"].tolist(), dtype=float)
    out["excluded"] = out["excluded"].astype(bool)
    return out


def load_lightcurves(conn: Connection, source_ids: Sequence[int], image_ids: Sequence[int], *,
                     normalized: bool, successful_only: bool = True,
                     epochs: Sequence[float] | None = None, cached: bool = False):
    """Light curves of ``source_ids`` over the images ``image_ids``.

    ``epochs``: the MJD of each of ``image_ids`` when the caller holds them (a field read),
    instead of reading them from ``images``. ``cached``: the successful rows through the
    process's row cache (:mod:`~dsa110_contimg.store.row_cache`), for reads repeated image
    after image (the same values; only rows of new or changed images, and of sources not
    asked before, are read).

    Returns
    -------
    flux2d, err2d, mjd2d : ndarray, shape (n_sources, n_epochs)
        NaN-padded, each row sorted by MJD (images of equal MJD by id); the normalised columns when
        ``normalized`` (rows whose image is not normalised are NaN), else raw.
    image2d : ndarray of int, same shape (-1 padding)
    """
    src = np.asarray(source_ids, np.int64)
    if cached and successful_only:
        from dsa110_contimg.store.row_cache import CACHE

        got = CACHE.window(conn, src, image_ids, normalized=normalized)
        if got is not None:
            return pack_lightcurves(conn, src, got, image_ids, epochs)
        recs = fetch_rows(conn, src, image_ids, normalized=normalized)
    else:
        recs = fetch_rows(conn, src, image_ids, normalized=normalized,
                          successful_only=successful_only)
    return assemble_lightcurves(conn, src, recs, image_ids, epochs)


def fetch_rows(conn: Connection, source_ids: Sequence[int], image_ids: Sequence[int], *,
               normalized: bool, successful_only: bool = True) -> list[tuple]:
    """The measurement rows ``(source_id, image_id, flux, err)`` of ``source_ids`` on the
    images ``image_ids`` (Jy/beam; the normalised columns when ``normalized``; None where
    NULL), in no particular order; with ``successful_only`` the successful ones only."""
    src = np.asarray(source_ids, np.int64)
    n = src.size
    fcol, ecol = ("norm_flux_jyb", "norm_err_jyb") if normalized else ("peak_jyb", "peak_err_jyb")
    img = [int(i) for i in image_ids]
    if not (n and img):
        return []
    ok = " AND success = ?" if successful_only else ""
    okp = (True,) if successful_only else ()
    base = f"SELECT source_id, image_id, {fcol}, {ecol} FROM measurements WHERE "
    if n <= bulk.CHUNK:
        # one index seek per (image, source) pair through the primary key
        marks = ",".join("?" * n)
        return bulk.fetch_in(conn, base + f"image_id IN ({{in}}) AND source_id IN ({marks})" + ok,
                             img, (), tuple(src.tolist()) + okp)
    return bulk.fetch_in(conn, base + "image_id IN ({in})" + ok, img, (), okp)


def assemble_lightcurves(conn: Connection, src: np.ndarray, recs, image_ids: Sequence[int],
                         epochs: Sequence[float] | None = None):
    """The light curves of :func:`load_lightcurves` from its measurement rows ``recs``
    (:func:`fetch_rows`: a list of tuples or an array of shape (k, 4))."""
    n = src.size
    if len(recs) == 0:
        empty = np.empty((n, 0))
        return empty, empty, empty, np.empty((n, 0), np.int64)
    arr = np.array(recs, dtype=float)      # None (NULL) -> nan
    # columns: source, image, MJD (the image's), flux, error
    arr = np.insert(arr, 2, _image_epochs(conn, arr[:, 1].astype(np.int64), image_ids, epochs), axis=1)
    order_src = np.argsort(src, kind="stable")
    pos = np.searchsorted(src[order_src], arr[:, 0].astype(np.int64))
    pos = np.minimum(pos, n - 1)
    hit = src[order_src][pos] == arr[:, 0].astype(np.int64)
    arr = arr[hit]
    if not arr.shape[0]:
        empty = np.empty((n, 0))
        return empty, empty, empty, np.empty((n, 0), np.int64)
    rows = order_src[pos[hit]]
    order = np.lexsort((arr[:, 1], arr[:, 2], rows))    # by source, epoch, then image id
    rows, arr = rows[order], arr[order]
    counts = np.bincount(rows, minlength=n)
    width = int(counts.max())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(rows.size) - starts[rows]
    flux = np.full((n, width), np.nan)
    err = np.full((n, width), np.nan)
    mjd = np.full((n, width), np.nan)
    imgs = np.full((n, width), -1, np.int64)
    flux[rows, col], err[rows, col], mjd[rows, col] = arr[:, 3], arr[:, 4], arr[:, 2]
    imgs[rows, col] = arr[:, 1].astype(np.int64)
    return flux, err, mjd, imgs


def pack_lightcurves(conn: Connection, src: np.ndarray, dense: tuple, image_ids: Sequence[int],
                     epochs: Sequence[float] | None = None):
    """The light curves of :func:`load_lightcurves` from dense rows ``dense`` = (sorted unique
    source ids, present, flux, err; the last three of shape (n_ids, n_images), columns in the
    order of ``image_ids``): what :func:`assemble_lightcurves` makes of the same rows."""
    ids, present, flux, err = dense
    n = src.size
    img = np.asarray(image_ids, np.int64)
    if not (n and img.size and present.any()):
        empty = np.empty((n, 0))
        return empty, empty, empty, np.empty((n, 0), np.int64)
    mjd = _image_epochs(conn, img, img, epochs)
    cols = np.lexsort((img, mjd))                       # by epoch, then image id
    at = np.minimum(np.searchsorted(ids, src), ids.size - 1)
    hit = ids[at] == src
    p = present[at][:, cols] & hit[:, None]
    counts = p.sum(axis=1)
    width = int(counts.max())
    if not width:
        empty = np.empty((n, 0))
        return empty, empty, empty, np.empty((n, 0), np.int64)
    rows, j = np.nonzero(p)
    col = (np.cumsum(p, axis=1) - 1)[rows, j]
    out_f = np.full((n, width), np.nan)
    out_e = np.full((n, width), np.nan)
    out_t = np.full((n, width), np.nan)
    out_i = np.full((n, width), -1, np.int64)
    out_f[rows, col] = flux[at][:, cols][rows, j]
    out_e[rows, col] = err[at][:, cols][rows, j]
    out_t[rows, col] = mjd[cols][j]
    out_i[rows, col] = img[cols][j]
    return out_f, out_e, out_t, out_i


def _image_epochs(conn: Connection, per_row: np.ndarray, image_ids=None,
                  epochs=None) -> np.ndarray:
    """MJD of the image of each row (``per_row``: images.id per row), NaN where the image has
    none: from ``epochs`` (MJD of each of ``image_ids``) when given, else one read of the
    images' epochs, not a join per row."""
    if epochs is not None:
        ids = np.asarray(image_ids, np.int64)
        order = np.argsort(ids, kind="stable")
        ids, mjd = ids[order], np.asarray(epochs, float)[order]
    else:
        ids = np.unique(per_row)
        got = dict(bulk.fetch_in(conn, "SELECT id, mjd FROM images WHERE id IN ({in})",
                                 ids.tolist()))
        mjd = np.array([np.nan if got.get(i) is None else got[i] for i in ids.tolist()], float)
    return mjd[np.searchsorted(ids, per_row)]


def load_image_fluxes(conn: Connection, image_id: int, source_ids: Sequence[int]):
    """Raw (peak, err) of ``source_ids`` on one image, NaN where absent or failed."""
    src = [int(s) for s in source_ids]
    found: dict[int, tuple] = {}
    for sid, f, e, ok in bulk.fetch_in(
            conn, "SELECT source_id, peak_jyb, peak_err_jyb, success FROM measurements "
                  "WHERE image_id = ? AND source_id IN ({in})", src, (int(image_id),)):
        if ok and f is not None:
            found[sid] = (f, np.nan if e is None else e)
    flux = np.array([found.get(s, (np.nan, np.nan))[0] for s in src], float)
    err = np.array([found.get(s, (np.nan, np.nan))[1] for s in src], float)
    return flux, err


def flag_image_measurements(conn: Connection, image_id: int, flag: int) -> None:
    """OR ``flag`` (a :class:`~dsa110_contimg.science.results.Flag` bit) into every
    measurement of one image."""
    conn.execute(measurements.update().where(measurements.c.image_id == int(image_id))
                 .values(flags=measurements.c.flags.op("|")(int(flag))))


def image_fluxes(conn: Connection, image_id: int, ref_ids: Sequence[int] | None = None):
    """(source_id, peak_jyb, peak_err_jyb) arrays of every measurement of one image
    (NULL -> NaN), in storage order; with ``ref_ids`` also the raw peak of those sources
    as :func:`load_image_fluxes` gives it (NaN where absent or failed), from the same read.
    """
    rows = bulk.execute(conn, "SELECT source_id, peak_jyb, peak_err_jyb, success FROM measurements "
                              "WHERE image_id = ?", (int(image_id),))
    arr = np.array(rows, float).reshape(-1, 4)
    ids = arr[:, 0].astype(np.int64)
    if ref_ids is None:
        return ids, arr[:, 1], arr[:, 2]
    want = np.asarray(ref_ids, np.int64)
    ref_flux = np.full(want.size, np.nan)
    if ids.size and want.size:
        order = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[order], want), ids.size - 1)
        j = order[pos]
        hit = (ids[j] == want) & (arr[j, 3] != 0) & np.isfinite(arr[j, 1])
        ref_flux[hit] = arr[j[hit], 1]
    return ids, arr[:, 1], arr[:, 2], ref_flux


def set_normalisation(conn: Connection, image_id: int, *, status: str, factor=None, factor_err=None,
                      scatter=None, n_refs=None, reason=None, ref_ids=None, used_ids=None,
                      norm_flux=None, norm_err=None, source_ids=None, rows: bool = True,
                      method: str | None = None) -> None:
    """Store an image's correction and its measurements' normalised fluxes (NULL when not ok);
    ``rows=False``: the correction only (the caller inserts the image's measurement rows with
    their normalised fluxes); ``method``: how its references were chosen (``catalogue`` or
    ``ensemble``; ``images.norm_method``), in the same update. The image's rows are marked changed
    (:func:`~dsa110_contimg.store.row_cache.bump_rows_version`)."""
    ids = lambda a: None if a is None else json.dumps([int(i) for i in a])  # noqa: E731
    values = {"norm_status": status, "norm_factor": _f(factor), "norm_factor_err": _f(factor_err),
              "norm_scatter": _f(scatter), "norm_n_refs": _native(n_refs), "norm_reason": reason,
              "norm_ref_ids": ids(ref_ids), "norm_used_ids": ids(used_ids),
              **({} if method is None else {"norm_method": method})}
    from dsa110_contimg.store.row_cache import BUMP_SQL

    bulk.execute(conn, f"UPDATE images SET {', '.join(f'{k} = ?' for k in values)}, "
                       f"{BUMP_SQL} WHERE id = ?",
                 (*values.values(), int(image_id)))
    if not rows:
        return
    if norm_flux is None:
        conn.execute(measurements.update().where(measurements.c.image_id == image_id).values(
            norm_flux_jyb=None, norm_err_jyb=None))
        return
    sid = np.asarray(source_ids, np.int64).tolist()
    rows = list(zip(bulk.nullable(norm_flux), bulk.nullable(norm_err), [int(image_id)] * len(sid), sid))
    bulk.executemany(conn, "UPDATE measurements SET norm_flux_jyb = ?, norm_err_jyb = ? "
                           "WHERE image_id = ? AND source_id = ?", rows)


def _native(v):
    """A numpy scalar as the Python value the driver binds (others as they are)."""
    return v.item() if isinstance(v, np.generic) else v


_BASELINE_COLS = ("source_id", "method", "baseline_jyb", "baseline_rms_jyb", "n_points",
                  "through_mjd", "valid", "invalid_reason", "updated_at")


def load_baselines(conn: Connection, source_ids: Sequence[int]) -> dict[int, dict]:
    """Reference baselines by source id."""
    out: dict[int, dict] = {}
    for r in bulk.fetch_in(conn, f"SELECT {', '.join(_BASELINE_COLS)} FROM reference_baselines "
                                 "WHERE source_id IN ({in})", [int(s) for s in source_ids]):
        d = dict(zip(_BASELINE_COLS, r))
        d["valid"] = bool(d["valid"])
        out[int(d["source_id"])] = d
    return out


def save_baselines(conn: Connection, rows: Iterable[dict]) -> None:
    """Replace the baseline rows of the given sources."""
    now = time.time()
    rows = [dict(r, updated_at=now) for r in rows]
    if not rows:
        return
    bulk.delete_in(conn, "reference_baselines", "source_id", [int(r["source_id"]) for r in rows])
    bulk.executemany(conn, bulk.insert_sql("reference_baselines", _BASELINE_COLS),
                     [tuple(_clean(r.get(c)) for c in _BASELINE_COLS) for r in rows])


#: running sums stored as 0 when absent or NULL (the others read back as NaN)
_ZERO_SUMS = frozenset({"sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2", "sum_var"})


def as_stored(stats: dict) -> dict:
    """Running statistics (``n`` and :data:`RUNNING_SUM_COLUMNS`) as
    :func:`load_running_stats` reads them back after :func:`save_running_stats`: a
    non-finite value is stored as NULL and reads as NaN, or 0 for the running sums."""
    out = {"n": np.asarray(stats["n"]).astype(np.int64)}
    for c in RUNNING_SUM_COLUMNS:
        v = np.array(stats[c], float)
        v[~np.isfinite(v)] = 0.0 if c in _ZERO_SUMS else np.nan
        out[c] = v
    return out


def load_running_stats(conn: Connection, source_ids: Sequence[int], *, with_keys: bool = False):
    """Stored running sums for ``source_ids`` (input order).

    Returns ``(columns, present, flux_kind)``: a dict of arrays with the
    RunningStats fields (``n`` and :data:`RUNNING_SUM_COLUMNS`; empty values
    where absent), a boolean ``present`` array and an object array of kinds.
    ``with_keys``: a fourth element, the stored rank keys (``store/rank_keys.py``), an
    array (sources x :data:`~dsa110_contimg.store.rank_keys.KEY_COLUMNS`, NaN where NULL
    or absent) for :func:`save_running_stats` (``stored_keys``).
    """
    src = np.asarray([int(s) for s in source_ids], np.int64)
    n = src.size
    key_names = tuple(KEY_COLUMNS.values()) if with_keys else ()
    names = ("source_id", "flux_kind", "n") + tuple(RUNNING_SUM_COLUMNS) + key_names
    recs = bulk.fetch_in(conn, f"SELECT {', '.join(names)} FROM variability_stats "
                               "WHERE source_id IN ({in})", src.tolist()) if n else []
    present = np.zeros(n, bool)
    out = {"n": np.zeros(n, np.int64)}
    for c in RUNNING_SUM_COLUMNS:
        out[c] = np.full(n, 0.0 if c in _ZERO_SUMS else np.nan)
    kind = np.full(n, None, dtype=object)
    keys = np.full((n, len(key_names)), np.nan)
    if recs:
        rec_ids = np.array([r[0] for r in recs], np.int64)
        order = np.argsort(rec_ids, kind="stable")
        pos = np.minimum(np.searchsorted(rec_ids[order], src), len(recs) - 1)
        hit = rec_ids[order][pos] == src
        j = order[pos[hit]]                      # record row of each present source
        present[hit] = True
        kinds = np.array([r[1] for r in recs], dtype=object)
        kind[hit] = kinds[j]
        out["n"][hit] = np.array([r[2] for r in recs], np.int64)[j]
        vals = np.array([r[3:] for r in recs], float)          # NULL -> nan
        for k, c in enumerate(RUNNING_SUM_COLUMNS):
            v = vals[j, k]
            if c in _ZERO_SUMS:
                v = np.where(np.isnan(v), 0.0, v)
            out[c][hit] = v
        if key_names:
            keys[hit] = vals[j, len(RUNNING_SUM_COLUMNS):]
    kinds_out = kind if n else np.array([], dtype=object)
    return (out, present, kinds_out, keys) if with_keys else (out, present, kinds_out)


def running_stats_signature(conn: Connection, source_ids: Sequence[int]) -> tuple:
    """Per chunk of ``source_ids``: count, sum of ``n``, max and sum of ``updated_at`` of
    their stored running statistics. Every rewrite of a row sets ``updated_at`` to the
    time of its transaction, so the signature changes whenever any of them is rewritten
    (to validate reads made before a write transaction)."""
    return tuple(bulk.fetch_in(conn, "SELECT count(*), sum(n), max(updated_at), sum(updated_at) "
                                     "FROM variability_stats WHERE source_id IN ({in})",
                               np.asarray(source_ids, np.int64).tolist()))


def save_running_stats(conn: Connection, source_ids: Sequence[int], stats: dict, metrics: dict,
                       flux_kind: str, present=None, stored_keys=None) -> None:
    """Write running sums, metrics and the metrics' rank keys (``store/rank_keys.py``; bulk
    statements inside the caller's transaction).

    ``present`` (bool per source, read in the same transaction by
    :func:`load_running_stats`): the stored rows are updated by key and the others
    inserted; without it every row is upserted. ``stored_keys`` (the keys that read returned
    with ``with_keys``): a stored row's key columns are written only where they changed, the
    rows grouped by which keys changed (an index entry is rewritten only for a key that
    moved); without it every key is written."""
    src = np.asarray(source_ids, np.int64)
    if not src.size:
        return
    now = time.time()
    names = ("n", "flux_kind", "updated_at") + tuple(RUNNING_SUM_COLUMNS) + tuple(METRIC_COLUMNS)
    key_names = tuple(KEY_COLUMNS.values())
    n_all = np.asarray(stats["n"]).astype(np.int64)
    keys = np.column_stack([rank_key(n_all.astype(float)) if name == "n" else
                            rank_key(np.asarray(metrics[name], float)) for name in KEY_COLUMNS])
    # each row's group: -1 inserted, else the bit set of its keys that moved (-> its UPDATE)
    if present is None:
        group = np.full(src.size, -1)
    else:
        moved = np.ones(keys.shape, bool)
        if stored_keys is not None and np.unique(src).size == src.size:
            prev = np.asarray(stored_keys, float)
            moved = ~((prev == keys) | (np.isnan(prev) & np.isnan(keys)))
        group = np.where(np.asarray(present, bool),
                         (moved.astype(np.int64) << np.arange(len(key_names))).sum(axis=1), -1)
    # rows are sent group by group, each in key order (stable: a repeated key keeps its last
    # value), so the table's pages are visited in sequence rather than in catalogue order
    by_id = np.argsort(src, kind="stable")
    order = by_id[np.argsort(group[by_id], kind="stable")]
    group = group[order]
    columns = [n_all[order].tolist(), [flux_kind] * src.size, [now] * src.size,
               *[bulk.nullable(np.asarray(stats[c], float)[order]) for c in RUNNING_SUM_COLUMNS],
               *[bulk.nullable(np.asarray(metrics[c], float)[order]) for c in METRIC_COLUMNS]]
    key_cols = [as_sql(keys[order, j]) for j in range(len(key_names))]
    ids = src[order].tolist()
    if present is None:
        bulk.executemany(conn, bulk.upsert_sql("variability_stats", names + key_names + ("source_id",),
                                               ("source_id",)), list(zip(*columns, *key_cols, ids)))
        return
    bounds = np.flatnonzero(np.diff(group)) + 1
    for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), src.size]):
        m = int(group[a])
        sel = range(len(key_names)) if m < 0 else [j for j in range(len(key_names)) if m >> j & 1]
        rows = list(zip(*[c[a:b] for c in columns], *[key_cols[j][a:b] for j in sel], ids[a:b]))
        cols = names + tuple(key_names[j] for j in sel)
        if m < 0:
            bulk.executemany(conn, bulk.insert_sql("variability_stats", cols + ("source_id",)), rows)
        else:
            # an UPDATE by key costs less than an upsert (which tries the insert first) on
            # SQLite; the key columns that did not move are left out of its SET
            bulk.executemany(conn, "UPDATE variability_stats SET " + ", ".join(f"{c} = ?" for c in cols)
                             + " WHERE source_id = ?", rows)


def qc_history(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float, *,
               before_mjd: float | None, exclude_path: str, limit: int = 20,
               since_mjd: float | None = None) -> list[dict]:
    """QC metrics of the ``limit`` most recent images whose centre lies within ``radius_deg``
    of (ra, dec), deg, that passed QC or warned, before the epoch ``before_mjd`` (MJD; None:
    any) and, with ``since_mjd``, not before that epoch; newest first. Duplicates, excluded
    images and ``exclude_path`` are left out. Reads at most a few times ``limit`` rows,
    however long the field's history."""
    box, params = cone_box_sql("ra_center_deg", "dec_center_deg", ra_deg, dec_deg, radius_deg)
    terms = [box]
    if before_mjd is not None:
        terms.append("mjd < ?")
        params += (float(before_mjd),)
    if since_mjd is not None:
        terms.append("mjd >= ?")
        params += (float(since_mjd),)
    # the status terms are applied to the rows read, not in the query (see images_near); the
    # sort carries narrow columns, the metrics are read for the chosen images only
    sql = ("SELECT id, ra_center_deg, dec_center_deg, qc_status, duplicate_of, excluded "
           f"FROM images WHERE {' AND '.join(terms)} AND path != ? "
           "ORDER BY mjd DESC NULLS LAST, id DESC LIMIT ?")
    params += (str(exclude_path),)
    fetch = 4 * limit
    while True:
        rows = bulk.rows(conn, sql, params + (fetch,))
        keep = [r for r in rows if r.qc_status in ("passed", "warning") and r.duplicate_of is None
                and not r.excluded and r.ra_center_deg is not None
                and r.dec_center_deg is not None]
        if keep:
            sep = angular_separation_deg(np.array([r.ra_center_deg for r in keep], float),
                                         np.array([r.dec_center_deg for r in keep], float),
                                         ra_deg, dec_deg)
            keep = [r for r, d in zip(keep, sep) if d <= radius_deg]
        if len(keep) >= limit or len(rows) < fetch:
            break
        fetch *= 4
    ids = [int(r.id) for r in keep[:limit]]
    if not ids:
        return []
    metrics = dict(bulk.rows(conn, f"SELECT id, qc_metrics FROM images WHERE id IN "
                                   f"({', '.join('?' * len(ids))})", tuple(ids)))
    return [json.loads(metrics[i]) for i in ids if metrics.get(i)]


def source_table(conn: Connection, source_ids: Sequence[int]) -> dict[int, dict]:
    """Catalogue rows (survey, catalog_id, ra, dec, flux) by id."""
    out: dict[int, dict] = {}
    for chunk in _chunks([int(s) for s in source_ids]):
        for r in conn.execute(sa.select(sources).where(sources.c.id.in_(chunk))).mappings():
            out[int(r["id"])] = dict(r)
    return out


def upsert_ese_candidates(conn: Connection, rows: list[dict]) -> list[dict]:
    """Insert new candidates or refresh existing ones (status and timestamps of the
    lifecycle are kept); a new candidate's flagging is the first entry of its review log.

    Returns what changed, for the alert outbox: ``{"source_id", "candidate_id", "change",
    "previous_confidence", "status"}`` per new candidate (``change="new"``) and per
    existing one whose confidence rose (``"raised"``, ordered as
    :data:`~dsa110_contimg.core.enums.CONFIDENCE_LEVELS`) while it still meets a criterion;
    and, for rows that carry a ``stage``, ``{..., "change": "stage", "stage",
    "previous_stage"}`` when it differs from the stored one (``stage_changed_at`` is then
    set; the history is appended by :func:`dsa110_contimg.store.ese_stages.record_stage_changes`).
    """
    from dsa110_contimg.core.enums import CONFIDENCE_LEVELS

    now = time.time()
    if not rows:
        return []
    ids = [int(r["source_id"]) for r in rows]
    existing = {int(s): (i, conf, status, stage) for s, i, conf, status, stage in bulk.fetch_in(
        conn, "SELECT source_id, id, confidence, status, stage FROM ese_candidates "
              "WHERE source_id IN ({in})", ids)}
    rank = {c: -n for n, c in enumerate(CONFIDENCE_LEVELS)}
    new, old, changes = [], [], []
    for r in rows:
        r = {k: _clean(v) for k, v in r.items()}
        r["updated_at"] = now
        if r["source_id"] in existing:
            cid, before, status, stage_before = existing[r["source_id"]]
            r["_id"] = cid
            old.append(r)
            if "stage" in r and r["stage"] != stage_before:
                r["stage_changed_at"] = now
                changes.append({"source_id": r["source_id"], "candidate_id": cid, "change": "stage",
                                "stage": r["stage"], "previous_stage": stage_before,
                                "status": status, "previous_confidence": before})
            if rank.get(r.get("confidence"), -99) > rank.get(before, -99) and \
                    json.loads(r.get("criteria") or "[]"):
                changes.append({"source_id": r["source_id"], "candidate_id": cid, "change": "raised",
                                "previous_confidence": before, "status": status})
        else:
            r.setdefault("status", "active")
            r["first_flagged_at"] = now
            r.setdefault("stage", None)
            r.setdefault("stage_reason", None)
            r.setdefault("sparkline", None)
            r["stage_changed_at"] = now if r["stage"] else None
            new.append(r)
    if new:
        conn.execute(ese_candidates.insert(), new)
        review_log.flag(conn, [r["source_id"] for r in new], at=now,
                        note_of={r["source_id"]: "criteria: " + ", ".join(json.loads(r["criteria"]) or ["none"])
                                 for r in new})
        made = dict(bulk.fetch_in(conn, "SELECT source_id, id FROM ese_candidates WHERE source_id IN ({in})",
                                  [r["source_id"] for r in new]))
        changes += [{"source_id": r["source_id"], "candidate_id": made.get(r["source_id"]),
                     "change": "new", "previous_confidence": None, "status": r["status"]} for r in new]
        changes += [{"source_id": r["source_id"], "candidate_id": made.get(r["source_id"]),
                     "change": "stage", "stage": r["stage"], "previous_stage": None,
                     "status": r["status"], "previous_confidence": None}
                    for r in new if r.get("stage")]
    groups: dict[tuple, list[tuple]] = {}
    for r in old:
        cid = r.pop("_id")
        r.pop("source_id")
        groups.setdefault(tuple(r), []).append(tuple(r.values()) + (cid,))
    for names, params in groups.items():
        bulk.executemany(conn, f"UPDATE ese_candidates SET {', '.join(f'{c} = ?' for c in names)} "
                               "WHERE id = ?", params)
    return changes


def candidate_source_ids(conn: Connection, source_ids: Sequence[int]) -> set[int]:
    return {int(r[0]) for r in bulk.fetch_in(
        conn, "SELECT source_id FROM ese_candidates WHERE source_id IN ({in})",
        [int(s) for s in source_ids])}


def variable_source_ids(conn: Connection, source_ids: Sequence[int]) -> set[int]:
    """Which of ``source_ids`` are ESE candidates not dismissed by a reviewer (never flux
    references)."""
    return {int(r[0]) for r in bulk.fetch_in(
        conn, "SELECT source_id FROM ese_candidates WHERE status != ? AND source_id IN ({in})",
        [int(s) for s in source_ids], ("dismissed",))}


def neighbourhood_radius(conn: Connection, radius_deg: float) -> float:
    """Search radius for images that can overlap a footprint of ``radius_deg``:
    ``radius_deg`` plus the largest stored image radius (indexed ``max``)."""
    largest = bulk.rows(conn, "SELECT max(radius_deg) FROM images")[0][0]
    return float(radius_deg) + float(largest or radius_deg) + 0.01


def find_source(conn: Connection, ident: str, survey: str | None = None) -> dict:
    """A source by database id (digits) or catalogue id (e.g. ``NVSS J123456+123456``).

    Raises LookupError naming what was looked for when none or several match.
    """
    q = sa.select(sources)
    if ident.isdigit():
        q = q.where(sources.c.id == int(ident))
    else:
        q = q.where(sources.c.catalog_id == ident)
    if survey is not None:
        q = q.where(sources.c.survey == survey)
    rows = [dict(r) for r in conn.execute(q).mappings().all()]
    if not rows:
        raise LookupError(f"no source {ident!r}" + (f" in survey {survey!r}" if survey else "")
                          + " in the products database")
    if len(rows) > 1:
        raise LookupError(f"{ident!r} names {len(rows)} sources (surveys "
                          f"{', '.join(r['survey'] for r in rows)}); give --survey")
    return rows[0]


def _lists_source(used_ids, source_id: int) -> np.ndarray:
    """Per image, whether its ``norm_used_ids`` (a JSON list of ints, or None) holds
    ``source_id``: a text match on the list with its brackets and spaces removed."""
    key = f",{int(source_id)},"
    return np.array([t is not None and key in ("," + t.replace("[", "").replace("]", "")
                                               .replace(" ", "") + ",") for t in used_ids], bool)


def holds_source(source_id: int):
    """SQL: the image may hold a measurement of ``source_id``: its recorded range of source
    ids (``images.source_id_min``/``source_id_max``) holds it, or is not known (NULL)."""
    sid = int(source_id)
    return sa.or_(images.c.source_id_min.is_(None),
                  sa.and_(images.c.source_id_min <= sid, images.c.source_id_max >= sid))


def source_lightcurve(conn: Connection, source: dict, *,
                      image_columns: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Every measurement of one source, MJD-ordered, with its image's QC and normalisation;
    ``excluded_reason`` is the operator's reason on epochs taken out of the light curve (None
    on the others). ``image_columns``: numeric columns of each epoch's image to add (e.g.
    ``beam_major_arcsec``; NaN where NULL), read by the same query.

    One query: the images whose centre lies within reach of the source (the position index;
    the exact separation and duplicates are applied to its rows) and whose recorded range of
    source ids holds it (or is not known), joined to the source's measurement on each (the
    primary key), so that a source measured on few of its field's images is read from those;
    the columns come back as arrays (Jy/beam, MJD).
    """
    sid = int(source["id"])
    ra, dec = float(source["ra_deg"]), float(source["dec_deg"])
    radius = neighbourhood_radius(conn, 0.0)
    i, m = images.c, measurements.c
    cols = [i.mjd, m.peak_jyb, m.peak_err_jyb, m.norm_flux_jyb, m.norm_err_jyb, m.local_rms_jyb,
            snr_column(), m.flags, m.success, m.image_id, i.path, i.qc_status, i.norm_status,
            i.norm_used_ids, i.excluded_reason, i.excluded, i.ra_center_deg,
            i.dec_center_deg, i.duplicate_of] + [images.c[name] for name in image_columns]
    box = cone_box(i.ra_center_deg, i.dec_center_deg, ra, dec, radius)
    if len(box) == 3 and conn.dialect.name == "sqlite":
        # SQLite's planner prefers the RA index, whose RA range holds every field at that RA
        # (and needs each image's row for the rest): the RA range on an expression (the same
        # values) leaves it the zone index, which seeks the box's own images and holds their
        # source-id range
        box[2] = cone_box(i.ra_center_deg + 0.0, i.dec_center_deg, ra, dec, radius)[2]
    q = (sa.select(*cols)
         .select_from(images.join(measurements, sa.and_(m.image_id == i.id, m.source_id == sid)))
         .where(*box, holds_source(sid)))
    rows = conn.execute(q).all()
    got = list(zip(*rows)) if rows else [()] * len(cols)
    num = np.array(got[:10], float).reshape(10, -1)           # NULL -> NaN
    ra_c, dec_c = np.array(got[16:18], float).reshape(2, -1)
    keep = angular_separation_deg(ra_c, dec_c, ra, dec) <= radius
    keep &= np.array([d is None for d in got[18]], bool)
    order = np.flatnonzero(keep)
    order = order[np.lexsort((num[9, order], num[0, order]))]   # by MJD (none last), then image
    num = num[:, order]
    text = [np.array(got[k], dtype=object).reshape(-1)[order] for k in range(10, 16)]
    out = {c.name: num[k] for k, c in enumerate(cols[:10])}
    out["success"] = out["success"].astype(bool)
    out["flags"] = out["flags"].astype(np.int64)
    out["image_id"] = out["image_id"].astype(np.int64)
    out["image_path"], out["qc_status"], out["norm_status"] = text[0], text[1], text[2]
    out["used_as_reference"] = _lists_source(text[3], sid)
    out["excluded_reason"] = np.where(text[5].astype(bool), text[4], None).astype(object)
    for k, name in enumerate(image_columns):
        out[name] = np.array(got[19 + k], float).reshape(-1)[order]
    return out


#: How an ESE candidate's statistics are named wherever it is shown (CLI, JSON, web, exports,
#: alerts): the detection significance, the ESE template fit's, is ``sigma``; the largest
#: deviation of the light curve from its mean in units of its scatter is ``max_deviation``.
CANDIDATE_NAMES = {"shape_significance": "sigma", "sigma_deviation": "max_deviation"}


def presented_candidate(row: dict) -> dict:
    """A candidate row with its statistics under their shown names
    (:data:`CANDIDATE_NAMES`)."""
    return {CANDIDATE_NAMES.get(k, k): v for k, v in row.items()}


def detection_sigma(candidate) -> float | None:
    """The candidate's detection significance (sigma of the ESE template fit), from a row
    as stored or as shown; None when the template search did not detect it."""
    value = candidate.get("sigma", candidate.get("shape_significance"))
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def candidate_order(c=ese_candidates.c) -> tuple:
    """ORDER BY terms ranking ESE candidates: a dip with its stage first.

    By stage (:data:`~dsa110_contimg.store.schema.ESE_STAGES`): confirmed (dip and
    recovery), recovering, dip in progress; then candidates whose light curve passed the
    matched-filter shape search without a stored stage; then those flagged only by the
    threshold preset or eta-V; retired ones last. Within a rank, highest score, then
    oldest. The composite score of sigma-dev / chi2_nu / eta rewards a short flare or a
    single bad epoch (sigma-dev = sqrt(n - 1) for one outlier among n epochs: score 10
    from about 100 epochs), so by score alone such a point ties with, or outranks, a
    real ESE whose recovery has been observed.

    ``c``: the columns of ``ese_candidates`` or of a selection of its rows.
    """
    # the text of the index ix_ese_candidates_rank (schema.CANDIDATE_RANK_SQL): a page is
    # read from the index in this order
    return (sa.literal_column(CANDIDATE_RANK_SQL), c.score.desc(), c.id)


def list_candidates(conn: Connection, *, status: str | None = None, min_score: float | None = None,
                    limit: int | None = None) -> list[dict]:
    """ESE candidates with their source, ranked by :func:`candidate_order`."""
    q = (sa.select(ese_candidates, sources.c.survey, sources.c.catalog_id, sources.c.ra_deg,
                   sources.c.dec_deg)
         .join(sources, sources.c.id == ese_candidates.c.source_id)
         .order_by(*candidate_order()))
    if status is not None:
        q = q.where(ese_candidates.c.status == status)
    if min_score is not None:
        q = q.where(ese_candidates.c.score >= min_score)
    if limit is not None:
        q = q.limit(limit)
    out = []
    for r in conn.execute(q).mappings():
        d = dict(r)
        d.pop("sparkline", None)
        d["criteria"] = json.loads(d["criteria"]) if d["criteria"] else []
        out.append(d)
    return out


def set_baseline_validity(conn: Connection, verdicts: dict[int, str | None]) -> None:
    """Mark references stable (reason None) or unstable (reason given); unstable ones are
    not chosen as references until a later check finds them stable again."""
    now = time.time()
    rows = [(r is None, r, now, int(s)) for s, r in verdicts.items()]
    bulk.executemany(conn, "UPDATE reference_baselines SET valid = ?, invalid_reason = ?, "
                           "updated_at = ? WHERE source_id = ?", rows)
