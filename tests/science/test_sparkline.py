"""The stored light-curve summary of the candidates page (science/sparkline.py)."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science import sparkline


def test_a_short_light_curve_keeps_every_epoch_in_mjd_order():
    mjd = np.array([[60003.0, 60001.0, 60002.0, np.nan], [60001.0, 60002.0, 60003.0, 60004.0]])
    flux = np.array([[0.03, 0.01, 0.02, np.nan], [0.01, np.nan, 0.03, 0.04]])
    m, f, n = sparkline.summarise(mjd, flux, points=60)
    assert n.tolist() == [3, 3]
    assert m[0, :3].tolist() == [60001.0, 60002.0, 60003.0] and f[0, :3].tolist() == [0.01, 0.02, 0.03]
    assert m[1, :3].tolist() == [60001.0, 60003.0, 60004.0]     # the epoch without flux left out
    assert np.isnan(m[:, 3:]).all()


def test_a_long_light_curve_is_the_means_of_equal_groups_and_keeps_its_dip():
    k, points = 500, 60
    rng = np.random.default_rng(3)
    mjd = 60000.0 + np.arange(k, dtype=float)
    flux = 0.05 + rng.normal(0, 5e-4, k)
    dip = (mjd >= 60300) & (mjd < 60340)                    # a 40-day ESE dip to 70 %
    flux[dip] *= 0.7
    shuffled = rng.permutation(k)
    m, f, n = sparkline.summarise(mjd[None, shuffled], flux[None, shuffled], points=points)
    assert n[0] == points and np.isfinite(m[0]).all()
    assert np.all(np.diff(m[0]) > 0) and m[0, 0] < 60005 and m[0, -1] > 59999 + k - 5
    # each point is the mean of 8 or 9 consecutive epochs
    group = np.arange(k) * points // k
    assert set(np.bincount(group).tolist()) <= {8, 9}
    want = [(mjd[group == g].mean(), flux[group == g].mean()) for g in range(points)]
    assert np.allclose(m[0], [w[0] for w in want], rtol=0, atol=1e-9)
    assert np.allclose(f[0], [w[1] for w in want], rtol=1e-12)
    inside = (m[0] > 60305) & (m[0] < 60335)
    assert inside.sum() >= 3 and np.all(f[0, inside] < 0.036)
    assert np.all(np.abs(f[0, (m[0] < 60290) | (m[0] > 60350)] - 0.05) < 0.001)


def test_encoded_summaries_round_trip_and_an_empty_one_is_none():
    mjd = np.array([[60001.12345, 60002.0], [np.nan, np.nan]])
    flux = np.array([[0.0123456789, 0.02], [np.nan, np.nan]])
    text, empty = sparkline.encode_all(mjd, flux)
    assert empty is None and sparkline.decode(empty) is None
    m, f = sparkline.decode(text)
    assert m.tolist() == [60001.1234, 60002.0] or m.tolist() == [60001.1235, 60002.0]
    assert f.tolist() == [0.0123457, 0.02]
