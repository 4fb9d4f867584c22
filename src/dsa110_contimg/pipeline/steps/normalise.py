"""Step ``normalise``: the image's flux-scale correction (docs/science.md, Normalisation).

Prepare (no database): the reference-selection inputs of the catalogue in this beam
(:func:`dsa110_contimg.pipeline.references.reference_inputs`). Write, inside the image's
transaction:

1. the references (:func:`dsa110_contimg.pipeline.references.choose_references`) and
   every decision with its reason;
2. their baselines (median of their first ``norm_baseline_epochs`` raw epochs, >= 3
   points; :func:`dsa110_contimg.science.normalize.reference_baselines`), recomputed
   while still being established or when this image falls inside their window;
3. the correction (clipped median of flux / baseline, >= ``norm_min_refs`` references;
   :func:`dsa110_contimg.science.normalize.compute_correction`) and the normalised
   fluxes: the image's measurement rows, staged by the ``store`` step, are inserted here
   with them (each row written once; an image not normalised gets its rows without);
4. the stability verdict of references with complete baselines;
5. every earlier image of the field that used a reference whose baseline moved is
   normalised again.

The result is a summary dict (``status``, ``factor``, ``factor_err``, ``n_refs``,
``scatter``, ``reason``, ``method``) with the ids of the images normalised again
(``renormalised``).
"""

from __future__ import annotations

import json

import numpy as np

from dsa110_contimg.pipeline import references
from dsa110_contimg.pipeline.steps import qc as qc_step
from dsa110_contimg.pipeline.steps.base import ImageContext, Step
from dsa110_contimg.store import lightcurves as lc_store


def prepare(conn, ctx: ImageContext) -> None:
    if ctx.method == ctx.cfg.method:
        ctx.prepared["normalise"] = references.reference_inputs(
            ctx.measured.cat, ctx.measured.image, ctx.compactness())


def _refused(conn, ctx: ImageContext, summary: dict) -> dict | None:
    """The summary of an image that is not normalised at all (method fallback, QC failed),
    its status stored; None when the image goes on to be normalised."""
    cfg = ctx.cfg
    if ctx.method is not None and ctx.method != cfg.method:
        # light curves never mix methods silently: a 'peak' fallback stays out of them
        reason = (f"method mismatch: measured with '{ctx.method}' instead of the configured "
                  f"'{cfg.method}' (no beam); kept out of the light curves")
        summary.update(method_mismatch=True, reason=reason)
        if cfg.normalize:
            _store_normalisation(conn, ctx, ctx.image_id, status="failed", reason=reason)
            summary.update(status="failed")
        return summary
    if not cfg.normalize:
        return summary
    if qc_step.failed(ctx):
        _store_normalisation(conn, ctx, ctx.image_id, status="failed",
                             reason="image failed quality control")
        summary.update(status="failed", reason="image failed quality control")
        return summary
    return None


