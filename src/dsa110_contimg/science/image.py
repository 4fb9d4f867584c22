"""The FITS image model used by every measurement method.

:class:`RadioImage` opens a 2- to 5-axis radio image, squeezes it to a 2-D
plane in Jy/beam (memory-mapped when the file allows it), and exposes the
celestial WCS, the restoring beam, the observation epoch (MJD), the frequency
and a few geometric helpers.

Conventions
-----------
* Pixel coordinates are 0-based; numpy order is ``data[y, x]`` where ``x``
  runs along the first celestial axis of the file (RA).
* Beam axes are FWHM; FITS ``BMAJ``/``BMIN`` are **degrees** (never the
  "> 2 means arcsec" heuristic), ``BPA`` is degrees **east of north**.
* Data are returned in Jy/beam: ``mJy/beam`` and ``uJy/beam`` are scaled.
* The epoch is ``MJD-OBS``, else ``DATE-OBS``; never the processing time.

Sanity ranges (a header outside them raises :class:`ImplausibleHeader`, so science
code never sees absurd values): unparsable values (``NaN``) of the geometry, beam,
epoch and scaling keywords; beam axes ``0 < BMIN <= BMAJ <= MAX_BEAM_DEG`` and at
most ``MAX_BEAM_PIXELS`` pixels; pixel scales within
``[MIN_PIXEL_DEG, MAX_PIXEL_DEG]`` and at most ``MAX_PIXEL_ASPECT`` apart; epochs
within ``[MIN_MJD, MAX_MJD]``. Integer images with ``BLANK``/``BSCALE``/``BZERO``
are read without memory mapping (blanked pixels become NaN).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from dsa110_contimg.core.enums import header_is_mosaic
from dsa110_contimg.core.geometry import angular_separation_deg
from dsa110_contimg.core.errors import (
    CorruptImage,
    EmptyImage,
    ImplausibleHeader,
    InvalidImage,
    MissingBeam,
    NoCelestialWCS,
)
from dsa110_contimg.science.fitsfile import check_fits_complete

#: Largest physically possible restoring-beam FWHM (deg); merely implausible beams are QC failures.
MAX_BEAM_DEG = 180.0
#: Largest plausible beam FWHM in pixels (more would make every box and kernel absurd).
MAX_BEAM_PIXELS = 1e5
#: Plausible pixel scales (deg): 0.36 milliarcsec .. 10 deg.
MIN_PIXEL_DEG, MAX_PIXEL_DEG = 1e-7, 10.0
#: Largest ratio of the two celestial pixel scales.
MAX_PIXEL_ASPECT = 100.0
#: Plausible observation epochs (MJD): 1900-01-01 .. 2132-09-01.
MIN_MJD, MAX_MJD = 15020.0, 100000.0
#: Keywords whose values must parse (the image geometry, beam, epoch and data scaling).
_CHECKED_KEYS = ("BMAJ", "BMIN", "BPA", "MJD-OBS", "DATE-OBS", "BSCALE", "BZERO", "BLANK",
                 "CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2",
                 "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CROTA2", "NAXIS1", "NAXIS2")

#: HISTORY beam records written by AIPS and CASA, e.g.
#: ``AIPS   CLEAN BMAJ=  1.2500E-03 BMIN=  1.0000E-03 BPA=  45.00`` (degrees).
_HISTORY_BEAM = re.compile(
    r"BMAJ\s*=\s*([-+0-9.EeDd]+)\s+BMIN\s*=\s*([-+0-9.EeDd]+)\s+BPA\s*=\s*([-+0-9.EeDd]+)")

_FREQ_CTYPES = ("FREQ", "VRAD", "VOPT", "FELO", "VELO", "WAVE", "ENER")
_FREQ_UNITS = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}


@dataclass(frozen=True)
class Beam:
    """Restoring beam (elliptical Gaussian).

    Attributes
    ----------
    major_deg, minor_deg : float
        FWHM of the major and minor axes, degrees.
    pa_deg : float
        Position angle of the major axis, degrees east of north.
    """

    major_deg: float
    minor_deg: float
    pa_deg: float

    def __post_init__(self):
        for name in ("major_deg", "minor_deg", "pa_deg"):
            v = getattr(self, name)
            if not np.isfinite(v):
                raise ValueError(f"Beam.{name} must be finite, got {v!r}")
        if not (self.major_deg > 0 and self.minor_deg > 0):
            raise ValueError(f"Beam axes must be > 0 deg, got {self.major_deg!r}, {self.minor_deg!r}")

    @classmethod
    def from_arcsec(cls, major_arcsec: float, minor_arcsec: float, pa_deg: float) -> "Beam":
        """Build a beam from FWHM axes in arcsec and a PA in degrees east of north."""
        return cls(major_arcsec / 3600.0, minor_arcsec / 3600.0, pa_deg)

    @property
    def major_arcsec(self) -> float:
        """Major-axis FWHM, arcsec."""
        return self.major_deg * 3600.0

    @property
    def minor_arcsec(self) -> float:
        """Minor-axis FWHM, arcsec."""
        return self.minor_deg * 3600.0

    def as_tuple(self) -> tuple[float, float, float]:
        """``(major_deg, minor_deg, pa_deg)``."""
        return (self.major_deg, self.minor_deg, self.pa_deg)


# --------------------------------------------------------------------------------------
# completeness check (cheap: reads headers only; the bounded parser lives in service.intake)
# --------------------------------------------------------------------------------------



# --------------------------------------------------------------------------------------
# header helpers
# --------------------------------------------------------------------------------------
def _parse_date_obs(value) -> float | None:
    """DATE-OBS (ISO, ``YYYYMMDD`` or old ``DD/MM/YY``) -> MJD (UTC), None if unusable."""
    from astropy.time import Time

    if value is None:
        return None
    s = str(value).strip()
    if not s:
        return None
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{2})", s)  # pre-2000 FITS form DD/MM/YY
    if m:
        s = f"19{m.group(3)}-{m.group(2)}-{m.group(1)}"
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
    if m:
        s = f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
    try:
        return float(Time(s, scale="utc").mjd)
    except (ValueError, TypeError):
        return None


def _sanitised_header(header: fits.Header, label, *, copy: bool = True) -> fits.Header:
    """A copy of ``header`` whose cards all parse (``header`` itself when ``copy`` is False
    and every card parses: a header nothing else holds).

    An unparsable value (e.g. ``BMAJ = NaN``, which astropy refuses with a
    ``VerifyError``) of a geometry, beam, epoch or scaling keyword raises
    :class:`ImplausibleHeader` naming it; other unparsable cards are dropped.
    """
    bad = []
    with warnings.catch_warnings():     # once for the whole header: entering it costs ~0.1 ms
        warnings.simplefilter("ignore")
        for i, card in enumerate(header.cards):
            raw = getattr(card, "_image", None) or ""
            try:
                value = card.value
            except Exception:  # astropy VerifyError / ValueError for unparsable values
                bad.append(i)
                key = str(card.keyword).upper()
                if key in _CHECKED_KEYS:
                    text = raw[10:].split("/")[0].strip() if len(raw) > 10 else "?"
                    raise ImplausibleHeader(f"header keyword {key} has an unparsable value "
                                            f"{text!r}", label) from None
                continue
            key = str(card.keyword).upper()
            if key in _CHECKED_KEYS and isinstance(value, float) and not math.isfinite(value):
                raise ImplausibleHeader(f"header keyword {key} is not finite ({value!r})", label)
    if not bad and not copy:
        return header
    out = header.copy()
    for i in reversed(bad):
        del out[i]
    return out


def _beam_from_header(header: fits.Header, label=None) -> Beam | None:
    """BMAJ/BMIN/BPA (degrees) or, failing that, the last AIPS/CASA HISTORY beam line.

    Raises :class:`ImplausibleHeader` for a header beam outside
    ``0 < BMIN <= BMAJ <= MAX_BEAM_DEG`` or with a non-finite position angle.
    """
    bmaj, bmin = header.get("BMAJ"), header.get("BMIN")
    if bmaj is not None and bmin is not None:
        try:
            bmaj, bmin = float(bmaj), float(bmin)
            bpa = float(header.get("BPA", 0.0) or 0.0)
        except (TypeError, ValueError):
            bmaj = bmin = None
        else:
            if not (np.isfinite(bmaj) and np.isfinite(bmin) and np.isfinite(bpa)):
                raise ImplausibleHeader(f"restoring beam BMAJ={bmaj!r} BMIN={bmin!r} BPA={bpa!r} "
                                        "is not finite", label)
            if max(bmaj, bmin) > MAX_BEAM_DEG:
                raise ImplausibleHeader(f"restoring beam BMAJ={bmaj:g} BMIN={bmin:g} deg is not "
                                        f"plausible (expected at most {MAX_BEAM_DEG:g} deg)", label)
            if bmaj > 0 and bmin > 0:
                if bmin > bmaj:
                    bmaj, bmin, bpa = bmin, bmaj, bpa + 90.0
                return Beam(bmaj, bmin, bpa)
    beam = None
    for card in header.get("HISTORY", []):
        m = _HISTORY_BEAM.search(str(card))
        if m:
            try:
                vals = [float(g.replace("D", "E").replace("d", "e")) for g in m.groups()]
            except ValueError:
                continue
            if 0 < vals[0] <= MAX_BEAM_DEG and 0 < vals[1] <= MAX_BEAM_DEG and np.isfinite(vals[2]):
                major, minor = max(vals[0], vals[1]), min(vals[0], vals[1])
                pa = vals[2] if vals[0] >= vals[1] else vals[2] + 90.0
                beam = Beam(major, minor, pa)  # keep the last one (final restoring beam)
    return beam


def _flux_scale(bunit: str | None, path) -> float:
    """Multiplier turning the stored unit into Jy/beam."""
    if bunit is None or not str(bunit).strip():
        return 1.0  # radio images without BUNIT are Jy/beam by convention
    u = str(bunit).strip().lower().replace(" ", "")
    if "jy" not in u:
        raise InvalidImage(f"BUNIT {bunit!r} is not a flux density per beam (Jy/beam expected)", path)
    if u.startswith("mjy"):
        return 1e-3
    if u.startswith(("ujy", "µjy", "μjy", "microjy")):
        return 1e-6
    if u.startswith("njy"):
        return 1e-9
    if u.startswith("jy"):
        return 1.0
    raise InvalidImage(f"BUNIT {bunit!r} is not a flux density per beam (Jy/beam expected)", path)


def _check_pixel_scales(celestial: WCS, label) -> np.ndarray:
    """The two celestial pixel scales (deg), checked against the plausible ranges."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        scales = np.abs(np.asarray(proj_plane_pixel_scales(celestial), float))
    except Exception as exc:  # singular CD/PC matrices and the like
        raise ImplausibleHeader(f"celestial pixel scale cannot be computed: {exc}", label) from None
    if not np.all(np.isfinite(scales)) or np.any(scales < MIN_PIXEL_DEG) or np.any(scales > MAX_PIXEL_DEG):
        raise ImplausibleHeader(f"pixel scale {scales[0]:.3g} x {scales[1]:.3g} deg is not plausible "
                                f"(expected {MIN_PIXEL_DEG:g} to {MAX_PIXEL_DEG:g} deg per pixel)", label)
    if scales.max() / scales.min() > MAX_PIXEL_ASPECT:
        raise ImplausibleHeader(f"pixel scales {scales[0]:.3g} and {scales[1]:.3g} deg differ by more "
                                f"than a factor {MAX_PIXEL_ASPECT:g}", label)
    return scales


