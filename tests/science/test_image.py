"""The FITS image model: axes, WCS, beam, epoch, units and typed errors."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.core.errors import (
    CorruptImage, EmptyImage, InvalidImage, MissingBeam, NoCelestialWCS, TruncatedImage)
from dsa110_contimg.science.image import Beam, RadioImage, check_fits_complete
from dsa110_contimg.science.simulate import simulate_image


from packaged_images import AZP, FIRST, MAGPIS, NVAS  # noqa: F401


@pytest.fixture
def sim_file(tmp_path):
    sim = simulate_image((64, 80), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05], naxis=4)
    return sim, sim.write(tmp_path / "img.fits")


# --- axes ---------------------------------------------------------------------------
@pytest.mark.parametrize("naxis", [2, 3, 4])
def test_generated_axes_squeeze_to_same_plane(tmp_path, naxis):
    sim = simulate_image((40, 50), naxis=naxis, seed=3)
    img = RadioImage.open(sim.write(tmp_path / f"a{naxis}.fits"))
    assert img.shape == (40, 50)
    np.testing.assert_allclose(img.data, sim.data.astype(np.float32))
    assert img.n_planes == 1
    assert img.freq_hz == pytest.approx(1.405e9)
    assert img.mjd == pytest.approx(60676.25)
    assert img.beam == Beam(15 / 3600, 10 / 3600, 30.0)
    assert img.beam.major_arcsec == pytest.approx(15.0)
    assert img.pixel_scale_arcsec == pytest.approx(3.0, rel=1e-6)


def test_shared_axis_files_agree(shared_data):
    imgs = [RadioImage.open(shared_data / "axes" / f"aegean_small{s}.fits")
            for s in ("", "_3D", "_4D", "_5D")]
    for img in imgs:
        assert img.shape == (20, 20)
        assert img.beam.major_deg == pytest.approx(0.24, rel=1e-6)
        assert img.bunit.upper() == "JY/BEAM"
        np.testing.assert_array_equal(img.data, imgs[0].data)
        assert img.world_to_pixel(*img.center())[0] == pytest.approx(9.5, abs=1e-6)


def test_data_is_memory_mapped(sim_file):
    _, path = sim_file
    img = RadioImage.open(path)
    base = img.data
    while not isinstance(base, (np.memmap, mmap.mmap)) and getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, (np.memmap, mmap.mmap))


def test_cube_planes_and_frequencies(tmp_path):
    sim = simulate_image((30, 30), naxis=4, seed=1)
    cube = np.stack([sim.data * (i + 1) for i in range(4)]).astype(np.float32)
    hdr = sim.header.copy()
    hdr["NAXIS3"] = 4
    fits.PrimaryHDU(cube[None], hdr).writeto(tmp_path / "cube.fits")
    img = RadioImage.open(tmp_path / "cube.fits")
    assert img.n_planes == 4
    np.testing.assert_allclose(img.plane_freqs_hz, 1.405e9 + 187.5e6 * np.arange(4))
    np.testing.assert_allclose(img.plane(2), cube[2])
    np.testing.assert_allclose(img.data, cube[0])
    img3 = RadioImage.open(tmp_path / "cube.fits", plane=3)
    assert img3.freq_hz == pytest.approx(1.405e9 + 3 * 187.5e6)
    with pytest.raises(InvalidImage):
        RadioImage.open(tmp_path / "cube.fits", plane=4)


def test_mjy_per_beam_is_scaled():
    jy = simulate_image((32, 32), bunit="Jy/beam", seed=2)
    mjy = simulate_image((32, 32), bunit="mJy/beam", seed=2)
    a = RadioImage.from_array(jy.data, jy.header)
    b = RadioImage.from_array(mjy.data, mjy.header)
    np.testing.assert_allclose(b.data, a.data, rtol=1e-6, atol=1e-12)
    assert b.bunit == "mJy/beam"


def test_non_flux_unit_rejected():
    sim = simulate_image((16, 16), extra_header={"BUNIT": "K"})
    with pytest.raises(InvalidImage, match="BUNIT"):
        RadioImage.from_array(sim.data, sim.header)


# --- beam ---------------------------------------------------------------------------
def test_beam_from_history_line_and_mosaic_flag():
    sim = simulate_image((32, 32), include_beam=False)
    hdr = sim.header
    hdr["HISTORY"] = "AIPS   CLEAN BMAJ=  1.2500E-03 BMIN=  1.0000E-03 BPA=  45.00"
    img = RadioImage.from_array(sim.data, hdr)
    assert img.beam == Beam(1.25e-3, 1.0e-3, 45.0)
    assert img.beam_source == "history"
    # one mosaic rule (issue 10): a missing BMAJ is not a mosaic marker, NIMAGES is
    assert not img.is_mosaic
    hdr["NIMAGES"] = 4
    assert RadioImage.from_array(sim.data, hdr).is_mosaic


def test_caller_beam_only_when_header_has_none():
    caller = Beam.from_arcsec(20, 20, 0)
    with_beam = simulate_image((32, 32))
    img = RadioImage.from_array(with_beam.data, with_beam.header, beam=caller)
    assert img.beam.major_arcsec == pytest.approx(15.0) and img.beam_source == "header"
    without = simulate_image((32, 32), include_beam=False)
    img2 = RadioImage.from_array(without.data, without.header, beam=caller)
    assert img2.beam == caller and img2.beam_source == "caller"
    img3 = RadioImage.from_array(without.data, without.header)
    assert img3.beam is None
    with pytest.raises(MissingBeam, match="no restoring beam"):
        img3.require_beam()


def test_beam_in_degrees_never_arcsec_heuristic():
    sim = simulate_image((32, 32), include_beam=False, extra_header={"BMAJ": 3.0, "BMIN": 2.5,
                                                                     "BPA": 10.0})
    img = RadioImage.from_array(sim.data, sim.header)
    assert img.beam.major_deg == 3.0  # a 3-degree beam stays 3 degrees


def test_mosaic_header_nimages():
    sim = simulate_image((32, 32), extra_header={"NIMAGES": 7})
    assert RadioImage.from_array(sim.data, sim.header).is_mosaic
    sim2 = simulate_image((32, 32))
    assert not RadioImage.from_array(sim2.data, sim2.header).is_mosaic


# --- epoch --------------------------------------------------------------------------
def test_epoch_mjd_obs_then_date_obs_never_now():
    sim = simulate_image((16, 16), mjd=60000.5)
    hdr = sim.header
    assert RadioImage.from_array(sim.data, hdr).mjd == pytest.approx(60000.5)
    del hdr["MJD-OBS"]
    assert RadioImage.from_array(sim.data, hdr).mjd == pytest.approx(60000.5, abs=1e-6)
    del hdr["DATE-OBS"]
    hdr["DATE"] = "2026-01-01T00:00:00"  # processing time: must be ignored
    assert RadioImage.from_array(sim.data, hdr).mjd is None


# --- geometry -----------------------------------------------------------------------
def test_world_to_pixel_center_footprint():
    sim = simulate_image((100, 120), pixscale_arcsec=3.0, ra0_deg=359.99, dec0_deg=10.0)
    img = RadioImage.from_array(sim.data, sim.header)
    ra, dec = sim.wcs.wcs_pix2world([10.3, 60.0, np.nan], [20.7, 50.0, 3.0], 0)
    x, y = img.world_to_pixel(ra, dec)
    np.testing.assert_allclose(x[:2], [10.3, 60.0], atol=1e-6)
    np.testing.assert_allclose(y[:2], [20.7, 50.0], atol=1e-6)
    assert np.isnan(x[2]) and np.isnan(y[2])
    cra, cdec = img.center()
    assert abs(((cra - 359.99) + 180) % 360 - 180) < 3 / 3600 and abs(cdec - 10.0) < 3 / 3600
    half_diag = np.hypot(100, 120) / 2 * 3.0 / 3600
    assert img.footprint_radius_deg() == pytest.approx(half_diag, rel=0.02)


def test_blanked_fraction_and_all_nan():
    sim = simulate_image((20, 20))
    data = sim.data.copy()
    data[:5] = np.nan
    assert RadioImage.from_array(data, sim.header).blanked_fraction == pytest.approx(0.25)
    with pytest.raises(EmptyImage, match="NaN"):
        RadioImage.from_array(np.full((20, 20), np.nan), sim.header)


# --- typed errors on files --------------------------------------------------------
def test_check_fits_complete_and_truncation(sim_file, tmp_path):
    _, path = sim_file
    size = path.stat().st_size
    assert check_fits_complete(path) == size
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[: size - 3000])
    with pytest.raises(TruncatedImage, match="cut.fits.*header implies"):
        check_fits_complete(cut)
    with pytest.raises(TruncatedImage):
        RadioImage.open(cut)
    inside_header = tmp_path / "hdr.fits"
    inside_header.write_bytes(path.read_bytes()[:1000])
    with pytest.raises((TruncatedImage, CorruptImage)):
        RadioImage.open(inside_header)


def test_garbage_empty_and_header_only(tmp_path):
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(np.random.default_rng(0).bytes(5760))
    with pytest.raises(CorruptImage, match="garbage.fits.*not a FITS"):
        RadioImage.open(garbage)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(CorruptImage, match="empty"):
        RadioImage.open(empty)
    header_only = tmp_path / "hdronly.fits"
    fits.PrimaryHDU().writeto(header_only)
    with pytest.raises(CorruptImage, match="header-only"):
        RadioImage.open(header_only)
    import gzip
    gz = tmp_path / "img.fits.gz"
    gz.write_bytes(gzip.compress(b"SIMPLE  =" + b" " * 5751))
    with pytest.raises(CorruptImage, match="gzip"):
        RadioImage.open(gz)
    with pytest.raises(CorruptImage, match="does not exist"):
        RadioImage.open(tmp_path / "missing.fits")


def test_no_celestial_wcs(tmp_path):
    hdr = fits.Header()
    hdr["CTYPE1"] = "LINEAR"
    hdr["CTYPE2"] = "LINEAR"
    path = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.ones((10, 10), np.float32), hdr).writeto(path)
    with pytest.raises(NoCelestialWCS, match="nowcs.fits.*celestial"):
        RadioImage.open(path)
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((10, 10), np.float32)).writeto(plain)
    with pytest.raises(NoCelestialWCS):
        RadioImage.open(plain)


def test_all_nan_file(tmp_path):
    sim = simulate_image((16, 16), naxis=2)
    sim.data[:] = np.nan
    with pytest.raises(EmptyImage, match="nan.fits"):
        RadioImage.open(sim.write(tmp_path / "nan.fits"))


# --- real files from installed packages -----------------------------------------
def test_real_parkes_azp_map():
    img = RadioImage.open(AZP)
    assert img.shape == (192, 192)
    assert img.beam.major_deg == pytest.approx(0.24, rel=1e-6)
    assert 0.1 < img.blanked_fraction < 0.5  # blanked outside the survey area
    assert img.mjd is None
    # rotated WCS near the pole: the centre round-trips through world coordinates
    x, y = img.world_to_pixel(*img.center())
    assert x[0] == pytest.approx(95.5, abs=1e-6) and y[0] == pytest.approx(95.5, abs=1e-6)


def test_real_first_cutout_beam_and_old_date():
    img = RadioImage.open(FIRST)
    assert img.beam.major_arcsec == pytest.approx(5.4)
    assert img.beam_source == "header"
    assert img.mjd == pytest.approx(49094.0)  # DATE-OBS '19930417'
    assert img.freq_hz == pytest.approx(1.3649e9)


def test_real_nvas_without_bmaj_uses_history():
    img = RadioImage.open(NVAS)
    assert img.shape == (124, 114)
    assert img.beam_source == "history"
    assert img.beam.major_deg == pytest.approx(2.3752e-3)
    assert img.beam.pa_deg == pytest.approx(60.19)
    assert not img.is_mosaic  # a real VLA image without BMAJ is an image, not a mosaic (issue 10)
    assert img.mjd == pytest.approx(47918.0)


def test_real_galactic_magpis_icrs_round_trip():
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    img = RadioImage.open(MAGPIS)
    glon, glat = img.pixel_to_world(150.0, 120.0)
    c = SkyCoord(glon * u.deg, glat * u.deg, frame="galactic").icrs
    x, y = img.world_to_pixel(c.ra.deg, c.dec.deg)
    assert x[0] == pytest.approx(150.0, abs=1e-3) and y[0] == pytest.approx(120.0, abs=1e-3)
    ra0, dec0 = img.center()  # always ICRS RA/Dec, whatever the image frame
    x0, y0 = img.world_to_pixel(ra0, dec0)
    assert x0[0] == pytest.approx(149.5, abs=1e-3) and y0[0] == pytest.approx(149.5, abs=1e-3)


def test_dec_first_axis_order_gives_same_measurement():
    from dsa110_contimg.science.forced import measure_positions

    sim = simulate_image((100, 120), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05], naxis=2,
                         noise_rms=1e-4, beam_arcsec=(15, 9, 30))
    h = sim.header
    swapped = fits.Header()
    for k in ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT"):
        swapped[k + "1"], swapped[k + "2"] = h[k + "2"], h[k + "1"]
    for k in ("BMAJ", "BMIN", "BPA", "BUNIT", "RADESYS", "EQUINOX"):
        swapped[k] = h[k]
    a = measure_positions(RadioImage.from_array(sim.data.T.copy(), swapped), [150.0], [37.0])
    b = measure_positions(RadioImage.from_array(sim.data, h), [150.0], [37.0])
    assert a["peak_jyb"][0] == pytest.approx(b["peak_jyb"][0], rel=1e-9)
    assert a["peak_jyb"][0] == pytest.approx(0.05, abs=1e-3)


def test_as_image_caller_beam_does_not_modify_the_image():
    from dsa110_contimg.science.image import as_image

    sim = simulate_image((32, 32), include_beam=False)
    img = RadioImage.from_array(sim.data, sim.header)
    caller = Beam.from_arcsec(12, 10, 5)
    with_beam = as_image(img, beam=caller)
    assert with_beam.beam == caller and with_beam.beam_source == "caller"
    assert img.beam is None and with_beam.data is img.data
    assert as_image(with_beam, beam=Beam.from_arcsec(30, 30, 0)) is with_beam


def test_image_in_first_extension(tmp_path):
    sim = simulate_image((24, 30), naxis=2, seed=5)
    path = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sim.data.astype(np.float32), sim.header)]
                 ).writeto(path)
    assert check_fits_complete(path) == path.stat().st_size
    img = RadioImage.open(path)
    assert img.shape == (24, 30) and img.beam is not None
    np.testing.assert_allclose(img.data, sim.data.astype(np.float32))
