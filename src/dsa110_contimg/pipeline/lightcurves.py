"""From one stored image to light curves: QC, normalisation, variability, ESE.

These steps run inside the image's single write transaction (held by the
manager), after the measurements are stored, so that concurrent workers see
each image as a whole and running sums are never updated from stale reads:

1. :func:`quality_control` (evaluated before the transaction) and
   :func:`record_qc` -- QC status and reasons; a failed image's fluxes are
   stored but kept out of normalisation and light curves.
2. :func:`normalise` -- reference sources of the image (high measured SNR,
   compact, isolated, stable, master-list flags when present), their
   baselines (median of their first ``norm_baseline_epochs`` epochs; at least 3
   points), the image's correction (clipped median of flux/baseline, >= 3
   references), normalised fluxes. While a reference's baseline is still
   being established, every image that used it is re-normalised, and its
   sources' statistics recomputed.
3. :func:`update_variability` -- running sums updated in O(1) per source; an
   exact recompute from the light curve for sources whose epoch arrived out of
   time order, whose image was re-measured, whose normalisation changed or
   whose stored series kind (raw/normalised) differs.

:func:`evaluate_ese` then runs in its own transaction: preset thresholds,
the eta-V criterion, the light-curve shape detector, the composite score, and
candidate records (``active`` / ``investigated`` / ``dismissed``). The manager
evaluates (:func:`ese_rows`) on a read connection and writes with :func:`store_ese`
in a short transaction, which evaluates again only if the sources' running
statistics or candidates changed in between (:func:`ese_inputs_signature`).

Reads that need no lock happen before the image's transaction: the QC history,
the ids of already-stored sources and the reference-selection inputs
(:func:`normalisation_inputs`). The database work itself goes through
:mod:`dsa110_contimg.store.bulk` (one driver-level ``executemany`` per bulk write).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import structlog

from dsa110_contimg.core.enums import confidence_level
from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors
from dsa110_contimg.science.results import Flag
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store.values import clean

log = structlog.get_logger("dsa110_contimg.pipeline.lightcurves")

#: Catalogue neighbours closer than this many beam majors make a reference "confused".
ISOLATION_BEAMS = 3.0
#: A reference whose catalogue major axis exceeds this many beam majors is "resolved".
COMPACT_BEAMS = 1.0
#: Minimum epochs before the ESE shape detector is run on a light curve.
MIN_EPOCHS_SHAPE = 8
#: Minimum epochs for the threshold criteria (earlier light-curve stage used 3).
MIN_EPOCHS_ESE = 5
#: The template search (~1 s per 2,000 sources) runs only where chi2_nu exceeds this, or on
#: existing candidates. A 30 % dip over 3 of 60 epochs at 2 % noise gives chi2_nu ~ 11.
SHAPE_PREFILTER_CHI2_NU = 1.5


@dataclass
class ImageContext:
    """What the steps need to know about the image being processed."""

    image_id: int
    path: str
    mjd: float | None
    ra_deg: float
    dec_deg: float
    radius_deg: float
    kind: str
    remeasured: bool
    source_ids: np.ndarray
    notes: list[str] = field(default_factory=list)
    #: The photometry method actually used (``peak`` for a beamless mosaic); None = cfg.method.
    method: str | None = None
    #: Set by :func:`update_variability`: ``(running_stats_signature, stats)`` of the
    #: image's sources as its transaction wrote them, so that the ESE step need not read
    #: them again while the signature still matches.
    written_stats: tuple | None = None


# --------------------------------------------------------------------------- QC
def qc_field_history(conn, *, path: str, ra_deg: float, dec_deg: float, radius_deg: float,
                     mjd: float | None) -> list[dict]:
    """QC metrics of the field's recent images (a read; use a read-only connection)."""
    return lc_store.qc_history(conn, ra_deg, dec_deg, max(radius_deg, 0.25),
                               before_mjd=mjd, exclude_path=path)


