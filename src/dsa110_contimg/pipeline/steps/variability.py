"""Step ``variability``: the running statistics of the image's sources
(:class:`dsa110_contimg.science.variability.RunningStats`).

Inside the image's transaction, after ``normalise``: each source's running sums are
updated in O(1) with this epoch (normalised fluxes when normalisation is on, raw ones
otherwise), or recomputed exactly from its light curve over the field's images when
the epoch arrived out of time order, the image was measured before, an earlier image
was normalised again, or the stored series kind (raw/normalised) differs. An image
that failed QC, could not be normalised or was measured with a fallback method adds
no epoch. The result is ``{"updated", "recomputed", "series", "used"}``.
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.pipeline.steps import qc as qc_step
from dsa110_contimg.pipeline.steps.base import ImageContext, Step
from dsa110_contimg.store import lightcurves as lc_store


def apply_norm(table, norm: dict):
    """Normalised (flux, err) of a table from a stored correction summary."""
    from dsa110_contimg.science.normalize import Correction, apply_correction

    corr = Correction(norm["factor"], norm["factor_err"], norm["n_refs"], norm["n_refs"],
                      norm.get("scatter", np.nan), np.zeros(0, bool), True)
    return apply_correction(np.asarray(table["peak_jyb"], float),
                            np.asarray(table["peak_err_jyb"], float), corr)


def _series(ctx: ImageContext, norm: dict):
    """This epoch's (flux, err) per source as its light curve holds it."""
    table = ctx.measured.table
    if ctx.cfg.normalize and norm.get("status") == "ok":
        return apply_norm(table, norm)
    return np.asarray(table["peak_jyb"], float), np.asarray(table["peak_err_jyb"], float)


def _kept_out_reason(ctx: ImageContext, norm: dict) -> str:
    return norm.get("reason") or ("image failed quality control" if qc_step.failed(ctx)
                                  else "not normalisable")


def write(conn, ctx: ImageContext) -> dict:
    from dsa110_contimg.science.variability import RunningStats, needs_recompute

    cfg, table = ctx.cfg, ctx.measured.table
    norm = ctx.results.get("normalise") or {}
    kind = "normalized" if cfg.normalize else "raw"
    stored, present, stored_kind, stored_keys = lc_store.load_running_stats(conn, ctx.source_ids,
                                                                            with_keys=True)
    stats = RunningStats.from_dict(stored)
    usable_image = not qc_step.failed(ctx) and \
        (not cfg.normalize or norm.get("status") == "ok") and not norm.get("method_mismatch")
    flux, err = _series(ctx, norm)
    ok = np.asarray(table["success"], bool) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    mjd = np.nan if ctx.mjd is None else float(ctx.mjd)
    recompute = present & (stored_kind != kind)
    recompute |= bool(ctx.remeasured) & present
    if usable_image:
        recompute |= ok & np.asarray(needs_recompute(stats.last_mjd, np.full(len(flux), mjd)), bool)
    if norm.get("renormalised"):
        recompute |= present   # their earlier epochs changed scale
    idx = np.flatnonzero(~recompute & ok) if usable_image else np.array([], int)
    if idx.size:
        stats.update(idx, flux[idx], err[idx], mjd)
    sel = np.flatnonzero(recompute)
    if sel.size:
        field = ctx.field_images(conn, full=True)
        use = field.norm_status == "ok" if cfg.normalize else np.ones(field.ids.size, bool)
        f2, e2, m2, _ = lc_store.load_lightcurves(conn, ctx.source_ids[sel], field.ids[use],
                                                  normalized=cfg.normalize, epochs=field.mjd[use])
        stats.assign(sel, RunningStats.from_lightcurves(f2, e2, m2) if f2.shape[1]
                     else RunningStats.empty(sel.size))
    updated = np.zeros(len(flux), bool)
    updated[idx] = True
    changed = np.flatnonzero(recompute | updated | ~present)
    if changed.size:
        sub = stats.take(changed)
        lc_store.save_running_stats(conn, ctx.source_ids[changed], sub.to_dict(), sub.metrics(), kind,
                                    present=present[changed], stored_keys=stored_keys[changed])
    ctx.written_stats = (lc_store.running_stats_signature(conn, ctx.source_ids),
                         lc_store.as_stored(stats.to_dict()))
    if not usable_image:
        ctx.notes.append(f"fluxes kept out of the light curves: {_kept_out_reason(ctx, norm)}")
    return {"updated": int(idx.size), "recomputed": int(sel.size), "series": kind,
            "used": bool(usable_image)}


STEP = Step("variability", write)
