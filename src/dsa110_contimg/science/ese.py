"""Extreme scattering event (ESE) detection.

Three layers, all vectorised over sources and free of database access:

1. **Threshold presets** on the per-source statistics of
   :mod:`dsa110_contimg.science.variability` (docs/science.md, ESE criteria):
   sigma-deviation, reduced chi-squared and eta must *all* pass
   (:data:`PRESETS`, :func:`classify`), plus a 0-10 :func:`composite_score`.
2. **eta-V selection** with Gaussian sigma thresholds fitted to the population
   in log space (Rowlinson et al. 2019; :func:`eta_v_thresholds`,
   :func:`eta_v_candidates`). Never eta alone.
3. **Light-curve shape detector**: a matched filter over a family of ESE
   templates -- a flux dip of fractional depth d lasting 14-180 days, with or
   without caustic brightenings on its edges (Fiedler et al. 1987; Bannister et
   al. 2016), that must dip *and recover*. For every template (epoch of minimum
   t0, duration D, shape) the model ``flux = a * (1 - d * T(t))`` is linear in (a, a d), so the best fit is
   closed-form weighted least squares on the actual (uneven) sampling, and the
   chi-squared improvement over the constant model is analytic. All templates of
   all sources are evaluated with a handful of matrix products
   (:func:`detect_ese_shapes`, :func:`fit_ese`).

The sigma-deviation statistic of the earlier implementation is a poor ESE
detector by construction: for a box dip covering a fraction p of the epochs,
sigma-dev = sqrt((1 - p) / p) whatever the depth, i.e. below 3.5 as soon as
p > 7.5 %. The shape detector has no such ceiling (see ``bench/ese.py``).

Fluxes are the normalised flux densities (Jy/beam or dimensionless), errors in
the same unit; times are MJD (days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from scipy import stats

from dsa110_contimg.core.clipping import mad_clip
from dsa110_contimg.core.enums import ESE_PRESET_THRESHOLDS, confidence_level
from dsa110_contimg.core.errors import ConfigError, InvalidLightCurve
from dsa110_contimg.science.ese_window import reaches_before, search_window_days, with_summary
from dsa110_contimg.science.variability import lightcurve_block

# ----------------------------------------------------------------------------
# 1. presets and composite score
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ESEPreset:
    """Thresholds that must all be reached (>=) for an ESE candidate.

    Attributes
    ----------
    sigma_deviation : float
        Minimum sigma-deviation (ddof 1).
    chi2_nu : float
        Minimum reduced chi-squared about the unweighted mean.
    eta : float
        Minimum eta (weighted reduced chi-squared).
    """

    sigma_deviation: float
    chi2_nu: float
    eta: float


#: Named presets (sigma-dev / chi2_nu / eta), docs/science.md, ESE criteria
#: (the values: :data:`dsa110_contimg.core.enums.ESE_PRESET_THRESHOLDS`).
PRESETS: dict[str, ESEPreset] = {name: ESEPreset(*t) for name, t in ESE_PRESET_THRESHOLDS.items()}

#: Composite score weights and the metric range mapped onto [0, 1].
SCORE_WEIGHTS = {"sigma_deviation": 0.5, "chi2_nu": 0.3, "eta": 0.2}
SCORE_RANGES = {"sigma_deviation": 10.0, "chi2_nu": 10.0, "eta": 5.0}


def _preset(preset) -> ESEPreset:
    if isinstance(preset, ESEPreset):
        return preset
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError("ese.preset", preset, f"one of {sorted(PRESETS)} or custom thresholds")
        return PRESETS[preset]
    if isinstance(preset, Mapping):
        try:
            return ESEPreset(float(preset["sigma_deviation"]), float(preset["chi2_nu"]),
                             float(preset["eta"]))
        except KeyError as exc:
            raise ConfigError("ese.preset", dict(preset),
                              "a mapping with sigma_deviation, chi2_nu and eta") from exc
    raise ConfigError("ese.preset", preset, f"one of {sorted(PRESETS)}, an ESEPreset or a mapping")


def classify(metrics: Mapping, preset="moderate", *, min_n: int = 3) -> np.ndarray:
    """ESE candidates by threshold preset: sigma-dev AND chi2_nu AND eta.

    Parameters
    ----------
    metrics : mapping of str -> array
        At least ``sigma_deviation``, ``chi2_nu``, ``eta`` (e.g.
        :meth:`RunningStats.metrics`); when ``n`` is present, sources with fewer
        than ``min_n`` points are never candidates.
    preset : str, ESEPreset or mapping
        ``conservative``, ``moderate``, ``sensitive`` or custom thresholds.
    min_n : int
        Minimum number of epochs (default 3).

    Returns
    -------
    ndarray of bool
        NaN metrics never pass.
    """
    p = _preset(preset)
    try:
        sd = np.asarray(metrics["sigma_deviation"], dtype=float)
        c2 = np.asarray(metrics["chi2_nu"], dtype=float)
        eta = np.asarray(metrics["eta"], dtype=float)
    except KeyError as exc:
        raise InvalidLightCurve(f"classify: metrics lack {exc.args[0]!r} (need sigma_deviation, "
                                "chi2_nu, eta)") from exc
    with np.errstate(invalid="ignore"):
        out = (sd >= p.sigma_deviation) & (c2 >= p.chi2_nu) & (eta >= p.eta)
        if "n" in metrics:
            out &= np.asarray(metrics["n"]) >= min_n
    return out


def composite_score(sigma_deviation, chi2_nu, eta):
    """Composite ESE score 0-10 and confidence.

    Each metric is clipped to [0, range] and scaled to [0, 1] (range 10 for
    sigma-dev and chi2_nu, 5 for eta); score = 10 sum(w m) / sum(w) over the
    *finite* metrics, weights 0.5 / 0.3 / 0.2.

    Returns
    -------
    score : ndarray of float
        NaN where no metric is finite.
    confidence : ndarray of str
        ``high`` (score >= 7), ``medium`` (>= 4), ``low``, or ``none`` (NaN score).
    """
    vals = {"sigma_deviation": sigma_deviation, "chi2_nu": chi2_nu, "eta": eta}
    arrs = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in vals.values()])
    num = np.zeros(arrs[0].shape)
    den = np.zeros(arrs[0].shape)
    for (name, _), a in zip(vals.items(), arrs):
        present = np.isfinite(a)
        scaled = np.clip(np.where(present, a, 0.0), 0.0, SCORE_RANGES[name]) / SCORE_RANGES[name]
        num += np.where(present, SCORE_WEIGHTS[name] * scaled, 0.0)
        den += np.where(present, SCORE_WEIGHTS[name], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(den > 0, 10.0 * num / np.where(den > 0, den, 1.0), np.nan)
    return score, confidence_level(score)


# ----------------------------------------------------------------------------
# 2. eta-V selection (Rowlinson et al. 2019)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EtaVThresholds:
    """Gaussian fits to log10(eta) and log10(V) and the resulting thresholds.

    Attributes
    ----------
    mu_log_eta, sigma_log_eta, mu_log_v, sigma_log_v : float
        Fitted Gaussian parameters (dex).
    n_sigma : float
    eta_threshold, v_threshold : float
        10**(mu + n_sigma sigma), linear units.
    n_used_eta, n_used_v : int
        Sources surviving the sigma clip.
    """

    mu_log_eta: float
    sigma_log_eta: float
    mu_log_v: float
    sigma_log_v: float
    n_sigma: float
    eta_threshold: float
    v_threshold: float
    n_used_eta: int
    n_used_v: int


def _clipped_norm_fit(x, clip_sigma, max_iter=10):
    keep = mad_clip(x, clip_sigma, max_iter)
    mu, sigma = stats.norm.fit(x[keep])
    return float(mu), float(sigma), int(keep.sum())


def eta_v_thresholds(eta, v, n_sigma: float = 1.0, *, clip_sigma: float = 3.0,
                     min_sources: int = 10) -> EtaVThresholds:
    """Population thresholds on eta and V (Rowlinson et al. 2019).

    log10 of the finite, positive eta and V (eta = 0 and V <= 0 excluded) are
    iteratively sigma-clipped at ``clip_sigma`` MAD-based sigma about the median
    (as vast-tools), then fitted with a Gaussian (``scipy.stats.norm.fit``).

    Parameters
    ----------
    eta, v : array-like, shape (n_sources,)
    n_sigma : float
        Threshold = mu + n_sigma sigma in log space (default 1.0, the documented example).

    Raises
    ------
    InvalidLightCurve
        If fewer than ``min_sources`` usable values remain for either metric.
    """
    le = np.asarray(eta, dtype=float)
    lv = np.asarray(v, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        le = np.log10(le[np.isfinite(le) & (le > 0)])
        lv = np.log10(lv[np.isfinite(lv) & (lv > 0)])
    if le.size < min_sources or lv.size < min_sources:
        raise InvalidLightCurve(f"eta_v_thresholds: {le.size} usable eta and {lv.size} usable V "
                                f"values; at least {min_sources} needed for a population fit")
    me, se, ne = _clipped_norm_fit(le, clip_sigma)
    mv, sv, nv = _clipped_norm_fit(lv, clip_sigma)
    return EtaVThresholds(me, se, mv, sv, float(n_sigma), float(10 ** (me + n_sigma * se)),
                          float(10 ** (mv + n_sigma * sv)), ne, nv)


def eta_v_candidates(eta, v, n_sigma: float = 1.0, *, thresholds: EtaVThresholds | None = None,
                     **kw) -> np.ndarray:
    """Sources above *both* the eta and the V threshold.

    Parameters
    ----------
    eta, v : array-like, shape (n_sources,)
    n_sigma : float
        Used when ``thresholds`` is not given (fitted on these sources).
    thresholds : EtaVThresholds, optional
        Pre-computed (e.g. on a larger population).

    Returns
    -------
    ndarray of bool
    """
    e = np.asarray(eta, dtype=float)
    vv = np.asarray(v, dtype=float)
    th = thresholds if thresholds is not None else eta_v_thresholds(e, vv, n_sigma, **kw)
    with np.errstate(invalid="ignore"):
        return (e > th.eta_threshold) & (vv > th.v_threshold)


# ----------------------------------------------------------------------------
# 3. shape detector (matched filter)
# ----------------------------------------------------------------------------

#: Template shapes: name -> caustic amplitude as a fraction of the depth.
SHAPES: dict[str, float] = {"dip": 0.0, "dip+caustics": 0.4}
#: Default template durations (days): 12 log-spaced values over 14-180 d.
DEFAULT_DURATIONS = tuple(float(x) for x in np.round(np.geomspace(14.0, 180.0, 12), 1))
#: Cosine-taper fraction of the dip's half-width, and caustic width (same unit).
TAPER = 0.3
CAUSTIC_WIDTH = 0.15
#: Default detection threshold of :func:`detect_ese_shapes` (sigma); calibrated in
#: ``bench/ese.py`` to give <= 0.5 % false positives on steady sources.
DEFAULT_MIN_SIGNIFICANCE = 6.0
#: Days before a new epoch that the per-image search reads (the longest template with its
#: recovery windows: 180 + 2 x 180 = 540 d; :mod:`~dsa110_contimg.science.ese_window`).
SEARCH_WINDOW_DAYS = search_window_days(DEFAULT_DURATIONS)


def _profiles(mjd, t0, duration, with_q: bool = True):
    """Dip profile P (0..1) and caustic profile Q (peak 1 at the edges; None unless
    ``with_q``), broadcast. The cosine is evaluated on the tapered edges only."""
    u = 2.0 * np.abs(np.asarray(mjd, dtype=float) - t0) / duration
    edge = 1.0 - TAPER
    p = (u <= edge).astype(float)
    taper = ~(u <= edge) & ~(u >= 1.0)                          # NaN times stay NaN
    p[taper] = 0.5 * (1.0 + np.cos(np.pi * (u[taper] - edge) / TAPER))
    q = np.exp(-0.5 * ((u - 1.0) / CAUSTIC_WIDTH) ** 2) if with_q else None
    return p, q


def _template_shapes(tu, grid):
    """Dip profile P and template shape T = P - kappa Q of every template of ``grid`` on the
    times ``tu`` (MJD), each (n_templates, n_times); Q only where kappa is not 0."""
    p, _ = _profiles(tu[None, :], grid["t0"][:, None], grid["duration"][:, None], with_q=False)
    T = p.copy()
    kc = np.flatnonzero(grid["kappa"] != 0)
    if kc.size:
        _, q = _profiles(tu[None, :], grid["t0"][kc, None], grid["duration"][kc, None])
        T[kc] = p[kc] - grid["kappa"][kc, None] * q
    return p, T


def ese_model(mjd, t0, duration, depth, caustic_amp=0.0):
    """Fractional ESE light curve (1 outside the event), for plotting and injection.

    flux / baseline = 1 - depth * P(u) + caustic_amp * Q(u), u = 2 |t - t0| / duration,
    where P is 1 over the central 70 % of the event with cosine-tapered edges
    reaching 0 at |t - t0| = duration / 2, and Q is a Gaussian brightening
    (sigma 0.15 half-widths) centred on each edge.

    Parameters
    ----------
    mjd : array-like
        Times (MJD).
    t0 : float
        Epoch of minimum (centre of the event, MJD).
    duration : float
        Full duration (days).
    depth : float
        Fractional depth of the dip (0.3 = flux falls by 30 %).
    caustic_amp : float
        Fractional height of the caustic brightenings (0 = none).
    """
    p, q = _profiles(mjd, t0, duration)
    return 1.0 - depth * p + caustic_amp * q


def template_grid(t_start, t_end, *, durations=DEFAULT_DURATIONS, shapes=None,
                  step_fraction: float = 0.125, overhang: float = 0.35):
    """The matched-filter template family for a time span.

    Parameters
    ----------
    t_start, t_end : float
        Span of the data (MJD).
    durations : sequence of float
        Event durations (days).
    shapes : mapping name -> caustic fraction, optional
        Default :data:`SHAPES`.
    step_fraction : float
        Step of t0 in units of the duration.
    overhang : float
        t0 runs from ``t_start - overhang*D`` to ``t_end + overhang*D``, so an
        event in progress at either end of the data is covered.

    Returns
    -------
    dict of arrays (one element per template)
        ``t0``, ``duration``, ``kappa`` (caustic fraction), ``shape`` (index into
        ``names``) and ``names`` (list of shape names).
    """
    shapes = dict(SHAPES if shapes is None else shapes)
    names = list(shapes)
    t0s, ds, ks, sh = [], [], [], []
    for d in durations:
        step = step_fraction * d
        # anchored at multiples of the step (MJD 0), so a source's templates do not depend
        # on the span of the other sources searched with it
        k0 = np.ceil((t_start - overhang * d) / step)
        k1 = np.floor((t_end + overhang * d) / step)
        grid = np.arange(k0, k1 + 1) * step
        for i, name in enumerate(names):
            t0s.append(grid)
            ds.append(np.full(grid.size, float(d)))
            ks.append(np.full(grid.size, float(shapes[name])))
            sh.append(np.full(grid.size, i))
    return {"t0": np.concatenate(t0s), "duration": np.concatenate(ds),
            "kappa": np.concatenate(ks), "shape": np.concatenate(sh).astype(int), "names": names}


def side_agreement(win, CNT, W, WF, T, a, c, recovery_tol: float):
    """Epochs in a window beside each template and whether they are back at the baseline.

    ``win`` (templates, epochs) selects the window's epochs; ``CNT``, ``W``, ``WF`` the
    per-source epoch counts, weights and weighted fluxes, ``T`` the templates' shapes on the
    epochs; ``a``, ``c`` (sources, templates) the fitted baseline and template amplitude.
    The weighted residual of the window from the model a + c T is back when within
    ``recovery_tol`` |c| plus twice its own error. Returns (epochs in the window, back,
    the residual, the window's summed weight), each (sources, templates).
    """
    wf = win.astype(float)
    n_side = CNT @ wf.T
    w_side = W @ wf.T
    r_side = (WF @ wf.T - a * w_side - c * (W @ (wf * T).T)) / np.where(w_side > 0, w_side, 1.0)
    tol = recovery_tol * np.abs(c) + 2.0 / np.sqrt(np.where(w_side > 0, w_side, 1.0))
    return n_side, np.abs(r_side) <= tol, r_side, w_side


def _recovery_length(duration, recovery_window, min_recovery_days):
    """Length (days) of the windows before and after an event used by the recovery rule."""
    return np.maximum(recovery_window * np.asarray(duration, float), min_recovery_days)


def _chunk_fit(tu, W, WF, Sff, CNT, grid, min_in, min_out, t_first, t_last, overhang,
               min_side, recovery_window, recovery_tol, min_recovery_days):
    """Best template per source for sources sharing the time grid ``tu``.

    W, WF, CNT : (s, m) sums of weights, weighted (centred) fluxes and point counts
    per source and grid time; Sff : (s,) sum of w f**2 (centred).
    Returns per-source arrays of the best template index and its statistics.
    """
    p, T = _template_shapes(tu, grid)                           # (k, m)
    Sw = W.sum(axis=1)[:, None]
    Sf = WF.sum(axis=1)[:, None]
    St = W @ T.T                                               # (s, k)
    Stt = W @ (T * T).T
    Sft = WF @ T.T
    n_in = CNT @ (p >= 0.5).T.astype(float)
    n_out = CNT @ (p <= 0.0).T.astype(float)
    n = CNT.sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        A = Sft - St * Sf / Sw
        B = Stt - St * St / Sw
        reach = overhang * grid["duration"][None, :]
        inside = ((grid["t0"][None, :] >= t_first[:, None] - reach)
                  & (grid["t0"][None, :] <= t_last[:, None] + reach))
        good = (B > 1e-12 * Sw) & (n_in >= min_in) & (n_out >= min_out) & inside
        dchi2 = np.where(good, A * A / np.where(good, B, 1.0), 0.0)
        c = np.where(good, A / np.where(good, B, 1.0), 0.0)
        a = (Sf - c * St) / Sw                                 # centred baseline
        # recovery: the level in a window of recovery_window durations before the event
        # and after it, relative to the fitted model, must agree with the baseline
        u = 2.0 * (tu[None, :] - grid["t0"][:, None]) / grid["duration"][:, None]
        rec_len = _recovery_length(grid["duration"], recovery_window, min_recovery_days)
        reach_u = 1.0 + 2.0 * rec_len[:, None] / grid["duration"][:, None]
        # the recovery must have been watched for the whole window: a light curve that
        # ends inside it (a fade or step caught mid-way) is not (yet) an ESE
        good &= t_last[:, None] >= (grid["t0"] + grid["duration"] / 2.0 + rec_len)[None, :]
        for side, win in (("pre", (u <= -1.0) & (u >= -reach_u)),
                          ("post", (u >= 1.0) & (u <= reach_u))):
            n_side, back, r_side, w_side = side_agreement(win, CNT, W, WF, T, a, c, recovery_tol)
            good &= (n_side >= min_side) & back
            if side == "pre":
                r_pre, w_pre = r_side, w_side
        both = np.sqrt(1.0 / np.where(w_pre > 0, w_pre, 1.0) + 1.0 / np.where(w_side > 0, w_side, 1.0))
        good &= np.abs(r_side - r_pre) <= recovery_tol * np.abs(c) + 2.0 * both
        dchi2 = np.where(good, dchi2, 0.0)
        chi2_const = (Sff[:, None] - Sf * Sf / Sw)
        chi2_fit = np.maximum(chi2_const - dchi2, 0.0)
        dof = np.maximum(n - 2.0, 1.0)
        scale = np.maximum(1.0, chi2_fit / dof)
        sig = np.sqrt(dchi2 / scale)
    return {"sig": sig, "good": good, "dchi2": dchi2, "c": c, "a": a, "chi2_fit": chi2_fit,
            "dof": np.broadcast_to(dof, sig.shape), "n_in": n_in}


def _span(mask, tu):
    """Time between the first and last True of each row of ``mask`` (0 when none)."""
    t_hi = np.max(np.where(mask, tu[None, :], -np.inf), axis=1)
    t_lo = np.min(np.where(mask, tu[None, :], np.inf), axis=1)
    return np.where(mask.any(axis=1), t_hi - t_lo, 0.0)


def _dip_consistency(sig, tu, fgrid, a, c, grid, threshold, min_low_frac, min_low_span,
                     max_elements: int = 4_000_000):
    """Reject (set sig to -1 in place) templates above ``threshold`` whose dip is not
    made of consistently low points.

    Inside the dip (P >= 0.5) at least 2, and all but max(1, (1 - ``min_low_frac``) n_in),
    of the measured epochs must lie below half the fitted dip (centred flux
    < a + c P / 2), and those low epochs
    must span at least ``min_low_span`` of the time spanned by all the measured
    in-dip epochs -- so a run of a few bad epochs inside a longer template, with
    normal epochs around it, is not an event. Evaluated only where
    it matters (templates at or above the threshold), best template first, in
    rounds of growing size per source, so the cost stays small for real events.
    """
    above = sig >= threshold
    src = np.flatnonzero(above.any(axis=1))
    if not src.size:
        return
    m = tu.size
    batch = max(1, max_elements // max(m, 1))
    rank_limit = 1
    pending = src
    while pending.size:
        s_sub = sig[pending]
        order = np.argsort(-s_sub, axis=1)[:, :rank_limit]           # best remaining first
        ps = np.repeat(pending, order.shape[1])
        pk = order.ravel()
        keep = sig[ps, pk] >= threshold
        ps, pk = ps[keep], pk[keep]
        passed = np.zeros(ps.size, bool)
        for lo in range(0, ps.size, batch):
            i_s, i_k = ps[lo:lo + batch], pk[lo:lo + batch]
            p, _ = _profiles(tu[None, :], grid["t0"][i_k, None], grid["duration"][i_k, None],
                             with_q=False)
            f = fgrid[i_s]
            indip = (p >= 0.5) & np.isfinite(f)
            with np.errstate(invalid="ignore"):
                low = indip & (f < (a[i_s, i_k][:, None] + 0.5 * c[i_s, i_k][:, None] * p))
            n_in = indip.sum(axis=1)
            n_low = low.sum(axis=1)
            span_low = _span(low, tu)
            span_in = _span(indip, tu)
            n_high = n_in - n_low
            passed[lo:lo + batch] = ((n_high <= np.maximum(1, (1.0 - min_low_frac) * n_in))
                                     & (n_low >= 2)
                                     & (span_low >= min_low_span * span_in))
        sig[ps[~passed], pk[~passed]] = -1.0
        ok_src = np.unique(ps[passed])
        # a source is settled when its best remaining template passed or none is left above
        still = sig[pending] >= threshold
        best_k = np.argmax(sig[pending], axis=1)
        settled = np.isin(pending, ok_src) & np.isin(
            pending * sig.shape[1] + best_k, ps[passed] * sig.shape[1] + pk[passed])
        pending = pending[~settled & still.any(axis=1)]
        rank_limit = min(rank_limit * 8, sig.shape[1])


def _template_reach(grid, recovery_window, min_recovery_days):
    """Half-width (days) about t0 of everything a template looks at: its recovery windows,
    and at least 10 caustic widths past its edges (beyond, Q < 1e-21 and P = 0)."""
    rec = _recovery_length(grid["duration"], recovery_window, min_recovery_days)
    half = grid["duration"] / 2.0
    return np.maximum(half + rec, half * (1.0 + 10.0 * CAUSTIC_WIDTH))


def _column_groups(tu, lo, hi):
    """Start index of each group of columns of the time grid ``tu`` (MJD, sorted).

    A time inside the reach [``lo``, ``hi``] of some template is a group of its own;
    consecutive times outside every reach, with the same templates before and after
    them, form one group: every template sees them alike (P = 0, Q ~ 0, in no recovery
    window, on the same side), so only their sums matter.
    """
    n_lo = np.searchsorted(np.sort(lo), tu, side="right")     # reaches begun by t
    n_hi = np.searchsorted(np.sort(hi), tu, side="left")      # reaches ended before t
    free = n_lo == n_hi
    same = free[1:] & free[:-1] & (n_lo[1:] == n_lo[:-1]) & (n_hi[1:] == n_hi[:-1])
    return np.flatnonzero(np.concatenate(([True], ~same)))


def merge_untouched(tu, sums, lo, hi):
    """The time grid ``tu`` and the per-time sums ``sums`` ((s, m) arrays: weights, weighted
    fluxes, counts) with each run of times no template reaches merged into one column
    (:func:`_column_groups`): the fits are unchanged, and their cost is bounded by the
    templates' reach instead of the length of the history."""
    starts = _column_groups(tu, lo, hi)
    if starts.size == tu.size:
        return tu, sums
    return tu[starts], [np.add.reduceat(x, starts, axis=1) for x in sums]


def _empty_result(n_sources: int) -> dict:
    """Per-source result arrays of :func:`detect_ese_shapes` before any template is fitted."""
    S = n_sources
    return {"detected": np.zeros(S, bool), "significance": np.zeros(S),
            "depth": np.full(S, np.nan), "duration_days": np.full(S, np.nan),
            "t_min_mjd": np.full(S, np.nan), "caustic_amp": np.full(S, np.nan),
            "template": np.full(S, "", dtype=object), "chi2_improvement": np.zeros(S),
            "chi2_nu_fit": np.full(S, np.nan), "baseline": np.full(S, np.nan),
            "n_in_dip": np.zeros(S, dtype=np.int64)}


def _incremental_templates(grid, ok, t, new_since_mjd, recovery_window, min_recovery_days,
                           keep_mask: bool = False):
    """Templates an incremental search has to fit, and the epochs they can touch.

    Under the recovery rule an event can only turn detectable when the light curve
    reaches the end of its recovery window, so only the templates whose window ends
    after the sources' last epoch before ``new_since_mjd`` (MJD), and not after the
    data, are kept, and only the epochs from the earliest start of their pre-event
    window on: the cost per image is bounded whatever the length of the history.

    Returns
    -------
    grid : dict or None
        The kept templates (as :func:`template_grid`); None when none is left.
    ok : ndarray of bool, shape (n_sources, n_epochs)
        ``ok`` restricted to the epochs the kept templates can touch.

    With ``keep_mask``: (the bool mask of the kept templates over ``grid``, ``ok``
    unchanged) instead.
    """
    since = float(new_since_mjd)
    with np.errstate(invalid="ignore"):
        before = np.where(ok & (t < since), t, -np.inf).max(axis=1)
    prev = float(before.min())
    rec = _recovery_length(grid["duration"], recovery_window, min_recovery_days)
    win_end = grid["t0"] + grid["duration"] / 2.0 + rec
    keep = (win_end > prev) & (win_end <= float(t[ok].max()))
    if keep_mask:
        return keep, ok
    if not keep.any():
        return None, ok
    grid = {k: (v[keep] if k != "names" else v) for k, v in grid.items()}
    first = float(np.min(grid["t0"] - grid["duration"] / 2.0 - rec[keep]))
    with np.errstate(invalid="ignore"):
        ok = ok & (t >= first)
    return grid, ok


def _near_templates(grid, near, durations, step_fraction):
    """Which templates of ``grid`` are close to each source's stored template.

    ``near`` holds per-source ``t0`` (MJD) and ``duration`` (days), NaN where the source
    has none. Close: a duration within one step of the ``durations`` ladder of the
    stored one, either shape, and t0 within two t0 steps (``step_fraction`` durations)
    of the stored t0. Returns a bool array (n_sources, n_templates).
    """
    t0s = np.asarray(near["t0"], float)
    ds = np.asarray(near["duration"], float)
    ladder = np.log(np.sort(np.asarray(durations, float)))
    has = np.isfinite(t0s) & np.isfinite(ds) & (ds > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = np.argmin(np.abs(np.log(np.where(has, ds, 1.0))[:, None] - ladder[None, :]), axis=1)
    jg = np.searchsorted(ladder, np.log(grid["duration"]))
    jg = np.clip(jg, 0, ladder.size - 1)
    close_d = np.abs(jg[None, :] - j[:, None]) <= 1
    reach = 2.01 * step_fraction * grid["duration"]
    close_t = np.abs(grid["t0"][None, :] - t0s[:, None]) <= reach[None, :]
    return has[:, None] & close_d & close_t


def _inside_window(grid, until, recovery_window, min_recovery_days):
    """The templates of ``grid`` whose pre-event window starts at or after ``until`` (MJD),
    None when none."""
    keep = ~reaches_before(grid["t0"], grid["duration"], until, recovery_window,
                           min_recovery_days)
    if not keep.any():
        return None
    return {k: (v[keep] if k != "names" else v) for k, v in grid.items()}


def _bounded_templates(grid, ok, t, new_since_mjd, near, durations, step_fraction,
                       recovery_window, min_recovery_days):
    """Templates of a bounded search of known candidates, and which source may use which.

    The incremental templates (:func:`_incremental_templates`) for every source, and
    each source's own stored template with its neighbours (:func:`_near_templates`),
    all on the whole light curve. Returns (grid, allowed), allowed of shape
    (n_sources, n_kept_templates); grid None when nothing is left.
    """
    inc, _ = _incremental_templates(grid, ok, t, new_since_mjd, recovery_window,
                                    min_recovery_days, keep_mask=True)
    allowed = inc[None, :] | _near_templates(grid, near, durations, step_fraction)
    keep = allowed.any(axis=0)
    if not keep.any():
        return None, None
    return {k: (v[keep] if k != "names" else v) for k, v in grid.items()}, allowed[:, keep]


@dataclass(frozen=True)
class _ShapeSearch:
    """One call of :func:`detect_ese_shapes`: the data, the templates and the rules.

    ``t`` (MJD), ``ok`` (usable points), ``w`` (1/err**2, 0 where not usable) and
    ``fc`` (flux minus the source's weighted mean ``mu``, flux unit) have shape
    (n_sources, n_epochs); ``grid`` is a :func:`template_grid`; ``counts`` the epochs
    each point stands for and ``extra_chi2`` the summarised epochs' own scatter
    (:func:`~dsa110_contimg.science.ese_window.with_summary`; None: one epoch each, 0);
    the remaining fields are the keyword arguments of :func:`detect_ese_shapes`.
    """

    t: np.ndarray
    ok: np.ndarray
    w: np.ndarray
    fc: np.ndarray
    mu: np.ndarray
    grid: dict
    min_significance: float
    min_in: int
    min_out: int
    max_depth: float
    overhang: float
    min_side: int
    recovery_window: float
    recovery_tol: float
    min_recovery_days: float
    min_low_frac: float
    min_low_span: float
    max_grid: int
    allowed: np.ndarray | None = None
    counts: np.ndarray | None = None
    extra_chi2: np.ndarray | None = None

    def run(self, rows, out):
        """Search the sources ``rows``, writing their best templates into ``out``.

        The block is split in halves while the union of its epochs exceeds ``max_grid``.
        """
        sub_ok = self.ok[rows]
        if not sub_ok.any():
            return
        tu, inv = np.unique(self.t[rows][sub_ok], return_inverse=True)
        if tu.size > self.max_grid and rows.size > 1:
            half = rows.size // 2
            self.run(rows[:half], out)
            self.run(rows[half:], out)
            return
        W, WF, CNT = self._grid_sums(rows, sub_ok, tu.size, inv)
        reach = _template_reach(self.grid, self.recovery_window, self.min_recovery_days)
        tu, (W, WF, CNT) = merge_untouched(tu, [W, WF, CNT], self.grid["t0"] - reach,
                                           self.grid["t0"] + reach)
        Sff = (self.w[rows] * self.fc[rows] ** 2).sum(axis=1)
        if self.extra_chi2 is not None:
            Sff = Sff + self.extra_chi2[rows]
        tr = np.where(sub_ok, self.t[rows], np.nan)
        res = _chunk_fit(tu, W, WF, Sff, CNT, self.grid, self.min_in, self.min_out,
                         np.nanmin(tr, axis=1), np.nanmax(tr, axis=1), self.overhang,
                         self.min_side, self.recovery_window, self.recovery_tol,
                         self.min_recovery_days)
        base = res["a"] + self.mu[rows][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = -res["c"] / base
        admissible = res["good"] & (base > 0) & (depth > 0) & (depth <= self.max_depth)
        if self.allowed is not None:
            admissible &= self.allowed[rows]
        sig = np.where(admissible, res["sig"], -1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fgrid = np.where(CNT > 0, WF / np.where(W > 0, W, 1.0), np.nan)
        _dip_consistency(sig, tu, fgrid, res["a"], res["c"], self.grid, self.min_significance,
                         self.min_low_frac, self.min_low_span)
        self._store_best(out, rows, sig, depth, base, res)

    def _grid_sums(self, rows, sub_ok, m, inv):
        """Per source and time of the block's grid (m times): sums of w, w fc and point counts."""
        r_idx = np.nonzero(sub_ok)[0]
        W = np.zeros((rows.size, m))
        WF = np.zeros((rows.size, m))
        CNT = np.zeros((rows.size, m))
        wsub, fsub = self.w[rows][sub_ok], self.fc[rows][sub_ok]
        np.add.at(W, (r_idx, inv), wsub)
        np.add.at(WF, (r_idx, inv), wsub * fsub)
        np.add.at(CNT, (r_idx, inv), 1.0 if self.counts is None else self.counts[rows][sub_ok])
        return W, WF, CNT

    def _store_best(self, out, rows, sig, depth, base, res):
        """Write each source's best admissible template (sig >= 0) into ``out``."""
        grid = self.grid
        names = np.array(grid["names"], dtype=object)
        k = np.argmax(sig, axis=1)
        ii = np.arange(rows.size)
        best = sig[ii, k]
        has = best >= 0
        kk = k[has]
        sel = rows[has]
        ih = ii[has]
        out["significance"][sel] = best[has]
        out["depth"][sel] = depth[ih, kk]
        out["duration_days"][sel] = grid["duration"][kk]
        out["t_min_mjd"][sel] = grid["t0"][kk]
        out["caustic_amp"][sel] = grid["kappa"][kk] * depth[ih, kk]
        out["template"][sel] = names[grid["shape"][kk]]
        out["chi2_improvement"][sel] = res["dchi2"][ih, kk]
        out["chi2_nu_fit"][sel] = res["chi2_fit"][ih, kk] / res["dof"][ih, kk]
        out["baseline"][sel] = base[ih, kk]
        out["n_in_dip"][sel] = res["n_in"][ih, kk].astype(np.int64)


def detect_ese_shapes(mjd2d, flux2d, err2d, *, min_significance: float = DEFAULT_MIN_SIGNIFICANCE,
                      durations=DEFAULT_DURATIONS, shapes=None, min_in: int = 3, min_out: int = 5,
                      max_depth: float = 1.0, step_fraction: float = 0.125,
                      overhang: float = 0.35, min_side: int = 3, recovery_window: float = 1.0,
                      recovery_tol: float = 0.5, min_recovery_days: float = 30.0,
                      min_low_frac: float = 0.7,
                      min_low_span: float = 0.3, new_since_mjd: float | None = None,
                      near: Mapping | None = None, summary: Mapping | None = None,
                      chunk_sources: int = 512, max_grid: int = 2048) -> dict:
    """Matched-filter ESE search over many light curves at once.

    For each source and each template (t0, D, shape) the model
    ``flux = a (1 - d T(t))``, T = P - kappa Q (see :func:`ese_model`), is fitted by
    weighted linear least squares in (a, a d); Delta chi2 = A**2 / B against the
    constant model (A, B: docs/science.md, section 11.3). The significance of a
    template is sqrt(Delta chi2 / max(1, chi2_fit / (n - 2))), deflated when the best
    model still leaves excess scatter. A template is admissible only when it is a
    dip (0 < d <= ``max_depth``) with >= ``min_in`` points inside (P >= 0.5) and
    >= ``min_out`` outside (P = 0), t0 within ``overhang`` durations of the source's
    own first/last epoch, the source is seen before and after the event and
    *recovers* (recovery rule, :func:`_chunk_fit`), and the dip is consistently low
    (:func:`_dip_consistency`); the rules in full are in docs/science.md, section
    11.3. The look-elsewhere effect of the ~2,700 templates of a 500-d span is
    absorbed by the threshold, calibrated on simulated steady sources
    (``bench/ese.py``: maximum 4.9 sigma over 10,000; default threshold 6).
    With ``new_since_mjd`` only the templates that can turn admissible with the
    new epochs are fitted (:func:`_incremental_templates`), on the epochs they can
    touch. Known candidates pass their stored best template as ``near`` as well: they
    are fitted, on their whole light curve, over the incremental templates and the
    templates next to their own (:func:`_near_templates`), so their best template and
    significance follow the full-history search at O(n_epochs) per source.
    With ``summary`` the light curves are a window of the latest epochs and the epochs
    before it come as sums (:mod:`~dsa110_contimg.science.ese_window`): only templates
    inside the window (their pre-event window starts at or after ``summary["until"]``)
    are fitted, exactly as on the whole light curve.
    All templates of a chunk of sources are evaluated on the union of their epochs
    with matrix products: O(n_sources * n_templates * n_epochs) flops in BLAS; runs of
    epochs no template reaches are merged into one column first (:func:`merge_untouched`),
    so a bounded search costs what the templates' reach holds, not the whole history.

    Parameters
    ----------
    mjd2d : array-like, shape (n_sources, n_epochs) or (n_epochs,)
        Observation times (MJD), uneven sampling allowed.
    flux2d, err2d : array-like, shape (n_sources, n_epochs)
        Normalised flux and 1-sigma error; NaN / err <= 0 marks missing points.
    min_significance : float
        Detection threshold (sigma), default :data:`DEFAULT_MIN_SIGNIFICANCE`.
    min_in, min_out : int
        Minimum points inside the dip / outside the event.
    max_depth : float
        Largest admissible fractional depth.
    step_fraction, overhang : float
        t0 step and reach beyond the data, in units of the duration
        (see :func:`template_grid`).
    chunk_sources, max_grid : int
        Memory bounds: sources per block, and largest union of epochs per block
        (blocks whose sources have more distinct epochs are split).
    min_side, recovery_window, recovery_tol, min_recovery_days : int, float, float, float
        Recovery rule: epochs needed before and after the event, window length
        (durations, but at least ``min_recovery_days`` days), tolerance (fraction
        of the dip amplitude).
    min_low_frac, min_low_span : float
        Dip-consistency rule (fractions of the in-dip epochs and of their time span).
    new_since_mjd : float, optional
        Incremental search: MJD of the first new epoch.
    near : mapping, optional
        With ``new_since_mjd``: per-source stored best template, ``t0`` (MJD) and
        ``duration`` (days) arrays of shape (n_sources,), NaN where none (see above).
    summary : mapping, optional
        The epochs before the light curves given, as sums per source
        (:func:`~dsa110_contimg.science.ese_window.summary_before`: ``n``, ``sum_w``,
        ``sum_wf``, ``sum_wf2``, ``first_mjd`` and the MJD ``until``).
    durations : sequence of float
        Template durations (days), default 14-180 d.
    shapes : mapping name -> caustic fraction, optional
        Default :data:`SHAPES` (``dip``, ``dip+caustics``).

    Returns
    -------
    dict of arrays, one element per source
        ``detected`` (bool), ``significance`` (sigma; 0 when no template is
        admissible), ``depth`` (fractional), ``duration_days``, ``t_min_mjd``
        (epoch of minimum), ``caustic_amp`` (fractional), ``template`` (shape name,
        '' when none), ``chi2_improvement`` (Delta chi2), ``chi2_nu_fit``,
        ``baseline`` (flux unit), ``n_in_dip`` (points with P >= 0.5).
    """
    f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "detect_ese_shapes")
    f, e, t, counts, extra = with_summary(f, e, t, summary)
    S = f.shape[0]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
    out = _empty_result(S)
    if not ok.any():
        return out
    t_lo = float(t[ok].min()) if summary is None else max(float(t[ok].min()),
                                                           float(summary["until"]))
    grid = template_grid(t_lo, float(t[ok].max()), durations=durations,
                         shapes=shapes, step_fraction=step_fraction, overhang=overhang)
    if summary is not None:
        grid = _inside_window(grid, float(summary["until"]), recovery_window, min_recovery_days)
        if grid is None:
            return out
    allowed = None
    if new_since_mjd is not None and near is not None:
        grid, allowed = _bounded_templates(grid, ok, t, new_since_mjd, near, durations,
                                           step_fraction, recovery_window, min_recovery_days)
        if grid is None:
            return out
    elif new_since_mjd is not None:
        grid, ok = _incremental_templates(grid, ok, t, new_since_mjd, recovery_window,
                                          min_recovery_days)
        if grid is None:
            return out
    w = np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)
    fz = np.where(ok, f, 0.0)
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(sw > 0, (w * fz).sum(axis=1) / np.where(sw > 0, sw, 1.0), 0.0)
    fc = np.where(ok, fz - mu[:, None], 0.0)                    # centred: no cancellation
    search = _ShapeSearch(t, ok, w, fc, mu, grid, min_significance, min_in, min_out, max_depth,
                          overhang, min_side, recovery_window, recovery_tol, min_recovery_days,
                          min_low_frac, min_low_span, max_grid, allowed,
                          None if summary is None else np.where(ok, counts, 0.0),
                          None if summary is None else extra)
    for start in range(0, S, chunk_sources):
        search.run(np.arange(start, min(start + chunk_sources, S)), out)
    out["detected"] = out["significance"] >= min_significance
    return out


@dataclass
class ESEFit:
    """Best ESE template of one light curve.

    Attributes
    ----------
    depth : float
        Fractional depth of the dip (NaN when no template was admissible).
    duration_days : float
    t_min_mjd : float
        Epoch of minimum (MJD).
    significance : float
        sigma (see :func:`detect_ese_shapes`); 0 when no template was admissible.
    template : str
        Shape name (``dip``, ``dip+caustics``); ``none`` when no fit.
    chi2_improvement : float
        Delta chi2 against the constant model.
    baseline : float
        Fitted out-of-event flux (flux unit).
    caustic_amp : float
        Fractional height of the caustic brightenings.
    chi2_nu_fit : float
    detected : bool
        significance >= the threshold used.
    """

    depth: float
    duration_days: float
    t_min_mjd: float
    significance: float
    template: str
    chi2_improvement: float
    baseline: float
    caustic_amp: float
    chi2_nu_fit: float
    detected: bool
    model: Callable = field(repr=False, default=None)

    def __post_init__(self):
        if self.model is None:
            self.model = self._model

    def _model(self, mjd):
        """Model flux at ``mjd`` (flux unit); NaN everywhere when there is no fit."""
        mjd = np.asarray(mjd, dtype=float)
        if self.template == "none":
            return np.full(mjd.shape, np.nan)
        return self.baseline * ese_model(mjd, self.t_min_mjd, self.duration_days, self.depth,
                                         self.caustic_amp)


def fit_ese(mjd, flux, err, *, min_significance: float = DEFAULT_MIN_SIGNIFICANCE, **kw) -> ESEFit:
    """Best-fitting ESE template of one light curve (see :func:`detect_ese_shapes`).

    Parameters
    ----------
    mjd, flux, err : array-like, shape (N,)
        Times (MJD), normalised flux and 1-sigma error.

    Returns
    -------
    ESEFit
        ``template == 'none'`` (NaN depth, significance 0) when the light curve has
        too few points for any template; ``model(mjd)`` gives the fitted flux.
    """
    t = np.asarray(mjd, dtype=float)
    f = np.asarray(flux, dtype=float)
    e = np.asarray(err, dtype=float)
    if t.ndim != 1 or f.shape != t.shape or e.shape != t.shape:
        raise InvalidLightCurve(f"fit_ese: mjd, flux and err must be 1-D of equal length, got "
                                f"{t.shape}, {f.shape}, {e.shape}")
    r = detect_ese_shapes(t[None, :], f[None, :], e[None, :], min_significance=min_significance,
                          **kw)
    tpl = r["template"][0] or "none"
    return ESEFit(depth=float(r["depth"][0]), duration_days=float(r["duration_days"][0]),
                  t_min_mjd=float(r["t_min_mjd"][0]), significance=float(r["significance"][0]),
                  template=tpl, chi2_improvement=float(r["chi2_improvement"][0]),
                  baseline=float(r["baseline"][0]), caustic_amp=float(r["caustic_amp"][0]),
                  chi2_nu_fit=float(r["chi2_nu_fit"][0]), detected=bool(r["detected"][0]))


__all__ = ["CAUSTIC_WIDTH", "DEFAULT_DURATIONS", "DEFAULT_MIN_SIGNIFICANCE", "ESEFit",
           "ESEPreset", "EtaVThresholds", "PRESETS", "SEARCH_WINDOW_DAYS", "SHAPES", "TAPER",
           "classify", "composite_score", "detect_ese_shapes", "ese_model", "eta_v_candidates",
           "eta_v_thresholds", "fit_ese", "template_grid"]