def write(conn, ctx: ImageContext) -> dict:
    summary = {"status": "not_requested", "renormalised": set()}
    refused = _refused(conn, ctx, summary)
    if refused is not None:
        return refused
    cfg, table = ctx.cfg, ctx.measured.table
    inputs = ctx.prepared.get("normalise") or references.reference_inputs(ctx.measured.cat,
                                                                          ctx.measured.image)
    baselines = lc_store.load_baselines(conn, ctx.source_ids)
    unstable = [s for s, b in baselines.items() if not b["valid"]]
    stable = ~np.isin(np.asarray(ctx.source_ids, np.int64), np.array(unstable, np.int64))
    ref_idx, choices, counts, method = references.choose_references(conn, ctx, stable, baselines,
                                                                    inputs)
    from dsa110_contimg.store.images import save_reference_choices

    save_reference_choices(conn, ctx.image_id, choices)
    ref_ids = ctx.source_ids[ref_idx]
    changed = _maintain_baselines(conn, ctx, ref_ids, baselines)
    if changed is not None:
        baselines = lc_store.load_baselines(conn, ctx.source_ids)
    flux = np.asarray(table["peak_jyb"], float)
    corr = correct_image(conn, ctx, ctx.image_id, ref_ids, baselines, flux=flux[ref_idx],
                         all_flux=flux, all_err=np.asarray(table["peak_err_jyb"], float),
                         all_ids=ctx.source_ids, method=method,
                         few_refs_reason=references.few_refs_reason(counts, ref_idx.size, cfg))
    summary.update(corr)
    summary["method"] = method
    if corr["status"] == "ok" and ctx.mjd is not None:
        # ``baselines`` is as stored: read again above when any was recomputed
        judged = [s for s, b in baselines.items() if b["n_points"] >= cfg.norm_baseline_epochs]
        if judged:
            check_reference_stability(conn, ctx, judged)
    if changed:
        summary["renormalised"] = _renormalise_field(conn, ctx, changed, baselines)
    if corr["status"] == "ok":
        redone = renormalise_without_variables(conn, ctx)
        if redone:
            summary["renormalised"] |= redone
            ctx.notes.append(f"normalised {len(redone)} earlier image(s) again without references "
                             "that have since become ESE candidates")
        earlier = normalise_pending(conn, ctx, ctx.source_ids[ref_idx], baselines, method)
        if earlier:
            summary["renormalised"] |= earlier
            ctx.notes.append(f"normalised {len(earlier)} earlier image(s) of the field that had "
                             "too few references, with this image's references")
    if summary["renormalised"]:
        ctx.notes.append(f"re-normalised {len(summary['renormalised'])} earlier image(s) as "
                         "reference baselines were established")
    return summary


def _maintain_baselines(conn, ctx: ImageContext, ref_ids, baselines) -> set[int] | None:
    """Recompute the baselines still being established or whose first-epochs window this
    image falls in: of the references chosen now and of every source of the image that
    already has one (it may be chosen on another image). Returns the ids whose baseline
    changed, or None when none needed a recompute."""
    cfg = ctx.cfg
    mjd = np.inf if ctx.mjd is None else ctx.mjd
    maintained = set(int(s) for s in ref_ids) | set(baselines)
    needs = sorted(s for s in maintained
                   if baselines.get(s, {}).get("n_points", 0) < cfg.norm_baseline_epochs
                   or mjd < (baselines[s].get("through_mjd") or -np.inf))
    if not needs:
        return None
    return update_baselines(conn, needs, ctx.field_images(conn, full=True).ids, cfg,
                            staged=ctx if ctx.measurements_staged else None)


def _renormalise_field(conn, ctx: ImageContext, changed: set[int], baselines) -> set[int]:
    """Normalise again the field's images (every epoch) that used a reference whose baseline
    moved."""
    field = ctx.field_images(conn, full=True)
    done = set()
    for img_id, refs_json, status in zip(field.ids, list(field.norm_ref_ids),
                                         list(field.norm_status)):
        if int(img_id) == ctx.image_id or not refs_json or status == "not_requested":
            continue
        refs = np.array(json.loads(refs_json), np.int64)
        if not changed.intersection(refs.tolist()):
            continue
        ids, f, e, flux = lc_store.image_fluxes(conn, int(img_id), refs)
        correct_image(conn, ctx, int(img_id), refs, baselines, flux=flux, all_flux=f, all_err=e,
                      all_ids=ids)
        done.add(int(img_id))
    return done


#: At most this many earlier un-normalised images of the field are normalised per image
#: (inside its transaction: the write lock is held for a bounded time; the rest follow
#: with the next images of the field or ``images renormalise``).
PENDING_BATCH = 8
#: The stored reasons (their class, before the first ':') of images that wait for references.
PENDING_REASONS = ("too few references (no bright sources)",
                   "too few references (compact-source test)",
                   "too few references (baselines not yet established)")


