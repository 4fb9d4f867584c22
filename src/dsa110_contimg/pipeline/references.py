"""Which sources of an image are its normalisation references, and why (docs/science.md,
Normalisation).

Catalogue references (:func:`choose_catalogue_references`): measured SNR >=
``norm_min_snr``, compact in the image's beam (then those of unknown size), isolated,
not rejected by the master list, stable; highest SNR first. When fewer than
``norm_min_refs`` remain, the fallback ensemble (:func:`ensemble_references`): sources
the service itself has seen to be steady. :func:`choose_references` combines both and
returns every decision with its reason (stored per image, shown by ``images show``).
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors
from dsa110_contimg.store import lightcurves as lc_store

#: Catalogue neighbours closer than this many beam majors make a reference "confused".
ISOLATION_BEAMS = 3.0
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


def _isolated(cat, image) -> np.ndarray:
    """No other catalogue source within ISOLATION_BEAMS x BMAJ (of those queried)."""
    from scipy.spatial import cKDTree

    xyz = unit_vectors(cat["ra_deg"], cat["dec_deg"])
    beam = image.beam.major_deg if image.beam is not None else 45.0 / 3600.0
    r = chord_of_angle(ISOLATION_BEAMS * beam)
    if not len(xyz):
        return np.array([], bool)
    if len(xyz) < 2:
        return np.ones(len(xyz), bool)
    # the nearest other source (the second neighbour: the first is the source itself)
    d, _ = cKDTree(xyz).query(xyz, k=2, distance_upper_bound=r * (1 + 1e-9))
    return ~(d[:, 1] <= r)


#: why a row that is not from the catalogue is never a reference
NOT_CATALOGUE = ("not a catalogue source (a monitor-list position or a source found by blind "
                 "detection): never a flux reference")


def catalogue_rows(cat) -> np.ndarray:
    """Which rows of a measured table are catalogue sources (monitor-list positions and the
    service's own sources carry ``kind``; they are never references)."""
    if "kind" not in cat.colnames:
        return np.ones(len(cat), bool)
    from dsa110_contimg.store.values import column_labels

    return np.array([k == "catalogue" for k in column_labels(cat["kind"], "catalogue")], bool)


def reference_inputs(cat, image, classes: tuple | None = None) -> dict:
    """What reference selection needs of the catalogue and the image's beam, without the
    database: compactness class and reason (:mod:`dsa110_contimg.catalogs.compactness`;
    ``classes`` when the caller has them, not modified), isolation and master-list flags
    per catalogue row."""
    from dsa110_contimg.catalogs.compactness import compactness

    klass, why = classes if classes is not None else \
        compactness(cat, image.beam.major_arcsec if image.beam is not None else None)
    other = ~catalogue_rows(cat)
    if other.any():
        from dsa110_contimg.catalogs.compactness import RESOLVED

        klass, why = np.asarray(klass, object).copy(), np.asarray(why, object).copy()
        klass[other], why[other] = RESOLVED, NOT_CATALOGUE
    return {"klass": klass, "why": why, "isolated": _isolated(cat, image),
            "master_ok": (np.asarray(cat["reference_ok"], bool) if "reference_ok" in cat.colnames
                          else None)}


def choose_catalogue_references(snr, success, stable, inputs: dict, baselines, source_ids, cfg):
    """Catalogue references of one image: compact ones first, then those of unknown size,
    never resolved, confused, master-rejected or unstable ones; highest SNR first.

    Returns (indices, decision rows for every source with SNR >= norm_min_snr, counts).
    """
    from dsa110_contimg.catalogs.compactness import COMPACT, RESOLVED, UNKNOWN
    from dsa110_contimg.science.normalize import select_references

    klass, why, isolated, master_ok = (inputs["klass"], inputs["why"], inputs["isolated"],
                                       inputs["master_ok"])
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
    sel = np.flatnonzero(bright | chosen)
    confused = f"rejected: confused (another catalogue source within {ISOLATION_BEAMS:g} beam majors)"
    for i, sid, ch, k, w, iso, mok, st, s in zip(
            sel.tolist(), np.asarray(source_ids)[sel].tolist(), chosen[sel].tolist(),
            np.asarray(klass, object)[sel].tolist(), np.asarray(why, object)[sel].tolist(),
            np.asarray(isolated, bool)[sel].tolist(), m_ok[sel].tolist(),
            np.asarray(stable, bool)[sel].tolist(), np.asarray(snr, float)[sel].tolist()):
        if ch:
            reason = "chosen: " + str(w)
        elif k == RESOLVED:
            reason = "rejected: " + str(w)
        elif not iso:
            reason = confused
        elif not mok:
            reason = "rejected: the master list does not mark it reference_ok"
        elif not st:
            reason = "rejected: unstable: " + str(
                baselines.get(int(sid), {}).get("invalid_reason") or "chi2 test")
        else:
            reason = f"not chosen: {cfg.norm_max_refs} references with higher SNR were taken ({w})"
        rows.append({"index": i, "source_id": int(sid), "chosen": ch, "compactness": str(k),
                     "snr": s, "reason": reason})
    return idx, rows, counts


def few_refs_reason(counts: dict, n_chosen: int, cfg) -> str:
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


def _epoch_columns(flux_r, err_r, mjd_r, img2d):
    """Per-source padded light curves realigned so that a column is one image."""
    cols = np.unique(img2d[img2d >= 0])
    shape = (img2d.shape[0], cols.size)
    flux, err, mjd = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    r, c = np.nonzero(img2d >= 0)
    j = np.searchsorted(cols, img2d[r, c])
    flux[r, j], err[r, j], mjd[r, j] = flux_r[r, c], err_r[r, c], mjd_r[r, c]
    return flux, err, mjd


#: why an ESE candidate (not dismissed) is never a reference
VARIABLE = "an ESE candidate: a variable source is never a flux reference"


def ensemble_references(conn, ctx, table, cfg, exclude=None):
    """Fallback references: sources the service itself has seen to be steady.

    After ``ENSEMBLE_MIN_EPOCHS`` images of the field, the raw light curves of the image's
    brightest successful sources (SNR >= ``ENSEMBLE_MIN_SNR``, at most ``ENSEMBLE_CANDIDATES``)
    are divided by the common per-epoch gain (:func:`~dsa110_contimg.science.normalize.
    ensemble_steadiness`); sources whose corrected curve has eta <= ``ENSEMBLE_MAX_ETA`` and
    V <= ``ENSEMBLE_MAX_V`` are steady; rows where ``exclude`` (bool per row: resolved in
    the image's beam, ESE candidates) is True are never members. Returns (indices into the image's table,
    {index: reason}) or None when the field has too few epochs.
    """
    from dsa110_contimg.science.normalize import ensemble_steadiness

    field = ctx.recent_field(conn)
    ids = field.ids[np.isfinite(field.mjd)]
    if ids.size < ENSEMBLE_MIN_EPOCHS:
        return None
    snr = np.asarray(table["snr"], float)
    with np.errstate(invalid="ignore"):
        ok = np.asarray(table["success"], bool) & np.isfinite(snr) & \
            (snr >= min(ENSEMBLE_MIN_SNR, cfg.norm_min_snr)) & catalogue_rows(ctx.measured.cat)
    if exclude is not None:
        ok &= ~np.asarray(exclude, bool)
    cand = np.flatnonzero(ok)
    cand = cand[np.argsort(-snr[cand], kind="stable")][:ENSEMBLE_CANDIDATES]
    if cand.size < cfg.norm_min_refs:
        return np.array([], np.int64), {}
    flux_r, err_r, mjd_r, img2d = lc_store.load_lightcurves(conn, ctx.source_ids[cand], ids,
                                                            normalized=False)
    steadiness = ensemble_steadiness(*_epoch_columns(flux_r, err_r, mjd_r, img2d))
    n, eta, v = steadiness["n"], steadiness["eta"], steadiness["v"]
    with np.errstate(invalid="ignore"):
        steady = (n >= ENSEMBLE_MIN_EPOCHS) & (eta <= ENSEMBLE_MAX_ETA) & (v <= ENSEMBLE_MAX_V)
    pick = np.flatnonzero(steady)[: cfg.norm_max_refs]
    why = {int(cand[k]): (f"steady in its own light curve: eta {eta[k]:.2f}, V {v[k]:.3f} over "
                          f"{int(n[k])} epochs (common gain removed)") for k in pick}
    return cand[pick].astype(np.int64), why


def choose_references(conn, ctx, stable, baselines, inputs: dict):
    """The image's references: catalogue ones, else the fallback ensemble.

    Returns ``(indices into the image's table, decision rows, counts, method)`` with
    method ``catalogue`` or ``ensemble``; the rows say for each candidate whether it was
    chosen and why (``counts["ensemble"]`` says why the ensemble was not usable).
    """
    table, cfg = ctx.measured.table, ctx.cfg
    snr = np.asarray(table["snr"], float)
    variable = np.isin(ctx.source_ids, list(lc_store.variable_source_ids(conn, ctx.source_ids)))
    ref_idx, choices, counts = choose_catalogue_references(
        snr, np.asarray(table["success"], bool), stable & ~variable, inputs, baselines,
        ctx.source_ids, cfg)
    for c in choices:
        if variable[c["index"]]:
            c["reason"] = "rejected: " + VARIABLE
    if ref_idx.size >= cfg.norm_min_refs:
        return ref_idx, choices, counts, "catalogue"
    from dsa110_contimg.catalogs.compactness import RESOLVED

    ctx.write_measurements(conn)      # the ensemble is read from the stored raw fluxes
    ens = ensemble_references(conn, ctx, table, cfg,
                              exclude=variable | (np.asarray(inputs["klass"]) == RESOLVED))
    if ens is None or ens[0].size < cfg.norm_min_refs:
        counts["ensemble"] = "no" if ens is None else f"{ens[0].size}"
        return ref_idx, choices, counts, "catalogue"
    ens_idx, ens_why = ens
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
                            "compactness": str(inputs["klass"][i]), "snr": float(snr[i]),
                            "reason": "chosen (fallback ensemble): " + ens_why[i]})
    return ens_idx, choices, counts, "ensemble"
