"""Blind detections, weighted-mean source positions, image depths and new sources (SQL).

Tables (``store/schema.py``): ``detections`` (every blind detection of an image and what
became of it), ``source_detections`` (per source: running weighted-mean position and
detection counts), ``image_depths`` (per image: its noise footprint for later new-source
tests) and ``new_sources`` (the sources that passed the new-source test, written in the
transaction of the image that found them). Reads are bounded by a field (a cone around
an image) or by a page, never by the size of a table.
"""

from __future__ import annotations

import time
from itertools import chain, repeat
from typing import Iterable, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.alerts import new_source_events, record_alerts
from dsa110_contimg.store.engine import dialect_insert
from dsa110_contimg.store.sky import cone_box_sql
from dsa110_contimg.store.schema import (
    detections, image_depths, images, new_sources, source_detections, sources)

#: Columns of a detection row written by :func:`replace_detections`.
DETECTION_COLUMNS = (
    "source_id", "mjd", "ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "x_pix", "y_pix",
    "peak_jyb", "peak_err_jyb", "local_rms_jyb", "snr", "island_id", "n_components", "flags",
    "status", "de_ruiter_r", "n_candidates", "related_source_id", "reason")
#: Kinds of sources that live only in this database (not in a catalogue file).
OWN_KINDS = ("monitor", "new", "blind")


_OWN_NEAR_SQL = (
    "SELECT s.id, s.survey, s.catalog_id, s.kind, s.ra_deg, s.dec_deg, d.wm_ra_deg, "
    "d.wm_dec_deg, d.w_ra, d.w_dec, d.n_detections FROM sources AS s LEFT OUTER JOIN "
    "source_detections AS d ON d.source_id = s.id WHERE s.kind IN ({kinds}) AND {box}")


def own_sources_near(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float,
                     kinds: Sequence[str] = OWN_KINDS) -> dict[str, np.ndarray]:
    """Sources of ``kinds`` within ``radius_deg`` of (ra, dec) with their positions.

    Columns: ``id``, ``survey``, ``catalog_id``, ``kind`` and ``ra_deg``/``dec_deg`` (the
    running weighted-mean position once detected, else the stored position), ``w_ra``,
    ``w_dec`` (accumulated weights, arcsec⁻²; 0 before any detection), ``n_detections``.
    """
    from dsa110_contimg.core.geometry import angular_separation_deg

    box, params = cone_box_sql("s.ra_deg", "s.dec_deg", ra_deg, dec_deg, radius_deg)
    kinds = [str(k) for k in kinds]
    rows = bulk.execute(conn, _OWN_NEAR_SQL.format(kinds=", ".join("?" * len(kinds)), box=box),
                        tuple(kinds) + params)
    out = {
        "id": np.array([r[0] for r in rows], np.int64),
        "survey": np.array([r[1] for r in rows], object),
        "catalog_id": np.array([r[2] for r in rows], object),
        "kind": np.array([r[3] for r in rows], object),
        "ra_deg": np.array([r[4] if r[6] is None else r[6] for r in rows], float),
        "dec_deg": np.array([r[5] if r[7] is None else r[7] for r in rows], float),
        "w_ra": np.array([r[8] or 0.0 for r in rows], float),
        "w_dec": np.array([r[9] or 0.0 for r in rows], float),
        "n_detections": np.array([r[10] or 0 for r in rows], np.int64),
    }
    if rows:
        keep = angular_separation_deg(out["ra_deg"], out["dec_deg"], ra_deg, dec_deg) <= radius_deg
        out = {k: v[keep] for k, v in out.items()}
    return out


def detection_positions(conn: Connection, source_ids: Sequence[int]) -> dict[int, tuple]:
    """``{source_id: (wm_ra_deg, wm_dec_deg, w_ra, w_dec, n_detections, first_mjd)}``."""
    sql = ("SELECT source_id, wm_ra_deg, wm_dec_deg, w_ra, w_dec, n_detections, "
           "first_detected_mjd FROM source_detections WHERE source_id IN ({in})")
    return {int(r[0]): tuple(r[1:]) for r in bulk.fetch_in(conn, sql, [int(s) for s in source_ids])}


