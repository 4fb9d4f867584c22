"""Variability metrics: hand-computed values, O(1) running sums == full recompute."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from dsa110_contimg.core.errors import InvalidLightCurve, OutOfOrderEpoch
from dsa110_contimg.science.variability import (
    METRIC_KEYS,
    P_VALUE_FLOOR,
    RunningStats,
    lightcurve_metrics,
    needs_recompute,
)

# flux [1, 2, 5], err [0.5, 1, 2] -> w = [4, 1, 0.25]; every value below worked out by hand
F3 = np.array([1.0, 2.0, 5.0])
E3 = np.array([0.5, 1.0, 2.0])
HAND = {
    "n": 3,
    "mean": 8 / 3,
    "weighted_mean": 7.25 / 5.25,
    "v": np.sqrt(13 / 3) / (8 / 3),                 # ss = 26/3, s^2 = 13/3
    "eta": (14.25 - 7.25**2 / 5.25) / 2,            # sum w f^2 = 14.25, sum w f = 7.25
    "chi2_nu": (116.25 / 9) / 2,                    # (4*25 + 1*4 + 0.25*49)/9
    "p_value": np.exp(-(116.25 / 9) / 2),           # chi2 survival with 2 dof = exp(-x/2)
    "m": np.sqrt(26 / 9) / (8 / 3),
    "m_debiased": np.sqrt((26 / 3 - 5.25) / 3) / (8 / 3),  # sum err^2 = 5.25
    "sigma_deviation": (7 / 3) / np.sqrt(13 / 3),
    "vs_max": 3 / np.sqrt(5),                       # pairs: -1/sqrt(1.25), -3/sqrt(5)
    "m_at_vs_max": -6 / 7,                          # 2 (2 - 5) / (2 + 5)
}


def test_lightcurve_metrics_hand_computed():
    got = lightcurve_metrics(F3, E3)
    assert set(got) == set(METRIC_KEYS)
    for key, want in HAND.items():
        assert got[key] == pytest.approx(want, rel=1e-12), key


def test_running_stats_hand_computed():
    rs = RunningStats.empty(1)
    for f, e, t in zip(F3, E3, [1.0, 2.0, 3.0]):
        rs.update([0], [f], [e], t)
    got = rs.metrics()
    for key, want in HAND.items():
        assert got[key][0] == pytest.approx(want, rel=1e-9), key


def test_invalid_points_ignored_and_order_by_mjd():
    f = np.array([5.0, np.nan, 1.0, 7.0, 2.0, 3.0])
    e = np.array([2.0, 1.0, 0.5, 0.0, 1.0, -1.0])      # err 0 and < 0 are invalid too
    t = np.array([30.0, 1.0, 10.0, 5.0, 20.0, 2.0])
    got = lightcurve_metrics(f, e, mjd=t)               # time order: 1 (t=10), 2 (t=20), 5 (t=30)
    for key, want in HAND.items():
        assert got[key] == pytest.approx(want, rel=1e-12), key


def test_small_n_is_nan_not_zero():
    empty = lightcurve_metrics([], [])
    assert empty["n"] == 0 and all(np.isnan(empty[k]) for k in METRIC_KEYS if k != "n")
    one = lightcurve_metrics([2.0], [0.1])
    assert one["n"] == 1 and one["mean"] == 2.0 and one["weighted_mean"] == 2.0
    for k in ("v", "eta", "chi2_nu", "p_value", "m", "m_debiased", "sigma_deviation", "vs_max",
              "m_at_vs_max"):
        assert np.isnan(one[k]), k
    met = RunningStats.from_lightcurves([[2.0, np.nan], [np.nan, np.nan]], [[0.1, 0.1]] * 2,
                                        [0.0, 1.0]).metrics()
    assert list(met["n"]) == [1, 0]
    assert np.isnan(met["eta"]).all() and np.isnan(met["v"]).all()
    assert np.isnan(met["mean"][1]) and met["mean"][0] == 2.0


def test_constant_light_curve_and_p_floor():
    flat = lightcurve_metrics([1.0, 1.0, 1.0], [0.1, 0.1, 0.1])
    assert flat["sigma_deviation"] == 0.0 and flat["v"] == 0.0 and flat["eta"] == 0.0
    assert flat["p_value"] == 1.0
    wild = lightcurve_metrics([1.0, 100.0, 1.0, 100.0], [0.01] * 4)
    assert wild["p_value"] == P_VALUE_FLOOR
    for value, n in [(1.0, 3), (0.1, 7), (0.3, 3)]:    # 0.1 * 7 leaves rounding in the sums
        rs = RunningStats.from_lightcurves([[value] * n], [[0.01] * n], np.arange(n)).metrics()
        assert rs["sigma_deviation"][0] == 0.0 and rs["v"][0] == 0.0, value
        assert rs["chi2_nu"][0] == 0.0 and rs["eta"][0] == 0.0 and rs["p_value"][0] == 1.0


def test_ddof_conventions_against_numpy():
    rng = np.random.default_rng(3)
    f = 1 + 0.1 * rng.standard_normal(25)
    e = 0.08 + 0.04 * rng.random(25)
    got = lightcurve_metrics(f, e)
    assert got["v"] == pytest.approx(np.std(f, ddof=1) / np.mean(f), rel=1e-12)
    assert got["m"] == pytest.approx(np.std(f, ddof=0) / np.mean(f), rel=1e-12)
    sd = max(f.max() - f.mean(), f.mean() - f.min()) / np.std(f, ddof=1)
    assert got["sigma_deviation"] == pytest.approx(sd, rel=1e-12)
    chi2 = np.sum(((f - f.mean()) / e) ** 2)
    assert got["p_value"] == pytest.approx(stats.chi2.sf(chi2, 24), rel=1e-10)
    w = 1 / e**2
    assert got["eta"] == pytest.approx(np.sum(w * (f - np.sum(w * f) / w.sum()) ** 2) / 24,
                                       rel=1e-12)


def test_update_rejects_out_of_order_and_bad_input():
    rs = RunningStats.empty(3)
    rs.update([0, 1], [1.0, 2.0], [0.1, 0.1], 10.0)
    before = rs.to_dict()
    with pytest.raises(OutOfOrderEpoch):
        rs.update([0, 2], [1.0, 1.0], [0.1, 0.1], 5.0)
    after = rs.to_dict()
    for k in before:                                    # nothing changed
        np.testing.assert_array_equal(before[k], after[k])
    assert needs_recompute(rs.last_mjd, 5.0).tolist() == [True, True, False]
    assert needs_recompute(10.0, 10.0) is False
    with pytest.raises(InvalidLightCurve):
        rs.update([0, 0], [1.0, 1.0], [0.1, 0.1], 11.0)
    with pytest.raises(InvalidLightCurve):
        rs.update([5], [1.0], [0.1], 11.0)
    with pytest.raises(InvalidLightCurve):
        rs.update([0, 1], [1.0], [0.1], 11.0)
    added = rs.update([0, 1, 2], [np.nan, 1.0, 1.0], [0.1, 0.0, 0.2], 11.0)
    assert added.tolist() == [False, False, True]
    assert rs.n.tolist() == [1, 1, 1]


def test_store_round_trip():
    rng = np.random.default_rng(0)
    f = 1 + 0.05 * rng.standard_normal((4, 8))
    rs = RunningStats.from_lightcurves(f, np.full(f.shape, 0.02), np.arange(8.0))
    d = rs.to_dict()
    assert set(d) == {"n", "sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2", "sum_var", "min_flux",
                      "max_flux", "first_mjd", "last_mjd", "last_flux", "last_err", "vs_max",
                      "m_at_vs_max"}
    back = RunningStats.from_dict({k: list(v) for k, v in d.items()})
    for k in d:
        np.testing.assert_array_equal(getattr(back, k), d[k])
    e = RunningStats.empty(2).to_dict()
    rows = {k: [None if (isinstance(x, float) and np.isnan(x)) else x for x in v.tolist()]
            for k, v in e.items()}                     # as a database returns NULLs
    assert np.isnan(RunningStats.from_dict(rows).min_flux).all()
    with pytest.raises(InvalidLightCurve):
        RunningStats.from_dict({"n": [1]})


# ---------------------------------------------------------------- properties
flux_el = st.integers(100, 10_000).map(lambda i: i / 1000)       # 0.1-10 Jy, 1 mJy steps
err_el = st.integers(0, 2_000).map(lambda i: i / 1000)          # 0 = invalid point


@st.composite
def light_curves(draw, unique_mjd=False):
    s = draw(st.integers(1, 6))
    t = draw(st.integers(1, 12))
    flux = np.array(draw(st.lists(st.one_of(flux_el, st.just(np.nan)), min_size=s * t,
                                  max_size=s * t))).reshape(s, t)
    err = np.array(draw(st.lists(err_el, min_size=s * t, max_size=s * t))).reshape(s, t)
    day = st.integers(0, 40).map(lambda i: 60000 + i / 4)
    if unique_mjd:   # equal epochs within a source have no defined arrival order
        mjd = np.array([draw(st.lists(day, min_size=t, max_size=t, unique=True))
                        for _ in range(s)])
    else:
        mjd = np.array(draw(st.lists(day, min_size=s * t, max_size=s * t))).reshape(s, t)
    return flux, err, mjd


def _assert_stats_equal(a: RunningStats, b: RunningStats):
    np.testing.assert_array_equal(a.n, b.n)
    for k in ("min_flux", "max_flux", "first_mjd", "last_mjd", "last_flux", "last_err", "vs_max",
              "m_at_vs_max"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    for k in ("sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2", "sum_var"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-12, err_msg=k)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(light_curves())
def test_time_ordered_updates_equal_full_recompute(lc):
    flux, err, mjd = lc
    s, t = flux.shape
    full = RunningStats.from_lightcurves(flux, err, mjd)
    inc = RunningStats.empty(s)
    order = np.argsort(mjd, axis=1, kind="stable")
    rows = np.arange(s)
    for k in range(t):                       # k-th point of every source, in its own time order
        c = order[:, k]
        inc.update(rows, flux[rows, c], err[rows, c], mjd[rows, c])
    _assert_stats_equal(inc, full)
    got = inc.metrics()
    for i in range(s):
        ref = lightcurve_metrics(flux[i], err[i], mjd=mjd[i])
        for key in METRIC_KEYS:
            np.testing.assert_allclose(got[key][i], ref[key], rtol=1e-7, atol=1e-9,
                                       err_msg=f"{key} source {i}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(light_curves(unique_mjd=True), st.randoms(use_true_random=False))
def test_random_arrival_order_with_recompute_path(lc, rnd):
    """Points arrive in random order; late ones trigger the caller's recompute."""
    flux, err, mjd = lc
    s, t = flux.shape
    arrival = [(i, j) for i in range(s) for j in range(t)]
    rnd.shuffle(arrival)
    seen = np.zeros(flux.shape, bool)
    stats_ = RunningStats.empty(s)
    for i, j in arrival:
        seen[i, j] = True
        if needs_recompute(stats_.last_mjd[i], mjd[i, j]):
            mask = seen[i]
            redo = RunningStats.from_lightcurves(np.where(mask, flux[i], np.nan)[None],
                                                 err[i][None], mjd[i][None])
            stats_.assign([i], redo)
        else:
            stats_.update([i], [flux[i, j]], [err[i, j]], mjd[i, j])
    full = RunningStats.from_lightcurves(flux, err, mjd)
    _assert_stats_equal(stats_, full)
    m1, m2 = stats_.metrics(), full.metrics()
    for key in METRIC_KEYS:
        np.testing.assert_allclose(m1[key], m2[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_shared_1d_mjd_and_unsorted_columns():
    rng = np.random.default_rng(5)
    f = 1 + 0.1 * rng.standard_normal((50, 30))
    e = 0.02 + 0.01 * rng.random((50, 30))
    f[rng.random(f.shape) < 0.2] = np.nan
    t = np.sort(rng.uniform(0, 100, 30))
    a = RunningStats.from_lightcurves(f, e, t)
    p = rng.permutation(30)
    b = RunningStats.from_lightcurves(f[:, p], e[:, p], t[p])
    _assert_stats_equal(a, b)
    for i in (0, 17, 49):
        ref = lightcurve_metrics(f[i], e[i], mjd=t)
        assert a.metrics()["vs_max"][i] == pytest.approx(ref["vs_max"], rel=1e-12)


def test_vs_tie_takes_earliest_pair_in_both_paths():
    f, e = [1.0, 2.0, 3.0], [0.1, 0.1, 0.1]            # both pairs have |Vs| = 10/sqrt(2)
    one = lightcurve_metrics(f, e)
    assert one["vs_max"] == pytest.approx(10 / np.sqrt(2))
    assert one["m_at_vs_max"] == pytest.approx(-2 / 3)   # 2 (1 - 2) / (1 + 2), not -2/5
    rs = RunningStats.empty(1)
    for t, (fi, ei) in enumerate(zip(f, e)):
        rs.update([0], [fi], [ei], float(t))
    full = RunningStats.from_lightcurves([f], [e], [0.0, 1.0, 2.0])
    assert rs.m_at_vs_max[0] == pytest.approx(-2 / 3) and full.m_at_vs_max[0] == rs.m_at_vs_max[0]


# ------------------------------------------------- VAST all-pairs two-epoch metrics
def _brute_all_pairs(f, e, t, thr=4.3):
    ok = np.isfinite(f) & np.isfinite(e) & (e > 0) & np.isfinite(t)
    o = np.argsort(t[ok], kind="stable")
    f, e = f[ok][o], e[ok][o]
    vs, m = [], []
    for a in range(f.size):
        for b in range(a + 1, f.size):
            vs.append((f[a] - f[b]) / np.hypot(e[a], e[b]))
            s = f[a] + f[b]
            m.append(2 * (f[a] - f[b]) / s if s != 0 else np.nan)
    return np.array(vs), np.array(m)


from hypothesis.extra import numpy as hnp  # noqa: E402

from dsa110_contimg.science.variability import all_pairs_metrics  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 25), data=st.data())
def test_all_pairs_metrics_equal_brute_force(n, data):
    f = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-0.5, 5.0)))
    e = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.001, 0.5)))
    t = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0, 100)))
    holes = data.draw(hnp.arrays(np.bool_, n))
    f = np.where(holes & (np.arange(n) % 3 == 0), np.nan, f)      # some invalid points
    block = data.draw(st.sampled_from([1, 7, 10_000]))             # tiny blocks: many rounds
    got = all_pairs_metrics(f, e, t, max_elements=block)
    vs, m = _brute_all_pairs(f, e, t)
    if vs.size == 0:
        assert all(np.isnan(v) for v in got.values())
        return
    avs = np.abs(vs)
    assert got["vs_max_all"] == pytest.approx(avs.max(), rel=1e-12, abs=1e-12)
    tied = np.isclose(avs, avs.max(), rtol=1e-12, atol=1e-12)
    assert np.any(np.isclose(m[tied], got["m_at_vs_max_all"], rtol=1e-9, equal_nan=True))
    sig = (avs >= 4.3) & np.isfinite(m)
    if not sig.any():
        assert np.isnan(got["m_significant"]) and np.isnan(got["vs_at_m_significant"])
    else:
        best = np.abs(m[sig]).max()
        assert abs(got["m_significant"]) == pytest.approx(best, rel=1e-9)
        cand = sig & np.isclose(np.abs(m), best, rtol=1e-9)
        assert np.any(np.isclose(m[cand], got["m_significant"], rtol=1e-9))
        assert np.any(np.isclose(avs[cand], got["vs_at_m_significant"], rtol=1e-9))


