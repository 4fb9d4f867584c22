"""Per-image ensemble flux-scale normalisation (differential photometry).

Each image's flux scale wanders by several per cent (atmosphere, calibration
drift, beam model). Bright, compact, isolated and stable *reference* sources are
forced-measured on every image; the ratio of each reference's flux to its
baseline gives the image's gain, and every flux of the image is divided by it
(docs/science.md, Normalisation):

1. :func:`select_references` -- the references of a field.
2. :func:`reference_baselines` -- median of each reference's first epochs, the
   common gain of each epoch divided out first.
3. :func:`compute_correction` -- clipped random-effects mean of flux/baseline for one
   image, with at least 3 references, an error that reflects the references' own noise
   and their spread, a ``warning`` when they disagree, and a trust decision
   (``ok``/``reason``).
4. :func:`apply_correction` -- F/C with the error of C propagated; refuses
   (:class:`~dsa110_contimg.core.errors.NotNormalisable`) when the
   correction is not trusted: fluxes are never silently "normalised" by 1.

Units: fluxes and baselines in Jy/beam (any unit, as long as it is the same for
a reference's flux and its baseline); the correction factor is dimensionless.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from dsa110_contimg.core.clipping import MAD_TO_SIGMA, MEDIAN_EFFICIENCY, mad_clip, mad_sigma  # noqa: F401 (re-exported)
from dsa110_contimg.core.errors import InvalidLightCurve, NotNormalisable



def select_references(snr, compact_ok, isolated_ok, chi2_nu_recent=None, master_reference_ok=None,
                      *, min_snr: float = 50.0, max_chi2_nu: float = 2.0, max_refs: int = 20,
                      separation_deg=None, max_separation_deg: float = 1.5) -> np.ndarray:
    """Choose the reference sources of a field.

    Parameters
    ----------
    snr : array-like, shape (n,)
        Catalogue signal-to-noise ratio (e.g. NVSS ``snr``).
    compact_ok, isolated_ok : array-like of bool, shape (n,)
        Unresolved (``resolved_flag == 0``) and unconfused (``confusion_flag == 0``).
    chi2_nu_recent : array-like, shape (n,), optional
        Reduced chi-squared of each source's normalised flux over the last 30 days
        (docs/science.md, Normalisation: reference stability); NaN means "fewer than 5 recent points,
        not judged" and keeps the source. Sources above ``max_chi2_nu`` are dropped.
    master_reference_ok : array-like of bool, shape (n,), optional
        Flag from the master source list (e.g. spectral index -1.2 < alpha < 0.2 and
        not a known variable); False drops the source.
    min_snr : float
        Minimum catalogue SNR (default 50; the stricter ``final_references`` view uses 80).
    max_chi2_nu : float
        Stability threshold (default 2.0).
    max_refs : int
        At most this many references, the highest SNR first (default 20).
    separation_deg : array-like, shape (n,), optional
        Distance from the field centre (deg); when given, sources farther than
        ``max_separation_deg`` are dropped *before* the row limit.
    max_separation_deg : float
        Field-of-view radius (deg), default 1.5.

    Returns
    -------
    ndarray of int
        Indices of the selected sources, by decreasing SNR (ties: lower index first).
    """
    snr = np.asarray(snr, dtype=float)
    n = snr.shape[0] if snr.ndim == 1 else -1
    arrays = {"compact_ok": compact_ok, "isolated_ok": isolated_ok,
              "chi2_nu_recent": chi2_nu_recent, "master_reference_ok": master_reference_ok,
              "separation_deg": separation_deg}
    for name, a in arrays.items():
        if a is not None and np.shape(a) != (n,):
            raise InvalidLightCurve(f"select_references: {name} has shape {np.shape(a)}, "
                                    f"snr has shape {snr.shape}")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(snr) & (snr >= min_snr)
        keep &= np.asarray(compact_ok, dtype=bool) & np.asarray(isolated_ok, dtype=bool)
        if chi2_nu_recent is not None:
            c = np.asarray(chi2_nu_recent, dtype=float)
            keep &= ~(c > max_chi2_nu)
        if master_reference_ok is not None:
            keep &= np.asarray(master_reference_ok, dtype=bool)
        if separation_deg is not None:
            keep &= np.asarray(separation_deg, dtype=float) <= max_separation_deg
    idx = np.flatnonzero(keep)
    order = np.argsort(-snr[idx], kind="stable")
    return idx[order][: max(int(max_refs), 0)]


def reference_baselines(flux2d, mjd2d, *, n_epochs: int = 10, min_points: int = 3,
                        common_gain: bool = True):
    """Baseline flux of each reference: median of its first epochs.

    Parameters
    ----------
    flux2d : array-like, shape (n_refs, n_epochs_total)
        Raw forced flux (Jy/beam) of each reference (row) per image (column),
        NaN where missing. Non-finite or <= 0 fluxes are skipped.
    mjd2d : array-like, shape (n_refs, n_epochs_total) or (n_epochs_total,)
        Observation MJD of each point (columns need not be in time order).
    n_epochs : int
        Use the first ``n_epochs`` valid points by MJD (default 10).
    min_points : int
        A reference with fewer valid points there is not usable (default 3).
    common_gain : bool
        Divide each point by its epoch's common gain before taking the median (default):
        the median over references of flux / the reference's own raw median at that MJD,
        with at least 3 references. Without it, the median of a noisy reference picks the
        gain of whichever epoch happens to be its middle value, so references whose
        medians fall on different epochs disagree by the epoch-to-epoch gain jitter
        (docs/science.md §7.2).

    Returns
    -------
    baseline : ndarray, shape (n_refs,)
        Median flux (Jy/beam); NaN when not usable.
    baseline_rms : ndarray, shape (n_refs,)
        1.4826 MAD of the same points (Jy/beam); NaN when not usable.
    usable : ndarray of bool, shape (n_refs,)
    """
    f = np.asarray(flux2d, dtype=float)
    t = np.asarray(mjd2d, dtype=float)
    if f.ndim != 2:
        raise InvalidLightCurve(f"reference_baselines: flux2d must be 2-D, got shape {f.shape}")
    if t.ndim == 1 and t.shape[0] == f.shape[1]:
        t = np.broadcast_to(t, f.shape)
    if t.shape != f.shape:
        raise InvalidLightCurve(f"reference_baselines: mjd2d has shape {t.shape}, flux2d {f.shape}")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & (f > 0) & np.isfinite(t)
    order = np.argsort(np.where(ok, t, np.inf), axis=1, kind="stable")[:, :n_epochs]
    first = np.take_along_axis(np.where(ok, f, np.nan), order, axis=1)
    count = np.isfinite(first).sum(axis=1)
    usable = count >= max(int(min_points), 1)
    baseline = np.full(f.shape[0], np.nan)
    rms = np.full(f.shape[0], np.nan)
    if usable.any():
        sub = first[usable]
        if common_gain and sub.shape[0] >= 3:
            sub = sub / _window_gains(f[usable], t[usable], sub,
                                      np.take_along_axis(t, order, axis=1)[usable])
        baseline[usable] = np.nanmedian(sub, axis=1)
        rms[usable] = mad_sigma(sub, axis=1)
    return baseline, rms, usable


def _window_gains(f, t, first, first_t):
    """The common gain of each point of the baseline windows ``first`` (n_refs, n_epochs):
    per epoch (one MJD), the median over the references seen then of flux / the
    reference's own raw median, scaled so that its median over the epochs is 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = f / np.nanmedian(first, axis=1, keepdims=True)
    ok = np.isfinite(rel) & np.isfinite(t)
    epochs, inv = np.unique(np.where(ok, t, np.nan)[ok], return_inverse=True)
    gain = np.ones(epochs.size)
    cols = np.full((epochs.size, f.shape[0]), np.nan)
    rows = np.nonzero(ok)[0]
    cols[inv, rows] = rel[ok]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gain = np.nanmedian(cols, axis=1)
        gain = np.where(np.isfinite(gain) & (gain > 0), gain, 1.0)
    pos = np.searchsorted(epochs, np.where(np.isfinite(first_t), first_t, epochs[0]))
    pos = np.clip(pos, 0, epochs.size - 1)
    g = gain[pos]
    return g / np.nanmedian(np.where(np.isfinite(first), g, np.nan))


