"""The estimator's lazy full-resolution maps (GridMap): indexing, slices, flat takes and
cutouts equal the materialised map."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science.noise_estimate import estimate_background


def test_grid_map_indexing_equals_materialised_map():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (300, 410)).astype(np.float32) + np.linspace(0, 5, 410)[None, :]
    maps = estimate_background(data, box_pix=50)
    full = np.asarray(maps.background)
    assert full.shape == (300, 410) and full.dtype == np.float32
    yi = rng.integers(0, 300, 500)
    xi = rng.integers(0, 410, 500)
    np.testing.assert_allclose(maps.background[yi, xi], full[yi, xi], rtol=1e-6)
    np.testing.assert_allclose(maps.background.take_flat(yi * 410 + xi), full[yi, xi], rtol=1e-6)
    np.testing.assert_allclose(maps.rms[10:20, 400:], np.asarray(maps.rms)[10:20, 400:], rtol=1e-6)
    np.testing.assert_allclose(maps.background_at(xi + 0.3, yi - 0.2), full[yi, xi], rtol=1e-6)
    assert np.isnan(maps.rms_at([-5.0], [3.0])[0])
    # the gradient is followed between box centres (bilinear), not stepped
    assert np.all(np.diff(full[150, 30:380]) > 0)


def test_grid_map_cutouts_are_exact():
    rng = np.random.default_rng(8)
    data = rng.normal(0, 1, (400, 500)).astype(np.float32) + np.linspace(0, 5, 500)[None, :]
    maps = estimate_background(data, box_pix=40)
    full = np.asarray(maps.rms)
    for h in (3, 7, 30):   # 30: wider than a box (general path)
        yc = rng.integers(h, 400 - h, 300)
        xc = rng.integers(h, 500 - h, 300)
        cut = maps.rms.cutouts(yc, xc, h)
        g = np.arange(-h, h + 1)
        ref = full[(yc[:, None] + g)[:, :, None], (xc[:, None] + g)[:, None, :]]
        np.testing.assert_allclose(cut, ref, rtol=2e-6)
