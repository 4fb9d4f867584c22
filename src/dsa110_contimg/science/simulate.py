"""Simulated DSA-110-like radio images with sources of known flux.

Used by the test-suite (injection-recovery), the benchmarks and the demo. The
generator is deliberately independent of the estimators in
:mod:`dsa110_contimg.science.forced`: sources are painted with their own
Gaussian code, and noise is white noise convolved with the restoring beam, so
it is correlated on the beam scale as in a real interferometric image.

Conventions
-----------
* Beam axes are FWHM in arcsec on input; the header gets BMAJ/BMIN in degrees
  and BPA in degrees east of north.
* Images are north up, east left (CDELT1 < 0), SIN projection by default.
* Pixel coordinates are 0-based, numpy order ``data[y, x]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def gaussian_profile(dx, dy, fwhm_major_pix, fwhm_minor_pix, bpa_deg):
    """Unit-peak elliptical Gaussian evaluated at pixel offsets.

    Parameters
    ----------
    dx, dy : array-like
        Offsets from the centre in pixels (x to the right = west for
        CDELT1 < 0, y up = north).
    fwhm_major_pix, fwhm_minor_pix : float
        Beam FWHM along the major and minor axes, in pixels.
    bpa_deg : float
        Position angle of the major axis, degrees east of north (counted
        from +y towards -x, i.e. towards east on a north-up, east-left image).
    """
    dx = np.asarray(dx, dtype=float)
    dy = np.asarray(dy, dtype=float)
    pa = np.deg2rad(bpa_deg)
    # unit vector of the major axis: north (+y) rotated towards east (-x)
    ux, uy = -np.sin(pa), np.cos(pa)
    along = dx * ux + dy * uy
    across = -dx * uy + dy * ux
    smaj = fwhm_major_pix * FWHM_TO_SIGMA
    smin = fwhm_minor_pix * FWHM_TO_SIGMA
    return np.exp(-0.5 * ((along / smaj) ** 2 + (across / smin) ** 2))


def sky_wcs(ra0_deg: float, dec0_deg: float, pixscale_arcsec: float, shape: tuple[int, int],
            projection: str = "SIN") -> WCS:
    """A north-up, east-left celestial WCS centred on (ra0, dec0) for a ``(ny, nx)`` image."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [ra0_deg % 360.0, dec0_deg]
    w.wcs.crpix = [nx / 2.0 + 1.0, ny / 2.0 + 1.0]  # FITS 1-based: centre of the image
    w.wcs.cdelt = [-pixscale_arcsec / 3600.0, pixscale_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "FK5"
    w.wcs.equinox = 2000.0
    return w


@dataclass
class SimulatedImage:
    """A simulated image and its truth.

    Attributes
    ----------
    data : ndarray
        2-D image, Jy/beam.
    header : astropy.io.fits.Header
        Header for the requested number of axes (2 or 4), with BMAJ/BMIN/BPA,
        DATE-OBS, MJD-OBS, frequency and BUNIT.
    wcs : astropy.wcs.WCS
        Celestial WCS.
    truth_ra_deg, truth_dec_deg, truth_peak_jyb : ndarray
        The injected sources.
    noise_rms : float
        The rms of the added noise, Jy/beam.
    """

    data: np.ndarray
    header: fits.Header
    wcs: WCS
    truth_ra_deg: np.ndarray
    truth_dec_deg: np.ndarray
    truth_peak_jyb: np.ndarray
    noise_rms: float
    extra: dict = field(default_factory=dict)

    def write(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the image as FITS (4-axis data are written as ``(1, 1, ny, nx)``)."""
        path = Path(path)
        naxis = self.header.get("NAXIS", 2)
        data = self.data.astype(np.float32)
        if naxis == 4:
            data = data[np.newaxis, np.newaxis]
        elif naxis == 3:
            data = data[np.newaxis]
        fits.PrimaryHDU(data=data, header=self.header).writeto(path, overwrite=overwrite)
        return path


def correlated_noise(shape, rms, fwhm_major_pix, fwhm_minor_pix, bpa_deg, rng):
    """White Gaussian noise convolved with the beam, rescaled to ``rms`` (Jy/beam)."""
    from scipy.signal import fftconvolve

    ny, nx = shape
    half = int(np.ceil(3 * fwhm_major_pix))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    kern = gaussian_profile(xx, yy, fwhm_major_pix, fwhm_minor_pix, bpa_deg)
    white = rng.standard_normal((ny + 2 * half, nx + 2 * half))
    smooth = fftconvolve(white, kern, mode="valid")
    # analytic rms of the convolution of unit white noise: sqrt(sum K^2)
    return smooth * (rms / np.sqrt(np.sum(kern ** 2)))


def paint_sources(data, x_pix, y_pix, peak, fwhm_major_pix, fwhm_minor_pix, bpa_deg,
                  half_width_beams: float = 5.0):
    """Add unit-peak beam-shaped sources scaled by ``peak`` into ``data`` in place."""
    ny, nx = data.shape
    half = int(np.ceil(half_width_beams * fwhm_major_pix))
    for x0, y0, s in zip(np.asarray(x_pix, float), np.asarray(y_pix, float), np.asarray(peak, float)):
        xc, yc = int(round(x0)), int(round(y0))
        x1, x2 = max(xc - half, 0), min(xc + half + 1, nx)
        y1, y2 = max(yc - half, 0), min(yc + half + 1, ny)
        if x1 >= x2 or y1 >= y2:
            continue
        yy, xx = np.mgrid[y1:y2, x1:x2]
        data[y1:y2, x1:x2] += s * gaussian_profile(xx - x0, yy - y0, fwhm_major_pix,
                                                   fwhm_minor_pix, bpa_deg)
    return data


def random_sky_positions(wcs: WCS, shape, n: int, rng, margin_pix: float = 20.0,
                         min_separation_pix: float = 0.0):
    """Uniform random positions inside the image, at least ``margin_pix`` from the edges.

    With ``min_separation_pix`` > 0, positions closer than that to an earlier
    one are redrawn (rejection sampling), so the sources are isolated.
    Returns ``(ra_deg, dec_deg, x_pix, y_pix)``.
    """
    ny, nx = shape
    xs: list[float] = []
    ys: list[float] = []
    tries = 0
    while len(xs) < n:
        tries += 1
        if tries > 200:
            raise ValueError(f"cannot place {n} sources {min_separation_pix} px apart in {shape}")
        need = n - len(xs)
        cx = rng.uniform(margin_pix, nx - 1 - margin_pix, size=4 * need)
        cy = rng.uniform(margin_pix, ny - 1 - margin_pix, size=4 * need)
        for x, y in zip(cx, cy):
            if min_separation_pix > 0 and xs:
                d2 = (np.asarray(xs) - x) ** 2 + (np.asarray(ys) - y) ** 2
                if d2.min() < min_separation_pix ** 2:
                    continue
            xs.append(x)
            ys.append(y)
            if len(xs) == n:
                break
    x = np.asarray(xs)
    y = np.asarray(ys)
    ra, dec = wcs.wcs_pix2world(x, y, 0)
    return ra % 360.0, dec, x, y


def simulate_image(
    shape: tuple[int, int] = (512, 512),
    *,
    ra0_deg: float = 150.0,
    dec0_deg: float = 37.0,
    pixscale_arcsec: float = 3.0,
    beam_arcsec: tuple[float, float, float] = (15.0, 10.0, 30.0),
    ra_deg=(),
    dec_deg=(),
    peak_jyb=(),
    noise_rms: float = 1e-3,
    correlated: bool = True,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    naxis: int = 4,
    mjd: float = 60676.25,
    freq_hz: float = 1.405e9,
    bunit: str = "Jy/beam",
    include_beam: bool = True,
    projection: str = "SIN",
    seed: int | None = 0,
    extra_header: dict | None = None,
) -> SimulatedImage:
    """Make an image with Gaussian sources at given sky positions.

    Parameters
    ----------
    shape : (ny, nx)
    ra0_deg, dec0_deg : float
        Image centre, degrees.
    pixscale_arcsec : float
        Pixel size, arcsec.
    beam_arcsec : (bmaj, bmin, bpa)
        Restoring beam FWHM (arcsec) and position angle (deg east of north).
    ra_deg, dec_deg, peak_jyb : array-like
        Sources to inject; peak flux density in Jy/beam.
    noise_rms : float
        Noise rms, Jy/beam (0 for a noiseless image).
    correlated : bool
        Convolve the noise with the beam (True) or leave it white.
    background : (b0, gx, gy)
        Background plane ``b0 + gx*(x - nx/2)/nx + gy*(y - ny/2)/ny``, Jy/beam.
    naxis : int
        2, 3 or 4 axes in the header (3/4 add degenerate FREQ [and STOKES]).
    mjd : float
        Observation epoch (MJD, written as MJD-OBS and DATE-OBS).
    bunit : str
        ``Jy/beam`` or ``mJy/beam`` (data are scaled accordingly).
    include_beam : bool
        Write BMAJ/BMIN/BPA (False mimics a DSA-110 mosaic header).
    """
    rng = np.random.default_rng(seed)
    wcs = sky_wcs(ra0_deg, dec0_deg, pixscale_arcsec, shape, projection)
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=float))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
    peak = np.atleast_1d(np.asarray(peak_jyb, dtype=float))
    bmaj, bmin, bpa = beam_arcsec
    data = _simulated_sky(shape, wcs, (bmaj / pixscale_arcsec, bmin / pixscale_arcsec, bpa),
                          ra, dec, peak, noise_rms, correlated, background, rng)
    header = _simulated_header(wcs, shape, naxis=naxis, freq_hz=freq_hz,
                               beam_arcsec=beam_arcsec if include_beam else None, bunit=bunit,
                               mjd=mjd, extra_header=extra_header)
    scale = 1000.0 if bunit.lower().startswith("mjy") else 1.0
    return SimulatedImage(data * scale, header, wcs, ra, dec, peak, noise_rms * scale)


def _simulated_sky(shape, wcs, beam_pix, ra, dec, peak, noise_rms, correlated, background,
                   rng) -> np.ndarray:
    """Noise, then the background plane, then the sources, Jy/beam (float64). ``beam_pix``
    is ``(FWHM major, FWHM minor, PA)`` in pixels and degrees east of north."""
    ny, nx = shape
    fmaj, fmin, bpa = beam_pix
    data = np.zeros(shape, dtype=np.float64)
    if noise_rms > 0:
        if correlated:
            data += correlated_noise(shape, noise_rms, fmaj, fmin, bpa, rng)
        else:
            data += rng.normal(0.0, noise_rms, size=shape)
    b0, gx, gy = background
    if b0 or gx or gy:
        yy, xx = np.mgrid[0:ny, 0:nx]
        data += b0 + gx * (xx - nx / 2) / nx + gy * (yy - ny / 2) / ny
    if ra.size:
        x, y = wcs.wcs_world2pix(ra, dec, 0)
        paint_sources(data, x, y, peak, fmaj, fmin, bpa)
    return data


def _simulated_header(wcs, shape, *, naxis, freq_hz, beam_arcsec, bunit, mjd,
                      extra_header) -> fits.Header:
    """The header of a simulated image: the WCS, degenerate FREQ (and STOKES) axes for
    ``naxis`` 3 (4), else RESTFRQ; the beam (deg) unless None; unit, epoch and marks."""
    ny, nx = shape
    header = wcs.to_header()
    header["NAXIS"] = naxis
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    if naxis >= 3:
        header["CTYPE3"] = "FREQ"
        header["CRVAL3"] = freq_hz
        header["CDELT3"] = 187.5e6
        header["CRPIX3"] = 1.0
        header["CUNIT3"] = "Hz"
    if naxis >= 4:
        header["CTYPE4"] = "STOKES"
        header["CRVAL4"] = 1.0
        header["CDELT4"] = 1.0
        header["CRPIX4"] = 1.0
    if naxis < 3:
        header["RESTFRQ"] = freq_hz
    if beam_arcsec is not None:
        bmaj, bmin, bpa = beam_arcsec
        header["BMAJ"] = bmaj / 3600.0
        header["BMIN"] = bmin / 3600.0
        header["BPA"] = bpa
    header["BUNIT"] = bunit
    header["BTYPE"] = "Intensity"
    header["TELESCOP"] = "DSA-110"
    header["OBJECT"] = "SIMULATED"
    header["MJD-OBS"] = mjd
    header["DATE-OBS"] = Time(mjd, format="mjd", scale="utc").isot
    header["SYNTH"] = True
    for k, v in (extra_header or {}).items():
        header[k] = v
    return header
