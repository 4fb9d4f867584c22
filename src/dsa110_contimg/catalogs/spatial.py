"""Spherical geometry of catalogue queries: declination zones, RA intervals, separations.

Conventions: all angles in degrees; RA in [0, 360); RA intervals are closed
``(lo, hi)`` pairs with ``0 <= lo <= hi <= 360``, a range crossing RA 0/360
being split in two. The store buckets sources into declination zones of
``ZONE_HEIGHT_DEG`` (``zone = floor((dec + 90) / ZONE_HEIGHT_DEG)``) and keeps
them clustered by ``(zone, ra_deg)`` so a query reads one short RA run per zone.
"""

from __future__ import annotations

import math

import numpy as np

from dsa110_contimg.core.geometry import angular_separation_deg  # noqa: F401 (part of this module's API)

#: Height of a declination zone (deg).
ZONE_HEIGHT_DEG = 0.25
N_ZONES = int(round(180.0 / ZONE_HEIGHT_DEG))
#: Above this |Dec| (deg) a query takes the whole RA range of a zone.
POLAR_DEC_DEG = 85.0
_EPS = 1e-9


def zone_of(dec_deg) -> np.ndarray:
    """Zone number of each declination (deg); Dec +90 falls in the last zone."""
    z = np.floor((np.asarray(dec_deg, dtype=float) + 90.0) / ZONE_HEIGHT_DEG).astype(np.int64)
    return np.clip(z, 0, N_ZONES - 1)


def wrap_delta_ra(ra_deg, ra0_deg) -> np.ndarray:
    """RA difference ``ra - ra0`` wrapped to [-180, 180) deg."""
    return np.mod(np.asarray(ra_deg, dtype=float) - ra0_deg + 180.0, 360.0) - 180.0


def ra_intervals(ra_center: float, half_width: float) -> list[tuple[float, float]]:
    """RA intervals covering ``ra_center +- half_width`` (deg), split at 0/360."""
    if half_width >= 180.0:
        return [(0.0, 360.0)]
    ra_center = ra_center % 360.0
    lo, hi = ra_center - half_width, ra_center + half_width
    if lo < 0.0:
        return [(0.0, hi), (lo + 360.0, 360.0)]
    if hi > 360.0:
        return [(lo, 360.0), (0.0, hi - 360.0)]
    return [(lo, hi)]


def ra_range_intervals(ra_min: float, ra_max: float) -> list[tuple[float, float]]:
    """RA intervals of a box from ``ra_min`` eastwards to ``ra_max`` (deg).

    ``ra_min > ra_max`` (after reduction to [0, 360)) means the box crosses
    RA 0/360, e.g. ``(350, 10)``; a span of 360 deg or more is the whole sky.
    """
    if ra_max - ra_min >= 360.0:
        return [(0.0, 360.0)]
    lo, hi = ra_min % 360.0, ra_max % 360.0
    if ra_max != ra_min and hi == lo:
        return [(0.0, 360.0)]
    if lo <= hi:
        return [(lo, hi)]
    return [(lo, 360.0), (0.0, hi)]


def _circle_half_width(dec0: float, radius: float, dec: float) -> float:
    """RA half-width (deg) of the small circle (dec0, radius) along declination ``dec``."""
    d0, r, d = math.radians(dec0), math.radians(radius), math.radians(dec)
    c = (math.cos(r) - math.sin(d) * math.sin(d0)) / (math.cos(d) * math.cos(d0))
    if c <= -1.0:
        return 180.0
    if c >= 1.0:
        return 0.0
    return math.degrees(math.acos(c))


