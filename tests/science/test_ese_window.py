"""The per-image ESE window: the last 540 days plus the running statistics' sums stand for the
whole light curve in every template inside the window (science/ese_window.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.science import ese
from dsa110_contimg.science.ese_stage import ese_stages, live_dip_search, step_fit
from dsa110_contimg.science.ese_window import (
    cannot_reach, search_window_days, summary_before, window_sums, with_summary,
)
from dsa110_contimg.science.variability import RunningStats


def test_the_window_is_the_longest_template_with_its_recovery_windows():
    assert search_window_days(ese.DEFAULT_DURATIONS) == ese.SEARCH_WINDOW_DAYS == 540.0
    assert search_window_days([14.0, 20.0]) == 20.0 + 2 * 30.0        # 30-d minimum windows


@pytest.fixture(scope="module")
def long_history():
    """1,000 daily epochs (2 % errors) of 9 sources: 7 with a 30 % ESE of 40-100 d inside
    the last 540 days (the last two still in the dip), one with an ESE 800 days before the
    end, one steady; the window, and the epochs before it summarised from running sums."""
    rng = np.random.default_rng(3)
    n = 1000
    t = 60000.0 + np.arange(n) + rng.uniform(-0.05, 0.05, n)
    e = np.full((9, n), 0.02)
    f = 1.0 + e * rng.standard_normal(e.shape)
    for i in range(5):
        f[i] *= ese.ese_model(t, t[-1] - 150.0 - 40.0 * i, 40.0 + 10.0 * i, 0.3)
    f[5] *= ese.ese_model(t, t[-1] - 5.0, 60.0, 0.3)
    f[6] *= ese.ese_model(t, t[-1] + 10.0, 80.0, 0.3)
    f[7] *= ese.ese_model(t, t[-1] - 800.0, 60.0, 0.3)
    T = np.broadcast_to(t, f.shape)
    until = t[-2] - ese.SEARCH_WINDOW_DAYS
    win = t >= until
    stats = RunningStats.from_lightcurves(f, e, T).to_dict()
    summary = summary_before(stats, window_sums(f[:, win], e[:, win], T[:, win]), until)
    return T, f, e, win, summary


def test_summary_is_the_running_totals_minus_the_window(long_history):
    T, f, e, win, summary = long_history
    old = ~win
    w = 1.0 / e[:, old] ** 2
    assert np.all(summary["n"] == old.sum())
    np.testing.assert_allclose(summary["sum_w"], w.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(summary["sum_wf"], (w * f[:, old]).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(summary["sum_wf2"], (w * f[:, old] ** 2).sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(summary["first_mjd"], T[:, 0])
    # a history shorter than the window has nothing before it
    short = RunningStats.from_lightcurves(f[:, win], e[:, win], T[:, win]).to_dict()
    assert summary_before(short, window_sums(f[:, win], e[:, win], T[:, win]),
                          summary["until"]) is None
    g, _, t2, counts, extra = with_summary(f[:, win], e[:, win], T[:, win], summary)
    assert g.shape[1] == win.sum() + 1 and np.all(counts[:, 0] == old.sum())
    np.testing.assert_array_equal(t2[:, 0], T[:, 0])
    assert np.all(extra > 0)


def test_window_search_equals_the_full_search_for_events_inside_it(long_history):
    """The known candidates' bounded search, the live search and the stages on the window
    with the summary: the full light curve's detections, templates, significances (to
    1e-9) and stages for every event inside the window; the event before it is not fitted."""
    T, f, e, win, summary = long_history
    new = float(T[0, -1])
    prev = ese.detect_ese_shapes(T[:, :-1], f[:, :-1], e[:, :-1])
    near = {"t0": prev["t_min_mjd"], "duration": prev["duration_days"]}
    full = ese.detect_ese_shapes(T, f, e, new_since_mjd=new, near=near)
    got = ese.detect_ese_shapes(T[:, win], f[:, win], e[:, win], new_since_mjd=new, near=near,
                                summary=summary)
    inside = np.arange(9) < 5
    assert full["detected"][inside].all() and got["detected"][inside].all()
    for k in ("t_min_mjd", "duration_days", "template", "n_in_dip"):
        np.testing.assert_array_equal(got[k][inside], full[k][inside])
    for k in ("significance", "depth", "baseline", "chi2_nu_fit"):
        np.testing.assert_allclose(got[k][inside], full[k][inside], rtol=1e-9)
    assert full["detected"][7] and not got["detected"][7]     # before the window: not fitted
    live_full, live_win = live_dip_search(T, f, e), live_dip_search(
        T[:, win], f[:, win], e[:, win], summary=summary)
    assert live_full["detected"][5:7].all()
    np.testing.assert_array_equal(live_win["detected"], live_full["detected"])
    np.testing.assert_allclose(live_win["significance"], live_full["significance"], rtol=1e-9)
    np.testing.assert_array_equal(live_win["t_min_mjd"], live_full["t_min_mjd"])
    st_full = ese_stages(T, f, e, confirmed=full)
    st_win = ese_stages(T[:, win], f[:, win], e[:, win], confirmed=got, summary=summary)
    assert list(st_full["stage"][:7]) == ["confirmed"] * 5 + ["dip_in_progress"] * 2
    np.testing.assert_array_equal(st_win["stage"][:7], st_full["stage"][:7])
    np.testing.assert_allclose(st_win["significance"][:7], st_full["significance"][:7],
                               rtol=1e-9)


def test_step_fit_sees_a_drop_before_the_window_at_its_start():
    """A drop 700 days ago that never recovered: the step fit on the window with the
    summary finds it, split at the window's start (less significant: the summary's own
    scatter holds the drop), old enough to retire."""
    rng = np.random.default_rng(8)
    t = 60000.0 + np.arange(1000.0)
    e = np.full((1, t.size), 0.02)
    f = 1.0 + e * rng.standard_normal(e.shape)
    f[0, 300:] *= 0.7
    until = t[-2] - ese.SEARCH_WINDOW_DAYS
    win = t >= until
    stats = RunningStats.from_lightcurves(f, e, t).to_dict()
    summary = summary_before(stats, window_sums(f[:, win], e[:, win], np.broadcast_to(
        t[win], (1, win.sum()))), until)
    full, got = step_fit(t, f, e), step_fit(t[win], f[:, win], e[:, win], summary=summary)
    assert full["t_step_mjd"][0] == pytest.approx(60299.5)
    assert got["t_step_mjd"][0] <= until + 1.0
    assert full["significance"][0] > got["significance"][0] > 20.0
    assert got["kind"][0] == full["kind"][0] == "step"
    st = ese_stages(t[win], f[:, win], e[:, win], summary=summary)
    assert st["stage"][0] == "retired"


def _chi2_const(stats):
    """chi-squared of each light curve about its weighted mean, from its running sums."""
    return stats["sum_wf2"] - stats["sum_wf"] ** 2 / stats["sum_w"]


def test_no_fit_is_more_significant_than_the_light_curve_allows():
    """Every significance of the template search (full, incremental, near a stored
    template), the live search and the step fit is at most sqrt(chi2_const) of the whole
    light curve: a source that cannot_reach the threshold is neither detected nor staged.
    300 light curves of 8-24 epochs five days apart (12 % of epochs missing), steady,
    with a dip of 5-40 %, or a drop; errors 1-4 %."""
    rng = np.random.default_rng(11)
    S, n = 300, 24
    t = 60000.0 + 5.0 * np.arange(n) + rng.uniform(-0.2, 0.2, (S, n))
    e = rng.uniform(0.01, 0.04, (S, 1)) * np.ones((1, n))
    f = 1.0 + e * rng.standard_normal((S, n))
    kind = np.arange(S) % 3
    depth = rng.uniform(0.05, 0.4, S)
    dip = kind == 1
    f[dip] *= ese.ese_model(t[dip], 60055.0 + rng.uniform(-10, 10, (dip.sum(), 1)),
                            rng.uniform(20, 40, (dip.sum(), 1)), depth[dip, None])
    drop = (kind == 2)[:, None] & (t > 60080.0)
    f[drop] *= 0.75
    f[rng.random((S, n)) < 0.12] = np.nan
    cut = 8 + np.arange(S)[:, None] % 16
    short = (np.arange(S) % 5 == 0)[:, None] & (np.arange(n)[None, :] >= cut)
    f[short] = np.nan                                   # 8-23 epochs for a fifth of them
    stats = RunningStats.from_lightcurves(f, e, t).to_dict()
    bound = np.sqrt(np.maximum(_chi2_const(stats), 0.0)) * (1 + 1e-9) + 1e-9
    full = ese.detect_ese_shapes(t, f, e)
    last = np.nanmax(np.where(np.isfinite(f), t, np.nan), axis=1)
    inc = ese.detect_ese_shapes(t, f, e, new_since_mjd=float(np.median(last)),
                                near={"t0": full["t_min_mjd"], "duration": full["duration_days"]})
    live = live_dip_search(t, f, e, min_significance=3.0)
    step = step_fit(t, f, e)
    for sig in (full["significance"], inc["significance"], live["significance"],
                step["significance"]):
        assert np.all(sig <= bound)
    st = ese_stages(t, f, e, confirmed=full)
    quiet = cannot_reach(stats)
    assert 20 < quiet.sum() < S - 20 and full["detected"].sum() > 20   # not vacuous
    assert not (quiet & full["detected"]).any() and np.all(live["significance"][quiet] < 6.0)
    assert np.all(st["stage"][quiet] == "")
    assert not cannot_reach(stats, threshold=0.0).any()


def test_the_window_search_is_bounded_by_the_whole_light_curve(long_history):
    """With the window and the summary of the epochs before it, the bound is still the
    whole light curve's chi2_const (the summary's own scatter enters the fit's)."""
    T, f, e, win, summary = long_history
    stats = RunningStats.from_lightcurves(f, e, T).to_dict()
    bound = np.sqrt(_chi2_const(stats)) * (1 + 1e-9)
    got = ese.detect_ese_shapes(T[:, win], f[:, win], e[:, win], summary=summary)
    live = live_dip_search(T[:, win], f[:, win], e[:, win], summary=summary)
    step = step_fit(T[:, win], f[:, win], e[:, win], summary=summary)
    for sig in (got["significance"], live["significance"], step["significance"]):
        assert np.all(sig <= bound)
    assert not cannot_reach(stats)[:7].any()
