"""The stage of an ESE while it happens: dip in progress, recovering, confirmed, retired.

A detector that waits for the whole recovery (:func:`~dsa110_contimg.science.ese.detect_ese_shapes`)
cannot trigger follow-up during the event. This module classifies every light curve,
as observed *up to its latest epoch*, into one stage (vectorised over sources, no
database):

* ``confirmed`` -- dip and recovery, the rule of ``detect_ese_shapes`` (the baseline
  watched before and after the event);
* ``recovering`` -- a significant dip whose egress is being observed: the best *live*
  template (below) has its latest epoch past the dip's flat bottom, and any epochs
  after the event are back at the baseline;
* ``dip_in_progress`` -- a significant dip from the baseline with the latest epoch
  still inside it (recovery not yet seen), or a significant drop from the baseline
  that persists to the latest epochs (a two-level fit, :func:`step_fit`);
* ``retired`` -- a drop that has lasted longer than the longest ESE template without
  a recovery: a ``step`` (flat low state) or a ``fade`` (still falling), with the
  reason;
* ``''`` -- none of these.

**Live templates.** The ESE templates of :mod:`~dsa110_contimg.science.ese` whose
span reaches the latest epoch t_last: P(t_last) >= 0.5 (inside the dip), or t_last
within the recovery window after the event. A live template needs the baseline
before the event (``min_side`` epochs in the pre-event window, level within the
tolerance of :func:`~dsa110_contimg.science.ese.detect_ese_shapes`), ``min_in``
consistently low epochs in the dip, and nothing after the event (no waiting for a
recovery window). Its significance is the same sigma as the confirmed search, so one
threshold (:data:`DEFAULT_LIVE_SIGNIFICANCE`, calibrated in ``bench/ese.py`` on
steady sources evaluated at every epoch) applies. Only templates reaching t_last
are fitted, and the epochs before every one's pre-event window enter as one merged
column (:func:`~dsa110_contimg.science.ese.merge_untouched`), so the cost per
evaluation stops growing once the history is longer than the reach of the longest
live template (D + 2 max(D, 30 d) before t_last: 540 d for D = 180 d).

Fluxes are normalised flux densities (Jy/beam or dimensionless) with 1-sigma errors
in the same unit; times MJD (days).
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science.ese import (
    DEFAULT_DURATIONS, DEFAULT_MIN_SIGNIFICANCE, _dip_consistency, _profiles, _recovery_length,
    _template_reach, _template_shapes, detect_ese_shapes, merge_untouched, side_agreement, template_grid,
)
from dsa110_contimg.science.ese_live_sums import MARGIN_SIGMA
from dsa110_contimg.science.ese_window import reaches_before, with_summary
from dsa110_contimg.science.variability import lightcurve_block

#: The stages, in ranking order (the most actionable first); ``''`` = no stage.
STAGES = ("confirmed", "recovering", "dip_in_progress", "retired")
#: Detection threshold (sigma) of the live search and of the two-level step fit.
DEFAULT_LIVE_SIGNIFICANCE = 7.0
#: Edge of the dip's flat bottom in u = 2 (t - t0) / D (the templates' taper starts here).
_FLAT_EDGE = 0.7
#: Where the template's dip profile crosses 0.5 (u = 0.85), after the minimum: the egress.
_HALF_EDGE = _FLAT_EDGE + 0.5 * (1 - _FLAT_EDGE)


def live_dip_search(mjd2d, flux2d, err2d, *, min_significance: float = DEFAULT_LIVE_SIGNIFICANCE,
                    durations=DEFAULT_DURATIONS, shapes=None, min_in: int = 3, min_pre: int = 5,
                    min_side: int = 3, recovery_window: float = 1.0, recovery_tol: float = 0.5,
                    min_recovery_days: float = 30.0, max_depth: float = 1.0,
                    step_fraction: float = 0.125, overhang: float = 0.35,
                    min_low_frac: float = 0.7, min_low_span: float = 0.3,
                    summary=None, screen=None, chunk_sources: int = 512) -> dict:
    """Best *live* ESE template per light curve (see the module docstring).

    Parameters
    ----------
    mjd2d, flux2d, err2d : array-like, shape (n_sources, n_epochs) or mjd (n_epochs,)
        Times (MJD), normalised flux and 1-sigma error; NaN / err <= 0 = missing.
    min_significance : float
        Threshold (sigma).
    min_in, min_pre, min_side : int
        Epochs inside the dip (P >= 0.5), before the event in all, and in the
        pre-event window.
    summary : mapping, optional
        The epochs before the light curves given, as sums
        (:func:`~dsa110_contimg.science.ese_window.summary_before`); only live templates
        whose pre-event window starts at or after its ``until`` are fitted.
    screen : LiveScreen, optional
        Fit in full only the sources whose bound from the kept sums of their live templates
        reaches the threshold (:mod:`~dsa110_contimg.science.ese_live_sums`): the others are
        not detected, and get the values of no template (significance 0).
    Other parameters as :func:`~dsa110_contimg.science.ese.detect_ese_shapes`.

    Returns
    -------
    dict of arrays, one element per source
        ``detected``, ``significance`` (sigma, 0 when none admissible), ``depth``,
        ``duration_days``, ``t_min_mjd`` (template centre, MJD), ``onset_mjd``
        (t_min - D/2), ``recovering`` (latest epoch past the flat bottom),
        ``baseline`` (flux unit).
    """
    f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "live_dip_search")
    f, e, t, counts, extra = with_summary(f, e, t, summary)
    S = f.shape[0]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
    out = {"detected": np.zeros(S, bool), "significance": np.zeros(S),
           "depth": np.full(S, np.nan), "duration_days": np.full(S, np.nan),
           "t_min_mjd": np.full(S, np.nan), "onset_mjd": np.full(S, np.nan),
           "recovering": np.zeros(S, bool), "baseline": np.full(S, np.nan)}
    if not ok.any():
        return out
    tt = np.where(ok, t, np.nan)
    with np.errstate(invalid="ignore"):
        t_last = np.where(ok.any(axis=1), np.nanmax(np.where(ok, t, -np.inf), axis=1), np.nan)
    t_lo = float(t[ok].min()) if summary is None else max(float(t[ok].min()),
                                                           float(summary["until"]))
    grid = template_grid(t_lo, float(t[ok].max()), durations=durations,
                         shapes=shapes, step_fraction=step_fraction, overhang=overhang)
    rec = _recovery_length(grid["duration"], recovery_window, min_recovery_days)
    lo_last, hi_last = np.nanmin(t_last), np.nanmax(t_last)
    # live for some source: t_last inside the dip (P >= 0.5) or within the recovery window
    reach_in = grid["t0"] - 0.5 * grid["duration"] * _HALF_EDGE
    keep = (reach_in <= hi_last) & (grid["t0"] + grid["duration"] / 2 + rec >= lo_last)
    if summary is not None:
        keep &= ~reaches_before(grid["t0"], grid["duration"], float(summary["until"]),
                                recovery_window, min_recovery_days)
    if not keep.any():
        return out
    grid = {k: (v[keep] if k != "names" else v) for k, v in grid.items()}
    rec = rec[keep]
    lo_reach = grid["t0"] - _template_reach(grid, recovery_window, min_recovery_days)
    w = np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)
    fz = np.where(ok, f, 0.0)
    sw = w.sum(axis=1)
    mu = np.where(sw > 0, (w * fz).sum(axis=1) / np.where(sw > 0, sw, 1.0), 0.0)
    fc = np.where(ok, fz - mu[:, None], 0.0)
    todo = np.arange(S)
    if screen is not None:
        totals = (np.where(ok, counts, 0.0).sum(axis=1), sw, (w * fc).sum(axis=1),
                  (w * fc * fc).sum(axis=1) + extra, mu)
        bound = screen.bound(grid, rec, lo_reach, t, f, w, ok, t_last, np.nanmin(tt, axis=1),
                             totals, (min_in, min_pre, min_side, recovery_tol, overhang,
                                      max_depth), durations, step_fraction)
        todo = np.flatnonzero(~(bound < min_significance - MARGIN_SIGMA))
    for start in range(0, todo.size, chunk_sources):
        rows = todo[start:start + chunk_sources]
        sub_ok = ok[rows]
        if not sub_ok.any():
            continue
        tu, inv = np.unique(t[rows][sub_ok], return_inverse=True)
        r_idx = np.nonzero(sub_ok)[0]
        W = np.zeros((rows.size, tu.size))
        WF = np.zeros_like(W)
        CNT = np.zeros_like(W)
        np.add.at(W, (r_idx, inv), w[rows][sub_ok])
        np.add.at(WF, (r_idx, inv), (w * fc)[rows][sub_ok])
        np.add.at(CNT, (r_idx, inv), counts[rows][sub_ok])
        Sff = (w[rows] * fc[rows] ** 2).sum(axis=1) + extra[rows]
        best = np.full(rows.size, -1.0)
        for g in _duration_groups(grid["duration"]):
            _live_group(out, best, rows, tu, [W, WF, CNT], Sff, mu[rows],
                        {k: (v[g] if k != "names" else v) for k, v in grid.items()}, rec[g],
                        lo_reach[g], t_last[rows], np.nanmin(tt[rows], axis=1),
                        (min_in, min_pre, min_side, recovery_tol, overhang), max_depth,
                        (min_significance, min_low_frac, min_low_span))
    out["detected"] = out["significance"] >= min_significance
    out["recovering"] &= out["detected"]
    return out


def _duration_groups(durations, n_groups: int = 3) -> list[np.ndarray]:
    """Masks of the templates in ``n_groups`` runs of consecutive durations (in grid order):
    each run is fitted on the columns its own reach needs, so the short templates are not
    evaluated over the long ones' 540 days."""
    d = np.asarray(durations, float)
    _, first = np.unique(d, return_index=True)
    ordered = d[np.sort(first)]
    return [np.isin(d, part) for part in np.array_split(ordered, min(n_groups, ordered.size))]


