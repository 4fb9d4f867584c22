"""Step ``qc``: the image's quality-control verdict (:mod:`dsa110_contimg.science.qc`).

Prepare (read connection, before the write lock): the QC metrics of the field's recent
images and the evaluation itself (image-wide statistics measured with the image, the
flux scale of compact catalogue sources). Write: the verdict on the image row; a failed
image's measurements get the ``QC_FAILED`` flag and stay out of normalisation and light
curves. The result is the :class:`~dsa110_contimg.science.qc.QCResult` (None when QC is
off).
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.pipeline.steps.base import ImageContext, Step
from dsa110_contimg.science.results import Flag
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store.values import clean

#: The field's QC history is read within at least this radius (deg).
MIN_HISTORY_RADIUS_DEG = 0.25


def compact_rows(ctx: ImageContext) -> np.ndarray:
    """Catalogue rows not known to be resolved in the image's beam (the one rule:
    :mod:`dsa110_contimg.catalogs.compactness`)."""
    from dsa110_contimg.catalogs.compactness import RESOLVED

    klass, _ = ctx.compactness()
    return klass != RESOLVED


def field_history(conn, ctx: ImageContext) -> list[dict]:
    """QC metrics of the field's recent images before this one (a read): the latest 20 of
    the field window (docs/science.md §12)."""
    return lc_store.qc_history(conn, ctx.ra_deg, ctx.dec_deg,
                               max(ctx.radius_deg, MIN_HISTORY_RADIUS_DEG),
                               before_mjd=ctx.mjd, exclude_path=ctx.path,
                               since_mjd=ctx.window_start())


def prepare(conn, ctx: ImageContext) -> None:
    from dsa110_contimg.science.qc import QCLimits, evaluate_image_qc

    cfg, cat, image = ctx.cfg, ctx.measured.cat, ctx.measured.image
    limits = QCLimits(max_rms_jyb=cfg.qc_max_rms_jyb, require_beam=(ctx.kind == "image"))
    flux = np.asarray(cat["flux_mjy"], float) if "flux_mjy" in cat.colnames else None
    ctx.prepared["qc"] = evaluate_image_qc(image, ctx.measured.table, catalog_flux_mjy=flux,
                                           history=field_history(conn, ctx), limits=limits,
                                           compact=compact_rows(ctx))


def write(conn, ctx: ImageContext):
    from dsa110_contimg.store.products import set_image_fields

    qc = ctx.prepared["qc"]
    set_image_fields(conn, ctx.image_id, qc_status=qc.status, qc_reasons=list(qc.reasons),
                     qc_metrics=clean(qc.metrics))
    if qc.status == "failed":
        ctx.flag_measurements(conn, Flag.QC_FAILED)
    if qc.status != "passed":
        ctx.notes.extend(f"QC {qc.status}: {r}" for r in qc.reasons)
    return qc


def failed(ctx: ImageContext) -> bool:
    """Whether the image failed quality control (False when QC is off)."""
    qc = ctx.results.get("qc")
    return qc is not None and qc.status == "failed"


STEP = Step("qc", write, prepare, enabled=lambda cfg: bool(cfg.qc), staged_rows=True)