def pending_images(conn, field, exclude: int | None = None) -> list[int]:
    """Ids of the field's images not normalised for lack of references (not for QC, a
    method mismatch or disagreeing references), earliest MJD first."""
    from dsa110_contimg.store.images import norm_reasons

    failed = [int(i) for i, st in zip(field.ids, field.norm_status)
              if st == "failed" and int(i) != exclude]
    if not failed:
        return []
    reasons = norm_reasons(conn, failed)
    order = {int(i): m for i, m in zip(field.ids, field.mjd)}
    keep = [i for i in failed
            if (reasons.get(i) or "").split(":", 1)[0].strip() in PENDING_REASONS]
    return sorted(keep, key=lambda i: (np.nan_to_num(order.get(i, np.inf), nan=np.inf), i))


def normalise_pending(conn, ctx: ImageContext, ref_ids, baselines, method,
                      limit: int | None = None) -> set[int]:
    """Normalise up to ``limit`` earlier images of the field window that had too few references,
    with the references (and baselines) of the image just normalised. Returns the ids
    normalised (``ok``); an image whose references still do not suffice keeps its
    reason (``limit`` None: ``PENDING_BATCH``)."""
    done = set()
    limit = PENDING_BATCH if limit is None else limit
    for img_id in pending_images(conn, ctx.recent_field(conn), ctx.image_id)[:limit]:
        ids, f, e, flux = lc_store.image_fluxes(conn, img_id, np.asarray(ref_ids, np.int64))
        out = correct_image(conn, ctx, img_id, ref_ids, baselines, flux=flux, all_flux=f,
                            all_err=e, all_ids=ids, method=method)
        if out["status"] == "ok":
            done.add(img_id)
    return done


def renormalise_without_variables(conn, ctx: ImageContext, limit: int | None = None) -> set[int]:
    """Normalise again (up to ``limit``, None: ``PENDING_BATCH``) the normalised images of the
    field window whose references include a source that has since become an ESE candidate,
    without it. Returns their ids."""
    limit = PENDING_BATCH if limit is None else limit
    field = ctx.recent_field(conn)
    ok = np.array([st == "ok" and bool(r) for st, r in zip(field.norm_status, field.norm_ref_ids)],
                  bool) & (field.ids != (ctx.image_id if ctx.image_id is not None else -1))
    if not ok.any():
        return set()
    # images of a field share a few reference lists: each distinct list is parsed once
    lists, which = np.unique(field.norm_ref_ids[ok].astype(str), return_inverse=True)
    parsed = [[int(x) for x in json.loads(t)] for t in lists]
    variable = lc_store.variable_source_ids(conn, sorted(set().union(*parsed)))
    if not variable:
        return set()
    hit = np.array([bool(variable.intersection(r)) for r in parsed], bool)[which]
    refs = {int(i): parsed[k] for i, k in zip(field.ids[ok][hit], which[hit])}
    tainted = list(refs)[:limit]
    done = set()
    for img_id in tainted:
        keep = np.array([r for r in refs[img_id] if r not in variable], np.int64)
        from dsa110_contimg.store.images import record_reference_outcomes

        record_reference_outcomes(conn, img_id, [
            {"source_id": v, "role": "rejected", "ratio": None,
             "reason": "rejected: " + references.VARIABLE}
            for v in sorted(variable.intersection(refs[img_id]))])
        baselines = lc_store.load_baselines(conn, keep)
        ids, f, e, flux = lc_store.image_fluxes(conn, img_id, keep)
        correct_image(conn, ctx, img_id, keep, baselines, flux=flux, all_flux=f, all_err=e,
                      all_ids=ids)
        done.add(img_id)
    return done