def quality_control(conn, *, path: str, ra_deg: float, dec_deg: float, radius_deg: float,
                    mjd: float | None, kind: str, image, table, cat, cfg, history=None):
    """Evaluate QC for an image (image statistics; reads only the field's QC history).

    Runs *before* the image's write transaction so that the image-wide statistics do
    not hold the database lock. ``history`` (from :func:`qc_field_history`, read on a
    :func:`~dsa110_contimg.store.engine.read_connection`) avoids any read here; else
    it is read on ``conn``. Returns the QCResult, or None when QC is off.
    """
    if not cfg.qc:
        return None
    from dsa110_contimg.science.qc import QCLimits, evaluate_image_qc

    if history is None:
        history = qc_field_history(conn, path=path, ra_deg=ra_deg, dec_deg=dec_deg,
                                   radius_deg=radius_deg, mjd=mjd)
    limits = QCLimits(max_rms_jyb=cfg.qc_max_rms_jyb, require_beam=(kind == "image"))
    compact = _compact(cat, image)
    flux = np.asarray(cat["flux_mjy"], float) if "flux_mjy" in cat.colnames else None
    return evaluate_image_qc(image, table, catalog_flux_mjy=flux, history=history, limits=limits,
                             compact=compact)


def record_qc(conn, ctx: ImageContext, qc) -> None:
    """Store the QC verdict; a failed image's measurements get the QC_FAILED flag."""
    if qc is None:
        return
    from dsa110_contimg.store.products import set_image_fields

    set_image_fields(conn, ctx.image_id, qc_status=qc.status, qc_reasons=list(qc.reasons),
                     qc_metrics=clean(qc.metrics))
    if qc.status == "failed":
        lc_store.flag_image_measurements(conn, ctx.image_id, Flag.QC_FAILED)


def _compactness(cat, image):
    """Compactness class and reason per catalogue row in this image's beam (the one rule:
    :mod:`dsa110_contimg.catalogs.compactness`)."""
    from dsa110_contimg.catalogs.compactness import compactness

    beam = image.beam.major_arcsec if image.beam is not None else None
    return compactness(cat, beam)


def _compact(cat, image) -> np.ndarray | None:
    """Rows not known to be resolved (for the QC flux-scale check)."""
    from dsa110_contimg.catalogs.compactness import RESOLVED

    klass, _ = _compactness(cat, image)
    return klass != RESOLVED


def _isolated(cat, image) -> np.ndarray:
    """No other catalogue source within ISOLATION_BEAMS x BMAJ (of those queried)."""
    from scipy.spatial import cKDTree

    xyz = unit_vectors(cat["ra_deg"], cat["dec_deg"])
    beam = image.beam.major_deg if image.beam is not None else 45.0 / 3600.0
    r = chord_of_angle(ISOLATION_BEAMS * beam)
    counts = np.array([len(n) for n in cKDTree(xyz).query_ball_point(xyz, r)]) if len(xyz) else np.array([], int)
    return counts <= 1


# ------------------------------------------------------------------ normalise
def normalisation_inputs(image, cat) -> dict:
    """What reference selection needs of the catalogue and the image's beam, without the
    database: compactness class and reason, isolation, master-list flags per catalogue
    row. Computed before the write transaction (pass to :func:`normalise` as ``inputs``)."""
    klass, why = _compactness(cat, image)
    return {"klass": klass, "why": why, "isolated": _isolated(cat, image),
            "master_ok": (np.asarray(cat["reference_ok"], bool) if "reference_ok" in cat.colnames
                          else None)}