def detection_position_arrays(conn: Connection, source_ids) -> dict[str, np.ndarray]:
    """:func:`detection_positions` as arrays in the order of ``source_ids``: ``ra``,
    ``dec`` (deg), ``w_ra``, ``w_dec`` (arcsec^-2), ``n`` and ``first_mjd``, with
    ``found`` False (NaN, 0, 0 and NaN) for sources without a detection yet."""
    ids = np.asarray(source_ids, np.int64)
    out = {"ra": np.full(ids.size, np.nan), "dec": np.full(ids.size, np.nan),
           "w_ra": np.zeros(ids.size), "w_dec": np.zeros(ids.size),
           "n": np.zeros(ids.size, np.int64), "first_mjd": np.full(ids.size, np.nan),
           "found": np.zeros(ids.size, bool)}
    sql = ("SELECT source_id, wm_ra_deg, wm_dec_deg, w_ra, w_dec, n_detections, "
           "first_detected_mjd FROM source_detections WHERE source_id IN ({in})")
    rows = bulk.fetch_in(conn, sql, np.unique(ids).tolist())
    if not rows:
        return out
    got = np.array([r[0] for r in rows], np.int64)
    order = np.argsort(got)
    pos = np.clip(np.searchsorted(got[order], ids), 0, got.size - 1)
    hit = got[order][pos] == ids
    at = order[pos[hit]]
    vals = np.array([r[1:] for r in rows], dtype=float)    # NULL -> NaN
    for k, name in enumerate(("ra", "dec", "w_ra", "w_dec")):
        out[name][hit] = vals[at, k]
    out["n"][hit] = np.nan_to_num(vals[at, 4]).astype(np.int64)
    out["first_mjd"][hit] = vals[at, 5]
    out["found"] = hit
    return out


def catalogue_source_positions(conn: Connection, survey: str, catalog_ids: Sequence[str]
                               ) -> dict[str, np.ndarray]:
    """The ``sources.id`` of catalogue sources (-1 for those without a row yet) and their
    weighted-mean positions, in the order of ``catalog_ids``, in one query: ``id`` and the
    columns of :func:`detection_position_arrays` but ``first_mjd`` (``found`` False, NaN and
    0 where a source has no detection yet)."""
    names = [str(c) for c in catalog_ids]
    n = len(names)
    out = {"id": np.full(n, -1, np.int64), "ra": np.full(n, np.nan), "dec": np.full(n, np.nan),
           "w_ra": np.zeros(n), "w_dec": np.zeros(n), "n": np.zeros(n, np.int64),
           "found": np.zeros(n, bool)}
    sql = ("SELECT s.catalog_id, s.id, d.wm_ra_deg, d.wm_dec_deg, d.w_ra, d.w_dec, "
           "d.n_detections FROM sources s LEFT JOIN source_detections d ON d.source_id = s.id "
           "WHERE s.survey = ? AND s.catalog_id IN ({in})")
    rows = bulk.fetch_in(conn, sql, names, (survey,))
    if not rows:
        return out
    got = list(zip(*rows))                                     # one tuple per column
    where = dict(zip(got[0], range(len(rows))))
    at = np.fromiter(map(where.get, names, repeat(-1)), np.int64, count=n)
    hit = at >= 0
    out["id"][hit] = np.array(got[1], np.int64)[at[hit]]
    vals = np.array(got[2:], dtype=float)                      # (5, rows); NULL -> NaN
    found = hit.copy()
    found[hit] = np.isfinite(vals[0, at[hit]])
    for k, name in enumerate(("ra", "dec", "w_ra", "w_dec")):
        out[name][found] = vals[k, at[found]]
    out["n"][found] = vals[4, at[found]].astype(np.int64)
    out["found"] = found
    return out


