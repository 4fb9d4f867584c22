"""Ensemble normalisation: gain recovery, refusal, error propagation."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.core.errors import InvalidLightCurve, NotNormalisable
from dsa110_contimg.science.normalize import (
    MEDIAN_EFFICIENCY,
    Correction,
    apply_correction,
    compute_correction,
    ensemble_steadiness,
    normalise_epochs,
    reference_baselines,
    select_references,
)


def _field(rng, n_refs, n_epochs, noise, gain_amp=0.10):
    """Reference light curves with an injected per-epoch gain error of up to +-gain_amp."""
    true = 10 ** rng.uniform(-1.5, 0.3, n_refs)
    gain = 1 + rng.uniform(-gain_amp, gain_amp, n_epochs)
    mjd = 60000 + np.cumsum(rng.exponential(5.0, n_epochs))
    err = noise * true[:, None] * np.ones((1, n_epochs))
    flux = gain * (true[:, None] + err * rng.standard_normal((n_refs, n_epochs)))
    return true, gain, mjd, flux, gain * err


def test_select_references_criteria_and_order():
    snr = np.array([60, 500, 45, 300, 80, 1000, 200, np.nan])
    compact = np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)
    isolated = np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
    chi2 = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0])   # NaN = not judged yet
    got = select_references(snr, compact, isolated, chi2)
    assert got.tolist() == [1, 4, 0]          # 5 resolved, 3 confused, 6 unstable, 2 faint
    assert select_references(snr, compact, isolated, chi2, max_refs=2).tolist() == [1, 4]
    master = np.array([1, 0, 1, 1, 1, 1, 1, 1], bool)
    assert select_references(snr, compact, isolated, chi2, master).tolist() == [4, 0]
    assert select_references(snr, compact, isolated, min_snr=100).tolist() == [1, 6]
    # the radius cut comes before the row limit
    sep = np.array([0.1, 2.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert select_references(snr, compact, isolated, chi2, max_refs=1,
                             separation_deg=sep).tolist() == [4]
    with pytest.raises(InvalidLightCurve):
        select_references(snr, compact[:3], isolated)


def test_reference_baselines_first_epochs_by_mjd():
    rng = np.random.default_rng(1)
    mjd = np.arange(30.0)
    flux = np.vstack([np.r_[np.full(10, 2.0), np.full(20, 5.0)],      # baseline = first 10 only
                      np.r_[[1.0, 1.1, np.nan, -1.0], np.full(26, np.nan)],  # 2 valid: unusable
                      np.r_[[1.0, 1.2, 0.8], np.full(27, np.nan)]])
    p = rng.permutation(30)                                # columns out of time order
    base, rms, usable = reference_baselines(flux[:, p], mjd[p])
    assert usable.tolist() == [True, False, True]
    assert base[0] == 2.0 and rms[0] == 0.0
    assert np.isnan(base[1]) and np.isnan(rms[1])
    assert base[2] == pytest.approx(1.0) and rms[2] == pytest.approx(1.4826 * 0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_10pc_gain_errors_to_1pc_with_20_references(seed):
    rng = np.random.default_rng(seed)
    true, gain, mjd, flux, err = _field(rng, 20, 60, noise=0.01)
    base, _, usable = reference_baselines(flux, mjd)
    assert usable.all()
    factors = np.array([compute_correction(flux[:, j], base).factor for j in range(60)])
    ratio = factors / gain                   # constant = the baseline epochs' mean gain
    resid = ratio / np.median(ratio) - 1
    assert np.max(np.abs(resid)) < 0.01
    assert np.std(gain) > 0.04               # the injected errors really were +-10 %
    # a source on the same images comes out flat to better than 1 %
    src = gain * 0.3
    fns = np.array([apply_correction(src[j], 1e-3, compute_correction(flux[:, j], base))[0]
                    for j in range(60)])
    assert np.std(fns) / np.mean(fns) < 0.01


def test_two_percent_noise_rms_below_one_percent_and_outlier_clipped():
    rng = np.random.default_rng(7)
    true, gain, mjd, flux, err = _field(rng, 20, 60, noise=0.02)
    flux[3, 30:] *= 0.5                        # one reference undergoes a 50 % dip
    base, _, _ = reference_baselines(flux, mjd)
    corr = [compute_correction(flux[:, j], base) for j in range(60)]
    ratio = np.array([c.factor for c in corr]) / gain
    assert np.std(ratio / np.median(ratio)) < 0.01
    assert all(not c.used_mask[3] for c in corr[30:])
    assert all(c.ok and c.n_refs == 20 for c in corr)


def test_refuses_with_two_references_and_large_scatter():
    c = compute_correction([1.0, 1.02], [1.0, 1.0])
    assert not c.ok and c.n_refs == 2 and "at least 3" in c.reason
    assert np.isnan(c.factor)
    with pytest.raises(NotNormalisable, match="at least 3"):
        apply_correction([0.5], [0.01], c)
    # 20 given, but only 2 usable (others NaN or non-positive)
    f = np.r_[1.0, 1.0, np.full(18, np.nan)]
    f[5] = -1
    c = compute_correction(f, np.ones(20))
    assert not c.ok and c.n_refs == 2
    rng = np.random.default_rng(0)
    wild = compute_correction(1 + 0.3 * rng.standard_normal(20), np.ones(20))
    assert not wild.ok and "scatter" in wild.reason and np.isfinite(wild.factor)
    with pytest.raises(NotNormalisable, match="scatter"):
        apply_correction([0.5], [0.01], wild)


def test_clip_and_identical_ratios():
    c = compute_correction([1.0, 1.0, 1.0, 1.0, 3.0], np.ones(5))
    assert c.ok and c.factor == 1.0 and c.scatter == 0.0 and c.n_used == 4
    assert c.used_mask.tolist() == [True, True, True, True, False]
    assert c.to_dict()["used_refs"] == [0, 1, 2, 3]


def test_error_of_correction_matches_its_scatter_and_pulls_are_unit():
    """factor_err = sqrt(pi/2) sigma_C / sqrt(N) is the actual spread of C, and using it
    gives normalised steady sources unit-width pulls (sigma_C itself would not)."""
    rng = np.random.default_rng(11)
    n_real, n_refs, noise = 3000, 20, 0.02
    g = 1 + 0.05 * rng.standard_normal(n_real)
    refs = g[:, None] * (1 + noise * rng.standard_normal((n_real, n_refs)))
    corr = [compute_correction(refs[k], np.ones(n_refs)) for k in range(n_real)]
    fac = np.array([c.factor for c in corr])
    ferr = np.array([c.factor_err for c in corr])
    spread = np.std(fac / g)
    assert np.median(ferr) == pytest.approx(spread, rel=0.15)
    assert np.median(ferr) == pytest.approx(MEDIAN_EFFICIENCY * noise / np.sqrt(n_refs), rel=0.2)
    src_err = 0.01
    src = g * (1 + src_err * rng.standard_normal(n_real))
    fn = np.empty(n_real)
    en = np.empty(n_real)
    en_scatter = np.empty(n_real)
    for k, c in enumerate(corr):
        fn[k], en[k] = apply_correction(src[k], g[k] * src_err, c)
        alt = Correction(c.factor, c.scatter, c.n_refs, c.n_used, c.scatter, c.used_mask, True)
        en_scatter[k] = apply_correction(src[k], g[k] * src_err, alt)[1]
    pulls = (fn - 1) / en
    assert np.std(pulls) == pytest.approx(1.0, abs=0.07)
    assert np.std((fn - 1) / en_scatter) < 0.6           # the alternative overstates errors


def test_apply_correction_formula():
    c = Correction(1.25, 0.01, 10, 10, 0.02, np.ones(10, bool), True)
    fn, en = apply_correction(np.array([1.0, np.nan]), np.array([0.05, 0.05]), c)
    assert fn[0] == pytest.approx(0.8)
    assert en[0] == pytest.approx(np.sqrt((0.05 / 1.25) ** 2 + (1.0 * 0.01 / 1.25**2) ** 2))
    assert np.isnan(fn[1]) and np.isnan(en[1])


def test_normalise_epochs_marks_untrusted_images_nan():
    rng = np.random.default_rng(3)
    true, gain, mjd, flux, err = _field(rng, 20, 15, noise=0.01)
    flux[2:, 7] = np.nan                    # image 7: only 2 references measured
    fn, en, corr = normalise_epochs(flux, err, mjd, np.arange(20))
    assert [c.ok for c in corr].count(False) == 1 and not corr[7].ok
    assert np.isnan(fn[:, 7]).all() and np.isnan(en[:, 7]).all()
    good = np.delete(np.arange(15), 7)
    flat = fn[:, good] / true[:, None]
    assert np.std(flat / np.median(flat, axis=1, keepdims=True)) < 0.02


def test_ensemble_steadiness_removes_the_common_gain_and_finds_the_variable():
    rng = np.random.default_rng(12)
    true, gain, mjd, flux, err = _field(rng, 40, 20, 0.01, gain_amp=0.15)
    flux[7, 8:12] *= 0.6                                  # one source dips by 40 %
    flux[3, 5] = np.nan                                   # missing and unusable points
    err[4, 6] = 0.0
    got = ensemble_steadiness(flux, err, mjd)
    steady = np.ones(40, bool)
    steady[7] = False
    assert got["n"][3] == 19 and got["n"][4] == 19 and got["n"][0] == 20
    # the gain (15 %) is gone: steady sources scatter at their 1 % noise (eta ~ 1, V ~ 0.01)
    assert np.median(got["eta"][steady]) == pytest.approx(1.0, abs=0.35)
    assert np.all(got["v"][steady] < 0.03) and got["v"][7] > 0.15
    assert got["eta"][7] > 50 * np.max(got["eta"][steady])
    # the metrics are those of science/variability of the gain-divided curves
    from dsa110_contimg.science.variability import lightcurve_metrics

    good = np.where((flux > 0) & (err > 0), flux, np.nan)   # unusable points vote for no gain
    common = np.nanmedian(good / np.nanmedian(good, axis=1, keepdims=True), axis=0)
    one = lightcurve_metrics(flux[0] / common, err[0] / common, mjd)
    assert got["eta"][0] == pytest.approx(one["eta"], rel=1e-9)
    assert got["v"][0] == pytest.approx(one["v"], rel=1e-9)

