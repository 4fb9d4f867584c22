"""Adaptive sub-band binning (science.md §6): algorithm, injection into 16-plane cubes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.science.forced import measure_positions
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods.adaptive import adaptive_bins, measure
from dsa110_contimg.science.results import FAILURE_FLAGS, Flag
from dsa110_contimg.science.simulate import simulate_image, sky_wcs

N_PLANES = 16
SHAPE = (128, 160)
FREQ0, DFREQ = 1.311e9, 15.625e6


def make_cube(flux_per_plane, *, rms=5e-3, seed=0, n_planes=N_PLANES):
    """A (1, n_planes, ny, nx) 4-axis cube with independent beam-correlated noise per plane.

    ``flux_per_plane``: (n_sources, n_planes) peak flux, Jy/beam. Sources sit on a row
    29 px (~6 beams) apart (isolated). Returns (image, ra, dec, planes (n_planes, ny, nx), header).
    """
    flux = np.atleast_2d(np.asarray(flux_per_plane, float))
    n_src = flux.shape[0]
    ny, nx = SHAPE
    wcs = sky_wcs(150.0, 37.0, 3.0, SHAPE)
    xs = 22.0 + 29.0 * np.arange(n_src) + 0.3
    ys = np.full(n_src, ny / 2.0 - 0.4)
    ra, dec = wcs.wcs_pix2world(xs, ys, 0)
    planes = []
    for i in range(n_planes):
        sim = simulate_image(SHAPE, ra_deg=ra, dec_deg=dec, peak_jyb=flux[:, i], noise_rms=rms,
                             naxis=4, seed=seed * 1000 + i)
        planes.append(sim.data)
    header = sim.header.copy()
    header["NAXIS3"] = n_planes
    header["CRVAL3"] = FREQ0
    header["CDELT3"] = DFREQ
    header["CRPIX3"] = 1.0
    cube = np.stack(planes)
    return RadioImage.from_array(cube[np.newaxis], header), ra, dec, cube, header


# --- the binning algorithm ------------------------------------------------------------------
def test_bins_constant_snr_two_per_plane():
    """SNR 2 per plane needs 7 planes (2*sqrt(7) = 5.3 >= 5; 2*sqrt(6) = 4.9 < 5)."""
    flux = np.full((1, 16), 2.0)
    err = np.ones((1, 16))
    b = adaptive_bins(flux, err, target_snr=5.0)
    assert b["first_plane"].tolist() == [0, 7]
    assert b["last_plane"].tolist() == [6, 13]
    assert b["width"].tolist() == [7, 7]
    np.testing.assert_allclose(b["flux_jyb"], 2.0)  # a weighted mean, not a sum
    np.testing.assert_allclose(b["err_jyb"], 1 / np.sqrt(7))
    np.testing.assert_allclose(b["snr"], 2 * np.sqrt(7))
    # leftovers 14-15 (SNR 2.8) stay unbinned even in the final pass
    assert b["source_index"].tolist() == [0, 0]


def test_bins_bright_source_one_bin_per_plane_and_leftover_merge():
    flux = np.array([np.full(16, 10.0), np.r_[np.full(4, 10.0), np.full(12, 1.0)]])
    err = np.ones((2, 16))
    b = adaptive_bins(flux, err, target_snr=5.0, max_width=8)
    first = b["first_plane"][b["source_index"] == 0]
    assert first.tolist() == list(range(16))
    # source 1: 4 single planes, then widths up to 8 give 1*sqrt(8)=2.8 < 5; the final
    # pass combines the 12-plane run once: sqrt(12) = 3.5 < 5 -> nothing more
    s1 = b["source_index"] == 1
    assert b["width"][s1].tolist() == [1, 1, 1, 1]
    flux[1, 4:] = 1.5  # now 1.5*sqrt(12) = 5.2 >= 5 only as the merged leftover run
    b = adaptive_bins(flux, err, target_snr=5.0, max_width=8)
    s1 = b["source_index"] == 1
    assert b["width"][s1].tolist() == [1, 1, 1, 1, 12]
    assert b["first_plane"][s1][-1] == 4 and b["last_plane"][s1][-1] == 15
    b = adaptive_bins(flux, err, target_snr=5.0, max_width=8, merge_leftovers=False)
    assert b["width"][b["source_index"] == 1].tolist() == [1, 1, 1, 1]


def test_bins_failed_planes_have_zero_weight():
    flux = np.full((1, 8), 3.0)
    err = np.ones((1, 8))
    flux[0, 1] = np.nan       # failed measurement
    err[0, 2] = 0.0           # unusable error
    b = adaptive_bins(flux, err, target_snr=5.0)
    # width 1: none (3 < 5); width 2: chunks [0,1] (only plane 0 counts: 3),
    # [2,3] (plane 3: 3), [4,5] (4.24), [6,7] (4.24) -> none; width 3: [0-2] (3),
    # [3-5] (5.2 hit), [6,7] (4.24); width 4 on pools [0-2], [6-7] -> none; ...
    assert b["first_plane"].tolist() == [3]
    assert b["n_used"].tolist() == [3]
    # final pass: leftover runs [0-2] (1 usable plane) and [6,7]: 4.24 -> no bin
    assert b["source_index"].size == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 16), st.integers(0, 2**31 - 1), st.floats(1.0, 8.0))
def test_bins_properties(n_src, n_planes, seed, target):
    """Bins are disjoint contiguous plane ranges, each reaching the target, with the
    weighted mean and its error recomputable from the planes."""
    rng = np.random.default_rng(seed)
    err = rng.uniform(0.5, 2.0, (n_src, n_planes))
    flux = rng.normal(rng.uniform(-1, 4, (n_src, 1)), err)
    flux[rng.random(flux.shape) < 0.1] = np.nan
    b = adaptive_bins(flux, err, target_snr=target)
    assert np.all(b["snr"] >= target)
    assert np.all(b["first_plane"] <= b["last_plane"])
    assert np.all((b["first_plane"] >= 0) & (b["last_plane"] < n_planes))
    covered = np.zeros((n_src, n_planes), int)
    for s, lo, hi, f, e in zip(b["source_index"], b["first_plane"], b["last_plane"],
                               b["flux_jyb"], b["err_jyb"]):
        covered[s, lo:hi + 1] += 1
        ok = np.isfinite(flux[s, lo:hi + 1])
        w = 1 / err[s, lo:hi + 1][ok] ** 2
        np.testing.assert_allclose(f, np.sum(w * flux[s, lo:hi + 1][ok]) / w.sum(), rtol=1e-10)
        np.testing.assert_allclose(e, 1 / np.sqrt(w.sum()), rtol=1e-10)
    assert covered.max(initial=0) <= 1  # disjoint
    order = np.lexsort((b["first_plane"], b["source_index"]))
    assert np.array_equal(order, np.arange(order.size))


def test_bins_reject_bad_shapes():
    with pytest.raises(ConfigError):
        adaptive_bins(np.ones((2, 3)), np.ones((2, 4)))


# --- injection into generated 16-plane cubes ------------------------------------------------
@pytest.fixture(scope="module")
def faint_cube():
    """Four faint sources (14 mJy: per-plane SNR ~2, band SNR ~8) and one bright one (80 mJy).

    The seed is fixed: with it no faint source reaches SNR 5 in any single plane.
    """
    peaks = np.array([0.014, 0.014, 0.014, 0.014, 0.080])
    flux = np.repeat(peaks[:, None], N_PLANES, axis=1)
    return make_cube(flux, rms=5e-3, seed=7) + (peaks,)


def test_faint_source_reaches_target_only_when_binned(faint_cube):
    img, ra, dec, cube, header, peaks = faint_cube
    assert img.n_planes == N_PLANES
    t = measure(img, ra, dec, target_snr=5.0)
    faint = peaks < 0.05
    per_plane_snr = t.meta["plane_peak_jyb"] / t.meta["plane_err_jyb"]
    assert per_plane_snr.shape == (len(ra), N_PLANES)
    # per plane the faint sources never reach the target ...
    assert np.all(per_plane_snr[faint] < 5.0)
    bins = t.meta["bins"]
    for s in np.flatnonzero(faint):
        mine = bins["source_index"] == s
        # ... but binned they do, in bins of several adjacent planes
        assert mine.any(), f"faint source {s} never reached SNR 5"
        assert np.all(bins["snr"][mine] >= 5.0)
        assert np.all(bins["width"][mine] >= 2)
        assert np.all(bins["freq_max_hz"][mine] > bins["freq_min_hz"][mine])
        expect_lo = FREQ0 + DFREQ * bins["first_plane"][mine]
        np.testing.assert_allclose(bins["freq_min_hz"][mine], expect_lo)
        # the bin flux is a flux density near the truth (selected at SNR>=5, so biased
        # high by at most a few sigma), never a sum over planes
        assert np.all(np.abs(bins["flux_jyb"][mine] - peaks[s]) < 3.5 * bins["err_jyb"][mine])
    assert t.columns["n_bins"][faint].min() >= 1
    # the bright source is detected in every single plane
    bright = np.flatnonzero(~faint)[0]
    assert np.all(bins["width"][bins["source_index"] == bright] == 1)
    assert t.columns["n_bins"][bright] == N_PLANES
    assert t.meta["combination"] == "inverse-variance weighted mean"


def test_band_average_matches_forced_on_averaged_image(faint_cube):
    img, ra, dec, cube, header, peaks = faint_cube
    t = measure(img, ra, dec)
    avg = RadioImage.from_array(cube.mean(axis=0), header)
    f = measure_positions(avg, ra, dec, method="forced")
    assert t.n_success == len(ra) and f.n_success == len(ra)
    err = np.hypot(t["peak_err_jyb"], f["peak_err_jyb"])
    # same data, nearly the same weights: agreement far inside the joint error
    assert np.all(np.abs(t["peak_jyb"] - f["peak_jyb"]) < err)
    np.testing.assert_allclose(t["peak_err_jyb"], f["peak_err_jyb"], rtol=0.15)
    # and both recover the truth within 3 sigma
    assert np.all(np.abs(t["peak_jyb"] - peaks) < 3 * t["peak_err_jyb"])
    assert np.all(t["n_planes_used"] == N_PLANES)
    assert np.all(t["flags"] & Flag.SINGLE_PLANE == 0)


def test_spectral_slope_is_followed_by_the_bins():
    """A bright steep-spectrum source: per-plane bins follow the spectrum; the band
    average is the weighted mean of the planes."""
    nu = FREQ0 + DFREQ * np.arange(N_PLANES)
    spec = 0.06 * (nu / nu[0]) ** -3.0
    img, ra, dec, cube, header = make_cube(spec[None, :], rms=2e-3, seed=3)
    t = measure(img, ra, dec)
    b = t.meta["bins"]
    assert b["width"].tolist() == [1] * N_PLANES
    assert np.all(np.abs(b["flux_jyb"] - spec) < 4 * b["err_jyb"])
    assert b["flux_jyb"][0] > b["flux_jyb"][-1]
    assert t["spectral_chi2"][0] > N_PLANES  # a flat spectrum does not fit


def test_single_plane_image_equals_forced_and_says_so():
    sim = simulate_image((128, 128), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.02],
                         noise_rms=1e-3, naxis=4, seed=5)
    img = RadioImage.from_array(sim.data, sim.header)
    assert img.n_planes == 1
    a = measure(img, sim.truth_ra_deg, sim.truth_dec_deg)
    f = measure_positions(img, sim.truth_ra_deg, sim.truth_dec_deg, method="forced")
    np.testing.assert_array_equal(a["peak_jyb"], f["peak_jyb"])
    np.testing.assert_array_equal(a["peak_err_jyb"], f["peak_err_jyb"])
    assert np.all(a["flags"] & Flag.SINGLE_PLANE)
    assert not (int(Flag.SINGLE_PLANE) & int(FAILURE_FLAGS))
    assert a["success"].all()
    assert a.meta["method"] == "adaptive" and "single-plane" in a.meta["note"]


def test_dispatch_and_per_spw_images_equal_the_cube(faint_cube, tmp_path):
    """measure_positions(method='adaptive') reaches this module, and a list of per-SPW
    single-plane files gives the cube's result."""
    img, ra, dec, cube, header, peaks = faint_cube
    t_cube = measure_positions(img, ra, dec, method="adaptive")
    from astropy.io import fits

    paths = []
    for i in range(N_PLANES):
        h = header.copy()
        h["NAXIS3"] = 1
        h["CRVAL3"] = FREQ0 + i * DFREQ
        p = tmp_path / f"spw{i:02d}.img-image-pbcor.fits"
        fits.PrimaryHDU(cube[i][None, None].astype(np.float32), h).writeto(p)
        paths.append(p)
    t_spw = measure(paths, ra, dec)
    assert t_spw.meta["n_planes"] == N_PLANES
    np.testing.assert_allclose(t_spw.meta["plane_freqs_hz"], t_cube.meta["plane_freqs_hz"])
    # float32 files vs the float64 cube: equal to rounding
    np.testing.assert_allclose(t_spw["peak_jyb"], t_cube["peak_jyb"], rtol=1e-4, atol=1e-6)
    assert t_spw.meta["bins"]["first_plane"].tolist() == t_cube.meta["bins"]["first_plane"].tolist()