def normalise(conn, ctx: ImageContext, image, table, cat, cfg, qc, *, inputs: dict | None = None
              ) -> dict:
    """Normalise the image (see module doc). Returns a summary and the ids of
    images whose normalisation changed (``renormalised``). ``inputs``: the result of
    :func:`normalisation_inputs` when computed beforehand (else computed here)."""

    summary = {"status": "not_requested", "renormalised": set()}
    if ctx.method is not None and ctx.method != cfg.method:
        # light curves never mix methods silently: a 'peak' fallback stays out of them
        reason = (f"method mismatch: measured with '{ctx.method}' instead of the configured "
                  f"'{cfg.method}' (no beam); kept out of the light curves")
        summary.update(method_mismatch=True, reason=reason)
        if cfg.normalize:
            lc_store.set_normalisation(conn, ctx.image_id, status="failed", reason=reason)
            summary.update(status="failed")
        return summary
    if not cfg.normalize:
        return summary
    if qc is not None and qc.status == "failed":
        lc_store.set_normalisation(conn, ctx.image_id, status="failed",
                                   reason="image failed quality control")
        summary.update(status="failed", reason="image failed quality control")
        return summary

    snr = np.asarray(table["snr"], float)
    inputs = inputs if inputs is not None else normalisation_inputs(image, cat)
    klass, why, isolated, master_ok = (inputs["klass"], inputs["why"], inputs["isolated"],
                                       inputs["master_ok"])
    baselines = lc_store.load_baselines(conn, ctx.source_ids)
    stable = np.array([baselines.get(int(s), {}).get("valid", True) for s in ctx.source_ids], bool)
    ref_idx, choices, counts = _choose_references(snr, np.asarray(table["success"], bool), stable,
                                                  klass, why, isolated, master_ok, baselines,
                                                  ctx.source_ids, cfg)
    method = "catalogue"
    if ref_idx.size < cfg.norm_min_refs:
        ens = _ensemble_references(conn, ctx, table, cfg)
        if ens is not None and ens[0].size >= cfg.norm_min_refs:
            ens_idx, ens_why = ens
            method = "ensemble"
            chosen = set(ens_idx.tolist())
            for c in choices:
                if c["index"] in chosen:
                    c.update(chosen=True, reason="chosen (fallback ensemble): " + ens_why[c["index"]])
                elif c["chosen"]:
                    c.update(chosen=False, reason=(
                        f"not used: only {ref_idx.size} catalogue reference(s), fewer than "
                        f"{cfg.norm_min_refs}; the fallback ensemble was used ({c['reason']})"))
            known = {c["index"] for c in choices}
            for i in ens_idx.tolist():
                if i not in known:
                    choices.append({"index": i, "source_id": int(ctx.source_ids[i]), "chosen": True,
                                    "compactness": str(klass[i]), "snr": float(snr[i]),
                                    "reason": "chosen (fallback ensemble): " + ens_why[i]})
            ref_idx = ens_idx
        else:
            counts["ensemble"] = "no" if ens is None else f"{ens[0].size}"
    from dsa110_contimg.store.images import save_reference_choices

    save_reference_choices(conn, ctx.image_id, choices)
    ref_ids = ctx.source_ids[ref_idx]

    # -- baselines: (re)establish those still within their first epochs
    # Baselines still being established, or whose first-epochs window this image falls in,
    # are recomputed: for the references chosen now and for every source of the image that
    # already has a baseline (it may be chosen on another image).
    mjd = np.inf if ctx.mjd is None else ctx.mjd
    maintained = set(int(s) for s in ref_ids) | set(baselines)
    needs = sorted(s for s in maintained
                   if baselines.get(s, {}).get("n_points", 0) < cfg.norm_baseline_epochs
                   or mjd < (baselines[s].get("through_mjd") or -np.inf))
    changed = set()
    near = None
    if needs:
        near = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                      lc_store.neighbourhood_radius(conn, ctx.radius_deg))
        changed = _update_baselines(conn, needs, near, cfg)
        baselines = lc_store.load_baselines(conn, ctx.source_ids)

    corr = _correct_image(conn, ctx.image_id, ref_ids, baselines, cfg,
                          flux=np.asarray(table["peak_jyb"], float)[ref_idx],
                          all_flux=np.asarray(table["peak_jyb"], float),
                          all_err=np.asarray(table["peak_err_jyb"], float),
                          all_ids=ctx.source_ids, method=method,
                          few_refs_reason=_few_refs_reason(counts, ref_idx.size, cfg))
    summary.update(corr)
    summary["method"] = method
    if corr["status"] == "ok" and ctx.mjd is not None:
        judged = [s for s, b in lc_store.load_baselines(conn, ctx.source_ids).items()
                  if b["n_points"] >= cfg.norm_baseline_epochs]
        if judged:
            _check_reference_stability(conn, ctx, judged, cfg)
    # -- images that used a reference whose baseline moved are re-normalised
    if changed and near is not None:
        for img_id, refs_json, status in zip(near["id"], near["norm_ref_ids"], near["norm_status"]):
            if int(img_id) == ctx.image_id or not refs_json or status == "not_requested":
                continue
            refs = np.array(json.loads(refs_json), np.int64)
            if not changed.intersection(refs.tolist()):
                continue
            ids, f, e, flux = lc_store.image_fluxes(conn, int(img_id), refs)
            _correct_image(conn, int(img_id), refs, baselines, cfg, flux=flux, all_flux=f,
                           all_err=e, all_ids=ids)
            summary["renormalised"].add(int(img_id))
    return summary


#: Fallback ensemble (self-observed steady sources): minimum epochs of the field, and the
#: steadiness limits on the common-gain-corrected raw light curve.
ENSEMBLE_MIN_EPOCHS = 8
ENSEMBLE_MAX_ETA = 3.0
ENSEMBLE_MAX_V = 0.10
#: Ensemble members need this measured SNR (lower than ``norm_min_snr``: steadiness is
#: judged from their own light curves, and the median of many averages their noise down).
ENSEMBLE_MIN_SNR = 20.0
#: At most this many of the image's brightest sources are examined for the ensemble.
ENSEMBLE_CANDIDATES = 200