def save_detection_positions(conn: Connection, rows: Iterable[tuple]) -> None:
    """Upsert ``(source_id, wm_ra, wm_dec, w_ra, w_dec, n_detections, first_mjd, last_mjd)``."""
    now = time.time()
    rows = [tuple(r) + (now,) for r in rows]
    if not rows:
        return
    names = ("source_id", "wm_ra_deg", "wm_dec_deg", "w_ra", "w_dec", "n_detections",
             "first_detected_mjd", "last_detected_mjd", "updated_at")
    upsert = bulk.upsert_sql("source_detections", names, ("source_id",))
    if len({r[0] for r in rows}) < len(rows):
        # a statement may not update one row twice (PostgreSQL): one statement per row
        bulk.executemany(conn, upsert, rows)
        return
    _insert_many(conn, "source_detections", names, rows,
                 on_conflict=upsert[upsert.index(" ON CONFLICT"):])


def _wrapped_deg(expr: str) -> str:
    """SQL of an angle difference (deg, within (-360, 360)) wrapped into [-180, 180)."""
    return (f"(CASE WHEN {expr} >= 180.0 THEN {expr} - 360.0 WHEN {expr} < -180.0 "
            f"THEN {expr} + 360.0 ELSE {expr} END)")


def accumulate_detection_positions(conn: Connection, image_id: int, updated_at: float, *,
                                   repeats: bool | None = None) -> int:
    """Fold the stored detections of one image that feed a source (``source_id`` set) into
    their sources' weighted-mean positions, in one set-based statement (no row crosses
    into Python): a source without a ``source_detections`` row gets the detection's
    position and weights, else the running inverse-variance mean moves by
    ``w_new / (w + w_new)`` of the (RA-wrapped) offset, the weights add and
    ``n_detections`` counts one more (:func:`~dsa110_contimg.science.associate.update_weighted_positions`
    in SQL). Several detections of one source are folded in detection order. ``repeats``
    says whether a source is fed by several detections of the image (None: count them
    here). Returns the number of detections folded."""
    sd = "source_detections"
    n_feed = None
    if repeats is None:
        n_feed, n_sources = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT source_id) FROM detections "
            "WHERE image_id = :i AND source_id IS NOT NULL"), {"i": int(image_id)}).one()
        if not n_feed:
            return 0
        repeats = n_sources < n_feed
    cols = ("source_id, ra_deg, dec_deg, 1.0 / (ra_err_arcsec * ra_err_arcsec), "
            "1.0 / (dec_err_arcsec * dec_err_arcsec), 1, mjd, mjd, :now")
    feeding = "image_id = :i AND source_id IS NOT NULL"
    select = f"SELECT {cols} FROM detections WHERE {feeding} ORDER BY id"
    ra = (f"{sd}.wm_ra_deg + excluded.w_ra / ({sd}.w_ra + excluded.w_ra) * "
          + _wrapped_deg(f"(excluded.wm_ra_deg - {sd}.wm_ra_deg)"))
    sql = (f"INSERT INTO {sd} (source_id, wm_ra_deg, wm_dec_deg, w_ra, w_dec, n_detections, "
           "first_detected_mjd, last_detected_mjd, updated_at) {select} "
           f"ON CONFLICT (source_id) DO UPDATE SET "
           f"wm_ra_deg = CASE WHEN {ra} < 0.0 THEN {ra} + 360.0 WHEN {ra} >= 360.0 "
           f"THEN {ra} - 360.0 ELSE {ra} END, "
           f"wm_dec_deg = {sd}.wm_dec_deg + excluded.w_dec / ({sd}.w_dec + excluded.w_dec) * "
           f"(excluded.wm_dec_deg - {sd}.wm_dec_deg), "
           f"w_ra = {sd}.w_ra + excluded.w_ra, w_dec = {sd}.w_dec + excluded.w_dec, "
           f"n_detections = {sd}.n_detections + 1, "
           f"first_detected_mjd = coalesce({sd}.first_detected_mjd, excluded.first_detected_mjd), "
           f"last_detected_mjd = excluded.last_detected_mjd, updated_at = excluded.updated_at")
    params = {"i": int(image_id), "now": float(updated_at)}
    if not repeats:
        n = conn.execute(sa.text(sql.format(select=select)), params).rowcount
        return int(n_feed) if n_feed is not None else n
    # one statement may not update a row twice (PostgreSQL): the k-th detection of each
    # source in the k-th statement
    ranked = (f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY source_id "
              f"ORDER BY id) - 1 AS k FROM detections WHERE {feeding}) AS d WHERE k = :k "
              "ORDER BY id")
    k, n = 0, 0
    while (got := conn.execute(sa.text(sql.format(select=ranked)), {**params, "k": k}).rowcount) > 0:
        k, n = k + 1, n + got
    return n


