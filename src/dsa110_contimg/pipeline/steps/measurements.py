"""Step ``store``: the image row, its catalogue sources and its measurements.

Prepare (read connection): the ids of the catalogue sources already stored (source
rows never change once written). Write: measure the own sources made while the image was
in flight (:func:`dsa110_contimg.pipeline.inflight.measure_missed`), insert the missing
sources, create or update
the image row (by path; :func:`dsa110_contimg.store.products.store_image_row`, which
removes the measurements of an image stored before) and stage its measurement rows
(:meth:`~dsa110_contimg.pipeline.steps.base.ImageContext.stage_measurements`): the
``normalise`` step inserts them once with their normalised fluxes (the runner inserts
them before any step that does not work with staged rows); sets ``ctx.image_id``,
``ctx.source_ids`` and ``ctx.remeasured``.
"""

from __future__ import annotations

import json
import time

import numpy as np

from dsa110_contimg.pipeline import inflight
from dsa110_contimg.pipeline.steps.base import ImageContext, Step
from dsa110_contimg.store import products as product_store
from dsa110_contimg.store.values import column_strings


def _catalog_ids(ctx: ImageContext) -> list[str]:
    return column_strings(ctx.measured.cat["source_id"])


def image_row(ctx: ImageContext) -> dict:
    """The ``images`` row of the measured image."""
    measured, cfg = ctx.measured, ctx.cfg
    image, table = measured.image, measured.table
    beam = image.beam
    rms = table["local_rms_jyb"]
    median_rms = float(np.nanmedian(rms)) if np.isfinite(rms).any() else None
    return {
        "path": ctx.path, "content_id": measured.content_id or product_store.content_id(measured.path),
        "kind": ctx.kind, "data_id": ctx.data_id, "mjd": ctx.mjd, "freq_hz": image.freq_hz,
        "beam_major_arcsec": beam.major_arcsec if beam else None,
        "beam_minor_arcsec": beam.minor_arcsec if beam else None,
        "beam_pa_deg": beam.pa_deg if beam else None, "beam_source": image.beam_source,
        "ra_center_deg": ctx.ra_deg, "dec_center_deg": ctx.dec_deg, "radius_deg": ctx.radius_deg,
        "median_rms_jyb": median_rms, "method": ctx.method, "catalog": cfg.catalog,
        "n_sources": len(table), "n_success": table.n_success, "notes": json.dumps(ctx.notes),
        "measured_at": time.time(), "data_digest": data_digest(ctx),
    }


def data_digest(ctx: ImageContext) -> str:
    """The measured file's data identity (computed from the file when the measurement
    did not carry it)."""
    measured = ctx.measured
    return getattr(measured, "data_digest", None) or product_store.data_digest(measured.path)


def prepare(conn, ctx: ImageContext) -> None:
    if ctx.catalogue_ids is not None:        # read by an earlier prepare on this connection
        ctx.prepared["store"] = ctx.catalogue_ids
        return
    ctx.prepared["store"] = product_store.existing_source_ids(conn, ctx.cfg.catalog,
                                                              _catalog_ids(ctx))


def write(conn, ctx: ImageContext) -> dict:
    ctx.remeasured = product_store.image_id_by_path(conn, ctx.path) is not None
    inflight.measure_missed(conn, ctx)       # own sources made since it was measured
    # rows of several surveys: the catalogue, monitor lists, the service's own sources
    ctx.source_ids = product_store.upsert_table_sources(conn, ctx.cfg.catalog, ctx.measured.cat,
                                                        known=ctx.prepared.get("store"))
    ctx.image_id = product_store.store_image_row(conn, image_row(ctx), len(ctx.source_ids),
                                                 source_ids=ctx.source_ids)
    ctx.stage_measurements(ctx.measured.table.columns)
    return {"image_id": ctx.image_id, "remeasured": ctx.remeasured}


STEP = Step("store", write, prepare, staged_rows=True)
