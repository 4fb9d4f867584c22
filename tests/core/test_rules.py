"""The one home of each domain rule (core.enums, core.geometry, core.clipping)."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.stats import sigma_clip

from dsa110_contimg.core import clipping, enums, geometry
from dsa110_contimg.core.errors import UnknownCatalog


def test_confidence_levels_cover_nan_and_thresholds():
    conf = enums.confidence_level([10.0, 7.0, 6.99, 4.0, 3.9, 0.0, np.nan])
    assert conf.tolist() == ["high", "high", "medium", "medium", "low", "low", "none"]


def test_canonical_survey_aliases_and_error():
    assert enums.canonical_survey(" RACS ") == "rax"
    assert enums.canonical_survey("NVSS") == "nvss"
    with pytest.raises(UnknownCatalog, match="expected one of nvss, first, rax, vlass, master"):
        enums.canonical_survey("sumss")


def test_mosaic_rule_is_the_header_keyword_only():
    assert enums.header_is_mosaic({"NIMAGES": 12})
    assert not enums.header_is_mosaic({"BMAJ": 0.01})
    assert not enums.header_is_mosaic({})          # a missing beam is not a mosaic marker


def test_consumers_share_the_lists():
    from dsa110_contimg.science import ese, forced
    from dsa110_contimg.store import catalogs

    assert forced.METHODS is enums.METHODS
    assert catalogs.SURVEYS is enums.SURVEYS
    assert set(ese.PRESETS) == set(enums.ESE_PRESETS)
    assert ese.PRESETS["moderate"].sigma_deviation == enums.ESE_PRESET_THRESHOLDS["moderate"][0]


def test_separation_matches_astropy_at_all_scales():
    rng = np.random.default_rng(3)
    ra1, ra2 = rng.uniform(0, 360, (2, 500))
    dec1, dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, (2, 500))))
    # add near-coincident and near-antipodal pairs
    ra2[:100], dec2[:100] = ra1[:100] + 1e-6, dec1[:100]
    ra2[100:150], dec2[100:150] = (ra1[100:150] + 180.0) % 360.0, -dec1[100:150] + 1e-7
    want = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg)).deg
    np.testing.assert_allclose(geometry.angular_separation_deg(ra1, dec1, ra2, dec2), want,
                               rtol=1e-9, atol=1e-12)


def test_unit_vectors_and_chords_agree_with_separation():
    ra, dec = np.array([10.0, 10.5]), np.array([-30.0, -29.7])
    xyz = geometry.unit_vectors(ra, dec)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), 1.0, rtol=1e-12)
    sep = float(geometry.angular_separation_deg(ra[0], dec[0], ra[1], dec[1]))
    chord = float(np.linalg.norm(xyz[0] - xyz[1]))
    assert float(geometry.chord_of_angle(sep)) == pytest.approx(chord, rel=1e-10)
    assert float(geometry.angle_of_chord(chord)) == pytest.approx(sep, rel=1e-10)
    np.testing.assert_allclose(SkyCoord(ra * u.deg, dec * u.deg).cartesian.xyz.value.T, xyz,
                               atol=1e-12)


def test_clipped_std_equals_astropy_sigma_clip():
    rng = np.random.default_rng(5)
    v = rng.normal(0.0, 2e-3, 50_000)
    v[:300] += rng.uniform(0.02, 1.0, 300)            # sources
    ref = sigma_clip(v, sigma=3, maxiters=5, cenfunc="median", stdfunc="std", masked=False,
                     axis=None)
    assert clipping.clipped_std(v, sigma=3, maxiters=5) == pytest.approx(float(np.std(ref)),
                                                                         rel=1e-9)
    assert np.isnan(clipping.clipped_std([]))


def test_mad_clip_rejects_outliers_and_zero_scale_keeps_the_median():
    x = np.r_[np.linspace(-1, 1, 41), 50.0, -40.0]
    keep = clipping.mad_clip(x, 3.0)
    assert not keep[-1] and not keep[-2] and keep[:41].all()
    same = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    assert clipping.mad_clip(same, 3.0).tolist() == [True, True, True, True, False]
    assert clipping.mad_sigma([1.0, 2.0, 3.0, np.nan]) == pytest.approx(1.4826)


def test_truncated_normal_variance_matches_sampling():
    rng = np.random.default_rng(7)
    z = rng.normal(size=2_000_000)
    assert clipping.truncated_normal_variance(2.0) == pytest.approx(np.var(z[np.abs(z) <= 2.0]),
                                                                    rel=5e-3)


def test_fits_name_rule_is_shared():
    from dsa110_contimg.service import classify, intake, watcher

    assert watcher.is_fits_name is enums.is_fits_name and intake.is_fits_name is enums.is_fits_name
    assert enums.is_fits_name(b"/a/\xff.FTS") and not enums.is_fits_name("/a/x.fits.part")
    assert classify.classify_name("/a/x.fit").reason != "not a FITS file name"
    assert classify.classify_name("/a/x.txt").reason == "not a FITS file name"
