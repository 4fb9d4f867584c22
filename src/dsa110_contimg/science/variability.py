"""Variability metrics of light curves: one-shot, incremental (O(1)) and bulk.

All metrics are computed on one flux series per source -- the *normalised*
forced peak flux density (Jy/beam, see :mod:`dsa110_contimg.science.normalize`)
when normalisation is on -- with 1-sigma errors in the same unit.

Definitions (docs/science.md, Variability metrics). A light curve has N valid points
I_i with errors s_i, where *valid* means finite flux, finite error and
error > 0 (anything else is ignored, never counted as zero); w_i = 1/s_i**2.

==================  ==========================================================
``n``               number of valid points
``mean``            unweighted mean  Ibar
``weighted_mean``   sum(w I) / sum(w)
``v``               sample std (ddof 1) / Ibar
``eta``             sum(w (I - Iw)**2) / (N - 1), Iw the weighted mean
``chi2_nu``         sum((I - Ibar)**2 / s**2) / (N - 1)  (about the *unweighted* mean)
``p_value``         chi2 survival(chi2, N - 1), floored at 1e-10
``m``               population std (ddof 0) / Ibar
``m_debiased``      sign(D) sqrt(|D| / N) / Ibar,  D = sum((I-Ibar)**2) - sum(s**2)
``sigma_deviation`` max(|max I - Ibar|, |min I - Ibar|) / sample std (ddof 1);
                    0 when the sample std is 0
``vs_max``          largest |Vs| over *consecutive* pairs (see below), >= 0
``m_at_vs_max``     signed two-epoch modulation index of that pair
==================  ==========================================================

Metrics that are undefined for N < 2 are NaN (not 0), so that "no data" is never
confused with "steady"; ``mean`` and ``weighted_mean`` are NaN for N = 0. A zero
mean makes the ratios (``v``, ``m``, ``m_debiased``) NaN.

Two-epoch pairs. For a time-ordered pair (a earlier than b),
Vs = (S_a - S_b) / sqrt(s_a**2 + s_b**2) and m = 2 (S_a - S_b) / (S_a + S_b)
(Mooley et al. 2016; NaN when S_a + S_b = 0). Comparing every pair is O(N**2)
(the memory problem of the VAST pipeline), and comparing a new epoch with the
running minimum/maximum epochs would need their errors, which the stored running
sums do not hold. We therefore use **consecutive valid epochs in time order**
(each new epoch against the previous valid one): ``vs_max`` is the largest |Vs|
over the N - 1 consecutive pairs (the earliest pair wins a tie), stored as an
absolute value, and ``m_at_vs_max`` is the signed m of that same pair
(positive when the flux fell). This is exactly O(1)-updatable when points arrive
in time order; :class:`RunningStats.from_lightcurves` sorts by MJD and gives the
same value, and an epoch arriving out of time order requires a recompute
(:func:`needs_recompute`, :class:`~dsa110_contimg.core.errors.OutOfOrderEpoch`).

VAST's definitions over *all* pairs are available on demand
(``lightcurve_metrics(..., pairs="all")``, :func:`all_pairs_metrics`):
``vs_max_all`` (max |Vs| over all pairs) with ``m_at_vs_max_all``, and the "most
significant pair" ``m_significant`` (largest |m| among pairs with |Vs| >= 4.3)
with ``vs_at_m_significant`` -- computed with a bound-ordered block search that
never holds all N**2 pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import stats

from dsa110_contimg.core.errors import InvalidLightCurve, OutOfOrderEpoch

#: Floor of the chi-squared p-value (Robbie convention).
P_VALUE_FLOOR = 1e-10

#: Keys of :func:`lightcurve_metrics` (and of :meth:`RunningStats.metrics`).
METRIC_KEYS = ("n", "mean", "weighted_mean", "v", "eta", "chi2_nu", "p_value", "m",
               "m_debiased", "vs_max", "m_at_vs_max", "sigma_deviation")


def _valid(flux, err):
    return np.isfinite(flux) & np.isfinite(err) & (err > 0)


def _div(num, den):
    """num / den with NaN (not inf, no warning) where den is 0 or NaN."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    ok = np.isfinite(den) & (den != 0)
    np.divide(num, den, out=out, where=ok)
    return out


def _pair_metrics(fa, ea, fb, eb):
    """Two-epoch Vs and m for pairs (a earlier than b), vectorised."""
    vs = (fa - fb) / np.sqrt(ea * ea + eb * eb)
    m = _div(2.0 * (fa - fb), fa + fb)
    return vs, m


