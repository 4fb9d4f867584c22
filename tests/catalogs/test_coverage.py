"""What a catalogue store covers: padded boxes of ingested files (across RA 0/360 and near the
poles) and cones of cached online regions."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.catalogs.coverage import Coverage, coverage_box


def test_coverage_box_holds_every_source_with_a_pad():
    rng = np.random.default_rng(1)
    ra = np.mod(rng.uniform(-4, 4, 2000), 360)          # across RA 0/360
    dec = rng.uniform(-10, 10, 2000)
    ra_lo, ra_hi, dec_min, dec_max = coverage_box(ra, dec)
    assert ra_hi > 360 and ra_lo > 350                  # an arc crossing 0, eastwards
    assert dec_min < dec.min() and dec_max > dec.max()
    assert dec.min() - dec_min <= 1.0                     # padded by at most 1 deg
    cov = Coverage([(ra_lo, ra_hi, dec_min, dec_max, None, None, None)])
    assert cov.contains(ra, dec).all()
    assert not cov.contains([180.0, 10.0], [0.0, 40.0]).any()


def test_cones_and_boxes_together():
    cov = Coverage([(10.0, 20.0, -5.0, 5.0, None, None, None),
                    (None, None, None, None, 200.0, 60.0, 2.0)])
    np.testing.assert_array_equal(cov.contains([15.0, 200.0, 200.0, 100.0], [0.0, 61.9, 62.1, 0.0]),
                                  [True, True, False, False])
    assert cov.reaches((23.0, 0.0, 6.0)) and not cov.reaches((40.0, 0.0, 6.0))
    assert cov.reaches((203.0, 60.0, 1.0))              # a cone reaching into the cached one
    assert not Coverage([]) and not Coverage([]).contains([1.0], [1.0]).any()
    # a record spanning the whole RA circle covers every RA in its Dec range
    full = Coverage([(0.0, 360.0, 80.0, 90.0, None, None, None)])
    assert full.contains(np.arange(0, 360, 10.0), np.full(36, 85.0)).all()
