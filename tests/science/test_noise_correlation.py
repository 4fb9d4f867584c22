"""The matched-filter noise factor: white and beam-correlated noise, and the sampled measurement
against the full-image reference (tests/support/legacy_background.py)."""

from __future__ import annotations

import numpy as np
import pytest

import legacy_background as legacy
from dsa110_contimg.science.forced import PixelBeam
from dsa110_contimg.science.noise_correlation import noise_correlation_factor
from dsa110_contimg.science.noise_estimate import estimate_background
from dsa110_contimg.science.simulate import simulate_image


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


def test_sampled_correlation_factor_matches_the_landed_measurement():
    sim = simulate_image((1024, 1024), beam_arcsec=(15, 15, 0), pixscale_arcsec=3.0, naxis=2,
                         seed=11)
    k = PixelBeam.from_fwhm(5.0, 5.0, 0.0).stamp(3.0)
    zeros, ones = np.zeros(sim.data.shape), np.full(sim.data.shape, 1e-3)
    f_new = noise_correlation_factor(sim.data, zeros, ones, k)
    f_old = legacy.noise_correlation_factor(sim.data, zeros, ones, k)
    assert f_new == pytest.approx(f_old, rel=0.03)
    maps = estimate_background(sim.data, beam_pix=5.0)
    assert noise_correlation_factor(sim.data, maps.background, maps.rms, k) == \
        pytest.approx(np.sqrt(2), rel=0.05)