def check_reference_stability(conn, ctx: ImageContext, ref_ids) -> None:
    """docs/science.md, Normalisation (reference stability): chi2_nu of each reference's
    normalised flux over the last ``norm_stability_days`` (>= 5 points) above
    ``norm_stability_chi2`` -> reference invalid.

    Only references with a complete baseline are judged (while a baseline is the median
    of a few epochs the ratio scatter, and so the normalised errors, are underestimated).
    The verdict is re-evaluated at every check rather than kept forever: with honest
    errors chi2_nu(4 dof) > 2 happens 9 % of the time, so a sticky flag would retire
    every steady reference eventually; a truly variable source stays excluded while its
    recent light curve is variable. Which references an image used therefore depends on
    what had arrived when it was measured (stored per image in ``norm_used_ids``)."""
    from dsa110_contimg.science.variability import RunningStats

    cfg = ctx.cfg
    field = ctx.field_images(conn)
    recent = (field.norm_status == "ok") & (field.mjd <= ctx.mjd) & \
        (field.mjd >= ctx.mjd - cfg.norm_stability_days)
    flux, err, mjd, _ = lc_store.load_lightcurves(conn, ref_ids, field.ids[recent], normalized=True,
                                                  epochs=field.mjd[recent])
    if flux.shape[1] < 5:
        return
    metrics = RunningStats.from_lightcurves(flux, err, mjd).metrics()
    n, chi2_nu = metrics["n"], metrics["chi2_nu"]
    judged = n >= 5
    with np.errstate(invalid="ignore"):
        bad = judged & (chi2_nu > cfg.norm_stability_chi2)
    ids = np.asarray(ref_ids)
    lc_store.set_baseline_validity(conn, {
        int(s): (None if not b else
                 f"chi2_nu {c:.1f} > {cfg.norm_stability_chi2} over {int(k)} epochs in the last "
                 f"{cfg.norm_stability_days:g} days (MJD {ctx.mjd:.2f})")
        for s, c, k, b in zip(ids[judged], chi2_nu[judged], n[judged], bad[judged])})


def update_baselines(conn, ref_ids: list[int], image_ids, cfg, *,
                     staged: ImageContext | None = None) -> set[int]:
    """Recompute the baselines of ``ref_ids`` from their raw light curves over
    ``image_ids``; returns the ids whose baseline value changed. ``staged``: the context of
    an image among ``image_ids`` whose measurement rows are staged, not stored: its raw
    fluxes are taken from its measured table."""
    from dsa110_contimg.science.normalize import reference_baselines

    if staged is not None and staged.image_id in set(int(i) for i in image_ids):
        stored = [int(i) for i in image_ids if int(i) != staged.image_id]
        flux, _err, mjd, img = lc_store.load_lightcurves(conn, ref_ids, stored, normalized=False)
        table = staged.measured.table
        success = _lookup(staged.source_ids, np.asarray(table["success"], float), ref_ids) == 1
        flux, mjd = _with_epoch(flux, mjd, img >= 0,
                                _lookup(staged.source_ids, table["peak_jyb"], ref_ids),
                                np.nan if staged.mjd is None else float(staged.mjd), success)
    else:
        flux, _err, mjd, _img = lc_store.load_lightcurves(conn, ref_ids, image_ids,
                                                          normalized=False)
    if flux.shape[1] == 0:
        return set()
    base, rms, usable = reference_baselines(flux, mjd, n_epochs=cfg.norm_baseline_epochs,
                                            min_points=3)
    finite = np.isfinite(flux)
    npts = np.minimum(finite.sum(axis=1), cfg.norm_baseline_epochs)
    # MJD of the last epoch inside each reference's baseline window (rows are MJD-sorted)
    rank = np.cumsum(finite, axis=1)
    in_window = finite & (rank <= cfg.norm_baseline_epochs)
    through = np.max(np.where(in_window & np.isfinite(mjd), mjd, -np.inf), axis=1)
    old = lc_store.load_baselines(conn, ref_ids)
    rows, changed = [], set()
    for sid, b, r, u, k, th in zip(ref_ids, base, rms, usable, npts, through):
        prev = old.get(sid, {})
        rows.append({"source_id": sid, "method": cfg.method, "baseline_jyb": b if u else None,
                     "baseline_rms_jyb": r if u else None, "n_points": int(k),
                     "through_mjd": th if np.isfinite(th) else None,
                     "valid": bool(prev.get("valid", True)), "invalid_reason": prev.get("invalid_reason")})
        if u and prev.get("baseline_jyb") != float(b):
            changed.add(sid)
    lc_store.save_baselines(conn, rows)
    return changed