def _live_group(out, best, rows, tu, sums, Sff, mu, grid, rec, lo_reach, t_last, t_first,
                rules, max_depth, consistency):
    """Fit the live templates ``grid`` (one run of durations) to the sources ``rows`` and write,
    where one beats ``best`` (in place, sigma; -1 = none yet), its template into ``out``.

    ``sums`` are the (W, WF, CNT) of the block on the times ``tu``; the columns before every
    template's pre-event window are merged first (the live fit looks at everything after it).
    Groups are taken in grid order and a later one must be strictly better, so the pick is the
    one a single search over all templates makes."""
    tu, (W, WF, CNT) = merge_untouched(tu, sums, lo_reach, np.full(lo_reach.size, np.inf))
    res = _live_fit(tu, W, WF, Sff, CNT, grid, rec, t_last, t_first, *rules)
    base = res["a"] + mu[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = -res["c"] / base
    admissible = res["good"] & (base > 0) & (depth > 0) & (depth <= max_depth)
    sig = np.where(admissible, res["sig"], -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fgrid = np.where(CNT > 0, WF / np.where(W > 0, W, 1.0), np.nan)
    _dip_consistency(sig, tu, fgrid, res["a"], res["c"], grid, *consistency)
    k = np.argmax(sig, axis=1)
    ii = np.arange(rows.size)
    top = sig[ii, k]
    upd = (top >= 0) & (top > best)
    best[upd] = top[upd]
    sel, ih, kk = rows[upd], ii[upd], k[upd]
    out["significance"][sel] = sig[ih, kk]
    out["depth"][sel] = depth[ih, kk]
    out["duration_days"][sel] = grid["duration"][kk]
    out["t_min_mjd"][sel] = grid["t0"][kk]
    out["onset_mjd"][sel] = grid["t0"][kk] - grid["duration"][kk] / 2
    out["recovering"][sel] = res["recovered"][ih, kk]
    out["baseline"][sel] = base[ih, kk]


def _live_fit(tu, W, WF, Sff, CNT, grid, rec, t_last, t_first, min_in, min_pre, min_side,
              recovery_tol, overhang):
    """Linear fits of the live templates for sources sharing the time grid ``tu``
    (W, WF, CNT: (s, m) weights, weighted centred fluxes and counts per grid time)."""
    p, T = _template_shapes(tu, grid)
    Sw = W.sum(axis=1)[:, None]
    Sf = WF.sum(axis=1)[:, None]
    St, Stt, Sft = W @ T.T, W @ (T * T).T, WF @ T.T
    n_in = CNT @ (p >= 0.5).T.astype(float)
    u = 2.0 * (tu[None, :] - grid["t0"][:, None]) / grid["duration"][:, None]
    pre_all = (u <= -1.0).astype(float)
    n_pre = CNT @ pre_all.T
    n = CNT.sum(axis=1)[:, None]
    d = grid["duration"][None, :]
    u_last = 2.0 * (t_last[:, None] - grid["t0"][None, :]) / d
    p_last, _ = _profiles(t_last[:, None], grid["t0"][None, :], d, with_q=False)
    live = (p_last >= 0.5) | ((u_last >= 0.0)
                              & (t_last[:, None] <= grid["t0"][None, :] + d / 2 + rec[None, :]))
    inside = grid["t0"][None, :] >= t_first[:, None] - overhang * d
    with np.errstate(invalid="ignore", divide="ignore"):
        A = Sft - St * Sf / Sw
        B = Stt - St * St / Sw
        good = (B > 1e-12 * Sw) & (n_in >= min_in) & (n_pre >= min_pre) & live & inside
        c = np.where(good, A / np.where(good, B, 1.0), 0.0)
        a = (Sf - c * St) / Sw
        dchi2 = np.where(good, A * A / np.where(good, B, 1.0), 0.0)
        reach_u = 1.0 + 2.0 * rec[:, None] / grid["duration"][:, None]
        # recovering: >= 2 epochs past the dip's half-point (P < 0.5 after the minimum),
        # on average more than half-way back to the baseline
        back = (u >= _HALF_EDGE).astype(float)
        w_back = W @ back.T
        m_back = (WF @ back.T) / np.where(w_back > 0, w_back, 1.0)
        recovered = (CNT @ back.T >= 2) & (m_back > a + 0.5 * c)
        sides = {}
        for side, win in (("pre", (u <= -1.0) & (u >= -reach_u)), ("post", u >= 1.0)):
            sides[side] = side_agreement(win, CNT, W, WF, T, a, c, recovery_tol)[:2]
        # the baseline before the event; after it, whatever was seen is back at the baseline
        good &= (sides["pre"][0] >= min_side) & sides["pre"][1]
        good &= (sides["post"][0] == 0) | sides["post"][1]
        dchi2 = np.where(good, dchi2, 0.0)
        chi2_fit = np.maximum(Sff[:, None] - Sf * Sf / Sw - dchi2, 0.0)
        scale = np.maximum(1.0, chi2_fit / np.maximum(n - 2.0, 1.0))
        sig = np.sqrt(dchi2 / scale)
    return {"sig": sig, "good": good, "c": c, "a": a, "recovered": recovered & good}


def step_fit(mjd2d, flux2d, err2d, *, min_side: int = 3, summary=None) -> dict:
    """Best two-level (step) model per light curve, for drops that do not recover.

    The epochs of each source are split at every position with at least
    ``min_side`` epochs on either side; the weighted means before and after give
    Delta chi2 = (m_before - m_after)**2 / (1/W_before + 1/W_after) over the
    constant model; significance = sqrt(Delta chi2 / max(1, chi2_fit / (n - 2))).
    With ``summary`` (:func:`~dsa110_contimg.science.ese_window.summary_before`) the
    epochs before the light curves given enter as one point at its ``until`` (MJD): a
    split among them is not tried, and a drop before the window is dated at its start.

    Returns
    -------
    dict of arrays, one element per source
        ``significance`` (sigma), ``t_step_mjd`` (midway between the epochs either
        side of the split), ``drop`` (fractional: 1 - m_after / m_before, > 0 for a
        drop), ``last_low`` (the mean of the latest ``min_side`` epochs is below the
        mean before the step by more than half the drop), ``kind`` (``step`` when
        the level after the split is flat, ``fade`` when it keeps falling: a
        linear fit after the split falls by more than a third of the drop).
    """
    f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "step_fit")
    f, e, t, counts, extra = with_summary(f, e, t, summary, at="until")
    S, N = f.shape
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
    order = np.argsort(np.where(ok, t, np.inf), axis=1, kind="stable")
    f, e, t, ok, counts = (np.take_along_axis(x, order, axis=1) for x in (f, e, t, ok, counts))
    w = np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)
    wf = w * np.where(ok, f, 0.0)
    cnt = np.where(ok, counts, 0.0)
    n = cnt.sum(axis=1)
    cw, cf, cn = np.cumsum(w, axis=1), np.cumsum(wf, axis=1), np.cumsum(cnt, axis=1)
    Wt, Ft = cw[:, -1:], cf[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        m_b = cf / cw
        m_a = (Ft - cf) / (Wt - cw)
        dchi2 = (m_b - m_a) ** 2 / (1.0 / cw + 1.0 / (Wt - cw))
        valid = ok & (cn >= min_side) & ((n[:, None] - cn) >= min_side)
        dchi2 = np.where(valid, dchi2, -1.0)
    j = np.argmax(dchi2, axis=1)
    ii = np.arange(S)
    best = dchi2[ii, j]
    has = best > 0
    mb, ma = m_b[ii, j], m_a[ii, j]
    tt = np.where(ok, t, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2_const = (w * (np.where(ok, f, 0.0) - (Ft / Wt)) ** 2).sum(axis=1) + extra
        scale = np.maximum(1.0, (chi2_const - np.where(has, best, 0.0)) / np.maximum(n - 2, 1))
        sig = np.where(has, np.sqrt(np.where(has, best, 0.0) / scale), 0.0)
        drop = np.where(has, 1.0 - ma / mb, np.nan)
    nxt = np.minimum(j + 1, N - 1)
    t_step = np.where(has, 0.5 * (tt[ii, j] + tt[ii, nxt]), np.nan)
    after = ok & (np.arange(N)[None, :] > j[:, None])
    # the latest min_side epochs and a weighted linear fit after the split
    last = ok & (cn > (n[:, None] - min_side))
    with np.errstate(invalid="ignore", divide="ignore"):
        m_last = (wf * last).sum(axis=1) / (w * last).sum(axis=1)
        last_low = m_last < mb - 0.5 * (mb - ma)
        wa = w * after
        swa = wa.sum(axis=1)
        ta = np.where(after, tt, 0.0)
        tm = (wa * ta).sum(axis=1) / swa
        dt = np.where(after, tt - tm[:, None], 0.0)
        slope = (wa * dt * np.where(after, f, 0.0)).sum(axis=1) / (wa * dt * dt).sum(axis=1)
        span = np.nanmax(np.where(after, tt, np.nan), axis=1) - np.nanmin(
            np.where(after, tt, np.nan), axis=1)
        falling = -slope * span > (mb - ma) / 3.0
    kind = np.where(falling, "fade", "step").astype(object)
    kind[~has] = ""
    return {"significance": sig, "t_step_mjd": t_step, "drop": drop,
            "last_low": np.asarray(last_low & has, bool), "kind": kind}


def ese_stages(mjd2d, flux2d, err2d, *, confirmed: dict | None = None,
               min_significance: float = DEFAULT_MIN_SIGNIFICANCE,
               live_significance: float = DEFAULT_LIVE_SIGNIFICANCE,
               durations=DEFAULT_DURATIONS, summary=None, screen=None, **confirm_kw) -> dict:
    """The stage of each light curve as observed up to its latest epoch.

    Parameters
    ----------
    mjd2d, flux2d, err2d : array-like
        As :func:`~dsa110_contimg.science.ese.detect_ese_shapes`.
    confirmed : dict, optional
        A ``detect_ese_shapes`` result for these light curves (computed when absent,
        with ``min_significance`` and ``confirm_kw``).
    live_significance : float
        Threshold of the live search and the step fit (sigma).
    durations : sequence of float
        Template durations (days); the longest is the retirement age.
    summary : mapping, optional
        The epochs before the light curves given, as sums, for the three searches
        (:func:`~dsa110_contimg.science.ese_window.summary_before`).
    screen : LiveScreen, optional
        Kept sums that spare the live search the sources that cannot be live
        (:func:`live_dip_search`); the stages are the same.

    Returns
    -------
    dict of arrays, one element per source
        ``stage`` (one of :data:`STAGES` or ``''``), ``reason`` (text for ``retired``,
        else ``''``), ``significance`` (sigma of the template behind the stage; the
        step fit's for ``retired``), ``depth``, ``duration_days``, ``t_min_mjd``,
        ``onset_mjd``, ``baseline``, and ``confirmed`` / ``live`` / ``step``: the
        three underlying results.
    """
    f, e, t = lightcurve_block(flux2d, err2d, mjd2d, "ese_stages")
    if confirmed is None:
        confirmed = detect_ese_shapes(t, f, e, min_significance=min_significance,
                                      durations=durations, summary=summary, **confirm_kw)
    live = live_dip_search(t, f, e, min_significance=live_significance, durations=durations,
                           summary=summary, screen=screen)
    step = step_fit(t, f, e, summary=summary)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
        t_last = np.max(np.where(ok, t, -np.inf), axis=1)
        age = t_last - step["t_step_mjd"]
        dropped = (step["significance"] >= live_significance) & (step["drop"] > 0) & step["last_low"]
    max_d = float(np.max(durations))
    conf = np.asarray(confirmed["detected"], bool)
    # a step's low state began at the split; a linear fade's two-level split falls
    # half-way through its decline, so it began ~2 x age ago
    began = np.where(step["kind"] == "fade", 2.0 * age, age)
    retired = ~conf & ~live["recovering"] & dropped & (began >= max_d)
    in_progress = ~conf & ~retired & ((live["detected"] & ~live["recovering"])
                                      | (dropped & ~live["detected"]))
    recovering = ~conf & live["recovering"]
    stage = np.full(f.shape[0], "", dtype=object)
    stage[in_progress] = "dip_in_progress"
    stage[recovering] = "recovering"
    stage[conf] = "confirmed"
    stage[retired] = "retired"
    reason = np.full(f.shape[0], "", dtype=object)
    for i in np.flatnonzero(retired):
        reason[i] = (f"{step['kind'][i]}: flux fell by {100 * step['drop'][i]:.0f} % at MJD "
                     f"{step['t_step_mjd'][i]:.1f} with no recovery in {began[i]:.0f} d "
                     f"(longest ESE template {max_d:.0f} d)")
    use_live = live["detected"] & ~conf
    pick = {k: np.where(conf, confirmed[k], np.where(use_live, live[k], np.nan))
            for k in ("depth", "duration_days", "t_min_mjd", "baseline")}
    sig = np.where(conf, confirmed["significance"], np.where(use_live, live["significance"], 0.0))
    sig = np.where(retired | (in_progress & ~use_live), step["significance"], sig)
    pick["depth"] = np.where(in_progress & ~use_live, step["drop"], pick["depth"])
    onset = np.where(conf, confirmed["t_min_mjd"] - confirmed["duration_days"] / 2,
                     np.where(use_live, live["onset_mjd"], step["t_step_mjd"]))
    onset = np.where(stage == "", np.nan, onset)
    return {"stage": stage, "reason": reason, "significance": sig, "onset_mjd": onset, **pick,
            "confirmed": confirmed, "live": live, "step": step}


__all__ = ["DEFAULT_LIVE_SIGNIFICANCE", "STAGES", "ese_stages", "live_dip_search", "step_fit"]
