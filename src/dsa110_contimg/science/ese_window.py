"""The window of epochs a per-image ESE search reads, and the summary of the epochs before it.

An ESE template (:mod:`~dsa110_contimg.science.ese`) of duration D looks at the epochs of
its event and of the recovery windows of max(D, 30 d) on either side: nothing farther
than D/2 + max(D, 30 d) from its epoch of minimum (270 d for the longest, 180-d,
template). Every template the per-image search fits (those whose recovery window ends
with the new epoch, those live at it, a known candidate's stored template and its
neighbours when inside the window) therefore lies within :func:`search_window_days`
(540 d) of the new epoch. The epochs before the window enter those fits only through
four sums per source, the baseline of the light curve: their count, sum of weights
w = 1/err**2, of w f and of w f**2, and the first epoch (MJD) -- which the running
statistics of :mod:`~dsa110_contimg.science.variability` hold for the whole light curve,
so the summary is the running totals minus the window's own sums (:func:`summary_before`).
A search given the window and the summary (:func:`with_summary`) fits every template
inside the window exactly as the search of the whole light curve does.

Fluxes are the light curves' (normalised) flux densities in Jy/beam, errors alike; times MJD.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def search_window_days(durations, recovery_window: float = 1.0,
                       min_recovery_days: float = 30.0) -> float:
    """Span (days) of the longest template with its recovery windows:
    max over D of D + 2 max(``recovery_window`` D, ``min_recovery_days``)."""
    d = np.asarray(durations, float)
    return float(np.max(d + 2.0 * np.maximum(recovery_window * d, min_recovery_days)))


def window_sums(flux2d, err2d, mjd2d) -> dict:
    """Per source: the count, sum of w, w f and w f**2 of the usable points (finite flux,
    error > 0, finite MJD) of NaN-padded light curves, w = 1/err**2."""
    f = np.asarray(flux2d, float)
    e = np.asarray(err2d, float)
    t = np.broadcast_to(np.asarray(mjd2d, float), f.shape)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
    w = np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)
    fz = np.where(ok, f, 0.0)
    return {"n": ok.sum(axis=1).astype(float), "sum_w": w.sum(axis=1),
            "sum_wf": (w * fz).sum(axis=1), "sum_wf2": (w * fz * fz).sum(axis=1)}


def summary_before(stats: Mapping, window: Mapping, until: float) -> dict | None:
    """The epochs before ``until`` (MJD) as sums: the running totals ``stats`` (``n``,
    ``sum_w``, ``sum_wf``, ``sum_wf2``, ``first_mjd`` per source, over the whole light
    curve) minus the ``window`` sums (:func:`window_sums` of the epochs read, all at or
    after ``until``).

    A source whose first epoch is not before ``until``, or whose remainder is empty
    (count or weight not positive, rounding of equal totals), gets ``n`` 0. Returns the
    dict of :func:`with_summary` (``n``, ``sum_w``, ``sum_wf``, ``sum_wf2``,
    ``first_mjd`` arrays and ``until``), or None when no source has epochs before."""
    first = np.asarray(stats["first_mjd"], float)
    n = np.asarray(stats["n"], float) - window["n"]
    sw = np.asarray(stats["sum_w"], float) - window["sum_w"]
    swf = np.asarray(stats["sum_wf"], float) - window["sum_wf"]
    swf2 = np.asarray(stats["sum_wf2"], float) - window["sum_wf2"]
    with np.errstate(invalid="ignore"):
        has = (first < until) & (n >= 1) & (sw > 1e-9 * np.asarray(stats["sum_w"], float))
    if not has.any():
        return None
    z = np.where(has, 1.0, 0.0)
    return {"n": np.where(has, np.round(n), 0.0), "sum_w": sw * z, "sum_wf": swf * z,
            "sum_wf2": swf2 * z, "first_mjd": np.where(has, first, np.nan),
            "until": float(until)}


def with_summary(flux, err, mjd, summary: Mapping | None, at: str = "first"):
    """Light curves with the summarised epochs (:func:`summary_before`) as one leading point.

    The point of a source holds the weighted mean flux sum_wf/sum_w with error
    1/sqrt(sum_w), so that its weight and weighted flux are the summary's; it stands for
    ``n`` epochs (``counts``) and its internal scatter sum_wf2 - sum_wf**2/sum_w is
    returned apart (``extra_chi2``), to be added to the chi-squared about any constant.
    Its time is the first summarised epoch (``at="first"``; what the template searches'
    first-epoch rules use) or ``until`` (``at="until"``: the latest it can be).

    Returns
    -------
    flux, err, mjd : ndarray, shape (n_sources, n_epochs + 1) (the inputs when no summary)
    counts : ndarray of float, same shape: epochs each point stands for
    extra_chi2 : ndarray, shape (n_sources,)
    """
    f = np.asarray(flux, float)
    e = np.asarray(err, float)
    t = np.broadcast_to(np.asarray(mjd, float), f.shape)
    if summary is None:
        return f, e, t, np.ones(f.shape), np.zeros(f.shape[0])
    n = np.asarray(summary["n"], float)
    sw = np.asarray(summary["sum_w"], float)
    has = (n > 0) & (sw > 0)
    safe = np.where(has, sw, 1.0)
    mean = np.where(has, np.asarray(summary["sum_wf"], float) / safe, np.nan)
    e0 = np.where(has, 1.0 / np.sqrt(safe), np.nan)
    t0 = (np.asarray(summary["first_mjd"], float) if at == "first"
          else np.full(n.size, float(summary["until"])))
    extra = np.where(has, np.asarray(summary["sum_wf2"], float) - mean * np.asarray(
        summary["sum_wf"], float), 0.0)
    counts = np.ones((f.shape[0], f.shape[1] + 1))
    counts[:, 0] = np.where(has, n, 0.0)
    return (np.column_stack([mean, f]), np.column_stack([e0, e]),
            np.column_stack([np.where(has, t0, np.nan), t]), counts, np.maximum(extra, 0.0))


def reaches_before(t0, duration, until: float, recovery_window: float = 1.0,
                   min_recovery_days: float = 30.0) -> np.ndarray:
    """Whether templates (epoch of minimum ``t0``, MJD; ``duration``, days) look at epochs
    before ``until`` (MJD): their pre-event recovery window starts before it."""
    d = np.asarray(duration, float)
    start = np.asarray(t0, float) - d / 2.0 - np.maximum(recovery_window * d, min_recovery_days)
    with np.errstate(invalid="ignore"):
        return start < until


def cannot_reach(stats: Mapping, threshold: float | None = None) -> np.ndarray:
    """Sources whose light curve no fit of the ESE search or of the stages can make
    significant at ``threshold`` sigma, from the running sums ``stats`` alone (``n``,
    ``sum_w``, ``sum_wf``, ``sum_wf2`` per source, over the whole light curve).

    Every significance the searches compute (a template, a live template, a two-level step:
    :mod:`~dsa110_contimg.science.ese`, :mod:`~dsa110_contimg.science.ese_stage`) is
    sqrt(Delta chi2 / s) with s >= 1, where Delta chi2, the chi-squared the fit removes
    from the constant model, is at most the chi-squared of the epochs fitted about their
    weighted mean (Cauchy-Schwarz), itself at most that of the whole light curve about its
    own: chi2_const = sum_wf2 - sum_wf**2 / sum_w (docs/science.md, section 11.3). A
    source with chi2_const + 1e-9 sum_wf2 (a margin for rounding) below ``threshold``**2
    can be neither detected nor staged. ``threshold`` (sigma): by default the lowest of
    the search's and the stages' thresholds.
    """
    if threshold is None:
        from dsa110_contimg.science.ese import DEFAULT_MIN_SIGNIFICANCE
        from dsa110_contimg.science.ese_stage import DEFAULT_LIVE_SIGNIFICANCE

        threshold = min(DEFAULT_MIN_SIGNIFICANCE, DEFAULT_LIVE_SIGNIFICANCE)
    n = np.asarray(stats["n"], float)
    sw = np.asarray(stats["sum_w"], float)
    swf = np.asarray(stats["sum_wf"], float)
    swf2 = np.asarray(stats["sum_wf2"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = swf2 - swf * swf / np.where(sw > 0, sw, np.nan)
        return (n >= 1) & (sw > 0) & np.isfinite(chi2) & \
            (chi2 + 1e-9 * np.abs(swf2) < float(threshold) ** 2)


__all__ = ["cannot_reach", "reaches_before", "search_window_days", "summary_before", "window_sums",
           "with_summary"]
