"""Forced photometry of given sources in images already stored (backward fill).

A new source found in image N is measured forwards like a catalogue source (it is among
the positions of every image measured later; an image in flight meanwhile measures it at
its store, :mod:`dsa110_contimg.pipeline.inflight`). The images stored before -- earlier
ones, and later ones another worker stored first -- are measured by a ``backfill`` job
through the same queue (:func:`queue_backfill`, queued in the transaction that records
the new source; ``sources backfill ID|--monitor`` queues one on request): one
item per stored image that covers any of the positions (its stored footprint), each
measured with the forced estimator at the weighted-mean positions of the sources it
covers (:func:`sources_covered`: a position off the image gets no row;
:func:`measure_backfill`, no database) and stored with :func:`store_backfill` in one
fenced transaction: the measurement rows (normalised with the image's stored correction),
then the sources' running statistics recomputed exactly from their light curves. An
image that can no longer be read fails its item with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import products as product_store

#: key of a backfill job's sources in its params (and prefix of its data_id)
BACKFILL_JOB = "backfill"


def covering_images(conn, ra_deg, dec_deg, *, before_mjd: float | None = None,
                    exclude: tuple[int, ...] = ()) -> list[dict]:
    """Stored images whose pixels cover any of the positions (deg; observed before
    ``before_mjd``): ``id``, ``path``, ``kind``, ``mjd``, by epoch. Coverage from each
    image's stored noise footprint (one WCS transform per image for all positions), else
    its centre-to-corner radius. The images are those of the field around the positions."""
    import sqlalchemy as sa

    from dsa110_contimg.core.geometry import angular_separation_deg
    from dsa110_contimg.store.schema import image_depths, images

    ra, dec = np.atleast_1d(np.asarray(ra_deg, float)), np.atleast_1d(np.asarray(dec_deg, float))
    if ra.size == 0:
        return []
    ra0, dec0 = float(ra[0]), float(dec[0])
    spread = float(angular_separation_deg(ra0, dec0, ra, dec).max())
    near = lc_store.images_near(conn, ra0, dec0,
                                lc_store.neighbourhood_radius(conn, 0.0) + spread,
                                exclude_qc_failed=False)
    ids = [int(i) for i, m in zip(near["id"], near["mjd"])
           if int(i) not in exclude and (before_mjd is None or (np.isfinite(m) and m < before_mjd))]
    if not ids:
        return []
    rows = conn.execute(sa.select(images.c.id, images.c.path, images.c.kind, images.c.mjd,
                                  images.c.ra_center_deg, images.c.dec_center_deg,
                                  images.c.radius_deg, image_depths.c.footprint)
                        .select_from(images.outerjoin(image_depths,
                                                      image_depths.c.image_id == images.c.id))
                        .where(images.c.id.in_(ids))).mappings().all()
    out = [{k: r[k] for k in ("id", "path", "kind", "mjd")}
           for r in rows if _covers(r, ra, dec).any()]      # per image, all positions at once
    return sorted(out, key=lambda r: (r["mjd"] is None, r["mjd"] or 0.0, r["id"]))


def _covers(row, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Which positions (deg) the stored image ``row`` covers: inside its noise footprint
    (``footprint`` column) when it has one, else within ``radius_deg`` of its centre."""
    from dsa110_contimg.core.geometry import angular_separation_deg
    from dsa110_contimg.science.footprint import COVER_OUTSIDE, NoiseFootprint

    if row["footprint"] is not None:
        _, status = NoiseFootprint.from_bytes(row["footprint"]).depth_at(ra, dec)
        return np.asarray(status != COVER_OUTSIDE, bool)
    return np.asarray(angular_separation_deg(row["ra_center_deg"], row["dec_center_deg"], ra, dec)
                      <= (row["radius_deg"] or 0.0), bool)


def sources_covered(conn, path: str, sources: list[dict]) -> tuple[int | None, list[dict]]:
    """The stored image ``path`` (database form) and those of ``sources`` (``id``,
    ``ra_deg``, ``dec_deg``) it covers, by :func:`covering_images`' rule: a backfill job
    names the sources of every item, and an image measures only the positions it covers
    (none of the others gets a row, as forward photometry measures no position off the
    image). ``(None, sources)`` when the image is not stored."""
    import sqlalchemy as sa

    from dsa110_contimg.store.schema import image_depths, images

    row = conn.execute(sa.select(images.c.id, images.c.ra_center_deg, images.c.dec_center_deg,
                                 images.c.radius_deg, image_depths.c.footprint)
                       .select_from(images.outerjoin(image_depths,
                                                     image_depths.c.image_id == images.c.id))
                       .where(images.c.path == path)).mappings().first()
    if row is None or not sources:
        return (None if row is None else int(row["id"])), list(sources)
    on = _covers(row, np.array([float(s["ra_deg"]) for s in sources]),
                 np.array([float(s["dec_deg"]) for s in sources]))
    return int(row["id"]), [s for s, keep in zip(sources, on.tolist()) if keep]


