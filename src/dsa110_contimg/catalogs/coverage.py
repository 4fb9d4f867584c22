"""The sky a catalogue store holds: coverage records of its ingested files and cached regions.

A record is ``(ra_lo, ra_hi, dec_min, dec_max, cov_ra, cov_dec, cov_radius)`` (deg), as the
store keeps it per file: an RA arc from ``ra_lo`` eastwards to ``ra_hi`` (``ra_hi`` may
exceed 360, see :func:`dsa110_contimg.catalogs.spatial.ra_coverage`) by a Dec range, or,
for a region fetched online, a cone (the box fields are then None).
"""

from __future__ import annotations

import math

import numpy as np

from dsa110_contimg.catalogs import spatial


class Coverage:
    """The union of a store's coverage records (see the module docstring)."""

    def __init__(self, records):
        self.records = [tuple(r) for r in records]

    def __bool__(self) -> bool:
        return bool(self.records)

    def contains(self, ra_deg, dec_deg) -> np.ndarray:
        """Whether each position (deg) lies inside a record (bool array)."""
        ra = np.atleast_1d(ra_deg).astype(float)
        dec = np.atleast_1d(dec_deg).astype(float)
        ok = np.zeros(ra.shape, dtype=bool)
        for ra_lo, ra_hi, dmin, dmax, cra, cdec, crad in self.records:
            if crad is not None:
                ok |= spatial.angular_separation_deg(cra, cdec, ra, dec) <= crad + 1e-9
            elif dmin is not None:
                ok |= (dec >= dmin) & (dec <= dmax) & spatial.in_ra_arc(ra, ra_lo, ra_hi)
        return ok

    def reaches(self, cone) -> bool:
        """Whether any record reaches into the cone ``(ra, dec, radius)`` (deg): its corners,
        edge midpoints or centre (a box) or any part of it (a cone) lie within the cone."""
        bra, bdec, brad = cone
        for ra_lo, ra_hi, dmin, dmax, cra, cdec, crad in self.records:
            if crad is not None:
                pts, extra = ([cra], [cdec]), crad
            elif dmin is not None:
                mid = ra_lo + (ra_hi - ra_lo) / 2.0
                pts = ([ra_lo, ra_lo, ra_hi, ra_hi, mid], [dmin, dmax, dmin, dmax, (dmin + dmax) / 2])
                extra = 0.0
            else:
                continue
            sep = spatial.angular_separation_deg(bra, bdec, np.mod(pts[0], 360.0), pts[1])
            if np.any(sep <= brad + extra):
                return True
        return False


def coverage_box(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float, float, float]:
    """Sky box ``(ra_lo, ra_hi, dec_min, dec_max)`` (deg) covered by a file's sources, padded
    by three mean source spacings.

    The extreme sources sit a little inside the true survey edge; the pad
    (0.01 to 1 deg) keeps queries at the edge from being refused.
    """
    ra_lo, ra_hi = spatial.ra_coverage(ra)
    dec_min, dec_max = float(dec.min()), float(dec.max())
    mid = math.radians(0.5 * (dec_min + dec_max))
    area = max((ra_hi - ra_lo) * math.cos(mid), 1e-6) * max(dec_max - dec_min, 1e-6)
    pad = min(1.0, max(0.01, 3.0 * math.sqrt(area / ra.size)))
    dec_min, dec_max = max(-90.0, dec_min - pad), min(90.0, dec_max + pad)
    if ra_hi - ra_lo < 360.0:
        cos_edge = max(math.cos(math.radians(max(abs(dec_min), abs(dec_max)))), 1e-3)
        widen = pad / cos_edge
        span = ra_hi - ra_lo + 2 * widen
        if span >= 360.0:
            ra_lo, ra_hi = 0.0, 360.0
        else:
            ra_lo = (ra_lo - widen) % 360.0
            ra_hi = ra_lo + span
    return ra_lo, ra_hi, dec_min, dec_max


__all__ = ["Coverage", "coverage_box"]
