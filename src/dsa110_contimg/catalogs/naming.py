"""IAU-style source names built from positions (RA in *hours*, truncated).

The IAU rule for ``JHHMMSS.s+DDMMSS`` designations is truncation, not
rounding, of the sexagesimal position: RA 90.0084167 deg (06h00m02.02s),
Dec -31.6706111 deg (-31d40m14.2s) gives ``J060002-314014``. RA is divided by
15 (degrees -> hours) before formatting; the earlier code's defect of
formatting degrees as hours (docs/science.md, Known pitfalls: source names) is what this module
exists to avoid.
"""

from __future__ import annotations

import numpy as np

#: Name prefix and (RA seconds decimals, Dec arcsec decimals) per survey, used
#: only when an input table carries no name of its own.
NAME_FORMATS: dict[str, tuple[str, int, int]] = {
    "nvss": ("NVSS", 0, 0),
    "first": ("FIRST", 1, 0),
    "rax": ("RACS", 1, 0),
    "vlass": ("VLASS", 2, 1),
    "master": ("NVSS", 0, 0),
    "monitor": ("MON", 1, 0),
}


#: Tolerance (arcsec on the sky) added before truncation. Catalogues give
#: degrees to ~1e-7 deg (0.4 mas), so a position published as -31d24m21.0s
#: arrives as 20.9988"; 2 mas keeps such values on their published digit
#: while being far below any survey's astrometric error.
TRUNCATION_TOLERANCE_ARCSEC = 0.002


def _sexagesimal_units(value: np.ndarray, per_unit: float, decimals: int,
                       tol_seconds: float) -> np.ndarray:
    """Truncated integer count of 10**-decimals seconds in ``value`` (hours or degrees)."""
    scale = 3600.0 * 10**decimals
    return np.floor(value * per_unit * scale + tol_seconds * 10**decimals).astype(np.int64)


def iau_names(prefix: str, ra_deg, dec_deg, *, ra_decimals: int = 0,
              dec_decimals: int = 0) -> np.ndarray:
    """Build IAU designations ``'<prefix> JHHMMSS[.s]+DDMMSS[.s]'`` (truncated).

    Parameters
    ----------
    prefix : str
        Survey acronym, e.g. ``"NVSS"``; an empty string gives bare ``J...`` names.
    ra_deg, dec_deg : array_like
        ICRS/J2000 position in degrees.
    ra_decimals, dec_decimals : int
        Decimal places of the RA seconds and Dec arcseconds.

    Returns
    -------
    numpy.ndarray of str
    """
    ra = np.mod(np.asarray(ra_deg, dtype=float), 360.0)
    dec = np.asarray(dec_deg, dtype=float)
    ra_units = _sexagesimal_units(ra, 1.0 / 15.0, ra_decimals,
                                  TRUNCATION_TOLERANCE_ARCSEC / 15.0) % (24 * 3600 * 10**ra_decimals)
    dec_units = _sexagesimal_units(np.abs(dec), 1.0, dec_decimals, TRUNCATION_TOLERANCE_ARCSEC)
    rs = 10**ra_decimals
    ds = 10**dec_decimals
    hh, rem = np.divmod(ra_units, 3600 * rs)
    mm, ss = np.divmod(rem, 60 * rs)
    dd, rem = np.divmod(dec_units, 3600 * ds)
    dm, dsec = np.divmod(rem, 60 * ds)
    sign = np.where(np.signbit(dec), "-", "+")
    head = f"{prefix} J" if prefix else "J"
    rw = 2 + (ra_decimals + 1 if ra_decimals else 0)
    dw = 2 + (dec_decimals + 1 if dec_decimals else 0)
    rfmt = f"{{:0{rw}.{ra_decimals}f}}"
    dfmt = f"{{:0{dw}.{dec_decimals}f}}"
    out = [
        f"{head}{h:02d}{m:02d}{rfmt.format(s / rs)}{sg}{d:02d}{am:02d}{dfmt.format(a / ds)}"
        for h, m, s, sg, d, am, a in zip(hh.tolist(), mm.tolist(), ss.tolist(), sign.tolist(),
                                         dd.tolist(), dm.tolist(), dsec.tolist())
    ]
    return np.array(out, dtype=str) if out else np.array([], dtype="<U1")


def disambiguate(names: np.ndarray) -> np.ndarray:
    """Append ``a``, ``b``, ... to names that occur more than once (IAU convention).

    The first occurrence keeps a suffix too (``...a``), so no name is silently
    shared by two sources. Unique names are returned unchanged.
    """
    names = np.asarray(names, dtype=str)
    if names.size == 0:
        return names
    uniq, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    if not dup.any():
        return names
    out = names.astype(object)
    idx = np.flatnonzero(dup)
    order = idx[np.argsort(inverse[idx], kind="stable")]
    grp = inverse[order]
    start = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]
    rank = np.arange(order.size) - np.repeat(start, np.diff(np.r_[start, order.size]))
    for i, r in zip(order.tolist(), rank.tolist()):
        out[i] = f"{out[i]}{_suffix(r)}"
    return out.astype(str)


def _suffix(rank: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    s = ""
    rank += 1
    while rank:
        rank, r = divmod(rank - 1, 26)
        s = letters[r] + s
    return s
