"""Sky regions of catalogue queries, as values: :class:`Cone`, :class:`Box`, :class:`Ellipse`,
:class:`Footprint`.

A region tells the catalogue store (:meth:`dsa110_contimg.store.catalogs.SurveyCatalog.query`)
everything it needs besides SQL:

* :meth:`Region.zone_ranges` -- the declination zones and per-zone RA intervals whose rows
  may lie inside (read through the store's ``(zone, ra_deg)`` index; a superset);
* :meth:`Region.select` -- which of those candidate rows are inside (exact), and the columns
  the region adds to them (a footprint adds the pixel position);
* :attr:`Region.centre` and :attr:`Region.boundary` -- where the store checks that its
  ingested files cover the region;
* :attr:`Region.bounding_cone` -- a cone containing the region: whether the store's
  coverage reaches into it at all, and what an online source is asked for.

Conventions as in :mod:`dsa110_contimg.catalogs.spatial`: degrees, ICRS, RA in [0, 360),
RA intervals closed ``(lo, hi)`` pairs split at 0/360.
"""

from __future__ import annotations

import math

import numpy as np

from dsa110_contimg.catalogs import spatial
from dsa110_contimg.core.errors import CatalogError

#: boundary samples per box edge (coverage test, bounding cone)
BOX_EDGE_SAMPLES = 9
#: boundary samples of an ellipse
ELLIPSE_SAMPLES = 16


class Region:
    """A query region (base class; build one of the subclasses).

    Attributes
    ----------
    centre : (float, float)
        RA, Dec of the region's centre, deg.
    boundary : (ndarray, ndarray)
        RA, Dec of points sampling the region's edge, deg.
    bounding_cone : (float, float, float)
        RA, Dec and radius (deg, at most 180) of a cone containing the region.
    added_columns : tuple of str
        Columns :meth:`select` adds to the rows.
    """

    added_columns: tuple[str, ...] = ()

    def __init__(self, centre, boundary, bounding_cone):
        self.centre = (float(centre[0]), float(centre[1]))
        self.boundary = (np.asarray(boundary[0], float), np.asarray(boundary[1], float))
        self.bounding_cone = tuple(float(v) for v in bounding_cone)

    def coverage_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The centre and the boundary samples: what must be covered for a full answer, deg."""
        return np.r_[self.centre[0], self.boundary[0]], np.r_[self.centre[1], self.boundary[1]]

    def zone_ranges(self) -> list[tuple[int, list[tuple[float, float]]]]:
        """``[(zone, [(ra_lo, ra_hi), ...]), ...]`` holding every row inside the region."""
        raise NotImplementedError

    def contains(self, ra_deg, dec_deg) -> np.ndarray:
        """Whether each position (deg) is inside the region (bool array)."""
        raise NotImplementedError

    def select(self, ra_deg, dec_deg) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Membership of candidate rows and the columns the region adds to every one of them."""
        return self.contains(ra_deg, dec_deg), {}


def _check_cone(ra, dec, radius) -> tuple[float, float, float]:
    ra, dec, radius = float(ra), float(dec), float(radius)
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(radius)):
        raise CatalogError(f"cone centre and radius must be finite, got ({ra}, {dec}, {radius})")
    if abs(dec) > 90.0:
        raise CatalogError(f"Dec must be within [-90, 90] deg, got {dec}")
    if not radius > 0.0:
        raise CatalogError(f"radius must be > 0 deg, got {radius}")
    return ra % 360.0, dec, min(radius, 180.0)


class Cone(Region):
    """Sources within ``radius_deg`` (great circle, inclusive) of (``ra_deg``, ``dec_deg``)."""

    def __init__(self, ra_deg: float, dec_deg: float, radius_deg: float):
        self.ra_deg, self.dec_deg, self.radius_deg = _check_cone(ra_deg, dec_deg, radius_deg)
        c = (self.ra_deg, self.dec_deg)
        super().__init__(c, spatial.circle_points(*c, self.radius_deg), (*c, self.radius_deg))

    def zone_ranges(self):
        return spatial.cone_zone_ranges(self.ra_deg, self.dec_deg, self.radius_deg)

    def contains(self, ra_deg, dec_deg):
        return spatial.angular_separation_deg(self.ra_deg, self.dec_deg, ra_deg, dec_deg) \
            <= self.radius_deg

    def __repr__(self):
        return f"Cone({self.ra_deg}, {self.dec_deg}, {self.radius_deg})"


