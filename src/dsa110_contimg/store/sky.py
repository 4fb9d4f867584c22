"""Sky regions as SQL conditions: the index-friendly box around a cone.

A cone of radius r (deg) around (ra, dec) lies inside the box dec ± r, ra ± r / cos(dec')
where dec' is the box edge nearest the pole; the box is what an index on (dec, ra) can
seek, the exact separation is applied to the rows it returns. The RA range wraps through
0/360; near a pole (the box reaching ±90) every RA is inside.
"""

from __future__ import annotations

import math

import sqlalchemy as sa


def cone_box(ra_col, dec_col, ra_deg: float, dec_deg: float, radius_deg: float) -> list:
    """WHERE terms selecting the box around the cone (deg) on columns ``ra_col``, ``dec_col``."""
    dec_lo, dec_hi = dec_deg - radius_deg, dec_deg + radius_deg
    cond = [dec_col.between(dec_lo, dec_hi)]
    cosd = max(math.cos(math.radians(min(abs(dec_deg) + radius_deg, 89.9))), 1e-3)
    half = radius_deg / cosd
    if half < 180.0 and dec_hi < 89.9 and dec_lo > -89.9:
        lo, hi = (ra_deg - half) % 360.0, (ra_deg + half) % 360.0
        cond.append(ra_col.between(lo, hi) if lo <= hi else sa.or_(ra_col >= lo, ra_col <= hi))
    return cond