def replace_detections(conn: Connection, image_id: int, columns: dict[str, list]) -> None:
    """Replace the detections of one image (a re-measured image keeps no stale rows).

    ``columns`` maps each name of :data:`DETECTION_COLUMNS` to a list of Python values
    (None for SQL NULL).
    """
    conn.execute(detections.delete().where(detections.c.image_id == int(image_id)))
    n = len(columns["status"])
    if n:
        _insert_columns(conn, "detections", ("image_id",) + DETECTION_COLUMNS,
                        [[int(image_id)] * n] + [columns[c] for c in DETECTION_COLUMNS])


#: rows per INSERT statement of :func:`_insert_many` (x 21 columns: below SQLite's
#: historical limit of 999 parameters)
ROWS_PER_INSERT = 32


def _insert_many(conn: Connection, table: str, columns: Sequence[str], rows: list[tuple],
                 on_conflict: str = "") -> None:
    """Insert ``rows`` (tuples in ``columns`` order, in order) with multi-row ``VALUES``
    statements of :data:`ROWS_PER_INSERT` rows (each followed by ``on_conflict``, e.g. an
    ``ON CONFLICT ... DO UPDATE`` clause): a third less time than one statement per row,
    the same rows in the same order."""
    _insert_flat(conn, table, columns, list(chain.from_iterable(rows)), on_conflict)


def _insert_columns(conn: Connection, table: str, columns: Sequence[str],
                    values: Sequence[list]) -> None:
    """:func:`_insert_many` of rows given as one list of values per column."""
    _insert_flat(conn, table, columns, list(chain.from_iterable(zip(*values))))


def _insert_flat(conn: Connection, table: str, columns: Sequence[str], flat: list,
                 on_conflict: str = "") -> None:
    """:func:`_insert_many` of the rows' values laid end to end (``flat``, row-major)."""
    k, width = ROWS_PER_INSERT, len(columns)
    n = len(flat) // width
    full = (n - n % k) * width
    if full:
        one = "(" + ", ".join("?" * width) + ")"
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * k)
               + on_conflict)
        step = k * width
        bulk.executemany(conn, sql, [flat[i:i + step] for i in range(0, full, step)])
    if full < len(flat):
        bulk.executemany(conn, bulk.insert_sql(table, columns) + on_conflict,
                         [flat[i:i + width] for i in range(full, len(flat), width)])


def store_image_depth(conn: Connection, image_id: int, footprint: bytes, rms_min, rms_max,
                      n_detections: int) -> None:
    """Create or replace the depth row of one image."""
    values = {"image_id": int(image_id), "footprint": footprint,
              "rms_min_jyb": _num(rms_min), "rms_max_jyb": _num(rms_max),
              "n_detections": int(n_detections)}
    stmt = dialect_insert(conn, image_depths).values(**values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["image_id"], set_={
        k: v for k, v in values.items() if k != "image_id"}))


def _num(v):
    return None if v is None or not np.isfinite(v) else float(v)