#: Relative size of sum((f - mean)**2) against sum(f**2) treated as rounding (~ 16 ulp).
_ROUNDING = 16 * np.finfo(np.float64).eps


def _metrics_from_sums(n, sum_w, sum_wf, sum_wf2, sum_f, sum_f2, sum_var, min_flux, max_flux):
    """Every sum-derived metric, vectorised; the shared core of both code paths."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _div(sum_f, n)
        wmean = _div(sum_wf, sum_w)
        dof = np.where(n >= 2, n - 1.0, np.nan)
        sum_f2 = np.asarray(sum_f2, dtype=float)
        ss = sum_f2 - _div(np.asarray(sum_f) ** 2, n)
        # below ~n ulp of sum(f**2) the difference is rounding, not scatter: a constant
        # light curve must read V = 0 and sigma-dev = 0, not noise / noise
        ss = np.where(ss > _ROUNDING * np.maximum(n, 1.0) * sum_f2, ss, 0.0)
        var1 = ss / dof                                       # sample variance (ddof 1)
        std1 = np.sqrt(var1)
        v = _div(std1, mean)
        m = _div(np.sqrt(ss / np.where(n >= 2, n, np.nan)), mean)
        sum_wf2 = np.asarray(sum_wf2, dtype=float)
        tiny = _ROUNDING * np.maximum(n, 1.0) * sum_wf2
        eta_ss = sum_wf2 - _div(np.asarray(sum_wf) ** 2, sum_w)
        eta = np.where(eta_ss > tiny, eta_ss, 0.0) / dof
        chi2 = sum_wf2 - 2.0 * mean * sum_wf + mean * mean * sum_w
        chi2 = np.where(chi2 > tiny, chi2, 0.0)
        chi2 = np.where(n >= 2, chi2, np.nan)
        chi2_nu = chi2 / dof
        p = np.full(chi2.shape, np.nan)
        ok = np.isfinite(chi2)
        p[ok] = np.maximum(stats.chi2.sf(chi2[ok], dof[ok]), P_VALUE_FLOOR)
        d = ss - np.asarray(sum_var, dtype=float)
        m_d = _div(np.sign(d) * np.sqrt(np.abs(d) / np.where(n >= 2, n, np.nan)), mean)
        dev = np.maximum(np.abs(max_flux - mean), np.abs(min_flux - mean))
        sig_dev = np.where(std1 > 0, _div(dev, std1), np.where(n >= 2, 0.0, np.nan))
    return {"mean": mean, "weighted_mean": wmean, "v": v, "eta": eta, "chi2_nu": chi2_nu,
            "p_value": p, "m": m, "m_debiased": m_d, "sigma_deviation": sig_dev}


def _usable_in_time_order(flux, flux_err, mjd) -> tuple[np.ndarray, np.ndarray]:
    """The usable points of one light curve (finite flux and error, error > 0, finite MJD
    when given): (flux, error), same unit as given, in time order (stable) when ``mjd``
    (MJD) is given. Raises InvalidLightCurve on arrays that are not 1-D of one length."""
    f = np.asarray(flux, dtype=float)
    e = np.asarray(flux_err, dtype=float)
    if f.ndim != 1 or e.shape != f.shape:
        raise InvalidLightCurve(f"flux and flux_err must be 1-D of equal length, got shapes "
                                f"{f.shape} and {e.shape}")
    ok = _valid(f, e)
    if mjd is None:
        return f[ok], e[ok]
    t = np.asarray(mjd, dtype=float)
    if t.shape != f.shape:
        raise InvalidLightCurve(f"mjd has shape {t.shape}, flux has shape {f.shape}")
    ok &= np.isfinite(t)
    order = np.argsort(t[ok], kind="stable")
    return f[ok][order], e[ok][order]


def _scatter_metrics(out: dict, f, e, w, mean: float, wmean: float) -> None:
    """Fill ``out``'s v, m, m_debiased, eta, chi2_nu, p_value and sigma_deviation from a
    light curve of n >= 2 usable points (flux ``f`` and error ``e`` in one unit, weights
    ``w`` = 1/e**2, unweighted and weighted means ``mean``, ``wmean``). Two-pass (numerically
    careful) reference implementation of the running sums' metrics."""
    n = f.size
    nan = float("nan")
    resid = f - mean
    ss = float(np.sum(resid * resid))
    if ss <= _ROUNDING * n * float(np.sum(f * f)):
        ss = 0.0          # same rounding rule as the running sums: a constant curve has no scatter
    s1 = np.sqrt(ss / (n - 1))
    s0 = np.sqrt(ss / n)
    chi2 = float(np.sum(resid * resid * w))
    d = ss - float(np.sum(e * e))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["v"] = s1 / mean if mean != 0 else nan
        out["m"] = s0 / mean if mean != 0 else nan
        out["m_debiased"] = (np.sign(d) * np.sqrt(abs(d) / n) / mean) if mean != 0 else nan
    out["eta"] = float(np.sum(w * (f - wmean) ** 2) / (n - 1))
    out["chi2_nu"] = chi2 / (n - 1)
    out["p_value"] = float(max(stats.chi2.sf(chi2, n - 1), P_VALUE_FLOOR))
    dev = max(abs(f.max() - mean), abs(f.min() - mean))
    out["sigma_deviation"] = float(dev / s1) if s1 > 0 else 0.0


