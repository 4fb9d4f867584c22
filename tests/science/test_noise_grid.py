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


def test_column_sampler_gives_the_grid_maps_values_bit_for_bit():
    rng = np.random.default_rng(3)
    data = rng.normal(0, 1, (300, 410)).astype(np.float32) + np.linspace(0, 5, 410)[None, :]
    maps = estimate_background(data, box_pix=50)
    yi = rng.integers(0, 300, 2000)
    xi = rng.integers(0, 410, 2000)
    for grid_map in (maps.background, maps.rms):
        sampler = grid_map.column_sampler()
        np.testing.assert_array_equal(sampler.sample(yi, xi), grid_map.sample(yi, xi))
        rows = np.array([0, 17, 151, 299])
        np.testing.assert_array_equal(sampler.rows(rows),
                                      grid_map.sample(rows[:, None], np.arange(410)[None, :]))
    assert maps.background.column_sampler().same_rows(maps.rms.column_sampler())
    # between consecutive centre rows the map is linear in y: its extremes lie on them
    sampler = maps.rms.column_sampler()
    centre = sampler.centre_rows(0, 300)
    assert centre.size and np.all(np.diff(sampler.iy)[centre - 1] == 1)
