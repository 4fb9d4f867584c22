"""The background and noise estimator: accuracy against known truth and against the full-
resolution reference estimator (tests/support/legacy_background.py), blanked regions, tiny
images, and a working memory that is a fixed budget, not the image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import legacy_background as legacy
from dsa110_contimg.core.errors import EmptyImage
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.noise import background_maps_for
from dsa110_contimg.science.noise_estimate import estimate_background
from dsa110_contimg.science.noise_grid import GridMap
from dsa110_contimg.science.simulate import random_sky_positions, simulate_image, sky_wcs
from tracing import traced_peak


def _p99(a):
    return float(np.percentile(np.abs(a), 99))


def _correlated_field(shape=(1536, 1536), beam_pix=4.8, seed=5):
    """Correlated noise with a known rms map (rising 30 % left to right) and background
    (a pedestal with a ramp), Jy/beam."""
    rng = np.random.default_rng(seed)
    c = ndimage.gaussian_filter(rng.normal(0, 1, shape), beam_pix / 2.3548)
    c /= c.std()
    ny, nx = shape
    rms = 1e-3 * (1 + 0.3 * np.linspace(0, 1, nx))[None, :] * np.ones(shape)
    bkg = 5e-3 + 1e-3 * np.linspace(-1, 1, ny)[:, None] * np.ones(shape)
    return (c * rms + bkg).astype(np.float32), rms, bkg


def test_gradient_and_rms_recovered_with_sources():
    rng = np.random.default_rng(1)
    shape = (512, 512)
    ra, dec, _, _ = random_sky_positions(sky_wcs(150, 37, 3.0, shape), shape, 60, rng,
                                         margin_pix=10)
    sim = simulate_image(shape, ra_deg=ra, dec_deg=dec, peak_jyb=rng.uniform(0.01, 0.5, 60),
                         noise_rms=1e-3, background=(0.02, 0.01, -0.006), naxis=2, seed=4)
    yy, xx = np.mgrid[0:512, 0:512]
    true_bkg = 0.02 + 0.01 * (xx - 256) / 512 - 0.006 * (yy - 256) / 512
    maps = estimate_background(sim.data, beam_pix=5.0)
    assert maps.source == "estimated"
    assert maps.background.shape == shape and maps.rms.shape == shape
    inner = (slice(50, -50), slice(50, -50))
    resid = maps.background[inner] - true_bkg[inner]
    assert np.median(np.abs(resid)) < 0.3e-3  # well below the 1 mJy noise
    assert np.median(maps.rms) == pytest.approx(1e-3, rel=0.08)


def test_nan_regions_ignored_and_all_nan_raises():
    rng = np.random.default_rng(2)
    data = rng.normal(0.5, 0.1, (300, 300)).astype(np.float32)
    data[:, :120] = np.nan  # a blanked strip wider than a box
    maps = estimate_background(data, box_pix=50)
    assert np.all(np.isfinite(maps.background)) and np.all(np.isfinite(maps.rms))
    assert np.median(maps.background[:, 150:]) == pytest.approx(0.5, abs=0.01)
    assert np.median(maps.rms[:, 150:]) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(EmptyImage):
        estimate_background(np.full((64, 64), np.nan), box_pix=16)


def test_constant_map_exact_and_tiny_image():
    data = np.full((20, 20), 3.0, np.float32) + np.random.default_rng(0).normal(0, 1, (20, 20))
    maps = estimate_background(data, box_pix=64)  # box larger than the image: one box
    assert maps.background.shape == (20, 20)
    assert np.ptp(maps.background) == 0


def test_grid_map_agrees_with_landed_estimator_on_correlated_noise():
    data, rms_true, bkg_true = _correlated_field()
    new = estimate_background(data, beam_pix=4.8)
    old = legacy.estimate_background(data, beam_pix=4.8)
    assert isinstance(new.rms, GridMap) and new.grid_shape == (16, 16)
    m = (slice(50, -50), slice(50, -50))
    nr, nb = np.asarray(new.rms), np.asarray(new.background)
    assert _p99((nr / old.rms - 1)[m]) < 0.02
    assert _p99((nb / old.background - 1)[m]) < 0.02
    # against the truth: no bias, and the per-box statistical scatter of both estimators
    assert abs(np.median(nr[m] / rms_true[m]) - 1) < 0.01
    assert abs(np.median(nb[m] / bkg_true[m]) - 1) < 0.01
    assert _p99((nr / rms_true - 1)[m]) < 1.25 * _p99((old.rms / rms_true - 1)[m])
    # (fewer samples per box than the landed estimator: a slightly noisier background grid)
    assert _p99((nb - bkg_true)[m]) < 1.5 * _p99((old.background - bkg_true)[m])


def test_grid_map_truth_within_two_percent_with_enough_samples_per_box():
    # with boxes of 60 beams the per-box statistical error is below 1 %: rms and background
    # maps are then within 2 % of the truth at the 99th percentile
    data, rms_true, bkg_true = _correlated_field(shape=(2048, 2048), beam_pix=3.0, seed=9)
    new = estimate_background(data, beam_pix=3.0, box_pix=180)
    m = (slice(100, -100), slice(100, -100))
    assert _p99((np.asarray(new.rms) / rms_true - 1)[m]) < 0.02
    assert _p99((np.asarray(new.background) / bkg_true - 1)[m]) < 0.02


def test_shared_synthetic_image_rms_and_background(shared_data):
    img = RadioImage.open(shared_data / "synthetic" / "aegean_synthetic_test.fits")
    maps = background_maps_for(img)
    old = legacy.estimate_background(np.asarray(img.data),
                                     beam_pix=img.beam.major_arcsec / img.pixel_scale_arcsec)
    nr, nb = np.asarray(maps.rms), np.asarray(maps.background)
    # the README's truth: rms ~0.029 on a pedestal of ~0.25 (102 sources clipped away)
    assert np.median(nr) == pytest.approx(0.029, rel=0.02)
    assert _p99(nb / 0.25 - 1) < 0.02
    assert _p99(nb / old.background - 1) < 0.02
    # the rms grid has 4 x 7 boxes; with clipping run until it settles (5 rounds) the new
    # map is closer to the truth than the landed estimator (2.3 % against 3.0 % p99), and
    # the two differ by 2.5 % p99 -- the landed estimator's own error (3 rounds of clipping
    # leave bright-source wings in some boxes), not a 2 % disagreement to be closed
    assert _p99(nr / 0.029 - 1) < _p99(old.rms / 0.029 - 1)
    assert _p99(nr / 0.029 - 1) < 0.027
    assert _p99(nr / old.rms - 1) < 0.03


def test_noise_map_memory_is_a_fixed_budget_not_the_image():
    # the estimator works on batches of at most BATCH_SAMPLES samples (a few strips of
    # boxes): its peak memory is the same for an image four times larger, and a small
    # fraction of a large image
    rng = np.random.default_rng(2)
    peaks = {}
    for n in (2048, 4096):
        data = rng.standard_normal((n, n), dtype=np.float32) * np.float32(1e-3)
        maps, peaks[n] = traced_peak(lambda: estimate_background(data, beam_pix=2.0))
        assert np.median(maps.rms.sampled()) == pytest.approx(1e-3, rel=0.02)
    assert peaks[4096] < 1.25 * peaks[2048], peaks
    assert peaks[4096] < 0.15 * 4096 * 4096 * 4, f"peak {peaks[4096] / 1e6:.1f} MB, image 67 MB"
