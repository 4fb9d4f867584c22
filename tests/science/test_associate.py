"""de Ruiter association: the radius against hand values, the miss rate of true pairs,
one-to-many resolution by the smallest r, duplicates, weighted-mean positions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.science.associate import (
    DE_RUITER_MAX, NEAREST_SOURCES, associate, candidate_pairs, catalogue_position_error_arcsec,
    de_ruiter, update_weighted_positions)


def test_de_ruiter_matches_the_formula_by_hand():
    # 3" east at Dec 60 (RA offset 6"), 4" north; errors 1" and 2" -> sqrt(9/5 + 16/5)
    dec = 60.0
    r = de_ruiter(10.0, dec, 1.0, 1.0, 10.0 + 6.0 / 3600, dec + 4.0 / 3600, 2.0, 2.0)
    cosd = np.cos(np.radians(dec + 2.0 / 3600))
    assert np.isclose(r, np.sqrt((6 * cosd) ** 2 / 5 + 16 / 5), rtol=1e-6)
    # across RA = 0
    assert np.isclose(de_ruiter(359.9999, 0.0, 1, 1, 0.0001, 0.0, 1, 1),
                      0.72 / np.sqrt(2), rtol=1e-3)


def test_true_pairs_are_kept_and_far_ones_refused():
    rng = np.random.default_rng(1)
    n = 20000                    # on a 1-arcmin grid: no confusion between sources
    ra = 10 + (np.arange(n) % 200) / 60.0
    dec = -5 + (np.arange(n) // 200) / 60.0
    err = rng.uniform(0.5, 3.0, n)
    det_ra = ra + rng.normal(0, np.hypot(err, 1.0)) / 3600 / np.cos(np.radians(dec))
    det_dec = dec + rng.normal(0, np.hypot(err, 1.0)) / 3600
    a = associate(det_ra, det_dec, err, err, ra, dec, np.ones(n), np.ones(n), beam_major_arcsec=40)
    assert np.all(a.source == np.arange(n))
    r = a.r[a.source >= 0]
    # Rayleigh: P(r > 2) = exp(-2)
    assert abs(np.mean(r > 2) - np.exp(-2)) < 0.01
    far = associate(ra + 30 / 3600, dec, np.ones(n), np.ones(n), ra, dec, np.ones(n), np.ones(n),
                    beam_major_arcsec=40)
    assert np.all(far.source == -1)


def test_one_to_many_keeps_the_smallest_r_and_records_duplicates():
    src_ra, src_dec = np.array([10.0, 10.0 + 4 / 3600]), np.array([0.0, 0.0])
    # two detections near source 0 (1" and 2"), one between both sources
    det_ra = np.array([10.0 + 1 / 3600, 10.0 - 2 / 3600, 10.0 + 2.2 / 3600])
    det_dec = np.zeros(3)
    e = np.ones(3)
    a = associate(det_ra, det_dec, e, e, src_ra, src_dec, np.ones(2), np.ones(2),
                  beam_major_arcsec=20)
    assert a.source.tolist() == [0, -1, 1]
    assert a.duplicate_of.tolist() == [-1, 0, -1]
    assert a.n_candidates.tolist() == [2, 2, 2]
    assert np.all(a.r[[0, 2]] <= DE_RUITER_MAX)


def test_precut_limits_the_search():
    # a huge error would allow r <= 5.68 at 30", but the pre-cut is 1.5 x 10"/2 = 7.5"
    a = associate([10.0 + 30 / 3600], [0.0], [30.0], [30.0], [10.0], [0.0], [1.0], [1.0],
                  beam_major_arcsec=10.0)
    assert a.source[0] == -1
    b = associate([10.0 + 30 / 3600], [0.0], [30.0], [30.0], [10.0], [0.0], [1.0], [1.0],
                  beam_major_arcsec=50.0)
    assert b.source[0] == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(-3, 3), st.floats(0.3, 3)), min_size=1,
                max_size=12))
def test_running_weighted_mean_equals_the_batch_mean(points):
    ra0, dec0 = 359.9995, 45.0
    cosd = np.cos(np.radians(dec0))
    ra, dec, wra, wdec = np.array([np.nan]), np.array([np.nan]), np.zeros(1), np.zeros(1)
    for dx, dy, e in points:
        ra, dec, wra, wdec = update_weighted_positions(
            ra, dec, wra, wdec, [(ra0 + dx / 3600 / cosd) % 360], [dec0 + dy / 3600], [e], [e])
    w = np.array([1 / p[2] ** 2 for p in points])
    mx = np.sum(w * [p[0] for p in points]) / w.sum()
    my = np.sum(w * [p[1] for p in points]) / w.sum()
    east = ((ra[0] - ra0 + 180) % 360 - 180) * cosd * 3600
    assert abs(east - mx) < 1e-3 and abs((dec[0] - dec0) * 3600 - my) < 1e-6
    assert np.isclose(wra[0], w.sum()) and np.isclose(1 / np.sqrt(wdec[0]), 1 / np.sqrt(w.sum()))


def test_catalogue_position_errors_shrink_with_flux_to_the_systematic():
    e = catalogue_position_error_arcsec("nvss", [1.0, 45.0, 5000.0])
    assert e[0] > e[1] > e[2] > 0.99
    assert np.isclose(e[0], np.hypot(4.5, 1.0))          # SNR floored at 5: 45"/10
    assert np.allclose(catalogue_position_error_arcsec("monitor", [1.0, np.nan]), 1.0)


def test_candidate_pairs_are_every_pair_within_the_radius_sparse_or_crowded():
    """The nearest-neighbour search and its fall-back (a detection with NEAREST_SOURCES
    sources or more inside the radius) both list exactly the pairs a brute force finds."""
    from dsa110_contimg.core.geometry import angular_separation_deg

    rng = np.random.default_rng(4)
    for spread_deg, crowded in ((0.5, False), (0.01, True)):
        src_ra, src_dec = 359.99 + rng.uniform(-spread_deg, spread_deg, (2, 200))
        src_ra, src_dec = src_ra % 360.0, src_dec - 359.99 + 30.0
        det_ra = (src_ra[:150] + rng.normal(0, 3e-3, 150)) % 360.0
        det_dec = src_dec[:150] + rng.normal(0, 3e-3, 150)
        det_ra[0] = np.nan                                  # never paired
        d, s = candidate_pairs(det_ra, det_dec, src_ra, src_dec, 20.0)
        sep = angular_separation_deg(det_ra[:, None], det_dec[:, None], src_ra[None, :],
                                     src_dec[None, :]) * 3600
        truth = set(zip(*np.nonzero(sep <= 20.0)))
        assert set(zip(d.tolist(), s.tolist())) == truth and len(d) == len(truth)
        assert (np.bincount(d, minlength=150).max() >= NEAREST_SOURCES) == crowded