class Box(Region):
    """Sources with ``dec_min <= Dec <= dec_max`` and RA from ``ra_min`` east to ``ra_max``.

    ``ra_min > ra_max`` (mod 360) is a box crossing RA 0/360, e.g. ``Box(350, 10, ...)``.
    """

    def __init__(self, ra_min: float, ra_max: float, dec_min: float, dec_max: float):
        for v, n in ((ra_min, "ra_min"), (ra_max, "ra_max"), (dec_min, "dec_min"),
                     (dec_max, "dec_max")):
            if not np.isfinite(v):
                raise CatalogError(f"{n} must be finite, got {v!r}")
        if dec_min > dec_max or dec_min > 90 or dec_max < -90:
            raise CatalogError(f"invalid Dec range [{dec_min}, {dec_max}] (deg)")
        self.dec_min, self.dec_max = dec_min, dec_max
        self.intervals = spatial.ra_range_intervals(float(ra_min), float(ra_max))
        span = sum(hi - lo for lo, hi in self.intervals)
        ra_c = (self.intervals[0][0] + span / 2.0) % 360.0
        dec_c = 0.5 * (max(dec_min, -90) + min(dec_max, 90))
        e = np.linspace(0, 1, BOX_EDGE_SAMPLES)
        k = BOX_EDGE_SAMPLES
        lo0 = self.intervals[0][0]
        sra = np.r_[lo0 + e * span, lo0 + e * span, np.full(k, lo0), np.full(k, lo0 + span)] % 360
        side = dec_c + (e - 0.5) * (dec_max - dec_min)
        sdec = np.r_[np.full(k, max(dec_min, -90)), np.full(k, min(dec_max, 90)), side, side]
        sdec = np.clip(sdec, -90, 90)
        radius = float(np.max(spatial.angular_separation_deg(ra_c, dec_c, sra, sdec))) * 1.02
        if span >= 360.0:
            radius = 180.0
        super().__init__((ra_c, dec_c), (sra, sdec), (ra_c, dec_c, radius))

    def zone_ranges(self):
        return spatial.box_zone_ranges(self.intervals, self.dec_min, self.dec_max)

    def contains(self, ra_deg, dec_deg):
        ra, dec = np.asarray(ra_deg), np.asarray(dec_deg)
        ok = (dec >= self.dec_min) & (dec <= self.dec_max)
        in_ra = np.zeros(len(ra), dtype=bool)
        for lo, hi in self.intervals:
            in_ra |= (ra >= lo) & (ra <= hi)
        return ok & in_ra

    def __repr__(self):
        return f"Box({self.intervals}, {self.dec_min}, {self.dec_max})"


