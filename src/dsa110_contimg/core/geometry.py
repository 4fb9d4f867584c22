"""Sky geometry on the unit sphere, defined once (vectorised numpy).

Conventions: angles in degrees (RA, Dec ICRS, any shape that broadcasts);
unit vectors are ``(x, y, z) = (cos d cos a, cos d sin a, sin d)``, one row per
position. ``astropy.coordinates.SkyCoord.separation`` gives the same numbers (it also
uses the Vincenty formula) but builds frame objects on every call, which costs
more than the arithmetic on the arrays the pipeline handles; hence these
plain-array forms.
"""

from __future__ import annotations

import numpy as np


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """Cartesian unit vectors of sky positions (deg); shape ``(n, 3)``."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    c = np.cos(dec)
    return np.column_stack([c * np.cos(ra), c * np.sin(ra), np.sin(dec)])


def angular_separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (deg) between positions (deg); Vincenty formula, accurate at
    all separations (0 to 180 deg). Broadcasts like numpy."""
    l1, b1, l2, b2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    sdl, cdl = np.sin(dl), np.cos(dl)
    sb1, cb1, sb2, cb2 = np.sin(b1), np.cos(b1), np.sin(b2), np.cos(b2)
    num1 = cb2 * sdl
    num2 = cb1 * sb2 - sb1 * cb2 * cdl
    den = sb1 * sb2 + cb1 * cb2 * cdl
    return np.degrees(np.arctan2(np.hypot(num1, num2), den))


def chord_of_angle(angle_deg) -> np.ndarray | float:
    """Straight-line distance between two unit vectors ``angle_deg`` apart: 2 sin(angle/2)."""
    return 2.0 * np.sin(np.radians(angle_deg) / 2.0)


def angle_of_chord(chord) -> np.ndarray | float:
    """Angle (deg) between two unit vectors a ``chord`` apart (inverse of :func:`chord_of_angle`;
    chords above 2 are clipped to 180 deg)."""
    return np.degrees(2.0 * np.arcsin(np.minimum(chord, 2.0) / 2.0))


__all__ = ["unit_vectors", "angular_separation_deg", "chord_of_angle", "angle_of_chord"]
