"""Forced photometry: the fixed-beam weighted amplitude estimator and the box peak.

Public entry point: :func:`measure_positions`. Array level (reused per plane
by the adaptive method): :func:`measure_arrays`, :func:`peak_arrays`,
:class:`PixelBeam`.

Method ``forced`` (docs/science.md, Forced photometry)
    For every position a unit-peak elliptical Gaussian kernel K (the restoring
    beam, PA east of north mapped through the image's WCS, centred on the
    exact sub-pixel position) is fitted by weighted linear least squares to
    the background-subtracted data D in a cutout ``nbeam`` beams wide, with
    weights 1/sigma^2 from the noise map::

        F      = sum(D K / s^2) / sum(K^2 / s^2)            (Jy/beam)
        err_mn = sum(K / s)     / sum(K / s^2)              (mean local noise)
        chi2   = sum(((D - F K) / s)^2),  dof = N_good - 1

    K is mapped from the sky to the pixel grid through the WCS Jacobian at the
    image centre, or at each source when the pixel geometry varies across the
    image by more than :data:`LOCAL_GEOMETRY_TOLERANCE` (:func:`local_kernels`;
    e.g. AZP or very wide fields; option ``pixel_geometry``).

    All sources are processed at once: the cutouts are gathered into an
    ``(N, S, S)`` array with fancy indexing. Sources closer than
    ``cluster_threshold`` x BMAJ are grouped transitively (connected
    components of the KD-tree pair graph) and each group is solved exactly
    as a small weighted linear least-squares problem over the group's joint
    pixel region; groups of equal size are solved together with
    ``np.linalg.solve`` on stacked normal matrices.

    Quoted error: ``peak_err_jyb = err_mn x c`` where ``c`` is the image's
    matched-filter noise factor (:func:`~dsa110_contimg.science.noise.noise_correlation_factor`),
    measured on the image itself: interferometric noise is correlated on the
    beam scale, and the mean local noise alone is then not an honest 1-sigma
    error (for noise made by convolving white noise with the beam the true
    scatter is sqrt(2) x the pixel rms). ``error_model="mean_noise"`` gives
    the plain estimator of docs/science.md (c = 1); the unscaled value is always in
    the ``mean_noise_err_jyb`` column.

Method ``peak`` (docs/science.md, Peak method)
    The maximum finite pixel in a beam-sized box (5 px without a beam), no
    background subtraction by default, error = noise-map rms at the position;
    flagged ``BIASED_PEAK``.

Failures (off image, cutout cut by the edge, blanked centre, no good pixel,
no noise) give NaN flux and error, a flag and ``success=False``; never 0.
Negative fluxes are kept.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.core.enums import METHODS
from dsa110_contimg.core.errors import ConfigError, MapMismatch
from dsa110_contimg.science import methods as optional_methods
from dsa110_contimg.science.results import FAILURE_FLAGS, Flag, MeasurementTable

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: sources per vectorised chunk: a chunk's ``(CHUNK, S*S)`` float64 arrays (~0.7 MB each at
#: S = 19) stay in the CPU's cache; the results do not depend on it
CHUNK = 512


# --------------------------------------------------------------------------------------
# beam on the pixel grid
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelBeam:
    """The restoring beam as a quadratic form on the pixel grid.

    ``K(dx, dy) = exp(-(a dx^2 + b dx dy + c dy^2))`` (unit peak), pixel offsets
    from the source position; ``major_pix``/``minor_pix`` are the FWHM in
    pixels (``major_pix`` sets the cutout size and the clustering radius).
    """

    a: float
    b: float
    c: float
    major_pix: float
    minor_pix: float

    @classmethod
    def from_fwhm(cls, major_pix: float, minor_pix: float, theta_deg: float) -> "PixelBeam":
        """From FWHM in pixels and the major-axis angle counter-clockwise from +x (degrees).

        On a north-up, east-left image ``theta = BPA - 90``.
        """
        sx, sy = major_pix * FWHM_TO_SIGMA, minor_pix * FWHM_TO_SIGMA
        t = math.radians(theta_deg)
        a = math.cos(t) ** 2 / (2 * sx ** 2) + math.sin(t) ** 2 / (2 * sy ** 2)
        b = math.sin(2 * t) / (2 * sx ** 2) - math.sin(2 * t) / (2 * sy ** 2)
        c = math.sin(t) ** 2 / (2 * sx ** 2) + math.cos(t) ** 2 / (2 * sy ** 2)
        return cls(a, b, c, float(major_pix), float(minor_pix))

    @classmethod
    def from_beam(cls, beam, jacobian_arcsec: np.ndarray, pixel_scale_arcsec: float) -> "PixelBeam":
        """From a sky :class:`~dsa110_contimg.science.image.Beam` and the local WCS.

        ``jacobian_arcsec`` maps pixel offsets to (east, north) arcsec; the
        beam's covariance on the sky (major axis at ``pa_deg`` east of north)
        is pulled back to the pixel grid, so flipped, rotated or non-square
        pixels are handled (for north up / east left this is exactly
        ``theta = BPA - 90``).
        """
        smaj = beam.major_arcsec * FWHM_TO_SIGMA
        smin = beam.minor_arcsec * FWHM_TO_SIGMA
        pa = math.radians(beam.pa_deg)
        u = np.array([math.sin(pa), math.cos(pa)])    # major axis (east, north)
        v = np.array([math.cos(pa), -math.sin(pa)])   # minor axis
        cinv = np.outer(u, u) / smaj ** 2 + np.outer(v, v) / smin ** 2
        j = np.asarray(jacobian_arcsec, float)
        q = j.T @ cinv @ j
        return cls(0.5 * q[0, 0], q[0, 1], 0.5 * q[1, 1],
                   beam.major_arcsec / pixel_scale_arcsec, beam.minor_arcsec / pixel_scale_arcsec)

    def evaluate(self, dx, dy) -> np.ndarray:
        """Kernel value at pixel offsets."""
        dx = np.asarray(dx, float)
        dy = np.asarray(dy, float)
        return np.exp(-(self.a * dx * dx + self.b * dx * dy + self.c * dy * dy))

    def half_size(self, nbeam: float) -> int:
        """Cutout half-size n = round((nbeam/2) BMAJ/p), at least 1 pixel."""
        return max(1, int(round(0.5 * nbeam * self.major_pix)))

    def stamp(self, nbeam: float = 3.0) -> np.ndarray:
        """The kernel centred on a pixel, shape (2n+1, 2n+1)."""
        h = self.half_size(nbeam)
        g = np.arange(-h, h + 1, dtype=float)
        return self.evaluate(g[None, :], g[:, None])


def pixel_beam_for(image, beam=None) -> PixelBeam:
    """The :class:`PixelBeam` of a :class:`RadioImage` (``beam`` overrides; else MissingBeam)."""
    b = beam if beam is not None else image.require_beam()
    return PixelBeam.from_beam(b, image.pixel_jacobian_arcsec(), image.pixel_scale_arcsec)


#: Largest relative change of the kernel coefficients across the measured positions
#: that is still treated as a regular image (one kernel, the image centre's, for all).
#: A relative error d in a coefficient changes a fitted peak by about d/4, so below
#: this the centre's kernel is right to < 0.1 % (e.g. a SIN field 4 deg across).
LOCAL_GEOMETRY_TOLERANCE = 4e-3


def local_jacobians_arcsec(image, x, y, step: float = 0.5) -> np.ndarray:
    """The WCS Jacobian at every position: ``(n, 2, 2)``, ``(east, north) = J @ (dx, dy)``.

    Arcsec per pixel, by central differences of ``step`` pixels (all positions in
    one WCS call); rows with a non-finite position or WCS are NaN.
    """
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    px = np.stack([x, x + step, x - step, x, x], axis=1)
    py = np.stack([y, y, y, y + step, y - step], axis=1)
    lon, lat = image.pixel_to_world(px.ravel(), py.ravel())
    lon = np.asarray(lon, float).reshape(-1, 5)
    lat = np.asarray(lat, float).reshape(-1, 5)
    cosd = np.cos(np.deg2rad(lat[:, :1]))
    east = ((lon - lon[:, :1] + 180.0) % 360.0 - 180.0) * cosd * 3600.0
    north = (lat - lat[:, :1]) * 3600.0
    j = np.empty((x.size, 2, 2))
    j[:, 0, 0] = (east[:, 1] - east[:, 2]) / (2 * step)
    j[:, 0, 1] = (east[:, 3] - east[:, 4]) / (2 * step)
    j[:, 1, 0] = (north[:, 1] - north[:, 2]) / (2 * step)
    j[:, 1, 1] = (north[:, 3] - north[:, 4]) / (2 * step)
    return j


def local_kernel_coefficients(beam, jacobians: np.ndarray) -> np.ndarray:
    """Per-position kernel coefficients ``(n, 3)`` = (a, b, c) of :class:`PixelBeam`.

    The beam's covariance on the sky pulled back through each position's own
    Jacobian (``(n, 2, 2)``, arcsec per pixel), as :meth:`PixelBeam.from_beam`
    does with the centre's; NaN where the Jacobian is not finite.
    """
    smaj = beam.major_arcsec * FWHM_TO_SIGMA
    smin = beam.minor_arcsec * FWHM_TO_SIGMA
    pa = math.radians(beam.pa_deg)
    u = np.array([math.sin(pa), math.cos(pa)])
    v = np.array([math.cos(pa), -math.sin(pa)])
    cinv = np.outer(u, u) / smaj ** 2 + np.outer(v, v) / smin ** 2
    j = np.asarray(jacobians, float)
    q = np.einsum("nki,kl,nlj->nij", j, cinv, j)
    return np.stack([0.5 * q[:, 0, 0], q[:, 0, 1], 0.5 * q[:, 1, 1]], axis=1)


def local_kernels(image, beam, x, y, pixel_beam: PixelBeam,
                  tolerance: float = LOCAL_GEOMETRY_TOLERANCE) -> np.ndarray | None:
    """Per-source kernel coefficients when the pixel geometry varies, else None.

    None (use ``pixel_beam``, the image centre's, for every source) when all the
    positions' coefficients are within ``tolerance`` (relative to the kernel's
    scale) of the centre's: a regular image is measured exactly as before. On a
    projection whose pixel size or skew changes across the field (e.g. the AZP
    map ``1904-66_AZP.fits``: pixel area -5 %...+6 % from the centre) the
    centre's kernel is too wide or too narrow away from it, and the fitted peak
    drifts by as much (issue 10 item 7).
    """
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    if x.size == 0:
        return None
    centre = np.array([pixel_beam.a, pixel_beam.b, pixel_beam.c])
    scale = max(abs(pixel_beam.a), abs(pixel_beam.c))

    def varies(coef):
        coef[~np.all(np.isfinite(coef), axis=1)] = centre
        return bool(np.any(np.abs(coef - centre) > tolerance * scale))

    # cheap first look: the distortion of the usual projections grows with the distance
    # from the reference point, so its extremes over the image lie on the border
    ny, nx = image.shape
    bx = np.array([0, (nx - 1) / 2, nx - 1, 0, nx - 1, 0, (nx - 1) / 2, nx - 1], float)
    by = np.array([0, 0, 0, (ny - 1) / 2, (ny - 1) / 2, ny - 1, ny - 1, ny - 1], float)
    if not varies(local_kernel_coefficients(beam, local_jacobians_arcsec(image, bx, by))):
        return None
    coef = local_kernel_coefficients(beam, local_jacobians_arcsec(image, x, y))
    return coef if varies(coef) else None


# --------------------------------------------------------------------------------------
# array level
# --------------------------------------------------------------------------------------
def _flat(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1) if arr.flags.c_contiguous else np.ascontiguousarray(arr).reshape(-1)


def _locate(data, rms, x, y, half):
    """Common position checks. Returns flags, rounded centres, masks."""
    ny, nx = data.shape
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = x.size
    flags = np.zeros(n, np.int64)
    fin = np.isfinite(x) & np.isfinite(y)
    flags[~fin] |= int(Flag.BAD_POSITION)
    xs = np.where(fin, x, -1e9)
    ys = np.where(fin, y, -1e9)
    inside = fin & (xs >= -0.5) & (xs < nx - 0.5) & (ys >= -0.5) & (ys < ny - 0.5)
    flags[fin & ~inside] |= int(Flag.OFF_IMAGE)
    xc = np.where(inside, np.floor(xs + 0.5), 0).astype(np.int64)
    yc = np.where(inside, np.floor(ys + 0.5), 0).astype(np.int64)
    xc = np.clip(xc, 0, nx - 1)
    yc = np.clip(yc, 0, ny - 1)
    centre = np.full(n, np.nan)
    centre[inside] = np.asarray(data[yc[inside], xc[inside]], float)
    blanked = inside & ~np.isfinite(centre)
    flags[blanked] |= int(Flag.BLANKED)
    local_rms = np.full(n, np.nan)
    if np.ndim(rms) == 0:
        local_rms[inside] = float(rms)
    else:
        local_rms[inside] = np.asarray(rms[yc[inside], xc[inside]], float)
    local_rms[~(local_rms > 0)] = np.nan
    return flags, xc, yc, inside, blanked, local_rms


def _gather(arr, idx, nx_shape, scalar_shape):
    if arr is None:
        return np.zeros(scalar_shape)
    if np.ndim(arr) == 0:
        return np.full(scalar_shape, float(arr))
    if hasattr(arr, "take_flat"):  # a lazy GridMap: evaluated only at these pixels
        return arr.take_flat(idx).astype(np.float64)
    return np.take(_flat(arr), idx).astype(np.float64, copy=False)


def _cutout_gather(arr, yc, xc, h, idx, nx):
    """Map values on the (m, S*S) cutouts (a GridMap is interpolated per cutout)."""
    if hasattr(arr, "cutouts"):
        return arr.cutouts(yc, xc, h).reshape(idx.shape).astype(np.float64)
    return _gather(arr, idx, nx, idx.shape)


#: sources per block of :func:`_kernel_cutouts`: its per-block temporaries stay in cache
_KERNEL_BLOCK = 128


def _kernel_cutouts(a, b, c, g, dx, dy):
    """The unit-peak kernel exp(-(a fx^2 + b fx fy + c fy^2)) on ``(m, S*S)`` cutouts,
    fx = g - dx, fy = g - dy (``g`` the S integer offsets, ``dx``/``dy`` each source's
    sub-pixel offset from its cutout's centre pixel; ``a``/``b``/``c`` scalars or ``(m, 1)``).

    The cross term b fx fy = b (gx gy - gx dy - gy dx + dx dy) splits into parts in x only,
    in y only, and b gx gy, which takes few distinct values (the products of two offsets):
    so only ``(m, S)`` and ``(m, distinct products)`` exponentials are taken, never one per
    cutout pixel. The ``(m, S, S)`` result is filled :data:`_KERNEL_BLOCK` sources at a
    time (no full-size temporaries).
    """
    m, S = dx.size, g.size
    gg = g[None, :].astype(float)
    dxc, dyc = dx[:, None], dy[:, None]
    ex = np.exp(-a * (gg - dxc) ** 2 + b * gg * dyc - b * dxc * dyc)
    ey = np.exp(-c * (gg - dyc) ** 2 + b * gg * dxc)
    K = np.empty((m, S, S))
    bb = np.reshape(b, (-1, 1))
    products = where = None
    if np.any(b != 0.0):
        if g.dtype.kind in "iu" and np.array_equal(g, np.arange(g[0], g[0] + S)):
            products, where = _offset_products(int(g[0]), S)
        else:
            products, where = np.unique(g[:, None] * g[None, :], return_inverse=True)
            where = where.reshape(S, S)
    for i in range(0, m, _KERNEL_BLOCK):
        sl = slice(i, i + _KERNEL_BLOCK)
        Ki = K[sl]
        np.multiply(ey[sl, :, None], ex[sl, None, :], out=Ki)
        if products is not None:
            cross = np.exp(-(bb[sl] if bb.shape[0] > 1 else bb) * products[None, :])
            Ki *= cross[:, where]                   # (block or 1, distinct) -> (.., S, S)
    return K.reshape(m, S * S)


@functools.lru_cache(maxsize=32)
def _offset_products(g0: int, S: int):
    """The distinct products gx gy of the offsets ``g0 .. g0 + S - 1`` and, per ``(S, S)``
    pixel, the index of its product (for :func:`_kernel_cutouts`; read-only)."""
    g = np.arange(g0, g0 + S)
    products, where = np.unique(g[:, None] * g[None, :], return_inverse=True)
    products.flags.writeable = False
    where = where.reshape(S, S)
    where.flags.writeable = False
    return products, where


def _fit_pixel_noise(D, K, sig):
    """Weighted matched-filter amplitudes of cutouts ``D`` (background subtracted) with
    kernels ``K`` and per-pixel noise ``sig``, all ``(m, S*S)``: returns ``(F, mean noise
    error, chi2, good pixels)`` per row (docs/science.md, Forced photometry: estimator)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(D) & (sig > 0) & np.isfinite(sig)
        inv_s = np.where(good, 1.0 / np.where(good, sig, 1.0), 0.0)
    w = inv_s * inv_s
    D0 = np.where(good, D, 0.0)
    KW = K * w
    skk = np.einsum("ij,ij->i", KW, K)
    skd = np.einsum("ij,ij->i", KW, D0)
    sks = np.einsum("ij,ij->i", K, inv_s)
    skw = KW.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = skd / skk
        err = sks / skw
        resid = D0 - F[:, None] * K
        chi2 = np.einsum("ij,ij->i", resid * resid, w)
    return F, err, chi2, good.sum(axis=1)


def _fit_constant_noise(D, K, bkg, sig):
    """:func:`_fit_pixel_noise` when background ``bkg`` and noise ``sig`` (``(m,)``) are
    constant over each cutout: the weights cancel from the amplitude and the mean noise
    error is ``sig`` itself, so the fit needs no per-pixel weight arrays."""
    with np.errstate(invalid="ignore"):
        row_ok = np.isfinite(sig) & (sig > 0) & np.isfinite(bkg)
    D -= bkg[:, None]
    good = np.isfinite(D)
    if not good.all():
        D[~good] = 0.0
        K = np.where(good, K, 0.0)
    good &= row_ok[:, None]
    skk = np.einsum("ij,ij->i", K, K)
    skd = np.einsum("ij,ij->i", K, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = skd / skk
        D -= F[:, None] * K                       # the residual, in place
        chi2 = np.einsum("ij,ij->i", D, D) / (sig * sig)
    F[~row_ok] = np.nan
    return F, np.where(row_ok, sig, np.nan), chi2, good.sum(axis=1)


def measure_arrays(data, background, rms, x, y, pixel_beam: PixelBeam, *, nbeam: float = 3.0,
                   cluster_threshold: float | None = 1.5, error_scale: float = 1.0,
                   chunk: int = CHUNK, kernels: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Forced photometry on arrays (all positions at once).

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image, Jy/beam (may be a memory map).
    background : ndarray (ny, nx), float or None
        Background subtracted before fitting (None = 0), Jy/beam.
    rms : ndarray (ny, nx) or float
        Pixel noise sigma, Jy/beam; non-positive or NaN pixels are not used.
    x, y : array-like
        0-based pixel positions (sub-pixel).
    pixel_beam : PixelBeam
        Kernel shape on the pixel grid.
    nbeam : float
        Cutout side in beams (default 3).
    cluster_threshold : float or None
        Fit sources closer than this x BMAJ jointly; None or <= 0 disables.
    error_scale : float
        Multiplies the mean-noise error to give ``peak_err_jyb`` (the image's
        noise-correlation factor; 1 = the docs/science.md estimator as is).
    kernels : ndarray (n, 3), optional
        Per-source kernel coefficients (a, b, c) as in :class:`PixelBeam`
        (:func:`local_kernels`); by default ``pixel_beam``'s for every source.
        ``pixel_beam`` still sets the cutout size and the clustering radius.

    Returns
    -------
    dict of str -> ndarray
        ``x_pix, y_pix, peak_jyb, peak_err_jyb, mean_noise_err_jyb,
        local_rms_jyb, bkg_jyb, snr, chi2, dof, n_pix, cluster_id, flags,
        success`` in input order.
    """
    data = np.asarray(data) if not isinstance(data, np.ndarray) else data
    ny, nx = data.shape
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    h = pixel_beam.half_size(nbeam)
    flags, xc, yc, inside, blanked, local_rms = _locate(data, rms, x, y, h)
    full = inside & (xc - h >= 0) & (xc + h < nx) & (yc - h >= 0) & (yc + h < ny)
    flags[inside & ~full] |= int(Flag.NEAR_EDGE)
    ok = full & ~blanked
    out = _forced_columns(x, y, flags, local_rms)
    out["bkg_jyb"][inside] = _background_at(background, yc[inside], xc[inside])
    if kernels is not None:
        kernels = np.asarray(kernels, float)
        if kernels.shape != (x.size, 3):
            raise ConfigError("kernels", f"shape {kernels.shape}", f"shape ({x.size}, 3)")
    cutouts = _Cutouts(data, background, rms, x, y, xc, yc, h)
    sel_all = np.flatnonzero(ok)
    # the last chunk's arrays stay referenced until the clusters are fitted: freed first,
    # their pages go back to the system and the cluster fit faults new ones in (~15 % of
    # the whole fit's time); each earlier chunk's are freed before the next is made
    held = None
    for start in range(0, sel_all.size, chunk):
        held = None
        held = _fit_isolated(out, cutouts, sel_all[start:start + chunk], pixel_beam, kernels)
    if cluster_threshold and cluster_threshold > 0 and sel_all.size > 1:
        _fit_clusters(out, data, background, rms, x, y, xc, yc, sel_all, pixel_beam, h,
                      cluster_threshold, chunk, kernels)
    del held
    out["peak_err_jyb"] = out["mean_noise_err_jyb"] * float(error_scale)
    fail_noise = ok & np.isfinite(out["peak_jyb"]) & ~(out["peak_err_jyb"] > 0)
    flags[fail_noise] |= int(Flag.NO_NOISE)
    _finalise(out)
    return out


def _forced_columns(x, y, flags, local_rms) -> dict[str, np.ndarray]:
    """The result columns of :func:`measure_arrays` before any fit (NaN, 0, -1, False)."""
    n = x.size
    return {
        "x_pix": x.copy(), "y_pix": y.copy(),
        "peak_jyb": np.full(n, np.nan), "peak_err_jyb": np.full(n, np.nan),
        "mean_noise_err_jyb": np.full(n, np.nan), "local_rms_jyb": local_rms,
        "bkg_jyb": np.full(n, np.nan), "snr": np.full(n, np.nan), "chi2": np.full(n, np.nan),
        "dof": np.zeros(n, np.int64), "n_pix": np.zeros(n, np.int64),
        "cluster_id": np.full(n, -1, np.int64), "flags": flags,
        "success": np.zeros(n, bool),
    }


def _background_at(background, yc, xc) -> np.ndarray | float:
    """The background (a map, a scalar or None = 0) at integer pixels, Jy/beam."""
    if background is not None and np.ndim(background) == 2:
        return np.asarray(background[yc, xc], float)
    if background is not None:
        return float(background)
    return 0.0


class _Cutouts:
    """The ``(S, S)`` cutouts of the image and its maps around each position's pixel.

    Data cutouts are copied as blocks of a sliding-window view (the cutouts lie inside
    the image). Maps that vary only on the box scale (an estimated grid, or constants)
    are constant over a cutout (a few beams against a box of ~20), so :meth:`maps`
    gives one value per source for them; other maps are taken pixel by pixel.
    """

    def __init__(self, data, background, rms, x, y, xc, yc, h: int):
        self.background, self.rms = background, rms
        self.x, self.y, self.xc, self.yc, self.h = x, y, xc, yc, h
        self.nx = data.shape[1]
        self.S = 2 * h + 1
        g = np.arange(-h, h + 1)
        self.offsets = g
        self.flat_offsets = (g[:, None] * self.nx + g[None, :]).reshape(-1)
        self.smooth_maps = all(m is None or np.ndim(m) == 0 or getattr(m, "smooth", False)
                               for m in (background, rms))
        self.windows = np.lib.stride_tricks.sliding_window_view(data, (self.S, self.S))

    def data(self, sel) -> np.ndarray:
        """``(m, S*S)`` float64 copies of the data cutouts of positions ``sel``."""
        return self.windows[self.yc[sel] - self.h, self.xc[sel] - self.h] \
            .reshape(sel.size, self.S * self.S).astype(np.float64)

    def centres(self, sel) -> np.ndarray:
        """Flat pixel index of each cutout's centre."""
        return self.yc[sel] * self.nx + self.xc[sel]

    def pixel_maps(self, sel):
        """Background (or None) and rms on the ``(m, S*S)`` cutouts, pixel by pixel."""
        idx = self.centres(sel)[:, None] + self.flat_offsets[None, :]
        bkg = None
        if self.background is not None:
            bkg = _cutout_gather(self.background, self.yc[sel], self.xc[sel], self.h, idx,
                                 self.nx)
        return bkg, _cutout_gather(self.rms, self.yc[sel], self.xc[sel], self.h, idx, self.nx)

    def kernels(self, sel, pixel_beam: PixelBeam, kernels) -> np.ndarray:
        """``(m, S*S)`` unit-peak kernels centred on the exact positions of ``sel``."""
        if kernels is None:
            a, b, c = pixel_beam.a, pixel_beam.b, pixel_beam.c
        else:
            a, b, c = (kernels[sel, k][:, None] for k in range(3))
        return _kernel_cutouts(a, b, c, self.offsets, self.x[sel] - self.xc[sel],
                               self.y[sel] - self.yc[sel])


def _fit_isolated(out, cutouts: _Cutouts, sel, pixel_beam: PixelBeam, kernels):
    """Fit positions ``sel`` one kernel each (in place on ``out``); returns the ``(m, S*S)``
    arrays it made (cutouts, kernels and, with per-pixel maps, the noise)."""
    m = sel.size
    D = cutouts.data(sel)
    K = cutouts.kernels(sel, pixel_beam, kernels)
    sig = None
    if cutouts.smooth_maps:
        centre = cutouts.centres(sel)
        F, err, chi2, ngood = _fit_constant_noise(
            D, K, _gather(cutouts.background, centre, cutouts.nx, (m,)),
            _gather(cutouts.rms, centre, cutouts.nx, (m,)))
    else:
        bkg, sig = cutouts.pixel_maps(sel)
        if bkg is not None:
            D -= bkg
        F, err, chi2, ngood = _fit_pixel_noise(D, K, sig)
    nogood = (ngood == 0) | ~np.isfinite(F)
    F[nogood] = np.nan
    err[nogood] = np.nan
    chi2[nogood] = np.nan
    out["peak_jyb"][sel] = F
    out["mean_noise_err_jyb"][sel] = err
    out["chi2"][sel] = chi2
    out["dof"][sel] = np.maximum(ngood - 1, 0)
    out["n_pix"][sel] = ngood
    out["flags"][sel[nogood]] |= int(Flag.NO_GOOD_PIXELS)
    return D, K, sig


def _finalise(out):
    flags = out["flags"]
    failed = (flags & int(FAILURE_FLAGS)) != 0
    for col in ("peak_jyb", "peak_err_jyb", "snr", "chi2"):
        out[col][failed] = np.nan
    if "mean_noise_err_jyb" in out:
        out["mean_noise_err_jyb"][failed] = np.nan
    out["dof"][failed] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["snr"] = out["peak_jyb"] / out["peak_err_jyb"]
    out["success"] = ~failed & np.isfinite(out["peak_jyb"])
    # a finite flux without a usable error is not a success either
    out["success"] &= np.isfinite(out["peak_err_jyb"])


def cluster_labels(x, y, radius: float) -> np.ndarray:
    """Transitive groups of points closer than ``radius`` (connected components).

    Returns an int array of labels; isolated points get their own label.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pts = np.column_stack([x, y])
    n = len(pts)
    pairs = cKDTree(pts).query_pairs(r=radius, output_type="ndarray")
    if pairs.size == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _fit_clusters(out, data, background, rms, x, y, xc, yc, sel_all, pb, h, threshold, chunk,
                  kernels=None):
    """Joint exact least-squares fits of blended groups (in place on ``out``)."""
    labels = cluster_labels(x[sel_all], y[sel_all], threshold * pb.major_pix)
    counts = np.bincount(labels)
    multi = counts[labels] > 1
    if not multi.any():
        return
    ny, nx = data.shape
    members_all = sel_all[multi]
    lab = labels[multi]
    order = np.lexsort((members_all, lab))
    members_all, lab = members_all[order], lab[order]
    # renumber clusters 0..k-1 in order of their first member (input order)
    uniq, first = np.unique(lab, return_index=True)
    first_member = members_all[first]
    rank = np.empty_like(uniq)
    rank[np.argsort(first_member)] = np.arange(uniq.size)
    cid_of_label = dict(zip(uniq.tolist(), rank.tolist()))
    cid = np.array([cid_of_label[v] for v in lab.tolist()], np.int64) if lab.size < 2048 else \
        rank[np.searchsorted(uniq, lab)]
    out["cluster_id"][members_all] = cid
    out["flags"][members_all] |= int(Flag.CLUSTERED)
    sizes = counts[lab]
    for size in np.unique(sizes):
        mem = members_all[sizes == size].reshape(-1, size)          # (B, m)
        x0 = xc[mem].min(axis=1) - h
        x1 = xc[mem].max(axis=1) + h
        y0 = yc[mem].min(axis=1) - h
        y1 = yc[mem].max(axis=1) + h
        wmax = int((x1 - x0).max()) + 1
        hmax = int((y1 - y0).max()) + 1
        per = max(1, int(4e6 // (size * wmax * hmax)))
        for s0 in range(0, mem.shape[0], per):
            sl = slice(s0, s0 + per)
            M = mem[sl]
            B = M.shape[0]
            gx = x0[sl, None] + np.arange(wmax)[None, :]              # (B, W)
            gy = y0[sl, None] + np.arange(hmax)[None, :]              # (B, H)
            inbox = ((gx <= x1[sl, None]) & (gx < nx))[:, None, :] & \
                ((gy <= y1[sl, None]) & (gy < ny))[:, :, None]         # (B, H, W)
            gxc = np.minimum(gx, nx - 1)
            gyc = np.minimum(gy, ny - 1)
            idx = (gyc[:, :, None] * nx + gxc[:, None, :]).reshape(B, -1)
            D = _gather(data, idx, nx, idx.shape)
            if background is not None:
                D = D - _gather(background, idx, nx, idx.shape)
            sig = _gather(rms, idx, nx, idx.shape)
            with np.errstate(invalid="ignore", divide="ignore"):
                good = inbox.reshape(B, -1) & np.isfinite(D) & np.isfinite(sig) & (sig > 0)
                inv_s = np.where(good, 1.0 / np.where(good, sig, 1.0), 0.0)
            w = inv_s * inv_s
            D0 = np.where(good, D, 0.0)
            fx = gx[:, None, :] - x[M][:, :, None]                    # (B, m, W)
            fy = gy[:, None, :] - y[M][:, :, None]                    # (B, m, H)
            if kernels is None:
                a, b, c = pb.a, pb.b, pb.c
            else:  # per member: a, c (B, m, 1) against fx, fy; b (B, m, 1, 1)
                a, c = kernels[M, 0][:, :, None], kernels[M, 2][:, :, None]
                b = kernels[M, 1][:, :, None, None]
            q = (a * fx * fx)[:, :, None, :] + (c * fy * fy)[:, :, :, None] \
                + b * fy[:, :, :, None] * fx[:, :, None, :]
            K = np.exp(-q).reshape(B, size, -1)                       # (B, m, P)
            KW = K * w[:, None, :]
            A = np.einsum("bip,bjp->bij", KW, K)
            rhs = np.einsum("bip,bp->bi", KW, D0)
            sks = np.einsum("bip,bp->bi", K, inv_s)
            skw = KW.sum(axis=2)
            ngood = good.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                ev = np.linalg.eigvalsh(A)
                well = (ev[:, 0] > 1e-9 * ev[:, -1]) & np.all(np.isfinite(A), axis=(1, 2)) \
                    & (ngood > size)
                F = np.full((B, size), np.nan)
                if well.any():
                    F[well] = np.linalg.solve(A[well], rhs[well][..., None])[..., 0]
                err = sks / skw
                model = np.einsum("bi,bip->bp", np.where(np.isfinite(F), F, 0.0), K)
                resid = D0 - model
                chi2 = np.einsum("bp,bp->b", resid * resid, w)
            chi2[~well] = np.nan
            err[~well] = np.nan
            out["peak_jyb"][M] = F
            out["mean_noise_err_jyb"][M] = err
            out["chi2"][M] = chi2[:, None]
            out["dof"][M] = np.maximum(ngood - size, 0)[:, None]
            out["n_pix"][M] = ngood[:, None]
            out["flags"][M[~well]] |= int(Flag.FIT_FAILED)


def peak_arrays(data, rms, x, y, *, box_pix: int = 5, background=None) -> dict[str, np.ndarray]:
    """Box-peak photometry on arrays (docs/science.md, Peak method), all positions at once.

    The box is ``centre +- max(1, box_pix // 2)`` pixels, clipped to the
    image; the flux is the largest finite pixel (minus ``background`` at that
    pixel when given; by default none, so the estimate is biased high), the
    error the noise-map rms at the position. Every row is flagged
    ``BIASED_PEAK``; chi2 is NaN and dof 0. Extra columns ``peak_x_pix`` and
    ``peak_y_pix`` give the pixel of the maximum.
    """
    ny, nx = data.shape
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    n = x.size
    half = max(1, int(box_pix) // 2)
    flags, xc, yc, inside, blanked, local_rms = _locate(data, rms, x, y, half)
    flags |= int(Flag.BIASED_PEAK)
    ok = inside & ~blanked
    out = {
        "x_pix": x.copy(), "y_pix": y.copy(), "peak_jyb": np.full(n, np.nan),
        "peak_err_jyb": local_rms.copy(), "local_rms_jyb": local_rms,
        "bkg_jyb": np.full(n, np.nan), "snr": np.full(n, np.nan), "chi2": np.full(n, np.nan),
        "dof": np.zeros(n, np.int64), "n_pix": np.zeros(n, np.int64),
        "cluster_id": np.full(n, -1, np.int64), "flags": flags, "success": np.zeros(n, bool),
        "peak_x_pix": np.full(n, np.nan), "peak_y_pix": np.full(n, np.nan),
    }
    sel = np.flatnonzero(ok)
    if sel.size:
        g = np.arange(-half, half + 1)
        gx = xc[sel, None] + g[None, :]
        gy = yc[sel, None] + g[None, :]
        inb = ((gx >= 0) & (gx < nx))[:, None, :] & ((gy >= 0) & (gy < ny))[:, :, None]
        idx = (np.clip(gy, 0, ny - 1)[:, :, None] * nx + np.clip(gx, 0, nx - 1)[:, None, :])
        idx = idx.reshape(sel.size, -1)
        vals = _gather(data, idx, nx, idx.shape)
        if background is not None:
            vals = vals - _gather(background, idx, nx, idx.shape)
        vals = np.where(inb.reshape(sel.size, -1) & np.isfinite(vals), vals, -np.inf)
        j = np.argmax(vals, axis=1)
        best = vals[np.arange(sel.size), j]
        have = np.isfinite(best)
        out["peak_jyb"][sel[have]] = best[have]
        out["n_pix"][sel] = np.isfinite(vals).sum(axis=1)
        out["peak_x_pix"][sel[have]] = gx[have, j[have] % (2 * half + 1)]
        out["peak_y_pix"][sel[have]] = gy[have, j[have] // (2 * half + 1)]
        flags[sel[~have]] |= int(Flag.NO_GOOD_PIXELS)
        if background is not None and np.ndim(background) == 2:
            out["bkg_jyb"][sel] = np.asarray(background[yc[sel], xc[sel]], float)
    no_noise = ok & ~np.isfinite(local_rms)
    flags[no_noise] |= int(Flag.NO_NOISE)
    _finalise(out)
    return out


# --------------------------------------------------------------------------------------
# image level
# --------------------------------------------------------------------------------------
def _positions(ra_deg, dec_deg):
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=float)).ravel()
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=float)).ravel()
    if ra.shape != dec.shape:
        raise ConfigError("dec_deg", f"{dec.size} values", f"as many values as ra_deg ({ra.size})")
    return ra, dec


def _check_option(name, value, cond, allowed):
    if not cond:
        raise ConfigError(name, value, allowed)


def measure_positions(image, ra_deg, dec_deg, *, method: str = "forced", **options) -> MeasurementTable:
    """Measure the flux density at sky positions on one image.

    Parameters
    ----------
    image : str, Path or RadioImage
        The (primary-beam-corrected) image.
    ra_deg, dec_deg : array-like
        ICRS positions, degrees.
    method : {"forced", "peak", "adaptive", "aegean"}
        ``adaptive`` and ``aegean`` are delegated to
        :mod:`dsa110_contimg.science.methods`.
    **options
        forced: ``nbeam`` (3.0), ``cluster_threshold`` (1.5; None disables),
        ``error_model`` ("correlated" | "mean_noise"), ``condon`` (False; adds
        ``condon_err_jyb``), ``pixel_geometry`` ("local": the beam is mapped to
        the pixel grid through the WCS at each source when the pixel geometry
        varies across the image by more than :data:`LOCAL_GEOMETRY_TOLERANCE`,
        else through the centre's; "centre": always the centre's).
        Both: ``beam`` (a Beam used when the header has none), ``maps`` (the
        image plane's :class:`~dsa110_contimg.science.noise_maps.BackgroundMaps`,
        as built by :func:`~dsa110_contimg.science.noise.background_maps_for`;
        otherwise they are built here from ``bkg_path``, ``rms_path``,
        ``autoload_maps`` (True) and ``background_options`` (dict for
        :func:`~dsa110_contimg.science.noise.estimate_background`)).
        peak: ``box_pix`` (beam FWHM in pixels, else 5), ``subtract_background`` (False).

    Returns
    -------
    MeasurementTable
        One row per position, in input order; ``meta`` holds the method, image
        path, MJD, frequency, beam, noise-map source and error model.

    Raises
    ------
    ConfigError
        Unknown method or option value.
    MissingBeam
        ``forced`` on an image without a beam (use ``peak`` or pass ``beam``).
    MapMismatch
        ``maps`` of another shape than the image, or map files that do not fit it.
    InvalidImage subclasses
        From opening the image or its maps.
    """
    if method not in METHODS:
        raise ConfigError("method", method, "one of " + ", ".join(METHODS))
    if method in optional_methods.MODULES:
        return optional_methods.measure_function(method)(image, ra_deg, dec_deg, **options)
    request = _Request.of(image, ra_deg, dec_deg, options)
    measure = _measure_forced if method == "forced" else _measure_peak
    cols, meta = measure(request, options)
    cols["ra_deg"] = request.ra
    cols["dec_deg"] = request.dec
    return MeasurementTable(cols, {**request.meta(method), **meta})


@dataclass
class _Request:
    """What :func:`measure_positions` measures, common to ``forced`` and ``peak``: the image,
    its beam (the image's own, else the caller's; the image is not modified), the
    positions (deg) and where the background and noise maps come from."""

    image: object
    beam: object
    beam_source: str
    ra: np.ndarray
    dec: np.ndarray
    maps: object
    map_options: dict
    estimate_options: dict

    @classmethod
    def of(cls, image, ra_deg, dec_deg, options: dict) -> "_Request":
        """Open the image and take the common options out of ``options``."""
        from dsa110_contimg.science.image import as_image

        ra, dec = _positions(ra_deg, dec_deg)
        beam_opt = options.pop("beam", None)
        maps = options.pop("maps", None)
        map_options = {"bkg_path": options.pop("bkg_path", None),
                       "rms_path": options.pop("rms_path", None),
                       "autoload": bool(options.pop("autoload_maps", True))}
        given_bg = options.pop("background_options", None)
        bg_opts = dict(given_bg or {})
        img = as_image(image, beam=beam_opt)
        img_beam, beam_source = img.beam, img.beam_source
        if img_beam is None and beam_opt is not None:
            img_beam, beam_source = beam_opt, "caller"
        if img.beam is None and img_beam is not None and not {"beam_pix", "box_pix"} & set(bg_opts):
            bg_opts["beam_pix"] = img_beam.major_arcsec / img.pixel_scale_arcsec
        if maps is not None:
            _check_given_maps(maps, img, (("bkg_path", map_options["bkg_path"]),
                                          ("rms_path", map_options["rms_path"]),
                                          ("background_options", given_bg)))
        return cls(img, img_beam, beam_source, ra, dec, maps, map_options, bg_opts)

    def background_maps(self):
        """The caller's maps, else those of :func:`background_maps_for` from the map options."""
        if self.maps is not None:
            return self.maps
        from dsa110_contimg.science.noise import background_maps_for

        return background_maps_for(self.image, **self.map_options, **self.estimate_options)

    def meta(self, method: str) -> dict:
        img = self.image
        return {"method": method, "image": None if img.path is None else str(img.path),
                "mjd": img.mjd, "freq_hz": img.freq_hz,
                "beam_deg": None if self.beam is None else self.beam.as_tuple(),
                "beam_source": self.beam_source}


def _check_given_maps(maps, img, map_options) -> None:
    """The caller's maps fit the image, and no option asks to build other maps."""
    for name, value in map_options:
        if value:
            raise ConfigError(name, value, "no map option when 'maps' is given (the maps are built)",
                              img.path)
    if tuple(maps.shape) != tuple(img.shape):
        raise MapMismatch(f"maps of shape {tuple(maps.shape)} given for an image of shape "
                          f"{tuple(img.shape)}", img.path)


_FORCED_OPTIONS = ("nbeam, cluster_threshold, error_model, condon, pixel_geometry, beam, maps, "
                   "bkg_path, rms_path, autoload_maps, background_options")
_PEAK_OPTIONS = ("box_pix, subtract_background, beam, maps, bkg_path, rms_path, autoload_maps, "
                 "background_options")


def _forced_options(options: dict) -> dict:
    """The forced method's own options, checked (``ConfigError`` for an unknown one)."""
    opts = {"nbeam": float(options.pop("nbeam", 3.0)),
            "cluster_threshold": options.pop("cluster_threshold", 1.5),
            "error_model": options.pop("error_model", "correlated"),
            "condon": bool(options.pop("condon", False)),
            "pixel_geometry": options.pop("pixel_geometry", "local")}
    if options:
        raise ConfigError("options", sorted(options), "forced options: " + _FORCED_OPTIONS)
    geometry, nbeam, thr = opts["pixel_geometry"], opts["nbeam"], opts["cluster_threshold"]
    _check_option("pixel_geometry", geometry, geometry in ("local", "centre"),
                  "'local' or 'centre'")
    _check_option("nbeam", nbeam, np.isfinite(nbeam) and nbeam > 0, "a number > 0")
    _check_option("cluster_threshold", thr, thr is None or (np.isfinite(float(thr))
                                                            and float(thr) >= 0),
                  "a number >= 0 or None")
    _check_option("error_model", opts["error_model"],
                  opts["error_model"] in ("correlated", "mean_noise"), "'correlated' or 'mean_noise'")
    return opts


def _measure_forced(request: _Request, options: dict):
    """The ``forced`` method on a request: result columns and the method's metadata."""
    opts = _forced_options(options)
    img, nbeam, thr = request.image, opts["nbeam"], opts["cluster_threshold"]
    beam = request.beam if request.beam is not None else img.require_beam()
    pb = pixel_beam_for(img, beam)
    maps = request.background_maps()
    meta = {}
    scale = 1.0
    if opts["error_model"] == "correlated":
        scale = correlation_factor(img, maps, pb, nbeam)
        if not np.isfinite(scale):
            scale = 1.0
            meta["error_model_note"] = ("noise correlation not measurable on this image "
                                        "(too few pixels): mean-noise error used")
    x, y = img.world_to_pixel(request.ra, request.dec)
    kernels = local_kernels(img, beam, x, y, pb) if opts["pixel_geometry"] == "local" else None
    cols = measure_arrays(img.data, maps.background, maps.rms, x, y, pb, nbeam=nbeam,
                          cluster_threshold=None if thr is None else float(thr),
                          error_scale=scale, kernels=kernels)
    if opts["condon"]:
        _add_condon_errors(cols, beam)
    meta.update(nbeam=nbeam, cluster_threshold=thr, error_model=opts["error_model"],
                noise_corr_factor=float(scale), noise_source=maps.source,
                kernel_pix=(float(pb.a), float(pb.b), float(pb.c)),
                pixel_geometry="centre" if kernels is None else "local")
    return cols, meta


def _add_condon_errors(cols: dict, beam) -> None:
    """The ``condon_err_jyb`` column (Condon 1997 peak error; NaN where the fit failed)."""
    from dsa110_contimg.science.condon import peak_flux_error

    cols["condon_err_jyb"] = peak_flux_error(
        cols["peak_jyb"], cols["local_rms_jyb"], beam_major=beam.major_arcsec,
        beam_minor=beam.minor_arcsec)
    cols["condon_err_jyb"][~cols["success"]] = np.nan


def _measure_peak(request: _Request, options: dict):
    """The ``peak`` method on a request: result columns and the method's metadata."""
    img = request.image
    subtract = bool(options.pop("subtract_background", False))
    box = options.pop("box_pix", None)
    if options:
        raise ConfigError("options", sorted(options), "peak options: " + _PEAK_OPTIONS)
    if box is None:
        box = max(3, int(round(request.beam.major_arcsec / img.pixel_scale_arcsec))) \
            if request.beam is not None else 5
    _check_option("box_pix", box, int(box) >= 1, "an integer >= 1")
    maps = request.background_maps()
    x, y = img.world_to_pixel(request.ra, request.dec)
    cols = peak_arrays(img.data, maps.rms, x, y, box_pix=int(box),
                       background=maps.background if subtract else None)
    if not subtract:
        cols["bkg_jyb"] = maps.background_at(x, y)
    return cols, {"box_pix": int(box), "subtract_background": subtract,
                  "noise_source": maps.source}


def correlation_factor(image, maps, pixel_beam: PixelBeam, nbeam: float = 3.0,
                       data=None) -> float:
    """The image's matched-filter noise factor for this kernel (dimensionless).

    Kept in ``maps.correlation_factors`` under ``(pixel_beam, nbeam)``, so measuring the
    same plane with the same maps again does not measure it again. ``data`` defaults to
    ``image.data``; pass ``image.plane(i)`` (with that plane's maps) for a cube plane.
    NaN when the image is too small to measure it.
    """
    from dsa110_contimg.science.noise import noise_correlation_factor

    key = (pixel_beam, nbeam)
    known = maps.correlation_factors
    if key not in known:
        known[key] = noise_correlation_factor(image.data if data is None else data,
                                              maps.background, maps.rms, pixel_beam.stamp(nbeam))
    return known[key]


__all__ = ["measure_positions", "measure_arrays", "peak_arrays", "PixelBeam", "pixel_beam_for",
           "local_kernels", "local_kernel_coefficients", "local_jacobians_arcsec",
           "cluster_labels", "correlation_factor", "METHODS"]