class Ellipse(Region):
    """Sources with ``(dRA cos(dec0) / ra_radius)^2 + (dDec / dec_radius)^2 <= 1``.

    ``ra_radius_deg`` is an on-sky extent (already multiplied by cos Dec), ``dRA`` is
    wrapped to [-180, 180) deg.
    """

    def __init__(self, ra_deg: float, dec_deg: float, ra_radius_deg: float,
                 dec_radius_deg: float):
        ra0, dec0, rr = _check_cone(ra_deg, dec_deg, ra_radius_deg)
        _, _, rd = _check_cone(ra_deg, dec_deg, dec_radius_deg)
        self.ra_deg, self.dec_deg, self.ra_radius_deg, self.dec_radius_deg = ra0, dec0, rr, rd
        self._cos_dec = math.cos(math.radians(dec0))
        wide = self._cos_dec * 180.0 <= rr or abs(dec0) + rd > spatial.POLAR_DEC_DEG
        self._half_width = 180.0 if wide else rr / self._cos_dec
        t = np.radians(np.arange(ELLIPSE_SAMPLES) * 360.0 / ELLIPSE_SAMPLES)
        sra = np.mod(ra0 + np.sin(t) * self._half_width, 360.0)
        sdec = np.clip(dec0 + np.cos(t) * rd, -90, 90)
        radius = float(np.max(spatial.angular_separation_deg(ra0, dec0, sra, sdec)))
        if wide:
            # members at every RA: the farthest lie opposite the centre in RA, at the Dec of
            # the band closest to -dec0 (across a pole, or round the far side of the sky)
            lo, hi = max(-90.0, dec0 - rd), min(90.0, dec0 + rd)
            far = np.clip([lo, hi, -dec0], lo, hi)
            radius = max(radius, float(np.max(spatial.angular_separation_deg(
                ra0, dec0, (ra0 + 180.0) % 360.0, far))))
        super().__init__((ra0, dec0), (sra, sdec), (ra0, dec0, min(180.0, radius * 1.01 + 1e-6)))

    def zone_ranges(self):
        intervals = spatial.ra_intervals(self.ra_deg, self._half_width * (1 + 1e-9) + 1e-9)
        return spatial.box_zone_ranges(intervals, self.dec_deg - self.dec_radius_deg,
                                       self.dec_deg + self.dec_radius_deg)

    def contains(self, ra_deg, dec_deg):
        dra = spatial.wrap_delta_ra(ra_deg, self.ra_deg) * self._cos_dec
        ddec = np.asarray(dec_deg) - self.dec_deg
        return (dra / self.ra_radius_deg) ** 2 + (ddec / self.dec_radius_deg) ** 2 <= 1.0

    def __repr__(self):
        return (f"Ellipse({self.ra_deg}, {self.dec_deg}, {self.ra_radius_deg}, "
                f"{self.dec_radius_deg})")


