"""Cutouts of an image around a sky position, with their own WCS and beam (no database).

:func:`cut` reads only the cutout's rows of the (memory-mapped) image plane; the cutout
keeps the source at its centre: pixels beyond the image edge are NaN. Its header is a
valid 2-D FITS celestial WCS (the parent's, shifted), with ``BUNIT`` Jy/beam, the beam
(``BMAJ``/``BMIN`` deg, ``BPA`` deg east of north), the epoch (``MJD-OBS``) and the
parent file (``ORIGFILE``), so :func:`fits_bytes` is a FITS cutout an astronomer can load
anywhere. Conventions as in :mod:`dsa110_contimg.science.image`: ``data[y, x]``, 0-based
pixels, row 0 at the bottom (FITS order).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from dsa110_contimg.core.errors import InvalidImage


@dataclass(frozen=True)
class Cutout:
    """A cutout of one image plane.

    Attributes
    ----------
    data : ndarray, float32, shape (n, n)
        Jy/beam; NaN outside the parent image.
    header : astropy.io.fits.Header
        2-D celestial WCS of the cutout and ``BUNIT``, ``BMAJ``/``BMIN``/``BPA``,
        ``MJD-OBS``, ``ORIGFILE`` when known.
    x, y : float
        The requested position in cutout pixels (0-based).
    beam_pix : tuple of float or None
        (major FWHM, minor FWHM) in pixels and the major axis's direction on the pixel
        grid (radians, counter-clockwise from +x); None when the image has no beam.
    north_rad : float
        Direction of north on the pixel grid (radians, counter-clockwise from +x).
    """

    data: np.ndarray
    header: fits.Header
    x: float
    y: float
    beam_pix: tuple[float, float, float] | None
    north_rad: float


def _direction(image, ra_deg: float, dec_deg: float, x0: float, y0: float, dra: float, ddec: float) -> float:
    x1, y1 = image.world_to_pixel(ra_deg + dra, dec_deg + ddec)
    return math.atan2(float(y1[0]) - y0, float(x1[0]) - x0)


def cut(image, ra_deg: float, dec_deg: float, half_width_deg: float) -> Cutout:
    """The cutout of ``image`` (a :class:`~dsa110_contimg.science.image.RadioImage`)
    centred on (``ra_deg``, ``dec_deg``), ICRS deg, ``2 * half_width_deg`` across (rounded
    to whole pixels, odd, so the position falls in the central pixel).

    Raises InvalidImage when the position does not project onto the image's sky or lies
    more than the half width outside it.
    """
    x, y = image.world_to_pixel(ra_deg, dec_deg)
    x, y = float(x[0]), float(y[0])
    ny, nx = image.shape
    half = max(2, int(math.ceil(half_width_deg * 3600.0 / image.pixel_scale_arcsec - 1e-6)))
    if not (math.isfinite(x) and math.isfinite(y)) or not (-half <= x < nx + half and -half <= y < ny + half):
        raise InvalidImage(f"RA {ra_deg:.5f}, Dec {dec_deg:+.5f} is outside the image", image.path)
    xc, yc = int(round(x)), int(round(y))
    x0, y0 = xc - half, yc - half
    size = 2 * half + 1
    data = np.full((size, size), np.nan, np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, nx), min(y0 + size, ny)
    if sx1 > sx0 and sy1 > sy0:
        data[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image.data[sy0:sy1, sx0:sx1]
    wcs = image.wcs.deepcopy()
    wcs.wcs.crpix = [wcs.wcs.crpix[0] - x0, wcs.wcs.crpix[1] - y0]
    header = wcs.to_header()
    header["BUNIT"] = ("Jy/beam", "flux density per beam")
    step = image.pixel_scale_arcsec / 3600.0
    cosd = max(math.cos(math.radians(dec_deg)), 1e-6)
    north = _direction(image, ra_deg, dec_deg, x, y, 0.0, step)
    beam = None
    if image.beam is not None:
        header["BMAJ"], header["BMIN"], header["BPA"] = (image.beam.major_deg, image.beam.minor_deg,
                                                         image.beam.pa_deg)
        east = _direction(image, ra_deg, dec_deg, x, y, step / cosd, 0.0)
        pa = math.radians(image.beam.pa_deg)   # east of north
        axis = math.atan2(math.cos(pa) * math.sin(north) + math.sin(pa) * math.sin(east),
                          math.cos(pa) * math.cos(north) + math.sin(pa) * math.cos(east))
        beam = (image.beam.major_arcsec / image.pixel_scale_arcsec,
                image.beam.minor_arcsec / image.pixel_scale_arcsec, axis)
    if image.mjd is not None:
        header["MJD-OBS"] = (float(image.mjd), "epoch of the parent image (MJD)")
    if image.path is not None:
        header["ORIGFILE"] = (image.path.name[-68:], "parent image")
    return Cutout(data=data, header=header, x=x - x0, y=y - y0, beam_pix=beam, north_rad=north)


def fits_bytes(cutout: Cutout) -> bytes:
    """The cutout as a FITS file (primary HDU, float32 Jy/beam, its WCS header)."""
    buf = io.BytesIO()
    fits.PrimaryHDU(cutout.data, header=cutout.header).writeto(buf)
    return buf.getvalue()


__all__ = ["Cutout", "cut", "fits_bytes"]
