"""Reading RA/Dec positions from user tables (CSV, ECSV, FITS, VOTable).

Columns are found case-insensitively among the usual names (``ra``, ``dec``,
``ra_deg``, ``dec_deg``, ``RAJ2000``, ``DEJ2000``, ``_RAJ2000``,
``_DEJ2000``) or named explicitly. Values may be degrees or sexagesimal
strings (``"12:34:56.7"`` / ``"12 34 56.7"`` hours for RA, degrees for Dec).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsa110_contimg.core.errors import ColumnError

RA_NAMES = ("ra_deg", "ra", "_raj2000", "raj2000", "ra_j2000", "radeg")
DEC_NAMES = ("dec_deg", "dec", "_dej2000", "dej2000", "decj2000", "dec_j2000", "dedeg")

_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits",
            ".fts": "fits", ".vot": "votable", ".xml": "votable", ".votable": "votable",
            ".txt": "ascii", ".tsv": "ascii.tab"}


def read_table(path: str | Path):
    """Read a table file into an :class:`astropy.table.Table` (format from the suffix).

    Raises
    ------
    ColumnError
        Missing, unreadable or empty file.
    """
    import warnings

    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise ColumnError("positions file does not exist", path)
    fmt = _FORMATS.get(path.suffix.lower())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise ColumnError(f"cannot read the positions table ({fmt or 'format guessed'}): "
                          f"{type(exc).__name__}: {exc}", path) from None
    return table


def _find(colnames, wanted, explicit, what, path):
    lower = {c.lower(): c for c in colnames}
    if explicit is not None:
        if explicit in colnames:
            return explicit
        if explicit.lower() in lower:
            return lower[explicit.lower()]
        raise ColumnError(f"{what} column {explicit!r} not found; columns are {list(colnames)}",
                          path)
    for name in wanted:
        if name in lower:
            return lower[name]
    raise ColumnError(f"no {what} column found (looked for {', '.join(wanted)}, any case; "
                      f"use --{what.lower()}-column); columns are {list(colnames)}", path)


def angle_deg(text: str, *, is_ra: bool) -> float:
    """One coordinate written by a person, in degrees: with units (``12h34m56.7s``,
    ``-30d12m``, ``10.5deg``, ``+36°34′15″``), sexagesimal with ``:`` or spaces (hours for
    RA, degrees for Dec), or a plain number of degrees. Raises ValueError when it is none."""
    import astropy.units as u
    from astropy.coordinates import Angle

    s = str(text).strip().replace("′", "m").replace("″", "s").replace("°", "d")
    try:
        if any(ch.isalpha() for ch in s):
            value = Angle(s).deg
        elif ":" in s or " " in s:
            value = Angle(s, unit=u.hourangle if is_ra else u.deg).deg
        else:
            value = float(s)
    except Exception as exc:   # astropy raises several types for unparsable angles
        raise ValueError(f"{text!r} is not an angle ({exc})") from None
    if not np.isfinite(value) or (not is_ra and abs(value) > 90.0):
        raise ValueError(f"{text!r} is not a {'right ascension' if is_ra else 'declination'}")
    return float(value % 360.0) if is_ra else float(value)


def parse_position(text: str) -> tuple[float, float]:
    """An ICRS position written by a person: ``RA Dec`` (deg) as two numbers (``149.4795
    +36.571``, optionally comma-separated), sexagesimal (``09:57:55.1 +36:34:15.6``,
    ``09 57 55.1 +36 34 15.6``: RA in hours) or with units (``09h57m55.1s +36d34m15.6s``,
    ``149.48deg 36.57deg``). Returns (ra_deg, dec_deg); raises ValueError otherwise."""
    parts = str(text).replace(",", " ").split()
    if len(parts) == 2:
        ra, dec = parts
    elif len(parts) == 6:
        ra, dec = " ".join(parts[:3]), " ".join(parts[3:])
    else:
        raise ValueError(f"{text!r} is not a position (RA Dec, in degrees or sexagesimal)")
    return angle_deg(ra, is_ra=True), angle_deg(dec, is_ra=False)


#: Units of a radius by the way people write them, in degrees.
_RADIUS_UNITS = {"arcsec": 1 / 3600, "asec": 1 / 3600, '"': 1 / 3600, "″": 1 / 3600, "s": 1 / 3600,
                 "arcmin": 1 / 60, "amin": 1 / 60, "'": 1 / 60, "′": 1 / 60, "m": 1 / 60,
                 "deg": 1.0, "d": 1.0, "°": 1.0}


def parse_radius(text: str, default_unit: str = "arcsec") -> float:
    """A search radius written by a person, in degrees: a number with a unit (``10"``,
    ``10 arcsec``, ``1.5'``, ``1.5 arcmin``, ``0.1 deg``) or a bare number of
    ``default_unit``. Raises ValueError for anything else or a radius <= 0."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z\"'″′°]*)\s*", str(text))
    unit = (m.group(2) or default_unit).lower() if m else None
    if m is None or unit not in _RADIUS_UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a radius (a number with arcsec, arcmin or deg)")
    return float(m.group(1)) * _RADIUS_UNITS[unit]


def _to_degrees(col, is_ra: bool, name: str, path) -> np.ndarray:
    import astropy.units as u

    values = np.asarray(col)
    if values.dtype.kind in "fiu":
        unit = getattr(col, "unit", None)
        out = np.asarray(values, float)
        if unit is not None and str(unit) not in ("", "deg"):
            try:
                out = (out * unit).to_value(u.deg)
            except Exception:
                raise ColumnError(f"column {name!r} has unit {unit} that is not an angle",
                                  path) from None
        masked = np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(out.shape, bool)
        out[masked] = np.nan
        return out
    strings = [(v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)).strip()
               for v in values]
    out = np.full(len(strings), np.nan)
    try:
        for i, s in enumerate(strings):
            if not s or s.lower() in ("nan", "--", "none"):
                continue
            out[i] = angle_deg(s, is_ra=is_ra)
    except Exception as exc:
        raise ColumnError(f"column {name!r} holds a value that is not an angle: {exc}", path) \
            from None
    return out


def read_positions(path: str | Path, ra_column: str | None = None,
                   dec_column: str | None = None):
    """Read positions from a CSV/ECSV/FITS/VOTable file.

    Parameters
    ----------
    path : str or Path
        The table file.
    ra_column, dec_column : str, optional
        Column names (case-insensitive); default: the first of the usual names.

    Returns
    -------
    ra_deg, dec_deg : ndarray
        Degrees (sexagesimal RA strings are read as hours).
    table : astropy.table.Table
        The whole table (to carry other columns, e.g. a source name, along).

    Raises
    ------
    ColumnError
        Unreadable file, missing/ambiguous columns, values that are not
        angles, Dec outside [-90, 90].
    """
    table = read_table(path)
    if len(table) == 0:
        raise ColumnError("the positions table has no rows", path)
    rc = _find(table.colnames, RA_NAMES, ra_column, "RA", path)
    dc = _find(table.colnames, DEC_NAMES, dec_column, "Dec", path)
    ra = _to_degrees(table[rc], True, rc, path)
    dec = _to_degrees(table[dc], False, dc, path)
    with np.errstate(invalid="ignore"):
        if np.any(np.abs(dec) > 90):
            raise ColumnError(f"column {dc!r} has declinations outside [-90, 90] deg", path)
    return ra % 360.0, dec, table


__all__ = ["read_positions", "read_table", "RA_NAMES", "DEC_NAMES", "angle_deg", "parse_position", "parse_radius"]
