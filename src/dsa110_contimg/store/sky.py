"""Sky regions as SQL conditions: the index-friendly box around a cone.

A cone of radius r (deg) around (ra, dec) lies inside the box dec ± r, ra ± r / cos(dec')
where dec' is the box edge nearest the pole; the box is what an index can seek, the exact
separation is applied to the rows it returns. The RA range wraps through 0/360; near a pole
(the box reaching ±90) every RA is inside.

The sky is cut into RA zones one degree wide, the zone of a position being
:func:`ra_zone` of its RA. The position indexes lead with the zone, then Dec, then RA
(``sources (zone(ra_deg), dec_deg, ra_deg)``, ``images (zone(ra_center_deg),
dec_center_deg, ra_center_deg)``): a box seeks its Dec range inside each zone its RA range
touches, so its reads are bounded by the box itself, also on a survey that is a strip at
one declination (DSA-110's), where a Dec-led index would walk every RA of the strip.
"""

from __future__ import annotations

import math

import sqlalchemy as sa

#: Width of an RA zone (deg): the zone is the RA cast to an integer.
ZONE_DEG = 1.0
#: Highest zone number: SQLite's cast truncates, PostgreSQL's rounds, so RA in [0, 360]
#: is in zones 0..360 on either backend.
_MAX_ZONE = 360


def ra_zone(ra_col):
    """The RA zone of ``ra_col`` (deg) as a SQL expression, exactly as the position indexes
    hold it (an expression index matches only the same expression)."""
    return sa.cast(ra_col, sa.Integer)


def _zones(lo: float, hi: float) -> list[int]:
    """Zone numbers holding every RA in [lo, hi] (deg, 0 <= lo <= hi <= 360) under either
    backend's cast (truncation: floor; rounding: up to floor + 1)."""
    return list(range(max(int(math.floor(lo)), 0), min(int(math.floor(hi)) + 1, _MAX_ZONE) + 1))


def _box(ra_deg: float, dec_deg: float, radius_deg: float):
    """The box around the cone (deg): ``(dec_lo, dec_hi, ra)`` with ``ra`` None when the box
    holds every RA, else ``(lo, hi, zones)``: the RA range (``lo > hi`` when it wraps
    through 0/360) and the sorted RA zones it touches."""
    dec_lo, dec_hi = dec_deg - radius_deg, dec_deg + radius_deg
    cosd = max(math.cos(math.radians(min(abs(dec_deg) + radius_deg, 89.9))), 1e-3)
    half = radius_deg / cosd
    if not (half < 180.0 and dec_hi < 89.9 and dec_lo > -89.9):
        return dec_lo, dec_hi, None
    lo, hi = (ra_deg - half) % 360.0, (ra_deg + half) % 360.0
    zones = _zones(lo, hi) if lo <= hi else _zones(lo, 360.0) + _zones(0.0, hi)
    return dec_lo, dec_hi, (lo, hi, sorted(set(zones)))


def cone_box(ra_col, dec_col, ra_deg: float, dec_deg: float, radius_deg: float) -> list:
    """WHERE terms selecting the box around the cone (deg) on columns ``ra_col``, ``dec_col``:
    the Dec range, and, unless the box holds every RA, the RA range and the RA zones it
    touches (the zones select no row the RA range does not; they let the position index
    seek)."""
    dec_lo, dec_hi, ra = _box(ra_deg, dec_deg, radius_deg)
    cond = [dec_col.between(dec_lo, dec_hi)]
    if ra is not None:
        lo, hi, zones = ra
        cond.append(ra_col.between(lo, hi) if lo <= hi else sa.or_(ra_col >= lo, ra_col <= hi))
        cond.insert(0, ra_zone(ra_col).in_(zones))
    return cond


def cone_box_sql(ra_col: str, dec_col: str, ra_deg: float, dec_deg: float,
                 radius_deg: float) -> tuple[str, tuple]:
    """:func:`cone_box` as SQL text with ``?`` placeholders and its parameters, for the
    DB-API statements of :mod:`dsa110_contimg.store.bulk` (``ra_col``/``dec_col``: column
    names as the statement writes them, e.g. ``sources.ra_deg``). The same terms in the
    same order: the zone expression is the one the position indexes hold."""
    dec_lo, dec_hi, ra = _box(ra_deg, dec_deg, radius_deg)
    terms, params = [f"{dec_col} BETWEEN ? AND ?"], [float(dec_lo), float(dec_hi)]
    if ra is not None:
        lo, hi, zones = ra
        terms.insert(0, f"CAST({ra_col} AS INTEGER) IN ({', '.join('?' * len(zones))})")
        params = [int(z) for z in zones] + params
        terms.append(f"{ra_col} BETWEEN ? AND ?" if lo <= hi else f"({ra_col} >= ? OR {ra_col} <= ?)")
        params += [float(lo), float(hi)]
    return " AND ".join(terms), tuple(params)