def cone_zone_ranges(ra0: float, dec0: float, radius: float) -> list[tuple[int, list[tuple[float, float]]]]:
    """Zones and per-zone RA intervals that together contain a cone.

    Each zone's RA interval is the widest extent of the circle within the
    zone's declination band (a tight bound, so large cones read few extra rows).
    Zones touching |Dec| > ``POLAR_DEC_DEG``, or cones containing a pole, take
    the whole RA range.

    Returns
    -------
    list of (zone, [(ra_lo, ra_hi), ...])
    """
    dec_lo = max(-90.0, dec0 - radius)
    dec_hi = min(90.0, dec0 + radius)
    contains_pole = dec0 + radius >= 90.0 or dec0 - radius <= -90.0
    # Declination at which the circle is widest in RA (when not containing a pole).
    widest = None
    if not contains_pole:
        s = math.sin(math.radians(dec0)) / math.cos(math.radians(radius))
        widest = math.degrees(math.asin(max(-1.0, min(1.0, s))))
    out = []
    for z in range(int(zone_of(dec_lo)), int(zone_of(dec_hi)) + 1):
        b_lo = max(dec_lo, -90.0 + z * ZONE_HEIGHT_DEG)
        b_hi = min(dec_hi, -90.0 + (z + 1) * ZONE_HEIGHT_DEG)
        if contains_pole or max(abs(b_lo), abs(b_hi)) > POLAR_DEC_DEG:
            out.append((z, [(0.0, 360.0)]))
            continue
        if b_lo <= widest <= b_hi:
            hw = _circle_half_width(dec0, radius, widest)
        else:
            hw = max(_circle_half_width(dec0, radius, b_lo), _circle_half_width(dec0, radius, b_hi))
        # Margin: 1e-9 deg of float slack plus a relative term for the acos near 0.
        out.append((z, ra_intervals(ra0, hw + 1e-7 + 1e-9 * abs(hw))))
    return out


def box_zone_ranges(ra_intervals_: list[tuple[float, float]], dec_min: float,
                    dec_max: float) -> list[tuple[int, list[tuple[float, float]]]]:
    """Zones and RA intervals of an RA/Dec box (same RA intervals in every zone)."""
    dec_min, dec_max = max(-90.0, dec_min), min(90.0, dec_max)
    if dec_max < dec_min:
        return []
    return [(z, list(ra_intervals_)) for z in range(int(zone_of(dec_min)), int(zone_of(dec_max)) + 1)]


def ra_coverage(ra_deg: np.ndarray) -> tuple[float, float]:
    """Smallest RA arc ``(lo, hi)`` (deg, eastwards from lo to hi) holding all of ``ra_deg``.

    ``hi`` may exceed 360 when the arc crosses RA 0/360; ``(0, 360)`` is the
    whole RA range.
    """
    ra = np.unique(np.mod(np.asarray(ra_deg, dtype=float), 360.0))
    if ra.size == 0:
        return (0.0, 0.0)
    if ra.size == 1:
        return (float(ra[0]), float(ra[0]))
    gaps = np.diff(np.r_[ra, ra[0] + 360.0])
    i = int(np.argmax(gaps))
    if gaps[i] < 1.0:  # no gap of a degree: the whole RA circle is covered
        return (0.0, 360.0)
    lo = float(ra[(i + 1) % ra.size])
    hi = float(ra[i]) if i + 1 < ra.size else float(ra[i])
    if hi < lo:
        hi += 360.0
    return (lo, hi)


def in_ra_arc(ra_deg, lo: float, hi: float) -> np.ndarray:
    """Whether each RA lies on the arc from ``lo`` eastwards to ``hi`` (see :func:`ra_coverage`)."""
    if hi - lo >= 360.0:
        return np.ones(np.shape(ra_deg), dtype=bool)
    return np.mod(np.asarray(ra_deg, dtype=float) - lo, 360.0) <= (hi - lo) + _EPS


def circle_points(ra0: float, dec0: float, radius: float, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on a small circle (deg), by the direct geodesic formula."""
    pa = np.radians(np.arange(n) * 360.0 / n)
    d0, r = math.radians(dec0), math.radians(radius)
    sin_dec = math.sin(d0) * math.cos(r) + math.cos(d0) * math.sin(r) * np.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1, 1))
    dra = np.arctan2(np.sin(pa) * math.sin(r) * math.cos(d0), math.cos(r) - math.sin(d0) * sin_dec)
    return np.mod(ra0 + np.degrees(dra), 360.0), np.degrees(dec)