def queue_backfill(conn, sources: list[dict], cfg, *, before_mjd: float | None = None,
                   exclude: tuple[int, ...] = (), origin: str = "daemon") -> int | None:
    """Queue a backfill job on ``conn`` (inside the caller's transaction) for ``sources``
    (``id``, ``ra_deg``, ``dec_deg``): one item per image covering any of them. Returns the
    job id, or None when no stored image covers them."""
    from dsa110_contimg.store.queue import insert_job

    imgs = covering_images(conn, [s["ra_deg"] for s in sources], [s["dec_deg"] for s in sources],
                           before_mjd=before_mjd, exclude=exclude)
    if not imgs:
        return None
    params = {"config": cfg.to_dict(), BACKFILL_JOB: [
        {"id": int(s["id"]), "ra_deg": float(s["ra_deg"]), "dec_deg": float(s["dec_deg"])}
        for s in sources]}
    # a photometry job (the daemon's workers claim these) whose params name the sources
    return insert_job(conn, params, [(r["path"], r["kind"], None) for r in imgs], now=time.time(),
                      origin=origin, data_id=f"{BACKFILL_JOB}:" + ",".join(
                          str(int(s["id"])) for s in sources))


def measure_backfill(path, cfg, sources: list[dict]):
    """Forced photometry of ``sources`` on one image (database-free). Raises the typed
    errors of :mod:`dsa110_contimg.core.errors` when the image cannot be read."""
    from dsa110_contimg.core.paths import fs_path
    from dsa110_contimg.pipeline.measure import open_image
    from dsa110_contimg.science.forced import measure_positions

    image, _kind, method, _notes = open_image(Path(fs_path(path)), "image", cfg)
    with image:
        options = {"nbeam": cfg.nbeam, "cluster_threshold": cfg.cluster_threshold} \
            if method == "forced" else {}
        return measure_positions(image, [s["ra_deg"] for s in sources],
                                 [s["dec_deg"] for s in sources], method=method, **options)


def store_backfill(conn, path: str, sources: list[dict], table, cfg) -> int:
    """Store one image's backfill measurements and recompute the sources' statistics
    (inside the caller's fenced write transaction). Returns the image id."""
    from dsa110_contimg.science.normalize import Correction, apply_correction
    from dsa110_contimg.science.variability import RunningStats

    image = product_store.image_by_path(conn, path)
    if image is None:
        raise LookupError(f"{path} is not a stored image")
    ids = np.array([int(s["id"]) for s in sources], np.int64)
    flux, err = np.asarray(table["peak_jyb"], float), np.asarray(table["peak_err_jyb"], float)
    norm_flux = norm_err = np.full(ids.size, np.nan)
    if image["norm_status"] == "ok" and image["norm_factor"]:
        corr = Correction(image["norm_factor"], image["norm_factor_err"] or 0.0,
                          image["norm_n_refs"] or 0, image["norm_n_refs"] or 0,
                          image["norm_scatter"] or np.nan, np.zeros(0, bool), True)
        norm_flux, norm_err = apply_correction(flux, err, corr)
    product_store.replace_source_measurements(conn, image["id"], ids, table.columns,
                                              norm_flux, norm_err)
    for s in sources:
        near = lc_store.images_near(conn, s["ra_deg"], s["dec_deg"],
                                    lc_store.neighbourhood_radius(conn, 0.0))
        keep = near["id"][near["norm_status"] == "ok"] if cfg.normalize else near["id"]
        f2, e2, m2, _ = lc_store.load_lightcurves(conn, [int(s["id"])], keep,
                                                  normalized=cfg.normalize)
        stats = RunningStats.from_lightcurves(f2, e2, m2) if f2.shape[1] else RunningStats.empty(1)
        lc_store.save_running_stats(conn, [int(s["id"])], stats.to_dict(), stats.metrics(),
                                    "normalized" if cfg.normalize else "raw")
    return int(image["id"])


def sources_to_backfill(conn, source_ids=None, *, monitor: bool = False, catalogs=None) -> list[dict]:
    """``id``, ``ra_deg``, ``dec_deg`` (weighted mean once detected) of the given sources,
    or of every monitor-list source: with ``catalogs`` (a
    :class:`~dsa110_contimg.store.catalogs.CatalogStore`), every position of its monitor
    list gets its source row first (inside the caller's transaction), so a position never
    measured yet (a list ingested after the images) is measured too."""
    from dsa110_contimg.store.sources import SourceQuery, list_sources, source_by_id

    if monitor:
        if catalogs is not None:
            ensure_monitor_sources(conn, catalogs)
        rows = list_sources(conn, SourceQuery(kinds=("monitor",), limit=None))
    else:
        rows = [r for r in (source_by_id(conn, int(i)) for i in source_ids or ()) if r is not None]
    return [{"id": r["id"], "ra_deg": r["ra_deg"], "dec_deg": r["dec_deg"]} for r in rows]


