"""ESE detection: presets, composite score, eta-V, matched filter, injection-recovery."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.science import ese, ese_models
from dsa110_contimg.core.errors import ConfigError, InvalidLightCurve
from dsa110_contimg.science.normalize import normalise_epochs, select_references
from dsa110_contimg.science.variability import RunningStats


def test_presets_values_and_all_three_required():
    assert ese.PRESETS["conservative"] == ese.ESEPreset(5.0, 4.0, 3.0)
    assert ese.PRESETS["moderate"] == ese.ESEPreset(3.5, 2.5, 2.0)
    assert ese.PRESETS["sensitive"] == ese.ESEPreset(2.5, 1.5, 1.0)
    met = {"sigma_deviation": np.array([4.0, 4.0, 4.0, 1.0, np.nan, 4.0]),
           "chi2_nu": np.array([3.0, 3.0, 1.0, 50.0, 3.0, 3.0]),
           "eta": np.array([2.5, 1.0, 50.0, 50.0, 2.5, 2.5]),
           "n": np.array([10, 10, 10, 10, 10, 2])}
    assert ese.classify(met, "moderate").tolist() == [True, False, False, False, False, False]
    assert ese.classify(met, "sensitive").tolist() == [True, True, False, False, False, False]
    assert not ese.classify(met, "conservative").any()
    custom = {"sigma_deviation": 0.5, "chi2_nu": 0.5, "eta": 0.5}
    assert ese.classify(met, custom).tolist() == [True, True, True, True, False, False]
    with pytest.raises(ConfigError):
        ese.classify(met, "aggressive")
    with pytest.raises(InvalidLightCurve):
        ese.classify({"eta": met["eta"]})


def test_composite_score_hand_values():
    score, conf = ese.composite_score([10, 20, 0, 5, 4, np.nan], [10, 20, 0, np.nan, 2, np.nan],
                                      [5, 9, 0, np.nan, 1, np.nan])
    assert score[:5] == pytest.approx([10, 10, 0, 5, 3.0])   # (0.5*.4 + .3*.2 + .2*.2)*10 = 3
    assert np.isnan(score[5])
    assert conf.tolist() == ["high", "high", "low", "medium", "low", "none"]


def test_eta_v_thresholds_recover_population_and_need_both():
    rng = np.random.default_rng(2)
    le = rng.normal(0.0, 0.2, 3000)
    lv = rng.normal(-1.5, 0.1, 3000)
    le[:60] += 3                                     # variables: outliers in both, clipped away
    lv[:60] += 1
    th = ese.eta_v_thresholds(10**le, 10**lv, n_sigma=1.0)
    assert th.mu_log_eta == pytest.approx(0.0, abs=0.02)
    assert th.sigma_log_eta == pytest.approx(0.2, rel=0.08)
    assert th.mu_log_v == pytest.approx(-1.5, abs=0.01)
    assert th.eta_threshold == pytest.approx(10 ** (th.mu_log_eta + th.sigma_log_eta))
    eta = np.array([100.0, 100.0, 1.0, 0.0])
    v = np.array([1.0, 0.01, 1.0, 1.0])
    assert ese.eta_v_candidates(eta, v, thresholds=th).tolist() == [True, False, False, False]
    with pytest.raises(InvalidLightCurve):
        ese.eta_v_thresholds([1.0, 2.0], [0.1, 0.2])


def test_ese_model_shape():
    t = np.array([0.0, 50.0, 95.0, 100.0, 130.0, 400.0])
    m = ese.ese_model(t, t0=100.0, duration=60.0, depth=0.4, caustic_amp=0.1)
    assert m[3] == pytest.approx(0.6, abs=1e-6)      # minimum at t0
    assert m[2] == pytest.approx(0.6, abs=1e-6)      # flat bottom (central 70 %)
    assert m[4] == pytest.approx(1.1)                # caustic brightening on the edge
    assert m[0] == pytest.approx(1.0) and m[5] == pytest.approx(1.0)
    assert ese.ese_model(t, 100.0, 60.0, 0.4)[4] == pytest.approx(1.0)


def _uneven(rng, n=60):
    gaps = rng.exponential(6.0, n - 1) + 0.5
    gaps[20] += 35                                   # a seasonal gap
    return 60000 + np.r_[0.0, np.cumsum(gaps)]


@pytest.mark.parametrize("caustic", [0.0, 0.12])
def test_fit_ese_recovers_injected_dip(caustic):
    rng = np.random.default_rng(4)
    t = _uneven(rng)
    t0, dur, depth = t[40] + 2.0, 70.0, 0.35
    truth = 0.8 * ese.ese_model(t, t0, dur, depth, caustic)
    err = np.full(t.size, 0.016)
    f = truth + err * rng.standard_normal(t.size)
    fit = ese.fit_ese(t, f, err)
    assert fit.detected and fit.significance > 10
    assert fit.depth == pytest.approx(depth, abs=0.04)
    assert abs(fit.t_min_mjd - t0) < dur / 4
    assert 0.6 < fit.duration_days / dur < 1.6
    assert fit.baseline == pytest.approx(0.8, rel=0.02)
    resid = (f - fit.model(t)) / err
    assert np.sum(resid**2) < np.sum(((f - np.mean(f)) / err) ** 2) / 5
    if caustic:
        assert fit.caustic_amp > 0


def test_dip_is_an_ese_only_once_it_has_recovered():
    """An ESE dips *and recovers*: a dip still in progress at the latest epoch (as a
    permanent step down would look) is not flagged; the same event is flagged once
    the source is back at its baseline for a while."""
    rng = np.random.default_rng(8)
    t = _uneven(rng, 90)
    err = np.full(t.size, 0.02)
    t0 = t[59] + 5
    f = (1 + err * rng.standard_normal(t.size)) * ese.ese_model(t, t0, 60.0, 0.3)
    ongoing = t < t0
    fit = ese.fit_ese(t[ongoing], f[ongoing], err[ongoing])
    assert not fit.detected
    # back at the baseline, but watched for less than the recovery window: not yet
    soon = t < t0 + 30 + 10
    assert not ese.fit_ese(t[soon], f[soon], err[soon]).detected
    full = ese.fit_ese(t, f, err)
    assert full.detected and full.depth == pytest.approx(0.3, abs=0.05)
    assert abs(full.t_min_mjd - t0) < 15


def test_fit_ese_ignores_steady_outlier_and_brightening():
    rng = np.random.default_rng(5)
    t = _uneven(rng)
    err = np.full(t.size, 0.02)
    steady = 1 + err * rng.standard_normal(t.size)
    assert not ese.fit_ese(t, steady, err).detected
    outlier = steady.copy()
    outlier[30] -= 12 * 0.02                         # one 12-sigma low point is not an event
    assert not ese.fit_ese(t, outlier, err).detected
    flare = steady * ese.ese_model(t, t[30], 60.0, -0.3)   # a brightening, not a dip
    fit = ese.fit_ese(t, flare, err)
    assert not fit.detected
    short = ese.fit_ese(t[:4], steady[:4], err[:4])
    assert short.template == "none" and np.isnan(short.depth) and short.significance == 0
    assert np.isnan(short.model(t)).all()
    with pytest.raises(InvalidLightCurve):
        ese.fit_ese(t, steady[:5], err)


def test_grid_splitting_path_equals_shared_grid_path():
    rng = np.random.default_rng(6)
    n_src = 12
    t = np.vstack([_uneven(rng, 40) + rng.uniform(0, 3) for _ in range(n_src)])  # own epochs
    f = 1 + 0.02 * rng.standard_normal(t.shape)
    f[:4] *= ese.ese_model(t[:4], t[:4, 20:21], 50.0, 0.3)
    err = np.full(t.shape, 0.02)
    f[rng.random(t.shape) < 0.1] = np.nan
    a = ese.detect_ese_shapes(t, f, err)
    b = ese.detect_ese_shapes(t, f, err, max_grid=45, chunk_sources=5)   # forces splitting
    for k in ("significance", "depth", "t_min_mjd", "duration_days", "chi2_improvement"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-8, err_msg=k)
    # source 0's dip holds only two measured epochs (a seasonal gap follows): with dip AND
    # recovery AND a consistently low dip required it reads as two bad epochs, not an ESE
    assert a["detected"][1:4].all() and not a["detected"][4:].any()
    assert not a["detected"][0]
    single = ese.fit_ese(t[2], f[2], err[2])
    assert single.significance == pytest.approx(a["significance"][2], rel=1e-8)


def test_injection_recovery_scaled_down():
    """300 steady + 30 ESEs, 60 uneven epochs, 2 % noise, 5 % gain jitter, normalised with
    20 references from the same simulation (bench/ese.py runs the full size)."""
    sim = ese_models.simulate_population(300, 30, seed=21)
    n = sim.flux.shape[0]
    refs = select_references(sim.catalog_snr, np.ones(n, bool), np.ones(n, bool))
    assert refs.size == 20
    fn, en, corr = normalise_epochs(sim.flux, sim.err, sim.mjd, refs)
    assert all(c.ok for c in corr)
    fac = np.array([c.factor for c in corr]) / sim.gain
    assert np.std(fac / np.median(fac)) < 0.01         # 5 % jitter removed to < 1 %
    met = RunningStats.from_lightcurves(fn, en, sim.mjd).metrics()
    steady, deep = ~sim.is_ese, sim.is_ese & (sim.depth >= 0.3)
    assert np.median(met["chi2_nu"][steady]) == pytest.approx(1.0, abs=0.15)
    shape = ese.detect_ese_shapes(sim.mjd, fn, en)
    # at this sparse (6-d mean) cadence some events hold 0-2 epochs in their flat bottom: a
    # dip AND recovery made of >= 3 consistently low epochs cannot be seen there
    u = (sim.mjd[None, :] - sim.t0[:, None]) / (sim.duration[:, None] / 2)
    sampled = np.sum(np.isfinite(fn) & (np.abs(u) < 0.7), axis=1) >= 3
    # ... and an event is an ESE only once its recovery has been watched (max(D, 30 d))
    sampled &= sim.t0 + sim.duration / 2 + np.maximum(sim.duration, 30.0) <= sim.mjd[-1]
    assert (deep & sampled).sum() >= 12
    assert shape["detected"][deep & sampled].mean() >= 0.9
    assert shape["detected"][deep].mean() >= 0.6
    assert shape["detected"][steady].sum() <= 1          # <= 0.5 % of 300 (rounded up)
    hit = sim.is_ese & shape["detected"]
    assert np.median(np.abs(shape["depth"][hit] - sim.depth[hit])) < 0.05
    assert np.median(np.abs(shape["t_min_mjd"][hit] - sim.t0[hit])) < 15
    # the presets never fire on steady sources at the conservative / moderate level
    assert not ese.classify(met, "conservative")[steady].any()
    assert not ese.classify(met, "moderate")[steady].any()
    # and without normalisation the 5 % gain jitter makes steady sources look variable
    raw = RunningStats.from_lightcurves(sim.flux, sim.err, sim.mjd).metrics()
    assert np.median(raw["chi2_nu"][steady]) > 3


# ---------------------------------------------------------------- physical light curves
def test_gaussian_lens_models_match_ray_optics():
    """Clegg et al. (1998) 1-D lens: central gain 1/(1+alpha), caustics only for
    alpha > 2 e**1.5 / 4 ~ 2.24, flux conserved; Dong et al. (2018) axisymmetric lens:
    central gain 1/(1+alpha)**2."""
    x = np.linspace(-7.5, 7.5, 3001)
    for alpha in (0.5, 1.0, 3.0, 8.0):
        g = ese_models.gaussian_lens_gain(x, alpha, source_size=0.02)
        assert g[1500] == pytest.approx(1 / (1 + alpha), rel=0.03)
        assert np.trapezoid(g - 1, x) == pytest.approx(0.0, abs=0.05)     # rays are conserved
        assert (g.max() > 2.0) == (alpha > 2.24)
        r = ese_models.axisymmetric_lens_gain(np.abs(x), alpha, source_size=0.02)
        assert r[1500] == pytest.approx(1 / (1 + alpha) ** 2, rel=0.05)
    smooth = ese_models.gaussian_lens_gain(x, 3.0, source_size=0.4)
    assert smooth.max() < ese_models.gaussian_lens_gain(x, 3.0, source_size=0.02).max()
    assert ese_models.lens_curve_type(ese_models.gaussian_lens_gain(x, 3.0)) == "u-dip"
    grazing = ese_models.axisymmetric_lens_gain(np.hypot(x, 2.5), 3.0, 0.1)
    assert ese_models.lens_curve_type(grazing) in ("brightening", "weak")


def test_detector_on_physical_classes_at_dsa110_cadence():
    """Daily cadence with 25 % gaps and 2.5 % errors (bench/ese.py runs the full size):
    Gaussian-lens ESEs are found, steady sources are not, and no negative class (flare,
    permanent step, slow fade, three bad-calibration epochs) is flagged above 5 %."""
    samples = ese_models.simulate_classes(60, n_steady=400, seed=3)
    got = {}
    for c in samples:
        det = ese.detect_ese_shapes(c.mjd, c.flux, c.err)["detected"]
        got[c.name] = (c, det)
    assert got["steady"][1].sum() <= 2                  # <= 0.5 % of 400
    for name in ese_models.NEGATIVE_CLASSES:
        assert got[name][1].sum() <= 3, name             # <= 5 % of 60
    c, det = got["clegg"]
    assert det.mean() >= 0.95
    c, det = got["2d-lens"]
    u_dip = c.params["type"] == "u-dip"
    assert u_dip.sum() >= 20 and det[u_dip].mean() >= 0.85
    assert det[c.params["type"] == "weak"].sum() == 0   # nothing to see, nothing flagged


def test_incremental_search_finds_what_the_full_history_search_finds():
    """Issue 15: searching only the templates whose recovery window reaches the new
    epochs, every 28 days as a season streams in, flags the same ESEs as one
    full-history search at the end, and no more of the negatives."""
    samples = ese_models.simulate_classes(20, n_steady=40, seed=9,
                                          classes=("steady", "clegg", "step", "badcal3"))
    mjd = samples[0].mjd
    cuts = np.arange(mjd[0] + 30.0, mjd[-1] + 28.0, 28.0)
    for c in samples:
        full = ese.detect_ese_shapes(mjd, c.flux, c.err)["detected"]
        ever = np.zeros(full.size, bool)
        prev = -np.inf
        for cut in cuts:
            upto = mjd <= cut
            new = mjd[upto & (mjd > prev)]
            prev = cut
            if new.size:
                ever |= ese.detect_ese_shapes(mjd[upto], c.flux[:, upto], c.err[:, upto],
                                              new_since_mjd=float(new[0]))["detected"]
        if c.is_ese:
            assert full.mean() >= 0.9 and (full & ~ever).sum() <= 1, c.name
        else:
            assert ever.sum() <= full.sum() + 1, c.name
    # the incremental search ignores an event that recovered long before the new epochs
    c = samples[1]
    late = float(mjd[-1])
    t_end = c.params["t0"] + 3 * c.params["crossing_days"]
    old = np.flatnonzero(t_end < late - 200)
    if old.size:
        inc = ese.detect_ese_shapes(mjd, c.flux[old], c.err[old], new_since_mjd=late)
        assert not inc["detected"].any()


def test_known_candidates_bounded_search_follows_the_full_history_search():
    """A known candidate searched at each new epoch over the incremental templates and its
    stored best template's neighbours, on its whole light curve (``near``), gets what the
    full-history search gets, epoch after epoch through a season with an event mid-season,
    one confirmed at the season's end and one still in progress at its end: the same
    detection, stage, template (t_min, duration) and significance; below the threshold the
    best template may differ, never above the full search's significance (a subset of the
    same fits)."""
    from dsa110_contimg.science.ese_stage import ese_stages

    rng = np.random.default_rng(21)
    mjd = ese_models.dsa110_cadence(240.0, rng=rng)
    d0 = mjd[0]
    shapes = [ese.ese_model(mjd, d0 + 100, 40.0, 0.35),          # mid-season, confirmed
              ese.ese_model(mjd, d0 + 180, 28.0, 0.4, 0.1),      # confirmed at the season's end
              ese.ese_model(mjd, d0 + 228, 24.0, 0.4),           # in progress at the end
              np.ones(mjd.size)]
    err = np.full((len(shapes), mjd.size), 0.025)
    flux = np.array(shapes) + err * rng.standard_normal(err.shape)
    near = {"t0": np.full(len(shapes), np.nan), "duration": np.full(len(shapes), np.nan)}
    ever = np.zeros(len(shapes), bool)
    stages_seen = set()
    step = 4                                    # images come in fours (a fast test)
    for k in range(20, mjd.size, step):
        t, f, e = mjd[:k + 1], flux[:, :k + 1], err[:, :k + 1]
        full = ese.detect_ese_shapes(t, f, e)
        got = ese.detect_ese_shapes(t, f, e, new_since_mjd=float(mjd[k - step + 1]), near=near)
        assert np.array_equal(got["detected"], full["detected"]), k
        det = full["detected"]
        np.testing.assert_allclose(got["significance"][det], full["significance"][det], rtol=1e-9)
        np.testing.assert_array_equal(got["t_min_mjd"][det], full["t_min_mjd"][det])
        np.testing.assert_array_equal(got["duration_days"][det], full["duration_days"][det])
        assert np.all(got["significance"] <= full["significance"] + 1e-9)
        st = [ese_stages(t, f, e, confirmed=r)["stage"] for r in (got, full)]
        assert np.array_equal(*st), k
        stages_seen |= set(st[0])
        ever |= det
        near = {"t0": got["t_min_mjd"], "duration": got["duration_days"]}
    assert list(ever) == [True, True, False, False]
    assert det[1] and {"confirmed", "dip_in_progress"} <= stages_seen


def test_merging_epochs_no_template_reaches_leaves_every_fit_unchanged(monkeypatch):
    """Runs of epochs outside every fitted template's reach enter the fits as one column
    (what bounds the incremental, candidate and live searches on a long history): on 900
    days with events early, mid and late, the full, incremental, candidate (``near``) and
    live searches give the same results as with every epoch a column of its own."""
    from dsa110_contimg.science import ese_stage

    rng = np.random.default_rng(3)
    mjd = ese_models.dsa110_cadence(900.0, rng=rng)
    events = [(150, 40, 0.0), (400, 60, 0.1), (700, 30, 0.0), (860, 25, 0.1), (600, 170, 0.0)]
    flux = np.ones((len(events) + 2, mjd.size))
    for i, (t0, d, kappa) in enumerate(events):
        flux[i] = ese.ese_model(mjd, mjd[0] + t0, d, 0.35, kappa)
    err = np.full(flux.shape, 0.025)
    flux += err * rng.standard_normal(flux.shape)
    nan = [np.nan, np.nan]
    near = {"t0": np.array([mjd[0] + t0 for t0, _, _ in events] + nan),
            "duration": np.array([d for _, d, _ in events] + nan)}
    last = float(mjd[-1])

    def searches():
        return (ese.detect_ese_shapes(mjd, flux, err, new_since_mjd=last),
                ese.detect_ese_shapes(mjd, flux, err, new_since_mjd=last, near=near),
                ese_stage.live_dip_search(mjd, flux, err),
                ese_stage.live_dip_search(mjd[:-150], flux[:, :-150], err[:, :-150]))

    calls = []
    real_groups = ese._column_groups
    monkeypatch.setattr(ese, "_column_groups",
                        lambda tu, lo, hi: calls.append(real_groups(tu, lo, hi).size / tu.size)
                        or real_groups(tu, lo, hi))
    merged = searches()
    assert min(calls) < 0.7                         # the live search merged 40 % of its epochs
    monkeypatch.setattr(ese, "_column_groups", lambda tu, lo, hi: np.arange(tu.size))
    for got, ref in zip(merged, searches()):
        for k, v in ref.items():
            if np.asarray(v).dtype.kind == "f":
                np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
            else:
                np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert merged[1]["detected"][:4].all() and merged[2]["detected"][3]
