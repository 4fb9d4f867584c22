"""Bounded read queries for the review web site (``contimg-photometry serve``) and the
JSON objects it shares with the CLI (``ese list --json``).

Every function here reads at most one page of rows: candidates and images are
paginated in SQL (``LIMIT``/``OFFSET`` on indexed orderings), a source's light
curve goes through :func:`~dsa110_contimg.store.lightcurves.source_lightcurve`
(the images near the source, then the ``(image_id, source_id)`` index), and the
η–V diagram of a field reads at most ``limit`` sources of a declination/RA box
(``sources (dec_deg, ra_deg)`` index) joined to ``variability_stats`` by key.

Units as in :mod:`dsa110_contimg.store.schema`: Jy/beam, degrees, MJD, Unix seconds; every
``*_at`` time has an ISO 8601 UTC twin ``*_at_iso``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.lightcurves import candidate_order
from dsa110_contimg.store.sky import cone_box
from dsa110_contimg.store.values import clean, with_iso_times
from dsa110_contimg.store.schema import (
    ESE_STATES, METRIC_COLUMNS, ese_candidates, images, measurements, sources,
    variability_stats,
)

#: Review actions accepted by the web site and the state each one stores.
REVIEW_ACTIONS = {
    "investigating": "investigated", "investigated": "investigated", "investigate": "investigated",
    "dismissed": "dismissed", "dismiss": "dismissed",
    "reactivated": "active", "reactivate": "active", "active": "active",
}


def _candidate_filter(q, *, status, min_score, include_all):
    if status is not None:
        if status not in ESE_STATES:
            raise ValueError(f"status must be one of {', '.join(ESE_STATES)}, not {status!r}")
        q = q.where(ese_candidates.c.status == status)
    if min_score is not None:
        q = q.where(ese_candidates.c.score >= float(min_score))
    if not include_all:
        # a candidate whose latest evaluation met no criterion stores criteria "[]"
        q = q.where(ese_candidates.c.criteria != "[]")
    return q


def candidates_page(conn: Connection, *, status: str | None = None, min_score: float | None = None,
                    include_all: bool = False, limit: int | None = None, offset: int = 0,
                    sparklines: bool = False) -> tuple[list[dict], int]:
    """ESE candidates with their source: ``(rows, total)``, ranked by
    :func:`dsa110_contimg.store.lightcurves.candidate_order` (a detected dip and
    recovery first, then highest score).

    The rows are the objects of ``contimg-photometry ese list --json`` (criteria as a
    list, NaN as None); ``total`` counts every row matching the filters. With
    ``sparklines``, each row also has ``sparkline``: the stored summary of its light curve
    as ``(mjd, flux)`` arrays (MJD, Jy/beam; :mod:`dsa110_contimg.science.sparkline`), or
    None when the ESE step has not stored one yet.
    """
    # the page of candidates (read in order from the rank index), then their sources by key:
    # neither statement reads more than the page, whatever the planner's costs
    q = _candidate_filter(sa.select(ese_candidates), status=status, min_score=min_score,
                          include_all=include_all).order_by(*candidate_order())
    if limit is not None:
        q = q.limit(int(limit)).offset(int(offset))
    page = [dict(r) for r in conn.execute(q).mappings()]
    where = candidate_sources(conn, [c["source_id"] for c in page])
    rows = [_candidate_dict({**c, **where[c["source_id"]]}, sparkline=sparklines)
            for c in page if c["source_id"] in where]
    if limit is None:
        return rows, len(rows)
    total = conn.execute(_candidate_filter(sa.select(sa.func.count()).select_from(ese_candidates),
                                           status=status, min_score=min_score,
                                           include_all=include_all)).scalar()
    return rows, int(total or 0)


def candidate_sources(conn: Connection, source_ids) -> dict[int, dict]:
    """``{source id: {survey, catalog_id, ra_deg, dec_deg}}`` of the given sources (deg), read
    by primary key."""
    ids = sorted({int(i) for i in source_ids})
    return {r[0]: {"survey": r[1], "catalog_id": r[2], "ra_deg": r[3], "dec_deg": r[4]}
            for r in bulk.fetch_in(conn, "SELECT id, survey, catalog_id, ra_deg, dec_deg "
                                   "FROM sources WHERE id IN ({in})", ids)}


def candidates_json(conn: Connection, *, status=None, min_score=None, include_all=False) -> dict:
    """What ``ese list --json`` prints: ``{"candidates": [...], "count": n}``."""
    rows, _ = candidates_page(conn, status=status, min_score=min_score, include_all=include_all)
    return {"candidates": rows, "count": len(rows)}


def candidate(conn: Connection, candidate_id: int) -> dict | None:
    """One candidate (same object as in :func:`candidates_page`), or None."""
    q = (sa.select(ese_candidates, sources.c.survey, sources.c.catalog_id, sources.c.ra_deg,
                   sources.c.dec_deg)
         .join(sources, sources.c.id == ese_candidates.c.source_id)
         .where(ese_candidates.c.id == int(candidate_id)))
    r = conn.execute(q).mappings().first()
    return None if r is None else _candidate_dict(r)


def _candidate_dict(r, *, sparkline: bool = False) -> dict:
    from dsa110_contimg.science.sparkline import decode
    from dsa110_contimg.store.lightcurves import presented_candidate

    d = dict(r)
    stored = d.pop("sparkline", None)
    d["criteria"] = json.loads(d["criteria"]) if d["criteria"] else []
    out = with_iso_times(clean(presented_candidate(d)))
    if sparkline:
        out["sparkline"] = decode(stored)
    return out


def candidate_of_source(conn: Connection, source_id: int) -> dict | None:
    """The ESE candidate row of one source (same object as in :func:`candidates_page`), or None."""
    cand = conn.execute(sa.select(ese_candidates.c.id).where(
        ese_candidates.c.source_id == int(source_id))).scalar()
    return None if cand is None else candidate(conn, cand)


def source_summary(conn: Connection, source_id: int) -> dict | None:
    """A source's catalogue row, its variability metrics and its ESE candidate row (or None)."""
    src = source_row(conn, source_id)
    if src is None:
        return None
    stats = conn.execute(sa.select(variability_stats.c.flux_kind, variability_stats.c.n,
                                   *[variability_stats.c[c] for c in METRIC_COLUMNS])
                         .where(variability_stats.c.source_id == int(source_id))).mappings().first()
    return clean({"source": dict(src), "variability": dict(stats) if stats else None,
                  "candidate": candidate_of_source(conn, source_id)})