class Footprint(Region):
    """Sources inside an image's pixel footprint, NaN-blanked pixels excluded.

    ``image`` has ``.wcs`` (celestial astropy WCS), ``.shape`` ``(ny, nx)`` and ``.data``
    (2-D; NaN = blanked; ``None`` skips the blank test). With ``margin_pix > 0`` a source
    must lie at least that many pixels inside the array edges, and the pixels that far
    away along x and y must be finite too. Rows get ``x_pix``, ``y_pix`` (0-based pixel
    position).
    """

    added_columns = ("x_pix", "y_pix")

    def __init__(self, image, margin_pix: float = 0.0):
        self.wcs = image.wcs.celestial if hasattr(image.wcs, "celestial") else image.wcs
        self.ny, self.nx = (int(v) for v in tuple(image.shape)[-2:])
        self.data = getattr(image, "data", None)
        self.margin_pix = float(margin_pix)
        wra, wdec, cra, cdec, pad = _sky_border(self.wcs, self.nx, self.ny,
                                                getattr(image, "path", None))
        self._intervals, self._dec_range = _footprint_extent(self.wcs, self.nx, self.ny, wra,
                                                             wdec, cra, pad)
        radius = min(180.0, float(np.max(spatial.angular_separation_deg(cra, cdec, wra, wdec)))
                     + pad)
        step = max(1, wra.size // 32)
        super().__init__((cra, cdec), (wra[::step], wdec[::step]), (cra, cdec, radius))

    def zone_ranges(self):
        return spatial.box_zone_ranges(self._intervals, *self._dec_range)

    def pixel_positions(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel ``(x, y)`` of sky positions (deg; NaN where not projectable)."""
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra_deg), np.asarray(dec_deg))
        return np.asarray(x, float), np.asarray(y, float)

    def _inside(self, x, y) -> np.ndarray:
        nx, ny, mg = self.nx, self.ny, self.margin_pix
        ok = np.isfinite(x) & np.isfinite(y)
        ok &= (x >= -0.5 + mg) & (x <= nx - 0.5 - mg) & (y >= -0.5 + mg) & (y <= ny - 0.5 - mg)
        if self.data is not None:
            arr = np.asarray(self.data)
            for dx, dy in ((0, 0),) + (((mg, 0), (-mg, 0), (0, mg), (0, -mg)) if mg > 0 else ()):
                ix = np.clip(np.round(np.where(ok, x + dx, 0)).astype(int), 0, nx - 1)
                iy = np.clip(np.round(np.where(ok, y + dy, 0)).astype(int), 0, ny - 1)
                ok &= np.isfinite(arr[iy, ix])
        return ok

    def contains(self, ra_deg, dec_deg):
        return self._inside(*self.pixel_positions(ra_deg, dec_deg))

    def select(self, ra_deg, dec_deg):
        x, y = self.pixel_positions(ra_deg, dec_deg)
        return self._inside(x, y), {"x_pix": x, "y_pix": y}

    def __repr__(self):
        return f"Footprint({self.nx}x{self.ny}, centre={self.centre}, margin={self.margin_pix})"


def _sky_border(wcs, nx: int, ny: int, label):
    """The array border sampled densely on the sky: ``(ra, dec)`` of the finite samples, the
    centre pixel's ``(ra, dec)`` and a pad (deg) covering the gaps between samples."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    m = max(8, min(512, max(nx, ny)))
    bx = np.r_[np.linspace(-0.5, nx - 0.5, m), np.full(m, nx - 0.5),
               np.linspace(nx - 0.5, -0.5, m), np.full(m, -0.5)]
    by = np.r_[np.full(m, -0.5), np.linspace(-0.5, ny - 0.5, m), np.full(m, ny - 0.5),
               np.linspace(ny - 0.5, -0.5, m)]
    wra, wdec = wcs.pixel_to_world_values(bx, by)
    cra, cdec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0))
    good = np.isfinite(wra) & np.isfinite(wdec)
    if not good.any() or not np.isfinite(cra):
        raise CatalogError("image footprint has no valid sky coordinates (check its WCS)", label)
    scale = float(np.max(np.abs(proj_plane_pixel_scales(wcs))))  # deg/pixel (plain floats)
    scale = getattr(scale, "value", scale)
    pad = 2.0 * scale * max(1.0, max(nx, ny) / m)
    return np.mod(wra[good], 360.0), wdec[good], cra, cdec, pad


def _pole_inside(wcs, nx: int, ny: int) -> float | None:
    """+90 or -90 when that celestial pole projects inside the array, else None."""
    pole = None
    for p in (90.0, -90.0):
        px, py = wcs.world_to_pixel_values(0.0, p)
        if np.isfinite(px) and -0.5 <= px <= nx - 0.5 and -0.5 <= py <= ny - 0.5:
            pole = p
    return pole


def _footprint_extent(wcs, nx, ny, wra, wdec, cra, pad):
    """RA intervals and ``(dec_min, dec_max)`` (deg) holding the footprint: the border's
    extent padded by ``pad``, the whole RA circle around a pole inside or near one."""
    d = spatial.wrap_delta_ra(wra, cra)
    dec_min, dec_max = float(wdec.min()) - pad, float(wdec.max()) + pad
    pole = _pole_inside(wcs, nx, ny)
    if pole is not None:
        return [(0.0, 360.0)], ((dec_min, 90.0) if pole > 0 else (-90.0, dec_max))
    cosd = max(math.cos(math.radians(min(89.9, max(abs(dec_min), abs(dec_max))))), 1e-6)
    lo, hi = cra + d.min() - pad / cosd, cra + d.max() + pad / cosd
    if max(abs(dec_min), abs(dec_max)) > spatial.POLAR_DEC_DEG or hi - lo >= 360.0:
        return [(0.0, 360.0)], (dec_min, dec_max)
    return spatial.ra_range_intervals(lo, hi), (dec_min, dec_max)


__all__ = ["Region", "Cone", "Box", "Ellipse", "Footprint"]