def _with_epoch(flux, mjd, present, new_flux, new_mjd: float, has):
    """Padded light curves (``present``: the real entries; rows sorted by MJD, epochs without
    an MJD after the others, padding last, as
    :func:`dsa110_contimg.store.lightcurves.load_lightcurves` returns them) with one more
    epoch at ``new_mjd`` holding ``new_flux`` in the rows where ``has``, laid out as that
    read returns them with the epoch stored."""
    n, width = flux.shape
    present = np.column_stack([present, has])
    f = np.column_stack([flux, np.where(has, new_flux, np.nan)])
    t = np.column_stack([mjd, np.full(n, new_mjd)])
    order = np.lexsort((t.ravel(), ~present.ravel(), np.repeat(np.arange(n), width + 1)))
    f, t = f.ravel()[order].reshape(n, width + 1), t.ravel()[order].reshape(n, width + 1)
    keep = present.ravel()[order].reshape(n, width + 1)
    f[~keep], t[~keep] = np.nan, np.nan
    w = int(keep.sum(axis=1).max(initial=0))
    return f[:, :w], t[:, :w]


def _failure_reason(corr, n_refs: int, cfg, few_refs_reason: str | None) -> str:
    if few_refs_reason and n_refs < cfg.norm_min_refs:
        return few_refs_reason
    if corr.n_refs < cfg.norm_min_refs:
        return "too few references (baselines not yet established): " + corr.reason
    return "reference ratios disagree: " + corr.reason