def baseline_errors(err2d, mjd, *, n_epochs: int = 10) -> np.ndarray:
    """1-sigma error of each baseline from measurement noise alone (Jy/beam).

    sqrt(pi/2) x the median flux error of the baseline's points / sqrt(n), n = the points
    in the window (at most ``n_epochs`` valid ones): the standard error of a median of n
    points of that noise. ``err2d`` has shape (n_refs, n_epochs_total) (NaN where
    missing); ``mjd`` is 1-D (per column) or 2-D like ``err2d``. NaN without points.
    """
    e = np.asarray(err2d, dtype=float)
    t = np.asarray(mjd, dtype=float)
    if t.ndim == 1:
        t = np.broadcast_to(t, e.shape)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(e) & (e > 0) & np.isfinite(t)
    order = np.argsort(np.where(ok, t, np.inf), axis=1, kind="stable")[:, :n_epochs]
    first = np.take_along_axis(np.where(ok, e, np.nan), order, axis=1)
    n = np.isfinite(first).sum(axis=1)
    out = np.full(e.shape[0], np.nan)
    has = n > 0
    out[has] = MEDIAN_EFFICIENCY * np.nanmedian(first[has], axis=1) / np.sqrt(n[has])
    return out


@dataclass
class Correction:
    """The flux-scale correction of one image.

    Attributes
    ----------
    factor : float
        C, the median of flux/baseline over the references used (dimensionless; NaN
        when fewer than ``min_refs`` ratios exist). Normalised flux = raw flux / C.
    factor_err : float
        Standard error of C (dimensionless; see :func:`compute_correction`): never
        smaller than what the references' own flux errors allow, and reflecting the
        spread of all usable ratios, the clipped ones included.
    n_refs : int
        References with a usable ratio (finite, > 0 flux and baseline).
    n_used : int
        References surviving the clip.
    scatter : float
        1.4826 MAD of all usable ratios (dimensionless, ~ fractional).
    used_mask : ndarray of bool
        Per input reference, whether its ratio entered C.
    ok : bool
        Whether the correction can be trusted and applied.
    reason : str
        Why not, when ``ok`` is False (empty otherwise).
    ratios : ndarray of float
        Per input reference, flux / baseline (NaN when not usable).
    warning : str
        Why the references disagree when they do (``ok`` may still be True, with the
        error widened); empty otherwise.
    """

    factor: float
    factor_err: float
    n_refs: int
    n_used: int
    scatter: float
    used_mask: np.ndarray = field(repr=False)
    ok: bool
    reason: str = ""
    ratios: np.ndarray = field(default=None, repr=False)
    warning: str = ""

    def to_dict(self) -> dict:
        """Plain values for storage (``status`` is ``ok`` or ``not_normalisable``)."""
        return {"status": "ok" if self.ok else "not_normalisable", "factor": self.factor,
                "factor_err": self.factor_err, "n_refs": self.n_refs, "n_used": self.n_used,
                "scatter": self.scatter, "reason": self.reason, "warning": self.warning,
                "used_refs": np.flatnonzero(self.used_mask).tolist()}