def _choose_references(snr, success, stable, klass, why, isolated, master_ok, baselines,
                       source_ids, cfg):
    """Catalogue references of one image: compact ones first, then those of unknown size,
    never resolved, confused, master-rejected or unstable ones; highest SNR first.

    Returns (indices, decision rows for every source with SNR >= norm_min_snr, counts).
    """
    from dsa110_contimg.catalogs.compactness import COMPACT, RESOLVED, UNKNOWN
    from dsa110_contimg.science.normalize import select_references

    with np.errstate(invalid="ignore"):
        bright = success & np.isfinite(snr) & (snr >= cfg.norm_min_snr)
    snr_sel = np.where(success & stable, snr, -np.inf)
    first = select_references(snr_sel, klass == COMPACT, isolated, None, master_ok,
                              min_snr=cfg.norm_min_snr, max_refs=cfg.norm_max_refs)
    rest = select_references(snr_sel, klass == UNKNOWN, isolated, None, master_ok,
                             min_snr=cfg.norm_min_snr, max_refs=cfg.norm_max_refs - first.size)
    idx = np.concatenate([first, rest]).astype(np.int64)
    chosen = np.zeros(snr.size, bool)
    chosen[idx] = True
    m_ok = np.ones(snr.size, bool) if master_ok is None else np.asarray(master_ok, bool)
    counts = {"bright": int(bright.sum()), "chosen": int(idx.size),
              "resolved": int((bright & (klass == RESOLVED)).sum()),
              "confused": int((bright & (klass != RESOLVED) & ~isolated).sum()),
              "master": int((bright & (klass != RESOLVED) & isolated & ~m_ok).sum()),
              "unstable": int((bright & (klass != RESOLVED) & isolated & m_ok & ~stable).sum())}
    rows = []
    for i in np.flatnonzero(bright | chosen):
        if chosen[i]:
            reason = "chosen: " + str(why[i])
        elif klass[i] == RESOLVED:
            reason = "rejected: " + str(why[i])
        elif not isolated[i]:
            reason = (f"rejected: confused (another catalogue source within {ISOLATION_BEAMS:g} "
                      "beam majors)")
        elif not m_ok[i]:
            reason = "rejected: the master list does not mark it reference_ok"
        elif not stable[i]:
            reason = "rejected: unstable: " + str(
                baselines.get(int(source_ids[i]), {}).get("invalid_reason") or "chi2 test")
        else:
            reason = f"not chosen: {cfg.norm_max_refs} references with higher SNR were taken ({why[i]})"
        rows.append({"index": int(i), "source_id": int(source_ids[i]), "chosen": bool(chosen[i]),
                     "compactness": str(klass[i]), "snr": float(snr[i]), "reason": reason})
    return idx, rows, counts


def _few_refs_reason(counts: dict, n_chosen: int, cfg) -> str:
    """The stored reason of an image with fewer than ``norm_min_refs`` references."""
    ens = counts.get("ensemble")
    tail = ("" if ens is None else
            "; fallback ensemble: " + (f"fewer than {ENSEMBLE_MIN_EPOCHS} epochs of the field"
                                       if ens == "no" else f"only {ens} steady source(s)"))
    if counts["bright"] < cfg.norm_min_refs:
        return (f"too few references (no bright sources): {counts['bright']} source(s) with "
                f"SNR >= {cfg.norm_min_snr:g} on the image, at least {cfg.norm_min_refs} needed{tail}")
    return (f"too few references (compact-source test): {n_chosen} usable of {counts['bright']} "
            f"sources with SNR >= {cfg.norm_min_snr:g} ({counts['resolved']} resolved in the image "
            f"beam, {counts['confused']} confused, {counts['master']} rejected by the master list, "
            f"{counts['unstable']} unstable); at least {cfg.norm_min_refs} needed{tail}")


