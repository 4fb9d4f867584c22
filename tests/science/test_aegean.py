"""The optional ``aegean`` method: AegeanTools priorized fitting behind our columns."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from dsa110_contimg.core.errors import (
    ConfigError,
    MapMismatch,
    MethodUnavailable,
    MissingBeam,
    PhotometryError,
)
from dsa110_contimg.science.forced import measure_positions
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods import aegean as aegean_mod
from dsa110_contimg.science.noise import background_maps_for
from dsa110_contimg.science.results import CORE_COLUMNS, Flag
from dsa110_contimg.science.simulate import simulate_image, sky_wcs

SKIP_REASON = ("AegeanTools is not installed (optional extra: "
               "pip install 'dsa110-contimg-photometry[aegean]')")
needs_aegean = pytest.mark.skipif(not aegean_mod.aegean_available(), reason=SKIP_REASON)


# --- without the extra ----------------------------------------------------------------------
def test_missing_extra_is_a_clear_typed_error(monkeypatch):
    """With AegeanTools not importable, asking for 'aegean' says how to install it."""
    for name in [m for m in list(sys.modules) if m == "AegeanTools" or m.startswith("AegeanTools.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("AegeanTools", "AegeanTools.logging", "AegeanTools.models",
                 "AegeanTools.source_finder"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    sim = simulate_image((64, 64), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.01], seed=1)
    img = RadioImage.from_array(sim.data, sim.header)
    with pytest.raises(MethodUnavailable) as info:
        measure_positions(img, [150.0], [37.0], method="aegean")
    assert isinstance(info.value, PhotometryError)
    assert "pip install 'dsa110-contimg-photometry[aegean]'" in str(info.value)
    assert not aegean_mod.aegean_available()


@needs_aegean
def test_numpy_alias_shim_is_in_place():
    aegean_mod.load_aegean()
    # AegeanTools' fitting.py names np.linalg.linalg.LinAlgError (gone in numpy 2.4)
    assert np.linalg.linalg.LinAlgError is np.linalg.LinAlgError
    import AegeanTools.fitting  # noqa: F401  (imports cleanly after the shim)


# --- Aegean's half-pixel island offset ------------------------------------------------------
def test_island_offset_reproduces_aegean_geometry():
    labels = np.array([0, 1, 1, 2])
    pos = np.array([40.2, 60.7, 63.1, 2.0])
    width = np.array([7.0, 7.0, 7.0, 7.0])  # odd widths: corner x - 3.5 -> .5 fraction
    off = aegean_mod._island_offset(pos, width, labels)
    # isolated / grouped sources away from the edge get +0.5; the source whose box is
    # clipped at pixel 0 (corner max(0, 2.5 - 3.5) = 0) gets none
    assert off.tolist() == [0.5, 0.5, 0.5, 0.0]
    assert aegean_mod._island_offset(pos, np.full(4, 8.0), labels).tolist() == [0, 0, 0, 0]


# --- on a generated image (always runs when the extra is installed) ---------------------------
def _generated(tmp_path, naxis=4, bunit="Jy/beam"):
    shape = (160, 160)
    wcs = sky_wcs(150.0, 37.0, 3.0, shape)
    # six isolated sources (>= 8 beams apart), one at zero flux and one negative
    xs = np.array([30.3, 80.6, 130.1, 30.8, 80.2, 130.5])
    ys = np.array([30.4, 30.9, 30.2, 110.7, 110.1, 110.6])
    peaks = np.array([0.10, 0.03, 0.012, 0.0, -0.02, 0.05])
    ra, dec = wcs.wcs_pix2world(xs, ys, 0)
    sim = simulate_image(shape, ra_deg=ra, dec_deg=dec, peak_jyb=peaks, noise_rms=2e-3,
                         beam_arcsec=(15.0, 10.0, 30.0), background=(0.004, 0.002, 0.0),
                         naxis=naxis, bunit=bunit, seed=21)
    path = sim.write(tmp_path / f"gen{naxis}.fits")
    return path, ra, dec, peaks


@needs_aegean
@pytest.mark.parametrize("naxis,bunit", [(2, "Jy/beam"), (3, "mJy/beam"), (4, "Jy/beam")])
def test_generated_image_recovers_truth_in_our_columns(tmp_path, naxis, bunit):
    path, ra, dec, peaks = _generated(tmp_path, naxis, bunit)
    # input order with a blanked position, an off-image one and a NaN one mixed in
    img = RadioImage.open(path)
    blank_x, blank_y = 55, 70
    img.data[blank_y - 1:blank_y + 2, blank_x - 1:blank_x + 2] = np.nan
    bra, bdec = img.pixel_to_world(blank_x, blank_y)
    qra = np.r_[ra[:3], 150.5, ra[3:], float(bra), np.nan]
    qdec = np.r_[dec[:3], 37.0, dec[3:], float(bdec), 0.0]
    t = measure_positions(img, qra, qdec, method="aegean", maps="project")
    assert t.meta["method"] == "aegean"
    assert all(c in t.colnames for c in CORE_COLUMNS)
    np.testing.assert_array_equal(t["ra_deg"], qra)
    ok = np.r_[np.arange(3), np.arange(4, 7)]
    assert t["success"][ok].all()
    assert np.all(t["aegean_flags"][ok] == 68)   # PRIORIZED + FIXED2PSF
    # fluxes in Jy/beam whatever the BUNIT, within 3 sigma of the truth, incl. the
    # non-detection (kept, as --floodclip -1) and the negative source (as --negative)
    assert np.all(np.abs(t["peak_jyb"][ok] - peaks) < 3 * t["peak_err_jyb"][ok])
    assert t["peak_jyb"][ok][4] < -0.01
    np.testing.assert_allclose(np.median(t["local_rms_jyb"][ok]), 2e-3, rtol=0.3)
    # the failures: NaN, not 0, with a reason
    assert t["flags"][3] & Flag.OFF_IMAGE
    assert t["flags"][7] & Flag.BLANKED
    assert t["flags"][8] & Flag.BAD_POSITION
    for i in (3, 7, 8):
        assert not t["success"][i]
        assert np.isnan(t["peak_jyb"][i]) and np.isnan(t["peak_err_jyb"][i])


@needs_aegean
def test_half_pixel_correction_matters_and_agrees_with_forced(tmp_path):
    """Without the correction AegeanTools 2.3.5 fits the model half a pixel off and
    the bright fluxes come out several sigma low; with it Aegean and forced agree."""
    path, ra, dec, peaks = _generated(tmp_path, 4)
    img = RadioImage.open(path)
    maps = background_maps_for(img)
    good = np.array([0, 1, 5])  # the bright ones
    fixed = aegean_mod.measure(img, ra[good], dec[good], maps=maps)
    raw = aegean_mod.measure(img, ra[good], dec[good], maps=maps, correct_half_pixel=False)
    forced = measure_positions(img, ra[good], dec[good], method="forced")
    err = np.hypot(fixed["peak_err_jyb"], forced["peak_err_jyb"])
    assert np.all(np.abs(fixed["peak_jyb"] - forced["peak_jyb"]) < err)
    deficit = (fixed["peak_jyb"] - raw["peak_jyb"]) / fixed["peak_err_jyb"]
    assert deficit.max() > 3.0


@needs_aegean
def test_bane_maps_on_a_generated_image(tmp_path):
    path, ra, dec, peaks = _generated(tmp_path, 4)
    t = aegean_mod.measure(path, ra, dec)  # default: BANE in a subprocess
    assert t.meta["aegean_maps"] == "bane"
    assert t["success"].all()
    assert np.all(np.abs(t["peak_jyb"] - peaks) < 3.5 * t["peak_err_jyb"])


@needs_aegean
def test_option_and_input_errors(tmp_path):
    path, ra, dec, _ = _generated(tmp_path, 2)
    img = RadioImage.open(path)
    with pytest.raises(ConfigError):
        aegean_mod.measure(img, ra, dec, maps="selavy")
    with pytest.raises(ConfigError):
        aegean_mod.measure(img, ra, dec, maps="bane", rms_path=path)

    class Wrong:
        background = np.zeros((10, 10))
        rms = np.ones((10, 10))

    with pytest.raises(MapMismatch):
        aegean_mod.measure(img, ra, dec, maps=Wrong())
    sim = simulate_image((64, 64), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.01],
                         include_beam=False, naxis=2, seed=2)
    with pytest.raises(MissingBeam):
        aegean_mod.measure(RadioImage.from_array(sim.data, sim.header), [150.0], [37.0],
                           maps="project")


# --- against forced on Aegean's own synthetic test image (shared data) -----------------------
@needs_aegean
def test_aegean_and_forced_agree_on_aegean_synthetic_image(shared_data):
    image = shared_data / "synthetic" / "aegean_synthetic_test.fits"
    with open(shared_data / "synthetic" / "aegean_synthetic_test_truth.csv") as fh:
        rows = list(csv.DictReader(fh))
    others = [(float(r["x_pix0"]), float(r["y_pix0"])) for r in rows
              if not r["name"].startswith("grid")]
    grid = [r for r in rows if r["name"].startswith("grid") and r["inside_image"] == "1"
            and min(np.hypot(float(r["x_pix0"]) - x, float(r["y_pix0"]) - y)
                    for x, y in others) > 30]
    pick = grid[3::17][:6]  # a handful of isolated sources across the flux range
    ra = np.array([float(r["ra_deg"]) for r in pick])
    dec = np.array([float(r["dec_deg"]) for r in pick])
    truth = np.array([float(r["peak_flux"]) for r in pick])
    img = RadioImage.open(image)
    a = measure_positions(img, ra, dec, method="aegean")        # BANE maps
    f = measure_positions(img, ra, dec, method="forced")        # this project's maps
    assert a.n_success == f.n_success == len(pick)
    joint = np.hypot(a["peak_err_jyb"], f["peak_err_jyb"])
    assert np.all(np.abs(a["peak_jyb"] - f["peak_jyb"]) < 2 * joint), (a["peak_jyb"], f["peak_jyb"])
    assert np.all(np.abs(a["peak_jyb"] - truth) < 3 * a["peak_err_jyb"])
    # the pedestal (~0.25) was estimated and removed, not fitted as flux
    assert np.all(np.abs(a["background_jyb"] - 0.25) < 0.02)


@needs_aegean
def test_close_pair_is_fitted_jointly_and_flagged(tmp_path):
    """Two sources 1 beam apart: Aegean fits them together; both fluxes are recovered
    and flagged CLUSTERED (the forced meaning: neighbour closer than 1.5 BMAJ)."""
    shape = (128, 128)
    wcs = sky_wcs(150.0, 37.0, 3.0, shape)
    ra, dec = wcs.wcs_pix2world([60.2, 60.2, 100.0], [60.3, 65.3, 100.0], 0)  # 15" apart N-S
    peaks = [0.05, 0.03, 0.02]
    sim = simulate_image(shape, ra_deg=ra, dec_deg=dec, peak_jyb=peaks, noise_rms=1e-3,
                         beam_arcsec=(15.0, 15.0, 0.0), naxis=2, seed=4)
    img = RadioImage.from_array(sim.data, sim.header)
    t = aegean_mod.measure(img, ra, dec, maps="project")
    f = measure_positions(img, ra, dec, method="forced")  # forced fits the pair jointly too
    assert t["success"].all()
    assert np.all(np.abs(t["peak_jyb"] - f["peak_jyb"]) < np.hypot(t["peak_err_jyb"],
                                                                    f["peak_err_jyb"]))
    assert np.all(np.abs(t["peak_jyb"] - peaks) < 4 * t["peak_err_jyb"])
    assert t["cluster_id"][0] == t["cluster_id"][1] >= 0 and t["cluster_id"][2] == -1
    assert (t["flags"] & Flag.CLUSTERED).astype(bool).tolist() == [True, True, False]
