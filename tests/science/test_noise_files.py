"""Background and noise maps from FITS files: BANE-style companions beside the image, explicit
paths, mJy/beam and zero-noise conventions, shape checks, and lazy (memory-mapped) reading."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.core.errors import MapMismatch
from dsa110_contimg.science.forced import measure_positions
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods import aegean as aegean_mod
from dsa110_contimg.science.noise import background_maps_for
from dsa110_contimg.science.noise_files import FileMap, companion_map_paths
from dsa110_contimg.science.simulate import simulate_image
from tracing import traced_peak


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


def test_maps_from_disk_are_memory_mapped_and_read_only_where_used(tmp_path):
    # BANE-style _bkg/_rms files beside the image: read lazily (a memory map), in mJy/beam
    # with zeros for "unknown"; the values equal a full read, and measuring touches only
    # the cutouts (far less memory than one map)
    sim = simulate_image((2048, 2048), pixscale_arcsec=3.0, beam_arcsec=(15, 15, 0), naxis=4,
                         ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05], noise_rms=1e-3)
    path = tmp_path / "img.fits"
    sim.write(path)
    rng = np.random.default_rng(3)
    bkg_mjy = (0.2 + 0.01 * rng.normal(size=(2048, 2048))).astype(np.float32)
    rms_mjy = np.full((2048, 2048), 1.0, np.float32)
    rms_mjy[:8] = 0.0
    comp = companion_map_paths(path)
    fits.PrimaryHDU(bkg_mjy[None, None], fits.Header({"BUNIT": "mJy/beam"})).writeto(comp["bkg"])
    fits.PrimaryHDU(rms_mjy, fits.Header({"BUNIT": "mJy/beam"})).writeto(comp["rms"])
    img = RadioImage.open(path)
    maps = background_maps_for(img)
    assert maps.source == "files" and isinstance(maps.rms, FileMap)
    full_b, full_r = np.asarray(maps.background), np.asarray(maps.rms)
    assert full_b.dtype == np.float32 and full_b.flags.writeable
    np.testing.assert_allclose(full_b, bkg_mjy * 1e-3, rtol=1e-6)
    assert np.isnan(full_r[:8]).all() and np.allclose(full_r[8:], 1e-3)
    yi, xi = rng.integers(0, 2048, 300), rng.integers(0, 2048, 300)
    np.testing.assert_array_equal(maps.background[yi, xi], full_b[yi, xi])
    np.testing.assert_array_equal(maps.background.take_flat(yi * 2048 + xi), full_b[yi, xi])
    np.testing.assert_array_equal(maps.rms[100:110, 5:9], full_r[100:110, 5:9])
    assert np.isnan(maps.rms_at([3.0], [2.0])[0])
    measure_positions(img, [150.0], [37.0])          # warm-up: lazy imports, cached factor
    img2 = RadioImage.open(path)
    t, peak = traced_peak(lambda: measure_positions(img2, [150.0], [37.0]))
    assert t.meta["noise_source"] == "files"
    assert t["bkg_jyb"][0] == pytest.approx(2e-4, abs=5e-5)
    assert t["peak_jyb"][0] == pytest.approx(0.05 - 2e-4, abs=5 * t["peak_err_jyb"][0])
    assert peak < 0.25 * bkg_mjy.nbytes, f"peak {peak / 1e6:.1f} MB for a 16.8 MB map"


@pytest.mark.skipif(not aegean_mod.aegean_available(),
                    reason="AegeanTools not installed (the [aegean] extra)")
def test_bane_maps_beside_the_shared_image_are_read_lazily_and_used(shared_data, tmp_path):
    # as a user would: BANE writes <stem>_bkg.fits / <stem>_rms.fits beside the image, and
    # measuring picks them up (memory-mapped) and recovers the known peaks
    import csv
    import shutil

    path = tmp_path / "aegean_synthetic_test.fits"
    shutil.copy(shared_data / "synthetic" / "aegean_synthetic_test.fits", path)
    aegean_mod.run_bane(path, tmp_path / "aegean_synthetic_test")
    with open(shared_data / "synthetic" / "aegean_synthetic_test_truth.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["inside_image"].lower() in ("true", "1")]
    ra, dec, peak = (np.array([float(r[k]) for r in rows]) for k in ("ra_deg", "dec_deg", "peak_flux"))
    img = RadioImage.open(path)
    assert isinstance(background_maps_for(img).rms, FileMap)
    files = measure_positions(img, ra, dec)
    est = measure_positions(RadioImage.open(path), ra, dec, autoload_maps=False)
    assert files.meta["noise_source"] == "files" and est.meta["noise_source"] == "estimated"
    ok = files["success"] & est["success"] & (peak > 1.0)
    assert ok.sum() > 50
    assert np.median(files["peak_jyb"][ok] / peak[ok]) == pytest.approx(1.0, abs=0.01)
    assert np.median(files["bkg_jyb"][ok]) == pytest.approx(0.25, rel=0.02)
    assert np.median(files["peak_err_jyb"][ok] / est["peak_err_jyb"][ok]) == pytest.approx(1.0, abs=0.1)