def test_blanked_plane_is_skipped_not_fatal():
    flux = np.full((2, N_PLANES), 0.03)
    img, ra, dec, cube, header = make_cube(flux, rms=3e-3, seed=11)
    x, y = img.world_to_pixel(ra[:1], dec[:1])
    cube = cube.copy()
    xi, yi = int(round(x[0])), int(round(y[0]))
    cube[4, yi - 3:yi + 4, xi - 3:xi + 4] = np.nan   # source 0 blanked in plane 4
    img = RadioImage.from_array(cube[np.newaxis], header)
    t = measure(img, ra, dec)
    assert t["success"].all()
    assert t["n_planes_used"].tolist() == [N_PLANES - 1, N_PLANES]
    assert np.isnan(t.meta["plane_peak_jyb"][0, 4])
    assert np.all(np.abs(t["peak_jyb"] - 0.03) < 3 * t["peak_err_jyb"])


def test_source_off_every_plane_fails_with_nan():
    flux = np.full((1, 4), 0.03)
    img, ra, dec, cube, header = make_cube(flux, seed=1, n_planes=4)
    t = measure(img, [ra[0], 10.0], [dec[0], -40.0])
    assert t["success"].tolist() == [True, False]
    assert np.isnan(t["peak_jyb"][1]) and np.isnan(t["peak_err_jyb"][1])
    assert t["flags"][1] & (Flag.OFF_IMAGE | Flag.BAD_POSITION)
    assert t["n_bins"][1] == 0


@pytest.mark.parametrize("kwargs", [dict(target_snr=0), dict(target_snr=float("nan")),
                                    dict(initial_width=0), dict(initial_width=3, max_width=2),
                                    dict(error_model="sum")])
def test_bad_options_are_config_errors(faint_cube, kwargs):
    img, ra, dec, *_ = faint_cube
    with pytest.raises(ConfigError):
        measure(img, ra, dec, **kwargs)


def test_bad_image_argument():
    with pytest.raises(ConfigError):
        measure([], [1.0], [2.0])