def correct_image(conn, ctx: ImageContext, image_id: int, ref_ids, baselines, *, flux, all_flux,
                  all_err, all_ids, method=None, few_refs_reason=None) -> dict:
    """Compute and store one image's correction from its references' raw ``flux`` and
    ``baselines``; store its sources' normalised fluxes when it is trusted. Returns the
    summary (``status``, ``factor``, ``factor_err``, ``n_refs``, ``scatter``, ``reason``)."""
    from dsa110_contimg.science.normalize import (MEDIAN_EFFICIENCY, apply_correction,
                                                   compute_correction)

    cfg = ctx.cfg
    base = np.array([_num(baselines.get(int(s), {}).get("baseline_jyb")) for s in ref_ids], float)
    ref_err = _lookup(all_ids, all_err, ref_ids)
    npts = np.array([baselines.get(int(s), {}).get("n_points") or 0 for s in ref_ids], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        base_err = np.where(npts > 0, MEDIAN_EFFICIENCY * ref_err / np.sqrt(npts), np.nan)
    corr = compute_correction(flux, base, ref_err=ref_err, baseline_err=base_err,
                              min_refs=cfg.norm_min_refs, max_scatter=cfg.norm_max_scatter)
    used_ids = np.asarray(ref_ids)[corr.used_mask]
    _record_outcomes(conn, image_id, ref_ids, corr)
    if not corr.ok:
        corr.reason = _failure_reason(corr, len(ref_ids), cfg, few_refs_reason)
        _store_normalisation(conn, ctx, image_id, status="failed", factor=corr.factor,
                             factor_err=corr.factor_err, scatter=corr.scatter,
                             n_refs=corr.n_used, reason=corr.reason, ref_ids=ref_ids,
                             used_ids=used_ids, method=method)
        ctx.record_normalisation(image_id, "failed", ref_ids)
        return {"status": "failed", "reason": corr.reason, "factor": corr.factor, "n_refs": corr.n_used}
    fn, en = apply_correction(all_flux, all_err, corr)
    _store_normalisation(conn, ctx, image_id, status="ok", factor=corr.factor,
                         factor_err=corr.factor_err, scatter=corr.scatter, n_refs=corr.n_used,
                         reason=corr.warning or None, ref_ids=ref_ids, used_ids=used_ids,
                         norm_flux=fn, norm_err=en, source_ids=all_ids, method=method)
    ctx.record_normalisation(image_id, "ok", ref_ids)
    return {"status": "ok", "factor": corr.factor, "factor_err": corr.factor_err,
            "n_refs": corr.n_used, "scatter": corr.scatter, "reason": corr.warning or None}


def _store_normalisation(conn, ctx: ImageContext, image_id: int, *, norm_flux=None, norm_err=None,
                         source_ids=None, **correction) -> None:
    """Store an image's correction (``correction``: the keywords of
    :func:`dsa110_contimg.store.lightcurves.set_normalisation`) and its normalised fluxes
    (Jy/beam per ``source_ids``; None: not normalised). This image's measurement rows, while
    still staged, are inserted with them (each row written once); stored rows (an earlier
    image's, or this one's once written) are updated."""
    own = image_id == ctx.image_id and ctx.measurements_staged and (
        norm_flux is None or np.array_equal(np.asarray(source_ids, np.int64),
                                            np.asarray(ctx.source_ids, np.int64)))
    if not own:
        if image_id == ctx.image_id:
            ctx.write_measurements(conn)    # staged rows in another order: stored, then updated
        lc_store.set_normalisation(conn, image_id, norm_flux=norm_flux, norm_err=norm_err,
                                   source_ids=source_ids, **correction)
        return
    lc_store.set_normalisation(conn, image_id, rows=False, **correction)
    ctx.write_measurements(conn, norm_flux, norm_err)


def _record_outcomes(conn, image_id: int, ref_ids, corr) -> None:
    """Store what the correction did with each chosen reference: used, clipped (with its
    ratio) or rejected (no usable ratio, or the correction refused)."""
    from dsa110_contimg.store.images import record_reference_outcomes

    rows = []
    for sid, r, used in zip(np.asarray(ref_ids).tolist(), corr.ratios, corr.used_mask):
        if not np.isfinite(r):
            rows.append({"source_id": sid, "role": "rejected", "ratio": None, "reason":
                         "rejected: no usable ratio on this image (no baseline yet, or not "
                         "measured here)"})
        elif not corr.ok:
            rows.append({"source_id": sid, "role": "rejected", "ratio": r, "reason":
                         f"rejected: ratio {r:.4f}, the correction was refused"})
        elif used:
            rows.append({"source_id": sid, "role": "used", "ratio": r,
                         "reason": f"used: ratio {r:.4f}"})
        else:
            rows.append({"source_id": sid, "role": "clipped", "ratio": r, "reason":
                         f"clipped: ratio {r:.4f} against the factor {corr.factor:.4f}"})
    record_reference_outcomes(conn, image_id, rows)


def _lookup(ids, values, want) -> np.ndarray:
    """``values`` of the rows of ``ids`` equal to each of ``want`` (NaN where absent)."""
    ids = np.asarray(ids, np.int64)
    values = np.asarray(values, float)
    want = np.asarray(want, np.int64)
    out = np.full(want.size, np.nan)
    if ids.size and want.size:
        order = np.argsort(ids, kind="stable")
        pos = np.minimum(np.searchsorted(ids[order], want), ids.size - 1)
        hit = ids[order][pos] == want
        out[hit] = values[order][pos][hit]
    return out


def _num(x) -> float:
    return np.nan if x is None else float(x)


STEP = Step("normalise", write, prepare, staged_rows=True)
