"""How values read on the pages: the Jinja2 filters of the templates.

``fmt`` formats a number (``–`` for None/NaN), ``age`` a duration in s, ``utc`` a Unix
time as UTC, ``mjd_utc`` an MJD as a UTC date and time, ``ra_hms`` / ``dec_dms`` a
position in degrees as sexagesimal, ``mjyb`` a flux density in Jy/beam as mJy/beam
(every flux density on the pages is shown in mJy/beam), ``printable`` a stored path
readably (names that are not UTF-8 are stored losslessly as ``fsb64:``; the JSON API
keeps them so).
"""

from __future__ import annotations

import datetime as _dt
import math

from dsa110_contimg.core.paths import printable

MISSING = "–"
#: MJD 0 (1858-11-17 00:00 UTC).
MJD_ZERO = _dt.datetime(1858, 11, 17, tzinfo=_dt.timezone.utc)


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(value, spec: str = ".2f", none: str = MISSING) -> str:
    """``value`` formatted with ``spec``; ``none`` for None, NaN or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def age(seconds) -> str:
    """A duration in s as the largest whole unit (``3.2 h``, ``45 s``)."""
    if seconds is None:
        return MISSING
    s = float(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit}"
    return f"{s:.0f} s"


def utc(unix_s) -> str:
    """A Unix time (s) as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if unix_s is None:
        return MISSING
    return _dt.datetime.fromtimestamp(float(unix_s), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def mjd_utc(mjd, spec: str = "%Y-%m-%d %H:%M") -> str:
    """An epoch in MJD (UTC) as a UTC calendar date and time (leap seconds ignored, < 1 min)."""
    if not _finite(mjd):
        return MISSING
    return (MJD_ZERO + _dt.timedelta(days=float(mjd))).strftime(spec)


def _sexagesimal(value: float, decimals: int) -> tuple[int, int, float]:
    """(whole units, minutes, seconds rounded to ``decimals``) of a non-negative ``value``,
    carried so that seconds never print as 60."""
    total = round(value * 3600.0, decimals)
    whole, rest = divmod(total, 3600.0)
    minutes, seconds = divmod(rest, 60.0)
    return int(whole), int(minutes), seconds


def ra_hms(ra_deg, decimals: int = 2, units: tuple[str, str, str] = ("h", "m", "s")) -> str:
    """Right ascension (deg) as ``HHhMMmSS.SSs`` (``units`` after hours, minutes, seconds)."""
    if not _finite(ra_deg):
        return MISSING
    h, m, s = _sexagesimal((float(ra_deg) % 360.0) / 15.0, decimals)
    return f"{h % 24:02d}{units[0]}{m:02d}{units[1]}{s:0{3 + decimals}.{decimals}f}{units[2]}"


def dec_dms(dec_deg, decimals: int = 1, units: tuple[str, str, str] = ("°", "′", "″")) -> str:
    """Declination (deg) as ``±DD°MM′SS.S″`` (``units`` after degrees, minutes, seconds)."""
    if not _finite(dec_deg):
        return MISSING
    d, m, s = _sexagesimal(abs(float(dec_deg)), decimals)
    sign = "-" if float(dec_deg) < 0 else "+"
    return f"{sign}{d:02d}{units[0]}{m:02d}{units[1]}{s:0{3 + decimals}.{decimals}f}{units[2]}"


def mjyb(jyb, spec: str = ".2f") -> str:
    """A flux density in Jy/beam as a number of mJy/beam (the unit is written by the page)."""
    return fmt(float(jyb) * 1e3 if _finite(jyb) else None, spec)


def register(env) -> None:
    """Make the filters available to the templates of Jinja2 environment ``env``."""
    env.filters.update(fmt=fmt, age=age, utc=utc, printable=printable, mjd_utc=mjd_utc, ra_hms=ra_hms,
                       dec_dms=dec_dms, mjyb=mjyb)