def _ensemble_references(conn, ctx: ImageContext, table, cfg):
    """Fallback references: sources the service itself has seen to be steady.

    After ``ENSEMBLE_MIN_EPOCHS`` images of the field, the raw light curves of the image's
    brightest successful sources (SNR >= ``ENSEMBLE_MIN_SNR``, at most ``ENSEMBLE_CANDIDATES``)
    are divided by the common per-epoch gain (median over sources of flux / own median);
    sources whose corrected curve has eta <= ``ENSEMBLE_MAX_ETA`` and V <= ``ENSEMBLE_MAX_V``
    are steady. Returns (indices into the image's table, {index: reason}) or None when the
    field has too few epochs.
    """
    near = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                lc_store.neighbourhood_radius(conn, ctx.radius_deg))
    ids = near["id"][np.isfinite(near["mjd"])]
    if ids.size < ENSEMBLE_MIN_EPOCHS:
        return None
    snr = np.asarray(table["snr"], float)
    with np.errstate(invalid="ignore"):
        ok = np.asarray(table["success"], bool) & np.isfinite(snr) & \
            (snr >= min(ENSEMBLE_MIN_SNR, cfg.norm_min_snr))
    cand = np.flatnonzero(ok)
    cand = cand[np.argsort(-snr[cand], kind="stable")][:ENSEMBLE_CANDIDATES]
    if cand.size < cfg.norm_min_refs:
        return np.array([], np.int64), {}
    flux_r, err_r, _mjd, img2d = lc_store.load_lightcurves(conn, ctx.source_ids[cand], ids,
                                                           normalized=False)
    # rows are padded per source: align them by image so that a column is one epoch
    cols = np.unique(img2d[img2d >= 0])
    flux = np.full((cand.size, cols.size), np.nan)
    err = np.full((cand.size, cols.size), np.nan)
    r, c = np.nonzero(img2d >= 0)
    j = np.searchsorted(cols, img2d[r, c])
    flux[r, j], err[r, j] = flux_r[r, c], err_r[r, c]
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(flux) & (flux > 0) & np.isfinite(err) & (err > 0)
        f = np.where(good, flux, np.nan)
        rel = f / np.nanmedian(f, axis=1, keepdims=True)
        gain = np.nanmedian(rel, axis=0, keepdims=True)            # common per-epoch gain
        fc, ec = f / gain, np.where(good, err, np.nan) / gain
        n = np.isfinite(fc).sum(axis=1)
        w = 1.0 / ec ** 2
        wmean = np.nansum(w * fc, axis=1) / np.nansum(w, axis=1)
        eta = np.nansum(w * (fc - wmean[:, None]) ** 2, axis=1) / (n - 1)
        v = np.nanstd(fc, axis=1, ddof=1) / np.nanmean(fc, axis=1)
        steady = (n >= ENSEMBLE_MIN_EPOCHS) & (eta <= ENSEMBLE_MAX_ETA) & (v <= ENSEMBLE_MAX_V)
    pick = np.flatnonzero(steady)[: cfg.norm_max_refs]
    why = {int(cand[k]): (f"steady in its own light curve: eta {eta[k]:.2f}, V {v[k]:.3f} over "
                          f"{int(n[k])} epochs (common gain removed)") for k in pick}
    return cand[pick].astype(np.int64), why