def lightcurve_metrics(flux, flux_err, mjd=None, *, pairs: str = "consecutive") -> dict:
    """Variability metrics of one light curve.

    Parameters
    ----------
    flux : array-like, shape (N,)
        Flux densities (Jy/beam; normalised when normalisation is on), in time
        order unless ``mjd`` is given.
    flux_err : array-like, shape (N,)
        1-sigma errors, same unit. Points with non-finite flux or error, or
        error <= 0, are ignored.
    mjd : array-like, shape (N,), optional
        Observation times (MJD). When given, points are put in time order (stable)
        before the two-epoch pairs are formed; points with non-finite MJD are
        ignored.
    pairs : {"consecutive", "all"}
        ``"all"`` adds VAST's all-pairs definitions, :data:`ALL_PAIR_KEYS`
        (see :func:`all_pairs_metrics`); ``vs_max`` / ``m_at_vs_max`` stay the
        O(1) consecutive-pair values either way.

    Returns
    -------
    dict
        Keys :data:`METRIC_KEYS`: ``n`` (int) and floats, as defined in the module
        docstring. Undefined metrics are NaN.

    Raises
    ------
    InvalidLightCurve
        If the arrays are not 1-D or differ in length.
    """
    if pairs not in ("consecutive", "all"):
        raise InvalidLightCurve(f"lightcurve_metrics: pairs={pairs!r}; use 'consecutive' or 'all'")
    if pairs == "all":
        out = lightcurve_metrics(flux, flux_err, mjd)
        out.update(all_pairs_metrics(np.asarray(flux, float), np.asarray(flux_err, float),
                                     None if mjd is None else np.asarray(mjd, float)))
        return out
    f, e = _usable_in_time_order(flux, flux_err, mjd)
    n = f.size
    nan = float("nan")
    out = dict.fromkeys(METRIC_KEYS, nan)
    out["n"] = int(n)
    if n == 0:
        return out
    w = 1.0 / (e * e)
    mean = float(np.mean(f))
    wmean = float(np.sum(w * f) / np.sum(w))
    out["mean"], out["weighted_mean"] = mean, wmean
    if n < 2:
        return out
    _scatter_metrics(out, f, e, w, mean, wmean)
    vs, m = _pair_metrics(f[:-1], e[:-1], f[1:], e[1:])
    k = int(np.argmax(np.abs(vs)))
    out["vs_max"] = float(abs(vs[k]))
    out["m_at_vs_max"] = float(m[k])
    return out


#: VAST's significance threshold on |Vs| for the "most significant pair" (Mooley et al. 2016).
VS_SIGNIFICANT = 4.3

#: Keys added by ``lightcurve_metrics(..., pairs="all")`` (and :func:`all_pairs_metrics`).
ALL_PAIR_KEYS = ("vs_max_all", "m_at_vs_max_all", "m_significant", "vs_at_m_significant")