def _read_mjd_checked(header, label) -> float | None:
    """The epoch (MJD-OBS, else DATE-OBS), None when absent; :class:`ImplausibleHeader`
    when present but outside ``[MIN_MJD, MAX_MJD]`` or not finite."""
    v = header.get("MJD-OBS")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0:
        if not (np.isfinite(v) and MIN_MJD <= v <= MAX_MJD):
            raise ImplausibleHeader(f"MJD-OBS={v!r} is not a plausible observation epoch "
                                    f"(expected {MIN_MJD:g} to {MAX_MJD:g})", label)
        return float(v)
    mjd = _parse_date_obs(header.get("DATE-OBS"))
    if mjd is not None and not MIN_MJD <= mjd <= MAX_MJD:
        raise ImplausibleHeader(f"DATE-OBS={header.get('DATE-OBS')!r} (MJD {mjd:.1f}) is not a "
                                "plausible observation epoch", label)
    return mjd


def _has_finite(arr: np.ndarray, rows: int = 256) -> bool:
    """True when ``arr`` holds a finite value; reads row blocks (memory-map friendly).

    The central block is tried first: radio images are often blanked towards the edges.
    """
    ny = arr.shape[0]
    mid = max(0, ny // 2 - rows // 2)
    if np.isfinite(arr[mid:mid + rows]).any():
        return True
    return any(np.isfinite(arr[i:i + rows]).any() for i in range(0, ny, rows))


def block_count_and_peak(blk: np.ndarray) -> tuple[int, float]:
    """Number of finite pixels of one block of a map and their max |value| (Jy/beam;
    -inf when none): the step of :func:`finite_count_and_peak` per block of rows.

    A block whose max and min are both finite has no NaN (they propagate) and no inf, so
    two reductions settle it; only blocks with blanked pixels are masked."""
    if not blk.size:
        return 0, -np.inf
    with np.errstate(invalid="ignore"):
        hi, lo = blk.max(), blk.min()
        if np.isfinite(hi) and np.isfinite(lo):
            return int(blk.size), max(float(hi), -float(lo))
        fin = np.isfinite(blk)
        k = int(np.count_nonzero(fin))
        return k, (float(np.max(np.abs(blk[fin]))) if k else -np.inf)


def finite_count_and_peak(data, rows: int = 256) -> tuple[int, float]:
    """Number of finite pixels and max |finite pixel| (Jy/beam) of a 2-D map, read in row
    blocks (memory is one block, not the map: a memory-mapped image is streamed).

    Blocks are settled by :func:`block_count_and_peak`. Peak NaN when no pixel is finite.
    """
    arr = data if hasattr(data, "shape") else np.asarray(data)
    if arr.ndim != 2:
        arr = np.asarray(arr).reshape(-1, arr.shape[-1])
    n = 0
    peak = -np.inf
    step = max(1, min(rows, 4_000_000 // max(1, arr.shape[1])))
    for y0 in range(0, arr.shape[0], step):
        k, p = block_count_and_peak(np.asarray(arr[y0:y0 + step]))
        n, peak = n + k, max(peak, p)
    return n, (peak if n else float("nan"))


# --------------------------------------------------------------------------------------
# building an image: the file, the celestial WCS, the plane cube, the beam
# --------------------------------------------------------------------------------------
def _open_fits_image(path: Path):
    """``(hdul, hdu, data)`` of the first HDU holding at least 2-D image data, memory-mapped
    when the file allows it (scaled integer data are read). ``CorruptImage`` otherwise."""
    if not path.exists():
        raise CorruptImage("file does not exist", path)
    if path.is_dir():
        raise CorruptImage("is a directory (a CASA image table?), not a FITS file", path)
    check_fits_complete(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError) as exc:
        raise CorruptImage(f"astropy cannot read it: {exc}", path) from None
    hdu = next((h for h in hdul if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
                and h.header.get("NAXIS", 0) >= 2), None)
    if hdu is None:
        hdul.close()
        raise CorruptImage("no HDU holds image data (header-only file)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                data = hdu.data
            except ValueError as exc:
                if "memmap" not in str(exc).lower():
                    raise
                # scaled integer data (BLANK/BSCALE/BZERO) cannot be memory-mapped: read it
                index = hdul.index(hdu)
                hdul.close()
                hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
                hdu = hdul[index]
                data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        hdul.close()
        raise CorruptImage(f"cannot read the image data: {exc}", path) from None
    if data is None:
        hdul.close()
        raise CorruptImage("the image HDU holds no data", path)
    return hdul, hdu, data


def _celestial_wcs(header: fits.Header, data, label):
    """``(full WCS, celestial WCS, pixel scales in deg)``; junk keywords are tolerated, but a
    celestial axis pair that transforms pixels is required (``NoCelestialWCS``)."""
    naxis = header.get("NAXIS")
    hdr_wcs = header        # not modified: WCS reads a copy
    if isinstance(naxis, bool) or not isinstance(naxis, int) or naxis < data.ndim:
        hdr_wcs = header.copy()
        hdr_wcs["NAXIS"] = max(int(header.get("NAXIS", data.ndim)), data.ndim)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            warnings.simplefilter("ignore", UserWarning)
            full = WCS(hdr_wcs)
    except Exception as exc:  # astropy raises a variety of types for bad WCS
        raise NoCelestialWCS(f"header WCS cannot be parsed: {exc}", label) from None
    if not full.has_celestial:
        raise NoCelestialWCS("header has no celestial (RA/Dec or GLON/GLAT) axes", label)
    if full.wcs.lng < 0 or full.wcs.lat < 0:
        raise NoCelestialWCS("header has no celestial axis pair", label)
    celestial = full.celestial
    try:
        ref = celestial.wcs_pix2world([[0.0, 0.0]], 0)
    except Exception as exc:
        raise NoCelestialWCS(f"celestial WCS cannot transform pixels: {exc}", label) from None
    if not np.all(np.isfinite(ref)) and not np.all(np.isfinite(
            celestial.wcs_pix2world([[data.shape[-1] / 2, data.shape[-2] / 2]], 0))):
        raise NoCelestialWCS("celestial WCS gives non-finite coordinates", label)
    return full, celestial, _check_pixel_scales(celestial, label)


def _plane_cube(data, full: WCS, label):
    """The data as ``(planes, ny, nx)`` with the celestial axes last, and the FITS axis (0-based)
    of the planes' frequency (None when the planes have no frequency axis).

    Non-celestial axes: the first FREQ-like axis (or, failing one, an unnamed axis of several
    pixels) becomes the planes; STOKES takes I (value 1, else its first plane); degenerate
    axes are dropped; any other axis of several pixels is a ``CorruptImage``.
    """
    nd = data.ndim
    naxis_wcs = full.naxis
    if nd > naxis_wcs:
        raise CorruptImage(f"data has {nd} axes but the header describes {naxis_wcs}", label)
    cel_fits = sorted((full.wcs.lng, full.wcs.lat))
    if cel_fits[1] >= nd:
        raise NoCelestialWCS("celestial axes are beyond the data dimensions", label)
    # numpy axis of FITS axis i (0-based) is ndim-1-i
    np_x, np_y = nd - 1 - cel_fits[0], nd - 1 - cel_fits[1]
    other_np = [a for a in range(nd) if a not in (np_x, np_y)]
    cube = np.transpose(data, other_np + [np_y, np_x]) if other_np != list(range(nd - 2)) else data
    freq_axis = None
    index = []
    for k, np_axis in enumerate(other_np):
        fits_axis = nd - 1 - np_axis
        ctype = str(full.wcs.ctype[fits_axis]).upper() if fits_axis < naxis_wcs else ""
        n = cube.shape[k]
        if ctype.startswith(_FREQ_CTYPES) and freq_axis is None:
            freq_axis = (k, fits_axis)
            index.append(slice(None))
        elif n == 1:
            index.append(0)
        elif ctype.startswith("STOKES"):
            # take Stokes I (value 1) when present, else the first plane
            vals = full.wcs.crval[fits_axis] + (np.arange(n) + 1 - full.wcs.crpix[fits_axis]) \
                * full.wcs.cdelt[fits_axis]
            hit = np.flatnonzero(np.isclose(vals, 1.0))
            index.append(int(hit[0]) if hit.size else 0)
        elif freq_axis is None:
            # unnamed non-degenerate axis: treat as the plane axis
            freq_axis = (k, None)
            index.append(slice(None))
        else:
            raise CorruptImage(f"cannot reduce axis {fits_axis + 1} ({ctype or 'no CTYPE'}) "
                               f"of length {n} to one plane", label)
    cube = cube[tuple(index) + (slice(None), slice(None))]
    if cube.ndim == 2:
        cube = cube[np.newaxis]
    return cube, None if freq_axis is None else freq_axis[1]


def _image_beam(header: fits.Header, beam: Beam | None, pixel_deg, label):
    """``(beam, beam_source)``: the header's (BMAJ/BMIN/BPA, else a HISTORY line), else the
    caller's; ``ImplausibleHeader`` for a beam wider than ``MAX_BEAM_PIXELS`` pixels."""
    beam_used, beam_source = None, "none"
    hbeam = _beam_from_header(header, label)
    if hbeam is not None:
        beam_used, beam_source = hbeam, ("header" if "BMAJ" in header else "history")
    elif beam is not None:
        beam_used, beam_source = beam, "caller"
    if beam_used is not None:
        fwhm_pix = beam_used.major_deg / float(np.min(pixel_deg))
        if fwhm_pix > MAX_BEAM_PIXELS:
            raise ImplausibleHeader(f"beam FWHM {beam_used.major_arcsec:.4g} arcsec spans "
                                    f"{fwhm_pix:.3g} pixels of {np.min(pixel_deg) * 3600:.3g} "
                                    f"arcsec (at most {MAX_BEAM_PIXELS:g} expected)", label)
    return beam_used, beam_source


def _plane_frequency(header: fits.Header, freq_axis, i: int) -> float | None:
    """Frequency of plane ``i`` (Hz): from the planes' FREQ axis, else a FREQ axis described
    beyond NAXIS (e.g. FIRST cutouts), else RESTFRQ/RESTFREQ/FREQ; None when unknown."""
    fits_axis, full = freq_axis
    if fits_axis is not None:
        w = full.wcs
        ctype = str(w.ctype[fits_axis]).upper()
        if ctype.startswith("FREQ"):
            unit = str(w.cunit[fits_axis]).strip().upper() or "HZ"
            try:
                f = float(w.crval[fits_axis] + (i + 1 - w.crpix[fits_axis]) * w.cdelt[fits_axis])
            except (TypeError, ValueError):
                f = None
            if f is not None:
                # astropy normalises CUNIT to SI (Hz), keep a fallback for raw headers
                return f * _FREQ_UNITS.get(unit.replace(" ", ""), 1.0)
    for k in range(1, 10):
        if str(header.get(f"CTYPE{k}", "")).upper().startswith("FREQ"):
            v = header.get(f"CRVAL{k}")
            if isinstance(v, (int, float)) and np.isfinite(v) and v > 0:
                unit = str(header.get(f"CUNIT{k}", "Hz")).strip().upper()
                return float(v) * _FREQ_UNITS.get(unit, 1.0)
    for key in ("RESTFRQ", "RESTFREQ", "FREQ"):
        v = header.get(key)
        if isinstance(v, (int, float)) and np.isfinite(v) and v > 0:
            return float(v)
    return None


class RadioImage:
    """A radio image squeezed to 2-D planes in Jy/beam, with its WCS, beam and epoch.

    Build with :meth:`open` (a FITS file) or :meth:`from_array`.

    Attributes
    ----------
    path : Path or None
        The file, when the image came from one.
    header : astropy.io.fits.Header
        The full original header.
    wcs : astropy.wcs.WCS
        The celestial (2-D) WCS.
    data : ndarray, shape (ny, nx)
        The selected plane in Jy/beam (memory-mapped where possible).
    beam : Beam or None
        From BMAJ/BMIN/BPA, else an AIPS/CASA HISTORY line, else the caller's.
    beam_source : str
        ``"header"``, ``"history"``, ``"caller"`` or ``"none"``.
    mjd : float or None
        Observation epoch (MJD-OBS, else DATE-OBS), never the processing time.
    freq_hz : float or None
        Frequency of the selected plane (FREQ axis), else RESTFRQ/RESTFREQ.
    bunit : str
        BUNIT as written in the header (the data are converted to Jy/beam).
    """

    def __init__(self, *, path, header, wcs, cube, freq_axis, plane_index,
                 scale, beam, beam_source, hdul=None):
        self.path = None if path is None else Path(path)
        self.header = header
        self.wcs = wcs
        self._cube = cube            # ndarray with the celestial axes last: (..., ny, nx)
        self._freq_axis = freq_axis  # index into cube's leading axes or None
        self._scale = scale
        self._hdul = hdul
        self.beam = beam
        self.beam_source = beam_source
        self.bunit = str(header.get("BUNIT", "Jy/beam")).strip() or "Jy/beam"
        self.mjd = self._read_mjd(header)
        self._plane_index = plane_index
        self._planes: dict[int, np.ndarray] = {}
        self.data = self.plane(plane_index)
        self.freq_hz = self._plane_freq(plane_index)
        self._finite: tuple[int, float] | None = None

    # -- construction ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, beam: Beam | None = None, plane: int | None = None,
             check_empty: bool = True) -> "RadioImage":
        """Open a FITS image.

        Parameters
        ----------
        path : str or Path
            The FITS file (the first HDU holding at least 2-D data is used).
        beam : Beam, optional
            Beam to use when the header has none (header beams take precedence).
        plane : int, optional
            Frequency plane of a cube that :attr:`data` holds (default 0).
        check_empty : bool
            Raise :class:`EmptyImage` when the selected plane has no finite pixel.

        Raises
        ------
        CorruptImage, TruncatedImage, NoCelestialWCS, EmptyImage, InvalidImage
        """
        path = Path(path)
        hdul, hdu, data = _open_fits_image(path)
        try:
            # the file's header is the image's own (its HDU list is private to it)
            return cls._build(data, hdu.header, path=path, beam=beam, plane=plane,
                              hdul=hdul, check_empty=check_empty, own_header=True)
        except Exception:
            hdul.close()
            raise

    @classmethod
    def from_array(cls, data, header, *, path: str | Path | None = None, beam: Beam | None = None,
                   plane: int | None = None, check_empty: bool = True) -> "RadioImage":
        """Wrap an in-memory array and its FITS header (same rules as :meth:`open`).

        ``data`` has numpy axis order (reverse of the FITS axes), e.g.
        ``(1, 1, ny, nx)`` for a 4-axis header, or simply ``(ny, nx)``.
        """
        if not isinstance(header, fits.Header):
            header = fits.Header(header)    # _build keeps a sanitised copy of the caller's
        data = np.asarray(data)
        return cls._build(data, header, path=path, beam=beam, plane=plane, hdul=None,
                          check_empty=check_empty)

    @classmethod
    def _build(cls, data, header, *, path, beam, plane, hdul, check_empty, own_header=False):
        label = path if path is not None else "<array>"
        if data.ndim < 2:
            raise CorruptImage(f"image data has {data.ndim} dimension(s), need at least 2", label)
        header = _sanitised_header(header, label, copy=not own_header)
        full, celestial, pixel_deg = _celestial_wcs(header, data, label)
        cube, freq_fits_axis = _plane_cube(data, full, label)
        scale = _flux_scale(header.get("BUNIT"), label)
        beam_used, beam_source = _image_beam(header, beam, pixel_deg, label)
        _read_mjd_checked(header, label)
        plane = 0 if plane is None else plane
        if not 0 <= plane < cube.shape[0]:
            raise InvalidImage(f"plane {plane} requested but the image has {cube.shape[0]}", label)
        obj = cls(path=path, header=header, wcs=celestial, cube=cube,
                  freq_axis=(freq_fits_axis, full), plane_index=plane, scale=scale,
                  beam=beam_used, beam_source=beam_source, hdul=hdul)
        if check_empty and not _has_finite(obj.data):
            raise EmptyImage("every pixel of the image is NaN/blanked", label)
        return obj

    # -- planes -----------------------------------------------------------------
    @property
    def n_planes(self) -> int:
        """Number of frequency planes (1 for a continuum image)."""
        return int(self._cube.shape[0])

    def plane(self, i: int) -> np.ndarray:
        """2-D data (Jy/beam) of frequency plane ``i`` (0-based)."""
        if not 0 <= i < self.n_planes:
            raise IndexError(f"plane {i} out of range 0..{self.n_planes - 1}")
        arr = self._planes.get(i)
        if arr is None:
            arr = self._cube[i]
            if self._scale != 1.0:
                arr = np.asarray(arr, dtype=np.float32 if arr.dtype.itemsize <= 4 else np.float64) \
                    * self._scale
            elif not np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(np.float32)
            self._planes[i] = arr
        return arr

    def _plane_freq(self, i: int) -> float | None:
        return _plane_frequency(self.header, self._freq_axis, i)

    @property
    def plane_freqs_hz(self) -> np.ndarray:
        """Frequency of every plane, Hz (NaN where unknown)."""
        return np.array([np.nan if (f := self._plane_freq(i)) is None else f
                         for i in range(self.n_planes)])

    # -- header facts -------------------------------------------------------------
    @staticmethod
    def _read_mjd(header) -> float | None:
        v = header.get("MJD-OBS")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0:
            return float(v)
        return _parse_date_obs(header.get("DATE-OBS"))

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return tuple(int(s) for s in self._cube.shape[-2:])

    @property
    def is_mosaic(self) -> bool:
        """True when the header carries a mosaic keyword (:func:`header_is_mosaic`).

        A missing beam alone does not make a mosaic: a beamless file in an image
        directory is an image without a beam (an error unless ``beam_arcsec`` is set)."""
        return header_is_mosaic(self.header)

    def _jacobian(self) -> np.ndarray:
        """2x2 matrix mapping pixel offsets (dx, dy) to sky offsets (east, north) in arcsec,
        evaluated at the image centre."""
        j = getattr(self, "_jac", None)
        if j is not None:
            return j
        ny, nx = self.shape
        x0, y0 = (nx - 1) / 2.0, (ny - 1) / 2.0
        h = 0.5
        px = np.array([x0, x0 + h, x0 - h, x0, x0])
        py = np.array([y0, y0, y0, y0 + h, y0 - h])
        lon, lat = self.pixel_to_world(px, py)
        if not np.all(np.isfinite(lon)) or not np.all(np.isfinite(lat)):
            raise NoCelestialWCS("celestial WCS is not finite at the image centre", self._label)
        cosd = np.cos(np.deg2rad(lat[0]))
        dlon = (lon - lon[0] + 180.0) % 360.0 - 180.0
        east = dlon * cosd * 3600.0
        north = (lat - lat[0]) * 3600.0
        j = np.array([[(east[1] - east[2]) / (2 * h), (east[3] - east[4]) / (2 * h)],
                      [(north[1] - north[2]) / (2 * h), (north[3] - north[4]) / (2 * h)]])
        self._jac = j
        return j

    @property
    def _label(self):
        return self.path if self.path is not None else "<array>"

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel scale along the Dec (second celestial) axis, arcsec (projection plane)."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(proj_plane_pixel_scales(self.wcs)[1] * 3600.0)

    def pixel_jacobian_arcsec(self) -> np.ndarray:
        """2x2 matrix ``J`` with ``(east, north) = J @ (dx, dy)``, arcsec per pixel, at the centre."""
        return self._jacobian().copy()

    # -- geometry -------------------------------------------------------------------
    def _is_equatorial(self) -> bool:
        return wcs_is_equatorial(self.wcs)

    def world_to_pixel(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """ICRS RA/Dec (deg) -> 0-based pixel ``(x, y)`` arrays (NaN where not projectable)."""
        return wcs_world_to_pixel(self.wcs, ra_deg, dec_deg)

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel -> world (lon, lat) in the image's own frame, degrees."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = self.wcs.wcs_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return (a, b) if self.wcs.wcs.lng == 0 else (b, a)

    def pixel_to_icrs(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel -> ICRS RA, Dec (deg; other frames converted), NaN where undefined."""
        lon, lat = self.pixel_to_world(x, y)
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        if not self._is_equatorial():
            from astropy.coordinates import SkyCoord
            from astropy.wcs.utils import wcs_to_celestial_frame
            import astropy.units as u

            ok = np.isfinite(lon) & np.isfinite(lat)
            c = SkyCoord(np.where(ok, lon, 0.0) * u.deg, np.where(ok, lat, 0.0) * u.deg,
                         frame=wcs_to_celestial_frame(self.wcs)).icrs
            lon = np.where(ok, c.ra.deg, np.nan)
            lat = np.where(ok, c.dec.deg, np.nan)
        return lon % 360.0, lat

    def center(self) -> tuple[float, float]:
        """RA, Dec (ICRS; FK5 J2000 taken as ICRS) of the central pixel, degrees.

        Images in other frames (e.g. galactic) are converted.
        """
        ny, nx = self.shape
        lon, lat = self.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
        lon, lat = float(np.asarray(lon)), float(np.asarray(lat))
        if not self._is_equatorial():
            from astropy.coordinates import SkyCoord
            from astropy.wcs.utils import wcs_to_celestial_frame
            import astropy.units as u

            c = SkyCoord(lon * u.deg, lat * u.deg, frame=wcs_to_celestial_frame(self.wcs)).icrs
            lon, lat = float(c.ra.deg), float(c.dec.deg)
        return lon % 360.0, lat

    def footprint_radius_deg(self) -> float:
        """Half the image diagonal, degrees (angular distance centre -> corner, max over corners)."""
        ny, nx = self.shape
        cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
        xs = np.array([cx, -0.5, nx - 0.5, -0.5, nx - 0.5])
        ys = np.array([cy, -0.5, -0.5, ny - 0.5, ny - 0.5])
        lon, lat = self.pixel_to_world(xs, ys)
        if not np.all(np.isfinite(lon[1:])):  # corners off the projection: use the pixel scale
            return float(np.hypot(nx, ny) / 2.0 * self.pixel_scale_arcsec / 3600.0)
        return float(angular_separation_deg(lon[0], lat[0], lon[1:], lat[1:]).max())

    def finite_count_and_peak(self) -> tuple[int, float]:
        """Number of finite pixels of :attr:`data` and their max |value| (Jy/beam; NaN when
        none): :func:`finite_count_and_peak`, one pass over the pixels per image."""
        if self._finite is None:
            self._finite = finite_count_and_peak(self.data)
        return self._finite

    @property
    def finite_counted(self) -> bool:
        """Whether :meth:`finite_count_and_peak` is known already (no pass over the pixels)."""
        return self._finite is not None

    def record_finite_count_and_peak(self, n: int, peak: float) -> None:
        """Record :meth:`finite_count_and_peak` as found by a caller's own pass over every
        pixel of :attr:`data` (blind detection's, :func:`block_count_and_peak` per block),
        so that the pixels are not read again for it."""
        if self._finite is None:
            self._finite = (int(n), float(peak) if n else float("nan"))

    @property
    def blanked_fraction(self) -> float:
        """Fraction of non-finite pixels in :attr:`data`."""
        data = self.data
        n, _ = self.finite_count_and_peak()
        return float(1.0 - n / data.size) if data.size else 1.0

    def require_beam(self) -> Beam:
        """The beam, or :class:`MissingBeam` naming the file."""
        if self.beam is None:
            raise MissingBeam("no restoring beam: the header has no BMAJ/BMIN/BPA nor a "
                              "HISTORY beam line, and none was given (use method 'peak' or "
                              "pass beam=)", self._label)
        return self.beam

    def close(self) -> None:
        """Release the memory map (the arrays already returned stay valid only if copied)."""
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        b = (f"{self.beam.major_arcsec:.2f}x{self.beam.minor_arcsec:.2f}\" PA {self.beam.pa_deg:.1f}"
             if self.beam else "none")
        return (f"<RadioImage {self.path or '<array>'} {self.shape[1]}x{self.shape[0]} "
                f"planes={self.n_planes} beam={b} mjd={self.mjd}>")


def wcs_is_equatorial(wcs) -> bool:
    """True when the celestial WCS is in RA/Dec."""
    return str(wcs.wcs.ctype[wcs.wcs.lng]).upper().startswith("RA")


def wcs_world_to_pixel(wcs, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec (deg) -> 0-based pixel ``(x, y)`` of a celestial WCS (other frames
    converted; NaN where a position does not project)."""
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=float))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
    lon, lat = ra, dec
    if not wcs_is_equatorial(wcs):
        from astropy.coordinates import SkyCoord
        from astropy.wcs.utils import wcs_to_celestial_frame
        import astropy.units as u

        frame = wcs_to_celestial_frame(wcs)
        ok = np.isfinite(ra) & np.isfinite(dec)
        c = SkyCoord(np.where(ok, ra, 0.0) * u.deg, np.where(ok, dec, 0.0) * u.deg,
                     frame="icrs").transform_to(frame)
        sph = c.spherical
        lon = np.where(ok, sph.lon.deg, np.nan)
        lat = np.where(ok, sph.lat.deg, np.nan)
    world = [lon, lat] if wcs.wcs.lng == 0 else [lat, lon]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = wcs.wcs_world2pix(world[0], world[1], 0)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & np.isfinite(x) & np.isfinite(y))
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


def as_image(image, *, beam: Beam | None = None) -> RadioImage:
    """A :class:`RadioImage` for ``image`` (a RadioImage or a path).

    ``beam`` is used when the image has none: for a path it is passed to
    :meth:`RadioImage.open`; for a RadioImage without a beam a shallow copy
    carrying the caller's beam is returned (the caller's object is not
    modified; the data are shared).
    """
    if isinstance(image, RadioImage):
        if beam is not None and image.beam is None:
            import copy

            image = copy.copy(image)
            image.beam, image.beam_source = beam, "caller"
        return image
    if isinstance(image, (str, os.PathLike)):
        return RadioImage.open(image, beam=beam)
    raise TypeError(f"expected a RadioImage or a path, got {type(image).__name__}")


__all__ = ["Beam", "RadioImage", "check_fits_complete", "as_image", "finite_count_and_peak",
           "block_count_and_peak",
           "wcs_is_equatorial", "wcs_world_to_pixel"]