def _check_reference_stability(conn, ctx: ImageContext, ref_ids, cfg) -> None:
    """docs/science.md, Normalisation (reference stability): chi2_nu of each reference's normalised flux over the last
    ``norm_stability_days`` (>= 5 points) above ``norm_stability_chi2`` -> reference invalid.

    Only references with a complete baseline are judged (while a baseline is the median
    of a few epochs the ratio scatter, and so the normalised errors, are underestimated).
    The verdict is re-evaluated at every check rather than kept forever: with honest
    errors chi2_nu(4 dof) > 2 happens 9 % of the time, so a sticky flag would retire
    every steady reference eventually; a truly variable source stays excluded while its
    recent light curve is variable. Which references an image used therefore depends on
    what had arrived when it was measured (stored per image in ``norm_used_ids``)."""
    near = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                lc_store.neighbourhood_radius(conn, ctx.radius_deg))
    recent = (near["norm_status"] == "ok") & (near["mjd"] <= ctx.mjd) & \
        (near["mjd"] >= ctx.mjd - cfg.norm_stability_days)
    flux, err, _mjd, _ = lc_store.load_lightcurves(conn, ref_ids, near["id"][recent], normalized=True)
    if flux.shape[1] < 5:
        return
    valid = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    n = valid.sum(axis=1)
    f = np.where(valid, flux, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(f, axis=1, keepdims=True)
        chi2_nu = np.nansum(((f - mean) / np.where(valid, err, 1.0)) ** 2, axis=1) / (n - 1)
    judged = n >= 5
    bad = judged & (chi2_nu > cfg.norm_stability_chi2)
    ids = np.asarray(ref_ids)
    lc_store.set_baseline_validity(conn, {
        int(s): (None if not b else
                 f"chi2_nu {c:.1f} > {cfg.norm_stability_chi2} over {int(k)} epochs in the last "
                 f"{cfg.norm_stability_days:g} days (MJD {ctx.mjd:.2f})")
        for s, c, k, b in zip(ids[judged], chi2_nu[judged], n[judged], bad[judged])})


def _update_baselines(conn, ref_ids: list[int], near, cfg) -> set[int]:
    """Recompute baselines of references with fewer than ``norm_baseline_epochs`` points."""
    from dsa110_contimg.science.normalize import reference_baselines

    flux, _err, mjd, _img = lc_store.load_lightcurves(conn, ref_ids, near["id"], normalized=False)
    if flux.shape[1] == 0:
        return set()
    base, rms, usable = reference_baselines(flux, mjd, n_epochs=cfg.norm_baseline_epochs,
                                            min_points=3)
    finite = np.isfinite(flux)
    npts = np.minimum(finite.sum(axis=1), cfg.norm_baseline_epochs)
    # MJD of the last epoch inside each reference's baseline window (rows are MJD-sorted)
    rank = np.cumsum(finite, axis=1)
    in_window = finite & (rank <= cfg.norm_baseline_epochs)
    through = np.nanmax(np.where(in_window, mjd, -np.inf), axis=1)
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


def _correct_image(conn, image_id, ref_ids, baselines, cfg, *, flux, all_flux, all_err, all_ids,
                   method=None, few_refs_reason=None) -> dict:
    from dsa110_contimg.science.normalize import apply_correction, compute_correction

    base = np.array([_num(baselines.get(int(s), {}).get("baseline_jyb")) for s in ref_ids], float)
    corr = compute_correction(flux, base, min_refs=cfg.norm_min_refs, max_scatter=cfg.norm_max_scatter)
    if method is not None:
        from dsa110_contimg.store.images import set_norm_method

        set_norm_method(conn, image_id, method)
    if not corr.ok:
        if few_refs_reason and len(ref_ids) < cfg.norm_min_refs:
            corr.reason = few_refs_reason
        elif corr.n_refs < cfg.norm_min_refs:
            corr.reason = ("too few references (baselines not yet established): " + corr.reason)
        else:
            corr.reason = "reference ratios disagree: " + corr.reason
        lc_store.set_normalisation(conn, image_id, status="failed", factor=corr.factor,
                                   factor_err=corr.factor_err, scatter=corr.scatter,
                                   n_refs=corr.n_used, reason=corr.reason, ref_ids=ref_ids,
                                   used_ids=np.asarray(ref_ids)[corr.used_mask])
        return {"status": "failed", "reason": corr.reason, "factor": corr.factor, "n_refs": corr.n_used}
    fn, en = apply_correction(all_flux, all_err, corr)
    lc_store.set_normalisation(conn, image_id, status="ok", factor=corr.factor,
                               factor_err=corr.factor_err, scatter=corr.scatter, n_refs=corr.n_used,
                               reason=None, ref_ids=ref_ids,
                               used_ids=np.asarray(ref_ids)[corr.used_mask], norm_flux=fn, norm_err=en,
                               source_ids=all_ids)
    return {"status": "ok", "factor": corr.factor, "factor_err": corr.factor_err,
            "n_refs": corr.n_used, "scatter": corr.scatter, "reason": None}


def _num(x) -> float:
    return np.nan if x is None else float(x)


# ---------------------------------------------------------------- variability
def update_variability(conn, ctx: ImageContext, table, cfg, qc, norm: dict) -> dict:
    """Update the running statistics of the image's sources (see module doc)."""
    from dsa110_contimg.science.variability import RunningStats, needs_recompute

    kind = "normalized" if cfg.normalize else "raw"
    stored, present, stored_kind = lc_store.load_running_stats(conn, ctx.source_ids)
    stats = RunningStats.from_dict(stored)
    usable_image = not (qc is not None and qc.status == "failed") and \
        (not cfg.normalize or norm.get("status") == "ok") and not norm.get("method_mismatch")
    if cfg.normalize and norm.get("status") == "ok":
        flux, err = apply_norm(table, norm)
    else:
        flux = np.asarray(table["peak_jyb"], float)
        err = np.asarray(table["peak_err_jyb"], float)
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
    n_re = int(recompute.sum())
    if n_re:
        sel = np.flatnonzero(recompute)
        near = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                      lc_store.neighbourhood_radius(conn, ctx.radius_deg))
        keep = near["id"]
        if cfg.normalize:
            keep = keep[near["norm_status"] == "ok"]
        f2, e2, m2, _ = lc_store.load_lightcurves(conn, ctx.source_ids[sel], keep,
                                                  normalized=cfg.normalize)
        stats.assign(sel, RunningStats.from_lightcurves(f2, e2, m2) if f2.shape[1]
                     else RunningStats.empty(sel.size))
    changed = np.flatnonzero(recompute | (np.isin(np.arange(len(flux)), idx)) | ~present)
    if changed.size:
        sub = stats.take(changed)
        lc_store.save_running_stats(conn, ctx.source_ids[changed], sub.to_dict(), sub.metrics(), kind)
    ctx.written_stats = (lc_store.running_stats_signature(conn, ctx.source_ids),
                         lc_store.as_stored(stats.to_dict()))
    return {"updated": int(idx.size), "recomputed": n_re, "series": kind, "used": bool(usable_image)}


