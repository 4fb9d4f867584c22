"""Background / rms estimation and user-supplied maps."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.core.errors import EmptyImage, MapMismatch
from dsa110_contimg.science.forced import PixelBeam
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.noise import (
    background_maps_for, companion_map_paths, estimate_background, noise_correlation_factor)
from dsa110_contimg.science.simulate import random_sky_positions, simulate_image


def test_gradient_and_rms_recovered_with_sources():
    rng = np.random.default_rng(1)
    shape = (512, 512)
    from dsa110_contimg.science.simulate import sky_wcs
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


def _write(path, arr, header=None):
    fits.PrimaryHDU(np.asarray(arr, np.float32), header).writeto(path, overwrite=True)
    return path


def test_companion_maps_are_honoured(tmp_path):
    sim = simulate_image((64, 64), naxis=4, seed=0)
    img_path = sim.write(tmp_path / "field.img-image-pb.fits")
    comp = companion_map_paths(img_path)
    assert comp["rms"].name == "field.img-image-pb_rms.fits"
    bkg = np.full((64, 64), 0.25)
    rms = np.full((64, 64), 2e-3)
    rms[:10] = 0.0  # BANE-style zeros mean "no noise estimate"
    _write(comp["bkg"], bkg[None, None])
    _write(comp["rms"], rms)
    maps = background_maps_for(RadioImage.open(img_path))
    assert maps.source == "files"
    np.testing.assert_allclose(maps.background, 0.25)
    assert np.all(np.isnan(maps.rms[:10])) and np.allclose(maps.rms[10:], 2e-3)
    est = background_maps_for(RadioImage.open(img_path), autoload=False)
    assert est.source == "estimated"


def test_only_rms_file_is_mixed_and_mjy_scaled(tmp_path):
    sim = simulate_image((64, 64), naxis=2, seed=0)
    img_path = sim.write(tmp_path / "a.fits")
    rms_path = _write(tmp_path / "noise.fits", np.full((64, 64), 3.0),
                      fits.Header({"BUNIT": "mJy/beam"}))
    maps = background_maps_for(RadioImage.open(img_path), rms_path=rms_path)
    assert maps.source == "mixed"
    np.testing.assert_allclose(maps.rms, 3e-3, rtol=1e-6)


def test_map_mismatch_errors(tmp_path):
    sim = simulate_image((64, 64), naxis=2, seed=0)
    img_path = sim.write(tmp_path / "a.fits")
    img = RadioImage.open(img_path)
    with pytest.raises(MapMismatch, match="does not exist"):
        background_maps_for(img, rms_path=tmp_path / "missing_rms.fits")
    bad = _write(tmp_path / "bad_rms.fits", np.ones((32, 64)))
    with pytest.raises(MapMismatch, match=r"shape \(32, 64\)"):
        background_maps_for(img, rms_path=bad)
    _write(companion_map_paths(img_path)["bkg"], np.ones((10, 10)))
    with pytest.raises(MapMismatch, match="a_bkg.fits"):
        background_maps_for(RadioImage.open(img_path))


def test_noise_correlation_factor_white_and_beam_correlated():
    pb = PixelBeam.from_fwhm(5.0, 5.0, 0.0)
    k = pb.stamp(3.0)
    rng = np.random.default_rng(3)
    white = rng.normal(0, 1, (512, 512))
    zeros, ones = np.zeros_like(white), np.ones_like(white)
    f_white = noise_correlation_factor(white, zeros, ones, k)
    assert f_white == pytest.approx(1 / np.sqrt(np.sum(k ** 2)), rel=0.05)
    sim = simulate_image((512, 512), beam_arcsec=(15, 15, 0), pixscale_arcsec=3.0, naxis=2)
    f_corr = noise_correlation_factor(sim.data, zeros, ones * 1e-3, k)
    assert f_corr == pytest.approx(np.sqrt(2), rel=0.06)  # white noise convolved with the beam
