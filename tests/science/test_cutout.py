"""Cutouts: the source at the centre, a WCS that maps the cutout back onto the sky, the
beam's direction on the pixel grid as the image has it, NaN beyond the image's edge."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_contimg.core.errors import InvalidImage
from dsa110_contimg.science.cutout import cut, fits_bytes
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.simulate import simulate_image, sky_wcs


def _image(tmp_path, ra, dec, *, pa=30.0, dec0=37.0):
    sim = simulate_image((200, 200), ra0_deg=150.0, dec0_deg=dec0, pixscale_arcsec=3.0, beam_arcsec=(24.0, 8.0, pa),
                         ra_deg=[ra], dec_deg=[dec], peak_jyb=[0.5], noise_rms=1e-4, seed=1, mjd=60100.5)
    path = tmp_path / f"img{pa:g}.fits"
    sim.write(path)
    return RadioImage.open(path)


def _moment_angle(data: np.ndarray) -> float:
    """Direction (radians, counter-clockwise from +x) of the major axis of the bright part."""
    w = np.where(np.isfinite(data) & (data > 0.3 * np.nanmax(data)), data, 0.0)
    y, x = np.mgrid[:data.shape[0], :data.shape[1]]
    mx, my = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    cxx, cyy, cxy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    return 0.5 * math.atan2(2 * cxy, cxx - cyy)


@pytest.mark.parametrize("pa", [0.0, 30.0, 75.0, 120.0])
def test_the_source_is_at_the_centre_and_the_beam_points_as_in_the_image(tmp_path, pa):
    ra, dec = 150.01, 37.005
    with _image(tmp_path, ra, dec, pa=pa) as image:
        c = cut(image, ra, dec, 60.0 / 3600)
    assert c.data.shape == (41, 41) and c.data.dtype == np.float32
    peak = np.unravel_index(np.nanargmax(c.data), c.data.shape)
    assert abs(peak[1] - c.x) <= 1 and abs(peak[0] - c.y) <= 1 and abs(c.x - 20) <= 0.5
    back = WCS(c.header).celestial.wcs_pix2world([[c.x, c.y]], 0)[0]
    assert back[0] == pytest.approx(ra, abs=1e-7) and back[1] == pytest.approx(dec, abs=1e-7)
    major, minor, axis = c.beam_pix
    assert (major, minor) == pytest.approx((8.0, 8.0 / 3))
    # the drawn beam's axis is the source's elongation (mod 180 deg)
    diff = (axis - _moment_angle(c.data) + math.pi / 2) % math.pi - math.pi / 2
    assert abs(math.degrees(diff)) < 3.0
    assert c.north_rad == pytest.approx(math.pi / 2, abs=0.01)     # the simulated grid: north up
    hdu = fits.open(io.BytesIO(fits_bytes(c)))[0]
    assert hdu.header["BUNIT"] == "Jy/beam" and hdu.header["BMAJ"] == pytest.approx(24.0 / 3600)
    assert hdu.header["MJD-OBS"] == 60100.5 and np.array_equal(hdu.data, c.data, equal_nan=True)


def test_beyond_the_edge_is_blank_and_outside_is_refused(tmp_path):
    with _image(tmp_path, 150.01, 37.0) as image:
        wcs = sky_wcs(150.0, 37.0, 3.0, (200, 200))
        ra, dec = wcs.celestial.wcs_pix2world([[2.0, 100.0]], 0)[0]       # 2 px from the left edge
        c = cut(image, ra, dec, 30.0 / 3600)
        assert abs(c.x - 10) <= 0.5 and np.isnan(c.data[:, :8]).all() and np.isfinite(c.data[:, 9:]).all()
        with pytest.raises(InvalidImage, match="outside the image"):
            cut(image, 152.0, 37.0, 30.0 / 3600)