def apply_norm(table, norm: dict):
    """Normalised (flux, err) of a table from a stored correction summary."""
    from dsa110_contimg.science.normalize import Correction, apply_correction

    corr = Correction(norm["factor"], norm["factor_err"], norm["n_refs"], norm["n_refs"],
                      norm.get("scatter", np.nan), np.zeros(0, bool), True)
    return apply_correction(np.asarray(table["peak_jyb"], float),
                            np.asarray(table["peak_err_jyb"], float), corr)


# ------------------------------------------------------------------------ ESE
def _shape_search(detect, mjd, flux, err, full_rows, new_mjd):
    """ESE template search with a cost bounded as history grows (issue 15).

    Known candidates (``full_rows``) and re-measured images get the full-history
    search; every other source only the incremental one (templates whose recovery
    window reaches the new epoch ``new_mjd``, see ``detect_ese_shapes``), because
    an event that became detectable earlier was searched when its last epoch came in.
    """
    if new_mjd is None or full_rows.all():
        return detect(mjd, flux, err)
    inc = ~full_rows
    part = detect(mjd[inc], flux[inc], err[inc], new_since_mjd=float(new_mjd))
    if not full_rows.any():
        return part
    whole = detect(mjd[full_rows], flux[full_rows], err[full_rows])
    out = {}
    for k, v in part.items():
        arr = np.empty(inc.size, dtype=np.asarray(v).dtype)
        arr[inc] = v
        arr[full_rows] = whole[k]
        out[k] = arr
    return out


def evaluate_ese(conn, ctx: ImageContext, cfg) -> int:
    """Re-evaluate ESE candidates among the image's sources and store them; returns how
    many are flagged (criteria: :func:`ese_rows`). Reads and writes on ``conn``; the
    manager instead evaluates on a read connection and writes with :func:`store_ese`."""
    rows, flagged = ese_rows(conn, ctx, cfg)
    lc_store.upsert_ese_candidates(conn, rows)
    return flagged


def ese_inputs_signature(conn, ctx: ImageContext) -> tuple:
    """What :func:`ese_rows` depends on that another worker may change: the image's sources'
    running-statistics rows (id, n, updated_at) and which of them are candidates."""
    return (lc_store.running_stats_signature(conn, ctx.source_ids),
            frozenset(lc_store.candidate_source_ids(conn, ctx.source_ids)))


def store_ese(conn, ctx: ImageContext, cfg, evaluated: tuple, signature: tuple) -> int:
    """Write ESE rows evaluated on a read connection (``evaluated`` = :func:`ese_rows`,
    ``signature`` = :func:`ese_inputs_signature` read with them) inside the write
    transaction ``conn``; when the inputs changed meanwhile (another image of the field
    committed), evaluate again on ``conn`` first. Returns how many are flagged."""
    rows, flagged = evaluated
    if ese_inputs_signature(conn, ctx) != signature:
        rows, flagged = ese_rows(conn, ctx, cfg)
    lc_store.upsert_ese_candidates(conn, rows)
    return flagged