def all_pairs_metrics(flux2d, err2d, mjd2d=None, *, vs_threshold: float = VS_SIGNIFICANT,
                      max_elements: int = 2_000_000, max_block_epochs: int = 64) -> dict:
    """VAST's two-epoch metrics over *all* pairs, without materialising the pairs.

    For every pair of valid epochs (a earlier than b), Vs = (S_a - S_b) /
    sqrt(s_a**2 + s_b**2) and m = 2 (S_a - S_b) / (S_a + S_b) (Mooley et al. 2016).

    * ``vs_max_all``: max |Vs| over all pairs (>= 0), and ``m_at_vs_max_all`` the
      signed m of that pair;
    * ``m_significant``: the signed m of the pair with the largest |m| among the
      pairs with |Vs| >= ``vs_threshold`` (VAST's "most significant pair", 4.3 by
      default), and ``vs_at_m_significant`` its |Vs|; NaN when no pair qualifies.

    Method: for epoch i no partner can give more than the bound
    max(S_i - S_min, S_max - S_i) / sqrt(s_i**2 + s_min**2), so epochs are visited
    in decreasing order of that bound, a block at a time against all epochs
    (at most ``max_block_epochs`` epochs per source and ``max_elements`` floats, never
    N**2), and the search stops when the next bound is below both the best |Vs| so far
    and ``vs_threshold``. For a
    steady light curve almost every bound is below 4.3 and the cost is ~O(N).
    Vectorised over sources. Ties are broken by visiting order (the values agree).

    Parameters
    ----------
    flux2d, err2d : array-like, shape (n_sources, n_epochs) or (n_epochs,)
        Flux densities (Jy/beam) and 1-sigma errors; invalid points (non-finite,
        err <= 0) are ignored.
    mjd2d : array-like, optional
        Times (MJD) giving the time order of each pair (array order when absent).

    Returns
    -------
    dict of ndarray (or floats for 1-D input)
        :data:`ALL_PAIR_KEYS`; NaN with fewer than 2 valid epochs.
    """
    f = np.asarray(flux2d, dtype=float)
    one = f.ndim == 1
    e = np.asarray(err2d, dtype=float)
    if mjd2d is None:
        t = np.broadcast_to(np.arange(f.shape[-1], dtype=float), f.shape)
    else:
        t = np.asarray(mjd2d, dtype=float)
    if one:
        f, e, t = f[None, :], e[None, :], np.atleast_2d(t)
    f, e = _time_ordered(*lightcurve_block(f, e, t, "all_pairs_metrics"))
    S, N = f.shape
    has = np.isfinite(f).sum(axis=1) >= 2
    if not has.any() or N < 2:
        out = {k: np.full(S, np.nan) for k in ALL_PAIR_KEYS}
    else:
        bound = _pair_bounds(f, e, has)
        visit = np.argsort(-bound, axis=1, kind="stable")            # largest bound first
        bsorted = np.take_along_axis(bound, visit, axis=1)
        search = _PairSearch(f, e, has, vs_threshold)
        block = max(1, min(max_elements // max(N * max(S, 1), 1), max_block_epochs))
        for r0 in range(0, N, block):
            src = search.sources_needing(bsorted[:, r0])
            if src.size == 0:
                break
            search.update(src, visit[src, r0:min(r0 + block, N)])
        out = search.result()
    if one:
        return {k: float(v[0]) for k, v in out.items()}
    return out


def _time_ordered(f, e, t):
    """Flux and error in time order per row, invalid points last as NaN."""
    ok = _valid(f, e) & np.isfinite(t)
    order = np.argsort(np.where(ok, t, np.inf), axis=1, kind="stable")
    return (np.take_along_axis(np.where(ok, f, np.nan), order, axis=1),
            np.take_along_axis(np.where(ok, e, np.nan), order, axis=1))


def _pair_bounds(f, e, has):
    """Per epoch, the largest |Vs| any partner could give: max(S_i - S_min, S_max - S_i) /
    sqrt(s_i**2 + s_min**2); -inf where undefined."""
    with np.errstate(invalid="ignore", all="ignore"):
        fmin = np.nanmin(np.where(has[:, None], f, 0.0), axis=1)
        fmax = np.nanmax(np.where(has[:, None], f, 0.0), axis=1)
        emin = np.nanmin(np.where(has[:, None], e, 1.0), axis=1)
        bound = np.maximum(f - fmin[:, None], fmax[:, None] - f) / np.sqrt(e * e + emin[:, None] ** 2)
    return np.where(np.isfinite(bound), bound, -np.inf)


def _signed_m(f, src, rows, flat_index, shape):
    """Signed m (earlier minus later) of the pair at ``flat_index`` of each row's block."""
    ib, jb = np.unravel_index(flat_index, shape)
    ii = rows[np.arange(src.size), ib]
    sign = np.where(ii < jb, 1.0, -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _div(sign * 2.0 * (f[src, ii] - f[src, jb]), f[src, ii] + f[src, jb])


class _PairSearch:
    """Running best pairs of :func:`all_pairs_metrics`, updated one block of epochs at a time."""

    def __init__(self, f, e, has, vs_threshold):
        S = f.shape[0]
        self.f, self.e, self.has, self.vs_threshold = f, e, has, vs_threshold
        self.best_vs = np.where(has, -1.0, np.nan)          # any pair (|Vs| >= 0) replaces it
        self.best_vs_m = np.full(S, np.nan)
        self.best_m = np.full(S, -1.0)
        self.m_significant = np.full(S, np.nan)
        self.vs_at_m_significant = np.full(S, np.nan)

    def sources_needing(self, next_bound):
        """Sources whose next epoch could still beat their best |Vs| or reach the threshold."""
        need = self.has & (next_bound >= np.minimum(np.nan_to_num(self.best_vs, nan=np.inf),
                                                    self.vs_threshold))
        need |= self.has & (self.best_vs < 0)        # no pair seen yet (e.g. all bounds 0)
        return np.flatnonzero(need)

    def update(self, src, rows):
        """Pair epochs ``rows`` (s, b) of sources ``src`` with every epoch of those sources."""
        f, e = self.f, self.e
        fi = np.take_along_axis(f[src], rows, axis=1)[:, :, None]
        ei = np.take_along_axis(e[src], rows, axis=1)[:, :, None]
        fj, ej = f[src][:, None, :], e[src][:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = fi - fj
            avs = np.abs(diff) / np.sqrt(ei * ei + ej * ej)
            am = np.abs(2.0 * diff / (fi + fj))
        cols = np.arange(f.shape[1])
        avs = np.where(np.isfinite(avs) & (rows[:, :, None] != cols[None, None, :]), avs, -1.0)
        flat = avs.reshape(src.size, -1)
        k = np.argmax(flat, axis=1)
        v = flat[np.arange(src.size), k]
        better = v > np.nan_to_num(self.best_vs[src], nan=-1.0)
        m_pair = _signed_m(f, src, rows, k, avs.shape[1:])
        self.best_vs[src[better]] = v[better]
        self.best_vs_m[src[better]] = m_pair[better]
        am = np.where((avs >= self.vs_threshold) & np.isfinite(am), am, -1.0).reshape(src.size, -1)
        km = np.argmax(am, axis=1)
        vm = am[np.arange(src.size), km]
        better = vm > self.best_m[src]
        upd = src[better]
        self.m_significant[upd] = _signed_m(f, src, rows, km, avs.shape[1:])[better]
        self.vs_at_m_significant[upd] = flat[np.arange(src.size), km][better]
        self.best_m[upd] = vm[better]

    def result(self) -> dict:
        return {"vs_max_all": self.best_vs, "m_at_vs_max_all": self.best_vs_m,
                "m_significant": self.m_significant,
                "vs_at_m_significant": self.vs_at_m_significant}


def lightcurve_block(flux2d, err2d, mjd2d, caller: str):
    """Validate a block of light curves; returns float64 ``(flux, err, mjd)`` of shape
    (n_sources, n_epochs), a 1-D ``mjd2d`` (shared epochs) broadcast to that shape.

    Raises
    ------
    InvalidLightCurve
        Naming ``caller``, when the shapes do not fit.
    """
    f = np.asarray(flux2d, dtype=np.float64)
    e = np.asarray(err2d, dtype=np.float64)
    t = np.asarray(mjd2d, dtype=np.float64)
    if f.ndim != 2 or e.shape != f.shape:
        raise InvalidLightCurve(f"{caller}: flux2d and err2d must be 2-D of equal shape, got "
                                f"{f.shape} and {e.shape}")
    if t.ndim == 1 and t.shape[0] == f.shape[1]:
        t = np.broadcast_to(t, f.shape)
    if t.shape != f.shape:
        raise InvalidLightCurve(f"{caller}: mjd2d has shape {t.shape}, flux2d has shape {f.shape}")
    return f, e, t


def needs_recompute(last_mjd, new_mjd):
    """Whether a new epoch cannot be added in O(1) and needs a full recompute.

    Parameters
    ----------
    last_mjd : float or array
        ``RunningStats.last_mjd`` of the source(s) (NaN when they have no data).
    new_mjd : float or array
        MJD of the new measurement(s).

    Returns
    -------
    bool or ndarray of bool
        True where the new epoch is strictly earlier than the latest stored one.
        Equal MJDs count as in order (appended after it, i.e. arrival order;
        :meth:`RunningStats.from_lightcurves` orders equal MJDs by column). A
        re-measured image or a changed normalisation also needs a recompute; that
        is the caller's decision.
    """
    last = np.asarray(last_mjd, dtype=float)
    new = np.asarray(new_mjd, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.isfinite(last) & (new < last)
    return bool(out) if out.ndim == 0 else out


def _sequential_sum(a2d: np.ndarray) -> np.ndarray:
    """Row sums of a 2-D array added left to right (``np.sum`` adds pairwise, whose
    rounding differs from adding one epoch at a time)."""
    if a2d.shape[1] == 0:
        return np.zeros(a2d.shape[0])
    return np.cumsum(a2d, axis=1)[:, -1].copy()


_FLOAT_FIELDS = ("sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2", "sum_var", "min_flux",
                 "max_flux", "first_mjd", "last_mjd", "last_flux", "last_err", "vs_max",
                 "m_at_vs_max")


@dataclass
class RunningStats:
    """Per-source running sums from which every metric follows in O(1).

    One element per source in every array (the columns of the products-database
    table of the same name). Sums run over *valid* points only (finite flux and
    error, error > 0); w = 1/err**2.

    Attributes
    ----------
    n : ndarray of int64
        Number of valid points.
    sum_w, sum_wf, sum_wf2 : ndarray of float64
        sum(w), sum(w f), sum(w f**2)  (Jy/beam**-2, Jy/beam**-1, 1).
    sum_f, sum_f2 : ndarray of float64
        sum(f) (Jy/beam), sum(f**2) (Jy**2/beam**2).
    sum_var : ndarray of float64
        sum(err**2) (Jy**2/beam**2), for the debiased modulation index.
    min_flux, max_flux : ndarray of float64
        Extreme fluxes (Jy/beam); NaN with no data.
    first_mjd, last_mjd : ndarray of float64
        Earliest and latest valid epoch (MJD); NaN with no data.
    last_flux, last_err : ndarray of float64
        The latest valid point (for the consecutive-pair Vs).
    vs_max : ndarray of float64
        Largest |Vs| over consecutive valid pairs (NaN for n < 2).
    m_at_vs_max : ndarray of float64
        Signed two-epoch m of that pair.
    """

    n: np.ndarray
    sum_w: np.ndarray
    sum_wf: np.ndarray
    sum_wf2: np.ndarray
    sum_f: np.ndarray
    sum_f2: np.ndarray
    sum_var: np.ndarray
    min_flux: np.ndarray
    max_flux: np.ndarray
    first_mjd: np.ndarray
    last_mjd: np.ndarray
    last_flux: np.ndarray
    last_err: np.ndarray
    vs_max: np.ndarray
    m_at_vs_max: np.ndarray

    def __post_init__(self):
        self.n = np.asarray(self.n, dtype=np.int64)
        if self.n.ndim != 1:
            raise InvalidLightCurve(f"RunningStats.n must be 1-D, got shape {self.n.shape}")
        for name in _FLOAT_FIELDS:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != self.n.shape:
                raise InvalidLightCurve(f"RunningStats.{name} has shape {arr.shape}, "
                                        f"n has shape {self.n.shape}")
            setattr(self, name, arr)

    def __len__(self) -> int:
        return int(self.n.size)

    # ------------------------------------------------------------------ build
    @classmethod
    def empty(cls, n_sources: int) -> RunningStats:
        """Statistics of ``n_sources`` sources with no data (sums 0, extremes NaN)."""
        if int(n_sources) < 0:
            raise InvalidLightCurve(f"n_sources must be >= 0, got {n_sources}")
        z = lambda: np.zeros(int(n_sources))  # noqa: E731
        nan = lambda: np.full(int(n_sources), np.nan)  # noqa: E731
        return cls(n=np.zeros(int(n_sources), dtype=np.int64), sum_w=z(), sum_wf=z(),
                   sum_wf2=z(), sum_f=z(), sum_f2=z(), sum_var=z(), min_flux=nan(),
                   max_flux=nan(), first_mjd=nan(), last_mjd=nan(), last_flux=nan(),
                   last_err=nan(), vs_max=nan(), m_at_vs_max=nan())

    @classmethod
    def from_lightcurves(cls, flux2d, err2d, mjd2d) -> RunningStats:
        """Exact full recompute from NaN-padded light curves, vectorised.

        Parameters
        ----------
        flux2d, err2d : array-like, shape (n_sources, n_epochs)
            Flux (Jy/beam) and 1-sigma error per source (row) and epoch (column);
            NaN padding (or err <= 0) marks missing points.
        mjd2d : array-like, shape (n_sources, n_epochs) or (n_epochs,)
            Epoch of each point (MJD); a 1-D array is shared by all rows. Columns
            need not be in time order: points are sorted (stably) by MJD.

        Returns
        -------
        RunningStats
            Identical, bit for bit when the columns are in time order, to feeding the
            points one by one, in time order, to :meth:`update`.
        """
        f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "RunningStats.from_lightcurves")
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
        n = ok.sum(axis=1)
        fz = np.where(ok, f, 0.0)
        ez = np.where(ok, e, 1.0)
        w = np.where(ok, 1.0 / (ez * ez), 0.0)
        wf = w * fz
        # sums accumulated column by column, in the order :meth:`update` adds the points, so
        # that a recompute over the same epochs gives the same bits as the running sums
        sums = dict(sum_w=_sequential_sum(w), sum_wf=_sequential_sum(wf),
                    sum_wf2=_sequential_sum(wf * fz), sum_f=_sequential_sum(fz),
                    sum_f2=_sequential_sum(fz * fz),
                    sum_var=_sequential_sum(np.where(ok, ez * ez, 0.0)))
        del w, wf
        has = n > 0
        nan = np.nan
        min_flux = np.where(has, np.where(ok, f, np.inf).min(axis=1), nan)
        max_flux = np.where(has, np.where(ok, f, -np.inf).max(axis=1), nan)
        # time order: stable sort with invalid points pushed to the end, unless the
        # valid points of every row are already in time order (the common case)
        key = np.where(ok, t, np.inf)
        in_order = True
        if f.shape[1] > 1:
            run_max = np.maximum.accumulate(np.where(ok, t, -np.inf), axis=1)
            in_order = bool(np.all(~ok[:, 1:] | (t[:, 1:] >= run_max[:, :-1])))
            del run_max
        if not in_order:
            order = np.argsort(key, axis=1, kind="stable")
            key = np.take_along_axis(key, order, axis=1)
            fs = np.take_along_axis(fz, order, axis=1)
            es = np.take_along_axis(ez, order, axis=1)
            oks = np.take_along_axis(ok, order, axis=1)
        else:
            fs, es, oks = fz, ez, ok
        # previous valid point of every column (forward fill of the column index)
        cols = np.arange(f.shape[1])
        last_valid = np.maximum.accumulate(np.where(oks, cols, -1), axis=1)
        rows = np.arange(f.shape[0])
        li = last_valid[:, -1] if f.shape[1] else np.full(f.shape[0], -1)
        lic = np.maximum(li, 0)
        first_mjd = np.where(has, key.min(axis=1) if f.shape[1] else nan, nan)
        last_mjd = np.where(has, key[rows, lic], nan)
        last_flux = np.where(has, fs[rows, lic], nan)
        last_err = np.where(has, es[rows, lic], nan)
        vs_max = np.full(f.shape[0], nan)
        m_at = np.full(f.shape[0], nan)
        if f.shape[1] > 1:
            prev = last_valid[:, :-1]                      # previous valid index for col 1..T-1
            pair = oks[:, 1:] & (prev >= 0)
            pc = np.maximum(prev, 0)
            fa = np.take_along_axis(fs, pc, axis=1)
            ea = np.take_along_axis(es, pc, axis=1)
            vs, m = _pair_metrics(fa, ea, fs[:, 1:], es[:, 1:])
            avs = np.where(pair, np.abs(vs), -1.0)
            k = np.argmax(avs, axis=1)
            best = avs[rows, k]
            got = best >= 0
            vs_max = np.where(got, best, nan)
            m_at = np.where(got, m[rows, k], nan)
        return cls(n=n, min_flux=min_flux, max_flux=max_flux, first_mjd=first_mjd,
                   last_mjd=last_mjd, last_flux=last_flux, last_err=last_err, vs_max=vs_max,
                   m_at_vs_max=m_at, **sums)

    # ----------------------------------------------------------------- update
    def update(self, index, flux, flux_err, mjd) -> np.ndarray:
        """Add one new point to each listed source, in place, O(1) per source.

        Parameters
        ----------
        index : array-like of int, shape (k,)
            Row of each source in these statistics; each source at most once.
        flux, flux_err : array-like, shape (k,)
            The new flux (Jy/beam) and 1-sigma error. Points with non-finite flux
            or error, or error <= 0, are ignored (the source is left unchanged).
        mjd : float or array-like, shape (k,)
            Epoch of the new points (one image: a scalar).

        Returns
        -------
        ndarray of bool, shape (k,)
            Which points were added.

        Raises
        ------
        InvalidLightCurve
            On shape mismatch, an index out of range or a repeated index.
        OutOfOrderEpoch
            If any valid new point is earlier than its source's ``last_mjd``
            (nothing is changed; recompute with :meth:`from_lightcurves`).
        """
        idx = np.asarray(index, dtype=np.int64).ravel()
        f = np.asarray(flux, dtype=np.float64).ravel()
        e = np.asarray(flux_err, dtype=np.float64).ravel()
        t = np.broadcast_to(np.asarray(mjd, dtype=np.float64), idx.shape) \
            if np.ndim(mjd) == 0 else np.asarray(mjd, dtype=np.float64).ravel()
        if not (f.shape == e.shape == idx.shape == t.shape):
            raise InvalidLightCurve(f"index, flux, flux_err and mjd must have equal length, got "
                                    f"{idx.shape}, {f.shape}, {e.shape}, {t.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n.size):
            raise InvalidLightCurve(f"source index out of range [0, {self.n.size})")
        if idx.size > 1 and np.unique(idx).size != idx.size:
            raise InvalidLightCurve("a source appears more than once in one update; add points "
                                    "one epoch at a time")
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
        i, f, e, t = idx[ok], f[ok], e[ok], t[ok]
        late = needs_recompute(self.last_mjd[i], t)
        if np.any(late):
            bad = i[late]
            raise OutOfOrderEpoch(f"{bad.size} point(s) are earlier than the latest stored epoch "
                                  f"(first source index {int(bad[0])}: MJD {float(t[late][0])!r} < "
                                  f"{float(self.last_mjd[bad[0]])!r}); recompute these sources")
        w = 1.0 / (e * e)
        self.sum_w[i] += w
        self.sum_wf[i] += w * f
        self.sum_wf2[i] += w * f * f
        self.sum_f[i] += f
        self.sum_f2[i] += f * f
        self.sum_var[i] += e * e
        self.min_flux[i] = np.fmin(self.min_flux[i], f)
        self.max_flux[i] = np.fmax(self.max_flux[i], f)
        self.first_mjd[i] = np.fmin(self.first_mjd[i], t)
        had = self.n[i] > 0
        vs, m = _pair_metrics(self.last_flux[i], self.last_err[i], f, e)
        avs = np.abs(vs)
        cur = self.vs_max[i]
        better = had & (np.isnan(cur) | (avs > cur))
        self.vs_max[i] = np.where(better, avs, cur)
        self.m_at_vs_max[i] = np.where(better, m, self.m_at_vs_max[i])
        self.last_mjd[i] = t
        self.last_flux[i] = f
        self.last_err[i] = e
        self.n[i] += 1
        return ok

    # ---------------------------------------------------------------- metrics
    def metrics(self) -> dict:
        """All metrics for every source, as arrays (keys :data:`METRIC_KEYS`).

        Same definitions as :func:`lightcurve_metrics`, computed from the sums
        (float64; agreement with the two-pass formulas is to ~1e-9 relative for
        fractional variability above ~1e-4; a scatter below ~n * 4e-15 of
        sum(f**2), i.e. fractional variability below ~1e-7, is rounding and reads 0).
        """
        out = _metrics_from_sums(self.n, self.sum_w, self.sum_wf, self.sum_wf2, self.sum_f,
                                 self.sum_f2, self.sum_var, self.min_flux, self.max_flux)
        out["n"] = self.n.copy()
        out["vs_max"] = self.vs_max.copy()
        out["m_at_vs_max"] = self.m_at_vs_max.copy()
        return {k: out[k] for k in METRIC_KEYS}

    # ------------------------------------------------------------------ store
    def to_dict(self) -> dict:
        """Column name -> array (copies), for the products store."""
        return {fl.name: getattr(self, fl.name).copy() for fl in fields(self)}

    @classmethod
    def from_dict(cls, d) -> RunningStats:
        """Inverse of :meth:`to_dict` (any mapping of column -> sequence; None -> NaN).

        Raises
        ------
        InvalidLightCurve
            If a column is missing or the columns differ in length.
        """
        missing = [fl.name for fl in fields(cls) if fl.name not in d]
        if missing:
            raise InvalidLightCurve(f"RunningStats.from_dict: missing column(s) {missing}")
        cols = {}
        for fl in fields(cls):
            v = d[fl.name]
            if fl.name == "n":
                cols["n"] = np.asarray(v, dtype=np.int64)
            else:
                cols[fl.name] = np.array([np.nan if x is None else x for x in v]
                                         if not isinstance(v, np.ndarray) else v, dtype=np.float64)
        return cls(**cols)

    def take(self, index) -> RunningStats:
        """A copy holding only the rows ``index``."""
        return RunningStats(**{fl.name: getattr(self, fl.name)[index].copy() for fl in fields(self)})

    def assign(self, index, other: RunningStats) -> None:
        """Overwrite rows ``index`` with ``other`` (e.g. after recomputing them)."""
        for fl in fields(self):
            getattr(self, fl.name)[index] = getattr(other, fl.name)


__all__ = ["ALL_PAIR_KEYS", "METRIC_KEYS", "P_VALUE_FLOOR", "RunningStats", "VS_SIGNIFICANT",
           "all_pairs_metrics", "lightcurve_metrics", "needs_recompute"]