def earlier_depths(conn: Connection, image_ids: Sequence[int], before_mjd: float,
                   limit: int = 64) -> list[dict]:
    """Depth rows of the images among ``image_ids`` observed before ``before_mjd``, the
    ``limit`` deepest first (lowest ``rms_min``): ``image_id``, ``mjd``, ``rms_min_jyb``,
    ``rms_max_jyb``, ``footprint``."""
    ids = [int(i) for i in image_ids]
    if not ids or before_mjd is None or not np.isfinite(before_mjd):
        return []
    out = []
    for start in range(0, len(ids), bulk.CHUNK):
        q = (sa.select(image_depths.c.image_id, images.c.mjd, image_depths.c.rms_min_jyb,
                       image_depths.c.rms_max_jyb)
             .select_from(image_depths.join(images, images.c.id == image_depths.c.image_id))
             .where(image_depths.c.image_id.in_(ids[start:start + bulk.CHUNK]),
                    images.c.mjd < float(before_mjd), image_depths.c.rms_min_jyb.is_not(None)))
        out.extend(conn.execute(q).mappings().all())
    out = sorted(out, key=lambda r: r["rms_min_jyb"])[:limit]
    if not out:
        return []
    blobs = dict(conn.execute(sa.select(image_depths.c.image_id, image_depths.c.footprint).where(
        image_depths.c.image_id.in_([r["image_id"] for r in out]))).all())
    return [{**dict(r), "footprint": blobs[r["image_id"]]} for r in out]


def record_new_sources(conn: Connection, rows: list[dict]) -> None:
    """Insert ``new_sources`` rows (a source is new once: later inserts are ignored) and, in the
    same transaction, their ``new_source`` alerts (:mod:`dsa110_contimg.store.alerts`; sent
    when ``new_high_sigma`` reaches ``[alerts] new_source_min_sigma``)."""
    if rows:
        now = time.time()
        conn.execute(dialect_insert(conn, new_sources).on_conflict_do_nothing(
            index_elements=["source_id"]), [{"created_at": now, **r} for r in rows])
        record_alerts(conn, new_source_events(conn, rows))


def set_backfill_job(conn: Connection, source_ids: Sequence[int], job_id: int) -> None:
    conn.execute(new_sources.update().where(new_sources.c.source_id.in_(
        [int(s) for s in source_ids])).values(backfill_job_id=int(job_id)))


def image_detections(conn: Connection, image_id: int) -> list[dict]:
    """The detections of one image, brightest first."""
    q = (sa.select(detections, sources.c.catalog_id.label("source_name"))
         .select_from(detections.outerjoin(sources, sources.c.id == detections.c.source_id))
         .where(detections.c.image_id == int(image_id))
         .order_by(detections.c.peak_jyb.desc().nulls_last(), detections.c.id))
    return [dict(r) for r in conn.execute(q).mappings().all()]


def source_detections_in(conn: Connection, source_id: int, image_ids: Sequence[int]) -> list[dict]:
    """The detections of one source among ``image_ids`` (its field), by epoch."""
    out = []
    ids = [int(i) for i in image_ids]
    for start in range(0, len(ids), bulk.CHUNK):
        q = (sa.select(detections, images.c.path)
             .select_from(detections.join(images, images.c.id == detections.c.image_id))
             .where(detections.c.image_id.in_(ids[start:start + bulk.CHUNK]),
                    sa.or_(detections.c.source_id == int(source_id),
                           detections.c.related_source_id == int(source_id))))
        out.extend(dict(r) for r in conn.execute(q).mappings().all())
    return sorted(out, key=lambda r: (r["mjd"] is None, r["mjd"] or 0.0, r["id"]))


def detection_counts(conn: Connection, got=None) -> dict[str, int]:
    """Totals for ``status``: detections (summed per image), new and other non-catalogue
    sources, from the maintained counters (``got``, a
    :class:`~dsa110_contimg.store.counters.Counts` already read, or read here)."""
    from dsa110_contimg.store.counters import read_counts

    got = got if got is not None else read_counts(conn)
    n_det, kinds = got.detections(), got.own_sources()
    return {"detections": int(n_det or 0), "new_sources": int(kinds.get("new", 0)),
            "blind_sources": int(kinds.get("blind", 0)),
            "monitor_sources": int(kinds.get("monitor", 0))}


__all__ = ["DETECTION_COLUMNS", "OWN_KINDS", "own_sources_near", "detection_positions",
           "detection_position_arrays", "catalogue_source_positions",
           "save_detection_positions", "accumulate_detection_positions", "replace_detections",
           "store_image_depth",
           "earlier_depths", "record_new_sources", "set_backfill_job", "image_detections",
           "source_detections_in", "detection_counts"]