def forward_gaps(conn, measured) -> tuple[list[dict], np.ndarray]:
    """The service's own sources (new, blind) that the in-process workflow would have
    measured forward on a measured image and that it lacks, and the ids it counts as seen:
    for a :class:`~dsa110_contimg.pipeline.measure.MeasuredImage` measured without the
    database (a Dask worker), read before it is stored, once every earlier epoch is stored.

    The gaps: those first detected at an earlier epoch, on the image's pixels (its noise
    footprint) and not among its measured rows: ``id``, ``ra_deg``, ``dec_deg`` (the
    running weighted-mean position, as the in-process workflow reads it), as
    :func:`measure_backfill` and :func:`store_backfill` take them; none without a
    footprint (blind detection off). The seen ids (the image's ``own_seen``): the field's
    own sources and monitor rows of this read
    (:data:`~dsa110_contimg.pipeline.inflight.SEEN_KINDS`) but those on the footprint
    first detected at the image's epoch or later (made by another writer, whose backfill
    did not cover this image, not stored yet). The store-time check
    (:func:`~dsa110_contimg.pipeline.inflight.measure_missed`) measures every other own
    source on the image -- those and any made after this read -- so each is measured once."""
    from dsa110_contimg.pipeline.inflight import SEEN_KINDS
    from dsa110_contimg.pipeline.transients import OWN_SURVEY
    from dsa110_contimg.science.footprint import COVER_OUTSIDE, NoiseFootprint
    from dsa110_contimg.store import detections as det_store

    summary = measured.image
    (ra0, dec0), radius = summary.center_deg, summary.radius_deg
    read = det_store.own_sources_near(conn, ra0, dec0, radius, kinds=SEEN_KINDS)
    if measured.footprint is None or summary.mjd is None:
        return [], read["id"]
    detected = np.isin(read["kind"], ("new", "blind"))
    own = {k: v[detected] for k, v in read.items()}
    if not own["id"].size:
        return [], read["id"]
    first = det_store.detection_positions(conn, own["id"].tolist())
    first_mjd = np.array([np.nan if first.get(int(i)) is None or first[int(i)][5] is None
                          else float(first[int(i)][5]) for i in own["id"]])
    _, status = NoiseFootprint.from_bytes(measured.footprint).depth_at(own["ra_deg"], own["dec_deg"])
    cat = measured.cat
    surveys = (np.asarray([str(x) for x in cat["survey"]], object) if "survey" in cat.colnames
               else np.full(len(cat), "", object))
    have = {str(n) for n, sv in zip(cat["source_id"], surveys) if sv == OWN_SURVEY}
    wanted = (status != COVER_OUTSIDE) & ~np.isin(own["catalog_id"].astype(str), list(have))
    earlier = first_mjd < float(summary.mjd)                  # NaN: never detected
    keep = wanted & earlier
    gaps = [{"id": int(i), "ra_deg": float(r), "dec_deg": float(d)}
            for i, r, d in zip(own["id"][keep], own["ra_deg"][keep], own["dec_deg"][keep])]
    later = own["id"][wanted & ~earlier & np.isfinite(first_mjd)]
    return gaps, read["id"][~np.isin(read["id"], later)]


def ensure_monitor_sources(conn, catalogs) -> int:
    """Give every position of the monitor list (``monitor`` survey of ``catalogs``) its
    ``sources`` row (kind ``monitor``, never a flux reference; insert-if-absent, as the
    image's ``store`` step makes them). Returns the number of positions in the list (0 when
    none was ingested)."""
    from dsa110_contimg.core.enums import MONITOR_SURVEY

    if not catalogs.path_of(MONITOR_SURVEY).exists():
        return 0
    mon = catalogs.survey(MONITOR_SURVEY).all_rows(columns=[])
    if len(mon):
        product_store.upsert_sources(conn, MONITOR_SURVEY, [str(s) for s in mon["source_id"]],
                                     np.asarray(mon["ra_deg"], float),
                                     np.asarray(mon["dec_deg"], float), kind="monitor")
    return len(mon)


__all__ = ["BACKFILL_JOB", "covering_images", "ensure_monitor_sources", "forward_gaps", "queue_backfill",
           "measure_backfill", "store_backfill", "sources_covered", "sources_to_backfill"]
