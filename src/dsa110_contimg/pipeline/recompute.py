"""Recompute what a field's epochs feed after the set of epochs or their scale changed.

When an image is taken out of the light curves or put back (``images exclude`` /
``include``), or earlier images are normalised again, everything derived from a field's
epochs must follow: the reference baselines and the normalisations that used them, the
running statistics (eta, V, ...) of the sources concerned and their ESE evaluation.
:func:`recompute_sources` does that inside the caller's write transaction, reading only
the field (the images whose footprint can hold the sources) and the sources named.

The rules are those of the per-image steps: baselines as
:func:`dsa110_contimg.pipeline.steps.normalise.update_baselines`, a correction as
:func:`~dsa110_contimg.pipeline.steps.normalise.correct_image` with each image's stored
references, running sums exactly recomputed over the field's usable epochs
(:meth:`~dsa110_contimg.science.variability.RunningStats.from_lightcurves`, which adds
the epochs in time order as the running update does, so a recompute over the same
epochs gives the same numbers bit for bit), ESE rows as
:func:`dsa110_contimg.pipeline.steps.ese.ese_rows` with the full-history template search.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from dsa110_contimg.pipeline.steps.base import FieldImages, ImageContext
from dsa110_contimg.store import lightcurves as lc_store


def field_context(conn, cfg, ra_deg: float, dec_deg: float, radius_deg: float,
                  source_ids: Sequence[int]) -> ImageContext:
    """A step context for a field without a new image: centre (ra, dec) and footprint
    radius in deg, the sources concerned; the field is read on ``conn``."""
    ctx = ImageContext(image_id=None, path="", mjd=None, ra_deg=float(ra_deg),
                       dec_deg=float(dec_deg), radius_deg=float(radius_deg), kind="image",
                       remeasured=True, source_ids=np.asarray(source_ids, np.int64),
                       method=cfg.method, cfg=cfg)
    ctx.field_images(conn)
    return ctx


def renormalise_field(conn, ctx: ImageContext, source_ids: Sequence[int],
                      epoch_mjd: float | None = None) -> set[int]:
    """Recompute the baselines of those of ``source_ids`` whose baseline window the changed
    epoch (MJD ``epoch_mjd``; None: any) falls in, or that are still being established (the
    rule of the normalise step), over the field's epochs, and normalise again every field
    image that used a reference whose baseline moved. Returns the ids of the images
    normalised again."""
    from dsa110_contimg.pipeline.steps.normalise import correct_image, update_baselines

    if not ctx.cfg.normalize:
        return set()
    held = lc_store.load_baselines(conn, source_ids)
    if epoch_mjd is not None:
        held = {s: b for s, b in held.items()
                if b["n_points"] < ctx.cfg.norm_baseline_epochs or b.get("through_mjd") is None
                or epoch_mjd <= b["through_mjd"]}
    if not held:
        return set()
    field: FieldImages = ctx.field_images(conn)
    changed = update_baselines(conn, sorted(held), field.ids, ctx.cfg)
    if not changed:
        return set()
    baselines = lc_store.load_baselines(conn, sorted(held))
    done = set()
    for img_id, refs_json, status in zip(field.ids, list(field.norm_ref_ids),
                                         list(field.norm_status)):
        if not refs_json or status == "not_requested":
            continue
        refs = np.array(json.loads(refs_json), np.int64)
        if not changed.intersection(refs.tolist()):
            continue
        missing = [int(s) for s in refs if int(s) not in baselines]
        if missing:
            baselines.update(lc_store.load_baselines(conn, missing))
        ids, f, e, flux = lc_store.image_fluxes(conn, int(img_id), refs)
        correct_image(conn, ctx, int(img_id), refs, baselines, flux=flux, all_flux=f, all_err=e,
                      all_ids=ids)
        done.add(int(img_id))
    return done


def recompute_running_stats(conn, ctx: ImageContext, source_ids: Sequence[int]) -> int:
    """Running statistics of ``source_ids`` recomputed over the field's usable epochs (the
    normalised ones when normalisation is on); returns how many sources were written."""
    from dsa110_contimg.science.variability import RunningStats

    src = np.asarray(source_ids, np.int64)
    if not src.size:
        return 0
    cfg = ctx.cfg
    field = ctx.field_images(conn)
    keep = field.normalised_ids() if cfg.normalize else field.ids
    flux, err, mjd, _ = lc_store.load_lightcurves(conn, src, keep, normalized=cfg.normalize)
    stats = (RunningStats.from_lightcurves(flux, err, mjd) if flux.shape[1]
             else RunningStats.empty(src.size))
    lc_store.save_running_stats(conn, src, stats.to_dict(), stats.metrics(),
                                "normalized" if cfg.normalize else "raw")
    return int(src.size)


def reevaluate_ese(conn, ctx: ImageContext, source_ids: Sequence[int]) -> int:
    """ESE rows of ``source_ids`` evaluated again (full-history search) and stored, with
    their alerts; returns how many are flagged."""
    from dsa110_contimg.pipeline.steps.ese import ese_rows, write_ese_rows

    if not ctx.cfg.detect_ese or not len(source_ids):
        return 0
    ctx.source_ids = np.asarray(source_ids, np.int64)
    ctx.written_stats = None
    rows, flagged = ese_rows(conn, ctx, ctx.cfg)
    write_ese_rows(conn, rows, image_id=None, mjd=None)
    return flagged


def recompute_sources(conn, cfg, *, ra_deg: float, dec_deg: float, radius_deg: float,
                      source_ids: Sequence[int], epoch_mjd: float | None = None) -> dict:
    """Bring everything the field's epochs feed up to date for ``source_ids``.

    Inside the caller's write transaction: baselines and normalisations
    (:func:`renormalise_field`), then the running statistics and ESE evaluation of
    ``source_ids`` and of every source measured on an image normalised again.
    ``(ra_deg, dec_deg)`` and ``radius_deg`` (deg) are the centre and footprint radius
    of an image of the field; ``epoch_mjd`` the MJD of the epoch that changed (None:
    every baseline of the sources is recomputed). Returns ``{"renormalised": [image ids], "sources": n,
    "ese_flagged": n}``.
    """
    from dsa110_contimg.store.products import image_source_ids

    ctx = field_context(conn, cfg, ra_deg, dec_deg, radius_deg, source_ids)
    renormalised = renormalise_field(conn, ctx, source_ids, epoch_mjd)
    every = set(int(s) for s in source_ids)
    if renormalised:
        every |= image_source_ids(conn, sorted(renormalised))
    src = np.array(sorted(every), np.int64)
    n = recompute_running_stats(conn, ctx, src)
    flagged = reevaluate_ese(conn, ctx, src)
    return {"renormalised": sorted(renormalised), "sources": n, "ese_flagged": flagged}


__all__ = ["field_context", "recompute_running_stats", "recompute_sources", "reevaluate_ese",
           "renormalise_field"]