def field_eta_v(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float, *,
                limit: int = 3000) -> dict[str, np.ndarray]:
    """η and V of at most ``limit`` sources within a box of half-size ``radius_deg`` (deg)
    around (ra, dec): arrays ``source_id, eta, v`` (sources without metrics left out)."""
    cond = cone_box(sources.c.ra_deg, sources.c.dec_deg, ra_deg, dec_deg, radius_deg)
    q = (sa.select(sources.c.id, variability_stats.c.eta, variability_stats.c.v)
         .join(variability_stats, variability_stats.c.source_id == sources.c.id)
         .where(*cond, variability_stats.c.eta.is_not(None), variability_stats.c.v.is_not(None))
         .limit(int(limit)))
    rows = [tuple(r) for r in conn.execute(q).all()]   # plain tuples: numpy probes Row attributes
    arr = np.array(rows, float).reshape(-1, 3)
    return {"source_id": arr[:, 0].astype(np.int64), "eta": arr[:, 1], "v": arr[:, 2]}


def thumbnail_series(conn: Connection, rows: list[dict]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Light curves for thumbnails of candidate rows (``source_id, ra_deg, dec_deg``):
    ``{source_id: (mjd, flux_jyb)}``, MJD-ordered, successful measurements on images that
    did not fail QC; the normalised flux where the source has any, else the raw flux.

    One images-near query (the images that may hold the source) and one measurements query
    (one index seek per image) per row.
    """
    from dsa110_contimg.store.lightcurves import images_near, neighbourhood_radius

    radius = neighbourhood_radius(conn, 0.0)
    q = (sa.select(images.c.mjd, measurements.c.norm_flux_jyb, measurements.c.peak_jyb)
         .join(images, images.c.id == measurements.c.image_id)
         .where(measurements.c.image_id.in_(sa.bindparam("ids", expanding=True)),
                measurements.c.source_id == sa.bindparam("sid"), measurements.c.success.is_(True)))
    out = {}
    for r in rows:
        near = images_near(conn, r["ra_deg"], r["dec_deg"], radius, exclude_qc_failed=True,
                           holding=int(r["source_id"]))
        ids = near["id"].tolist()
        got = [tuple(m) for m in conn.execute(q, {"ids": ids, "sid": int(r["source_id"])}).all()] if ids else []
        arr = np.array(got, dtype=float).reshape(-1, 3)    # None -> nan
        flux = arr[:, 1] if np.isfinite(arr[:, 1]).any() else arr[:, 2]
        order = np.argsort(arr[:, 0])
        out[int(r["source_id"])] = (arr[order, 0], flux[order])
    return out


_IMAGE_LIST_COLS = (images.c.id, images.c.path, images.c.kind, images.c.mjd, images.c.method,
                    images.c.catalog, images.c.n_sources, images.c.n_success, images.c.qc_status,
                    images.c.qc_reasons, images.c.norm_status, images.c.norm_reason,
                    images.c.norm_factor, images.c.norm_n_refs, images.c.median_rms_jyb,
                    images.c.measured_at, images.c.duplicate_of, images.c.excluded,
                    images.c.excluded_reason)


def _image_dict(r) -> dict:
    d = dict(r)
    d["qc_reasons"] = json.loads(d["qc_reasons"]) if d.get("qc_reasons") else []
    for k in ("qc_metrics", "notes", "norm_ref_ids", "norm_used_ids"):
        if k in d:
            d[k] = json.loads(d[k]) if d[k] else None
    return with_iso_times(clean(d))


def images_page(conn: Connection, *, qc_status: str | None = None, limit: int = 50,
                offset: int = 0) -> tuple[list[dict], int]:
    """Latest observations first (by MJD, indexed; then by id): ``(rows, total)``; the
    total from the maintained counters."""
    from dsa110_contimg.store.counters import read_counts

    q = (sa.select(*_IMAGE_LIST_COLS).order_by(images.c.mjd.desc(), images.c.id.desc())
         .limit(int(limit)).offset(int(offset)))
    if qc_status:
        q = q.where(images.c.qc_status == qc_status)
    rows = [_image_dict(r) for r in conn.execute(q).mappings()]
    counted = read_counts(conn).images()
    return rows, int(counted["qc"].get(qc_status, 0) if qc_status else counted["images"])


def image_path(conn: Connection, image_id: int) -> str | None:
    """The stored path of one image (``fsb64:`` for names that are not UTF-8), or None."""
    return conn.execute(sa.select(images.c.path).where(images.c.id == int(image_id))).scalar()


def source_row(conn: Connection, source_id: int) -> dict | None:
    """One source's catalogue row, or None."""
    r = conn.execute(sa.select(sources).where(sources.c.id == int(source_id))).mappings().first()
    return None if r is None else dict(r)


def image_detail(conn: Connection, image_id: int) -> dict | None:
    """Every column of one image (JSON columns decoded) and its candidate references
    (:func:`dsa110_contimg.store.images.image_references`), or None."""
    from dsa110_contimg.store.images import image_references

    r = conn.execute(sa.select(images).where(images.c.id == int(image_id))).mappings().first()
    if r is None:
        return None
    out = _image_dict(r)
    out["references"] = image_references(conn, int(image_id))
    return out


def throughput(conn: Connection, *, now: float | None = None, hours: int = 24) -> list[dict]:
    """Jobs done per clock hour (UTC) over the last ``hours`` hours, the current one last:
    ``[{"hour_start": unix_s, "done": n}, ...]``; from the maintained hourly counters
    (:mod:`dsa110_contimg.store.counters`), so the read is bounded by the hours shown.
    ``hours`` at most :data:`~dsa110_contimg.store.counters.KEEP_HOURS`."""
    from dsa110_contimg.store.counters import KEEP_HOURS, read_counts

    now = time.time() if now is None else now
    hours = min(int(hours), KEEP_HOURS)
    last = int(now // 3600)
    done = read_counts(conn).done_per_hour(last - hours + 1, last)
    return [{"hour_start": 3600.0 * b, "done": int(done.get(b, 0))}
            for b in range(last - hours + 1, last + 1)]


def nodes(conn: Connection, *, now: float | None = None, stale_after_s: float = 60.0,
          limit: int = 20) -> list[dict]:
    """The daemons that beat most recently (one row per daemon process, newest first):
    host, pid, workers, state (``stale`` when its beat is older than ``stale_after_s``),
    heartbeat age (s), start time (Unix s) and status text."""
    from dsa110_contimg.store.schema import heartbeats

    now = time.time() if now is None else now
    rows = conn.execute(sa.select(heartbeats).order_by(heartbeats.c.beat_at.desc()).limit(int(limit))).mappings()
    out = []
    for r in rows:
        age = max(0.0, now - r["beat_at"])
        state = r["state"] if r["state"] == "stopped" or age <= stale_after_s else "stale"
        out.append(with_iso_times({"host": r["host"], "pid": r["pid"], "workers": r["workers"], "state": state,
                                   "heartbeat_age_s": round(age, 1), "started_at": r["started_at"],
                                   "status_text": r["status_text"]}))
    return out