#: A correction is flagged as disagreeing when at least this fraction of its usable ratios
#: (and at least 2 of them) are clipped: 2 of 9-10 references already make a discordant
#: subset, while a clean set of that size clips 2 ratios at 3 sigma almost never.
DISAGREE_CLIPPED_FRACTION = 0.20
#: ... or when the robust scale of all usable ratios exceeds this multiple of the scatter
#: their own flux and baseline errors explain.
DISAGREE_EXCESS = 2.0


def compute_correction(ref_flux, ref_baseline, *, ref_err=None, baseline_err=None,
                       min_refs: int = 3, clip_sigma: float = 3.0,
                       max_scatter: float = 0.10) -> Correction:
    """Flux-scale correction of one image from its reference sources.

    R_i = F_i / baseline_i over references with finite, positive flux and baseline,
    each with its own noise s_i = R_i sqrt((e_i/F_i)^2 + (eb_i/baseline_i)^2) when the
    errors are given. C0 = median(R), S = 1.4826 MAD(R) over *all* usable ratios; a ratio
    is clipped when |R_i - C0| > clip_sigma * max(S, s_i) (one that agrees within its own
    noise is never clipped); all are kept when fewer than ``min_refs`` would remain.

    C and its error (docs/science.md §7.3): the random-effects weighted mean of the kept
    ratios (:func:`_combine`; the median and its standard error when some ratio has no
    noise estimate). When the references disagree -- a fifth or more of them (at least 2)
    clipped, or the kept ratios scatter more than twice their errors -- the correction carries a
    ``warning`` and its variance is widened by (C - C_all)^2 + (C - median(R))^2 / 2,
    C_all the estimate with the clipped ratios put back. The trusted-scatter test uses
    sigma_R = max(S, 1.4826 MAD of the kept ratios).

    Parameters
    ----------
    ref_flux : array-like, shape (n_refs,)
        Forced flux of each reference on this image (Jy/beam).
    ref_baseline : array-like, shape (n_refs,)
        Baseline of each reference (same unit), NaN when not usable.
    ref_err, baseline_err : array-like, shape (n_refs,), optional
        1-sigma errors of the flux on this image and of the baseline (Jy/beam); NaN or
        absent: that term is 0.
    min_refs : int
        Minimum number of usable ratios (default 3).
    clip_sigma : float
        Clip threshold in units of max(S, s_i) (default 3).
    max_scatter : float
        Maximum trusted fractional scatter sigma_R / C (default 0.10): beyond it the
        references cannot agree and the image is not normalised.

    Returns
    -------
    Correction
        ``ok`` False (with ``reason``) when too few ratios exist or the scatter is
        too large; ``factor`` is still reported when it could be computed.
    """
    f = np.asarray(ref_flux, dtype=float)
    b = np.asarray(ref_baseline, dtype=float)
    if f.ndim != 1 or b.shape != f.shape:
        raise InvalidLightCurve(f"compute_correction: ref_flux and ref_baseline must be 1-D of "
                                f"equal length, got {f.shape} and {b.shape}")
    valid, r, noise = _ratios(f, b, _flux_errors(ref_err, f, "ref_err"),
                              _flux_errors(baseline_err, f, "baseline_err"))
    n_refs = int(valid.sum())
    nan = float("nan")
    if n_refs < max(int(min_refs), 1):
        return Correction(nan, nan, n_refs, 0, nan, np.zeros(f.shape, bool), False,
                          f"only {n_refs} usable reference ratio(s) (finite, > 0 flux and "
                          f"baseline); at least {min_refs} needed", r)
    rv, nv = r[valid], noise[valid]
    s_all = float(mad_sigma(rv))
    keep = np.abs(rv - float(np.median(rv))) <= clip_sigma * np.maximum(s_all, nv)
    if keep.sum() < min_refs:
        keep = np.ones_like(keep)
    weighted = bool(np.all(nv > 0))
    c, err, excess = _combine(rv[keep], nv[keep], weighted)
    why = _disagreement(n_refs, n_refs - int(keep.sum()), excess)
    warning = ""
    if why:
        err = _widened_error(c, err, rv, nv, weighted)
        warning = "references disagree: " + "; ".join(why) + f"; error widened to {err:.4f}"
    used = np.zeros(f.shape, bool)
    used[np.flatnonzero(valid)[keep]] = True
    sigma_r = max(s_all, float(mad_sigma(rv[keep])))
    ok, reason = True, ""
    if not (np.isfinite(c) and c > 0):
        ok, reason = False, f"correction factor {c!r} is not finite and positive"
    elif sigma_r / c > max_scatter:
        ok, reason = False, (f"reference ratio scatter {sigma_r / c:.3f} exceeds the maximum "
                             f"{max_scatter:.3f}")
    return Correction(c, float(err), n_refs, int(keep.sum()), s_all, used, ok, reason, r, warning)