def ese_rows(conn, ctx: ImageContext, cfg,
             signature: tuple | None = None) -> tuple[list[dict], int]:
    """ESE candidate rows of the image's sources (reads only); returns (rows, n flagged).

    ``signature`` (:func:`ese_inputs_signature`, read on ``conn``) lets the running
    statistics this image's transaction wrote (``ctx.written_stats``) stand in for a
    read when nothing rewrote them since.

    Criteria (any of them makes a candidate; all are recorded):

    * ``preset``: sigma-deviation, chi2_nu AND eta above the preset's thresholds;
    * ``shape``: the matched-filter ESE template search is significant;
    * ``eta_v``: log eta AND log V above the fitted Gaussian thresholds of the
      image's population (Rowlinson et al. 2019) -- recorded as support only,
      never enough on its own.

    The score is the composite 0-10 score of sigma-dev / chi2_nu / eta, raised
    to the shape significance (capped at 10) when the template search detects
    an event. Existing candidates are refreshed; their lifecycle status is kept.
    """
    from dsa110_contimg.science.ese import (
        PRESETS, classify, composite_score, detect_ese_shapes, eta_v_candidates,
    )
    from dsa110_contimg.science.variability import RunningStats

    if signature is not None and ctx.written_stats is not None \
            and signature[0] == ctx.written_stats[0]:
        stored = ctx.written_stats[1]
    else:
        stored, _, _ = lc_store.load_running_stats(conn, ctx.source_ids)
    metrics = RunningStats.from_dict(stored).metrics()
    n = metrics["n"]
    by_preset = classify(metrics, cfg.ese_preset, min_n=MIN_EPOCHS_ESE)
    eta_v = np.zeros(n.size, bool)
    pop = (n >= MIN_EPOCHS_ESE) & np.isfinite(metrics["eta"]) & (metrics["eta"] > 0) & \
        np.isfinite(metrics["v"]) & (metrics["v"] > 0)
    if pop.sum() >= 20:
        eta_v[pop] = eta_v_candidates(metrics["eta"][pop], metrics["v"][pop],
                                      n_sigma=PRESETS[cfg.ese_preset].sigma_deviation / 2.0)
    shape = {"detected": np.zeros(n.size, bool)}
    known = lc_store.candidate_source_ids(conn, ctx.source_ids)
    with np.errstate(invalid="ignore"):
        worth = (metrics["chi2_nu"] > SHAPE_PREFILTER_CHI2_NU) | np.isin(ctx.source_ids, list(known))
    deep = np.flatnonzero((n >= MIN_EPOCHS_SHAPE) & worth)
    if deep.size:
        near = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                      lc_store.neighbourhood_radius(conn, ctx.radius_deg))
        keep = near["id"][near["norm_status"] == "ok"] if cfg.normalize else near["id"]
        flux, err, mjd, _ = lc_store.load_lightcurves(conn, ctx.source_ids[deep], keep,
                                                      normalized=cfg.normalize)
        if flux.shape[1] >= MIN_EPOCHS_SHAPE:
            found = _shape_search(detect_ese_shapes, mjd, flux, err,
                                  np.isin(ctx.source_ids[deep], list(known)),
                                  None if ctx.remeasured else ctx.mjd)
            shape = {k: np.full(n.size, np.nan if np.asarray(v).dtype.kind == "f" else None,
                                dtype=np.asarray(v).dtype if np.asarray(v).dtype.kind == "f" else object)
                     for k, v in found.items()}
            for k, v in found.items():
                shape[k][deep] = v
            shape["detected"] = np.asarray(shape["detected"] == True)  # noqa: E712 (object array)
    flagged = by_preset | shape["detected"]
    score, conf = composite_score(metrics["sigma_deviation"], metrics["chi2_nu"], metrics["eta"])
    sig = np.asarray(shape.get("significance", np.full(n.size, np.nan)), float)
    score = np.where(shape["detected"], np.fmax(score, np.minimum(sig, 10.0)), score)
    score = np.nan_to_num(score)  # a candidate without computable metrics is stored at score 0
    conf = confidence_level(score)
    rows = []
    for i in np.flatnonzero(flagged | np.isin(ctx.source_ids, list(known))):
        criteria = [name for name, hit in (("preset", by_preset[i]), ("shape", shape["detected"][i]),
                                           ("eta_v", eta_v[i])) if hit]
        row = {"source_id": int(ctx.source_ids[i]), "criteria": json.dumps(criteria),
               "preset": cfg.ese_preset, "score": float(np.nan_to_num(score[i])),
               "confidence": str(conf[i]), "sigma_deviation": metrics["sigma_deviation"][i],
               "chi2_nu": metrics["chi2_nu"][i], "eta": metrics["eta"][i], "v": metrics["v"][i],
               "n_epochs": int(n[i])}
        if "significance" in shape:
            row.update(shape_significance=shape["significance"][i], depth=shape["depth"][i],
                       duration_days=shape["duration_days"][i], t_min_mjd=shape["t_min_mjd"][i],
                       template=shape["template"][i], baseline_jyb=shape["baseline"][i],
                       caustic_amp=shape["caustic_amp"][i])
        rows.append(row)
    return rows, int(flagged.sum())