def test_all_pairs_metrics_vectorised_and_in_lightcurve_metrics():
    rng = np.random.default_rng(3)
    f = 1 + 0.02 * rng.standard_normal((30, 200))
    f[4, 150] = 0.5                                 # one very significant low point
    e = np.full(f.shape, 0.02)
    t = np.sort(rng.uniform(0, 300, (30, 200)), axis=1)
    got = all_pairs_metrics(f, e, t)
    for i in (0, 4, 17):
        vs, m = _brute_all_pairs(f[i], e[i], t[i])
        assert got["vs_max_all"][i] == pytest.approx(np.abs(vs).max())
    assert got["vs_max_all"][4] > 15 and abs(got["m_significant"][4]) > 0.5
    one = lightcurve_metrics(f[4], e[4], t[4], pairs="all")
    assert one["vs_max_all"] == pytest.approx(got["vs_max_all"][4])
    assert one["vs_max"] <= one["vs_max_all"]       # consecutive pairs are a subset
    assert lightcurve_metrics(f[4], e[4], t[4])["vs_max"] == one["vs_max"]
    with pytest.raises(InvalidLightCurve):
        lightcurve_metrics(f[4], e[4], t[4], pairs="some")


def test_all_pairs_metrics_are_the_same_whatever_the_block_of_epochs():
    """The search visits a steady light curve's epochs a block at a time and stops early;
    a dip makes it visit more; either way the metrics are those of one block of all epochs."""
    rng = np.random.default_rng(11)
    t = np.arange(400.0)
    steady = 0.05 + 0.001 * rng.standard_normal(400)
    dip = steady.copy()
    dip[150:190] *= 0.7
    e = np.full(400, 0.001)
    for f in (steady, dip):
        one_block = all_pairs_metrics(f, e, t, max_block_epochs=10_000)
        for rows in (1, 7, 64):
            assert all_pairs_metrics(f, e, t, max_block_epochs=rows) == one_block
    assert all_pairs_metrics(dip, e, t)["vs_max_all"] > 4.3 > all_pairs_metrics(steady, e, t)["vs_max_all"] - 1