def _flux_errors(x, f, name: str) -> np.ndarray:
    """1-sigma errors shaped like ``f`` (Jy/beam); absent, non-finite or <= 0 counts as 0."""
    if x is None:
        return np.zeros(f.shape)
    x = np.asarray(x, dtype=float)
    if x.shape != f.shape:
        raise InvalidLightCurve(f"compute_correction: {name} has shape {x.shape}, "
                                f"ref_flux {f.shape}")
    return np.where(np.isfinite(x) & (x > 0), x, 0.0)


def _ratios(f, b, ef, eb):
    """(usable mask, R = F / baseline (NaN where unusable), each ratio's own noise)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(f) & (f > 0) & np.isfinite(b) & (b > 0)
        r = np.where(valid, f / np.where(valid, b, 1.0), np.nan)
        noise = np.abs(r) * np.sqrt((ef / np.where(valid, f, 1.0)) ** 2
                                    + (eb / np.where(valid, b, 1.0)) ** 2)
    return valid, r, noise


def _disagreement(n_refs: int, n_clipped: int, excess: float) -> list[str]:
    """Why the references do not tell one gain (empty when they agree)."""
    why = []
    if n_clipped >= 2 and n_clipped >= DISAGREE_CLIPPED_FRACTION * n_refs:
        why.append(f"{n_clipped} of {n_refs} reference ratios clipped")
    if excess > DISAGREE_EXCESS:
        why.append(f"the ratios scatter {excess:.1f}x more than their flux errors explain")
    return why


def _widened_error(c: float, err: float, rv, nv, weighted: bool) -> float:
    """Error of a factor whose references disagree: widened by how far the estimate moves
    when the clipped ratios are put back (the random-effects mean of all; their plain mean
    without errors) and by half its squared distance to the median of all ratios (the
    robust view of where the gain lies); the random-effects weights already carry the excess
    scatter of the kept ones."""
    c_all = _combine(rv, nv, True)[0] if weighted else float(np.mean(rv))
    return float(np.sqrt(err ** 2 + (c - c_all) ** 2 + 0.5 * (c - float(np.median(rv))) ** 2))


def _combine(r, noise, weighted: bool) -> tuple[float, float, float]:
    """(C, its standard error, the excess-scatter ratio) of ratios ``r``.

    With every ratio's noise known (``weighted``): a random-effects weighted mean. The
    scatter the noise does not explain, tau^2 = max(0, (Q - (n - 1)) / (sum w - sum w^2 /
    sum w)) with Q = sum w (r - C_w)^2 and w = 1/noise^2 (DerSimonian & Laird 1986), is
    added to every ratio's variance; C = sum w' r / sum w' with w' = 1/(noise^2 + tau^2),
    excess sqrt(Q / (n - 1)). The error (:func:`_random_effects_error`) allows for tau^2
    being estimated from few ratios. Otherwise: the median, sqrt(pi/2) x 1.4826 MAD /
    sqrt(n), and NaN.
    """
    n = r.size
    if not weighted:
        return float(np.median(r)), MEDIAN_EFFICIENCY * float(mad_sigma(r)) / np.sqrt(n), np.nan
    if n < 2:
        return float(r[0]), float(noise[0]), 1.0
    w = 1.0 / noise ** 2
    cw = float(np.sum(w * r) / np.sum(w))
    q = float(np.sum(w * (r - cw) ** 2))
    tau2 = max(0.0, (q - (n - 1)) / (np.sum(w) - np.sum(w ** 2) / np.sum(w)))
    w2 = 1.0 / (noise ** 2 + tau2)
    c = float(np.sum(w2 * r) / np.sum(w2))
    return c, _random_effects_error(noise, tau2), float(np.sqrt(q / (n - 1)))


def _random_effects_error(noise, tau2: float) -> float:
    """Standard error of the random-effects mean of n >= 2 ratios, honest for small n:
    1/sqrt(sum 1/(noise^2 + tau^2 n/(n - 1))). The moment estimate of tau^2 measures the
    spread about the *estimated* mean, which is (n - 1)/n of the spread about the true
    gain; rescaled by n/(n - 1) it matters only when the ratios scatter beyond their noise,
    and most when they are few (the weights of C itself keep the plain tau^2)."""
    n = noise.size
    return float(1.0 / np.sqrt(np.sum(1.0 / (noise ** 2 + tau2 * n / (n - 1)))))


def apply_correction(flux, flux_err, correction: Correction):
    """Normalise fluxes of one image.

    F_norm = F / C and sigma_norm**2 = (sigma / C)**2 + (F sigma_C' / C**2)**2,
    with sigma_C' = ``correction.factor_err`` (the standard error of C; see
    :func:`compute_correction`).

    Parameters
    ----------
    flux, flux_err : array-like
        Raw fluxes and errors of the image's sources (Jy/beam); NaN stays NaN.
    correction : Correction
        From :func:`compute_correction` for the same image.

    Returns
    -------
    flux_norm, err_norm : ndarray
        Same shape as ``flux``.

    Raises
    ------
    NotNormalisable
        If ``correction.ok`` is False: the image's fluxes must be stored raw and
        flagged, never divided by a default factor of 1.
    """
    if not correction.ok:
        raise NotNormalisable(f"image not normalisable: {correction.reason}")
    f = np.asarray(flux, dtype=float)
    e = np.asarray(flux_err, dtype=float)
    c, ce = correction.factor, correction.factor_err
    fn = f / c
    en = np.sqrt((e / c) ** 2 + (f * ce / (c * c)) ** 2)
    return fn, en


def ensemble_steadiness(flux2d, err2d, mjd2d) -> dict:
    """How steady each of a block of raw light curves is once the common gain is removed.

    The common per-epoch gain is the median over sources of flux / the source's own
    median flux; each light curve is divided by it (flux and error), and the variability
    metrics of :mod:`dsa110_contimg.science.variability` are taken of what is left.

    Parameters
    ----------
    flux2d, err2d : array-like, shape (n_sources, n_epochs)
        Raw flux and error (Jy/beam), one column per epoch (image); NaN where missing.
        Points with flux <= 0 or error <= 0 are ignored.
    mjd2d : array-like, shape (n_sources, n_epochs) or (n_epochs,)
        Epoch of each point (MJD).

    Returns
    -------
    dict
        ``n`` (valid points), ``eta`` and ``v`` per source (NaN for fewer than 2 points).
    """
    from dsa110_contimg.science.variability import RunningStats, lightcurve_block

    f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "ensemble_steadiness")
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(f) & (f > 0) & np.isfinite(e) & (e > 0)
        f = np.where(good, f, np.nan)
        gain = np.nanmedian(f / np.nanmedian(f, axis=1, keepdims=True), axis=0, keepdims=True)
        metrics = RunningStats.from_lightcurves(f / gain, np.where(good, e, np.nan) / gain,
                                                t).metrics()
    return {"n": metrics["n"], "eta": metrics["eta"], "v": metrics["v"]}


def normalise_epochs(flux2d, err2d, mjd, ref_index, *, n_epochs: int = 10, min_points: int = 3,
                     **correction_kw):
    """Normalise a block of light curves image by image (e.g. a full recompute).

    Parameters
    ----------
    flux2d, err2d : array-like, shape (n_sources, n_images)
        Raw flux and error (Jy/beam), one column per image, NaN where missing.
    mjd : array-like, shape (n_images,)
        Observation MJD of each image.
    ref_index : array-like of int
        Rows of the reference sources (e.g. from :func:`select_references`).
    n_epochs, min_points : int
        Passed to :func:`reference_baselines`.
    **correction_kw
        Passed to :func:`compute_correction` (``min_refs``, ``clip_sigma``, ``max_scatter``).

    Returns
    -------
    flux_norm, err_norm : ndarray, shape (n_sources, n_images)
        Normalised values; the columns of images whose correction is not ``ok``
        are NaN (the raw values stay the caller's; never divided by 1).
    corrections : list of Correction
        One per image (column).
    """
    f = np.asarray(flux2d, dtype=float)
    e = np.asarray(err2d, dtype=float)
    t = np.asarray(mjd, dtype=float)
    if f.ndim != 2 or e.shape != f.shape or t.shape != (f.shape[1],):
        raise InvalidLightCurve(f"normalise_epochs: flux2d {f.shape}, err2d {e.shape} and mjd "
                                f"{t.shape} must be (n_sources, n_images) and (n_images,)")
    ref = np.asarray(ref_index, dtype=np.int64)
    base, _, usable = reference_baselines(f[ref], t, n_epochs=n_epochs, min_points=min_points)
    base = np.where(usable, base, np.nan)
    base_err = baseline_errors(e[ref], t, n_epochs=n_epochs)
    fn = np.full(f.shape, np.nan)
    en = np.full(f.shape, np.nan)
    corrections = []
    for j in range(f.shape[1]):                      # one image at a time, all sources at once
        corr = compute_correction(f[ref, j], base, ref_err=e[ref, j], baseline_err=base_err,
                                  **correction_kw)
        corrections.append(corr)
        if corr.ok:
            fn[:, j], en[:, j] = apply_correction(f[:, j], e[:, j], corr)
    return fn, en, corrections


__all__ = ["Correction", "apply_correction", "baseline_errors", "compute_correction", "ensemble_steadiness",
           "normalise_epochs",
           "reference_baselines", "select_references", "MAD_TO_SIGMA", "MEDIAN_EFFICIENCY"]
