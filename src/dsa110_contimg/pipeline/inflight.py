"""Own sources made while an image was in flight: measured in the image's transaction.

An image's positions -- the catalogue, the monitor list and the service's own (new,
blind) sources -- are read when it is measured, before its write transaction. Another
worker may store an image meanwhile that creates an own source this image covers (a new
source, its detection's ``sources`` row), or a monitor position may get its ``sources``
row (``sources backfill --monitor``, or the first image covering it). The creating
transaction's backfill job covers only the images stored before it, so without this the
in-flight image would never measure the source.

:func:`measure_missed` runs in the image's write transaction (the write lock held, so no
source can be created until it commits): the own sources and monitor rows of the field
that were not among those read at measurement time (``MeasuredImage.own_seen``), that the
image does not already measure under the same name (a planned source joined to one made
meanwhile) and that lie on its pixels (the forward measurement's rule) are measured now
with the forced estimator on the image's own background maps, and appended to its
measurement rows -- stored, normalised and counted in the running statistics like every
other row, once (the table's key is image and source). Positions deg, fluxes Jy/beam.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import structlog

from dsa110_contimg.store import detections as det_store

log = structlog.get_logger("dsa110_contimg.pipeline.inflight")

#: kinds of the sources read at measurement time besides the catalogue (their ids are the
#: image's ``own_seen``)
SEEN_KINDS = ("new", "blind", "monitor")


def _missing(conn, ctx) -> dict | None:
    """The field's own sources and monitor rows the measured image neither read nor holds."""
    from dsa110_contimg.pipeline.transients import _rows_catalog_ids

    measured = ctx.measured
    own = det_store.own_sources_near(conn, ctx.ra_deg, ctx.dec_deg, ctx.radius_deg,
                                     kinds=SEEN_KINDS)
    fresh = ~np.isin(own["id"], measured.own_seen)
    if not fresh.any():
        return None
    own = {k: v[fresh] for k, v in own.items()}
    names, surveys = _rows_catalog_ids(measured, ctx.cfg.catalog)
    held = {(str(s), str(n)) for s, n in zip(surveys.tolist(), names.tolist())}
    keep = np.array([(str(s), str(c)) not in held
                     for s, c in zip(own["survey"].tolist(), own["catalog_id"].tolist())], bool)
    return {k: v[keep] for k, v in own.items()} if keep.any() else None


def _on_image(image, own: dict) -> np.ndarray:
    """Which rows the measurement would have taken: own sources on the pixel grid, monitor
    positions on unblanked pixels (the catalogue footprint's rule)."""
    from dsa110_contimg.catalogs.region import Footprint

    x, y = image.world_to_pixel(own["ra_deg"], own["dec_deg"])
    ny, nx = image.shape
    on = np.isfinite(x) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    monitor = own["kind"] == "monitor"
    if monitor.any():
        on[monitor] = Footprint(image).contains(own["ra_deg"][monitor], own["dec_deg"][monitor])
    return on


def _appended(measured, table, own: dict):
    """``measured`` with the rows of ``table`` (measurements of ``own``) appended."""
    from dsa110_contimg.pipeline.measure import append_rows
    from dsa110_contimg.science.results import MeasurementTable

    old = measured.table
    cols = {}
    for name, values in old.columns.items():
        add = table.columns[name] if name in table.columns else np.full(
            len(table), np.nan if values.dtype.kind == "f" else 0, dtype=values.dtype)
        cols[name] = np.concatenate([values, np.asarray(add, dtype=values.dtype)])
    cat = append_rows(measured.cat, {
        "source_id": np.asarray(own["catalog_id"], str), "ra_deg": own["ra_deg"],
        "dec_deg": own["dec_deg"], "flux_mjy": np.full(own["id"].size, np.nan),
        "survey": np.asarray(own["survey"], object), "kind": np.asarray(own["kind"], object)})
    return replace(measured, table=MeasurementTable(cols, old.meta), cat=cat,
                   own_seen=np.r_[measured.own_seen, own["id"]])


def _measure(measured, cfg, own: dict):
    """The forced measurement of the ``own`` rows on the image's pixels: ``(table, own)``
    restricted to those on the image (``table`` None when none is)."""
    from dsa110_contimg.pipeline.measure import _measurement_options, open_image
    from dsa110_contimg.science.forced import measure_positions

    image, _kind, _method, _notes = open_image(measured.path, measured.kind, cfg)
    with image:
        on = _on_image(image, own)
        if not on.any():
            return None, own
        own = {k: v[on] for k, v in own.items()}
        options = _measurement_options(measured.method, cfg)
        maps = getattr(measured, "maps", None)
        if (maps is not None and maps.source == "estimated"
                and measured.method in ("forced", "peak")):
            options["maps"] = maps                      # the plane's maps, built once
        return measure_positions(image, own["ra_deg"], own["dec_deg"], method=measured.method,
                                 **options), own


def _queue(conn, ctx, own: dict, why: str) -> None:
    """A backfill job for the image (stored by this transaction) and ``own``: the image
    could not be read again here; a worker measures it, or fails the item with the reason."""
    import time

    from dsa110_contimg.pipeline.backfill import BACKFILL_JOB
    from dsa110_contimg.store.queue import insert_job

    sources = [{"id": int(i), "ra_deg": float(r), "dec_deg": float(d)}
               for i, r, d in zip(own["id"], own["ra_deg"], own["dec_deg"])]
    job = insert_job(conn, {"config": ctx.cfg.to_dict(), BACKFILL_JOB: sources},
                     [(ctx.path, ctx.kind, None)], now=time.time(), origin="daemon",
                     data_id=f"{BACKFILL_JOB}:" + ",".join(str(s["id"]) for s in sources))
    log.error("inflight_sources_queued", path=ctx.path, sources=len(sources), job_id=job,
              error=why)
    ctx.notes.append(f"{len(sources)} source(s) made while the image was measured could not be "
                     f"measured at store ({why}): backfill job {job}")


def measure_missed(conn, ctx) -> int:
    """Measure on the image the own sources made while it was in flight (module docstring);
    inside the image's write transaction. Returns how many were measured. An image whose
    own sources were never read (``own_seen`` None: measured without the database, and no
    gaps read for it, :func:`dsa110_contimg.pipeline.backfill.forward_gaps`) is left as it
    is; an image that cannot be read again gets a backfill
    job for them instead (same transaction)."""
    from dsa110_contimg.core.errors import PhotometryError

    measured = ctx.measured
    if getattr(measured, "own_seen", None) is None:
        return 0
    own = _missing(conn, ctx)
    if own is None:
        return 0
    try:
        table, own = _measure(measured, ctx.cfg, own)
    except PhotometryError as exc:
        _queue(conn, ctx, own, str(exc))
        return 0
    if table is None:
        return 0
    ctx.measured = _appended(measured, table, own)
    # the reference inputs were prepared per row before these rows: the step makes them again
    ctx.prepared.pop("normalise", None)
    ctx.notes.append(f"{own['id'].size} source(s) made while the image was measured "
                     "(another image's new sources or monitor rows): measured at store")
    return int(own["id"].size)


__all__ = ["SEEN_KINDS", "measure_missed"]
