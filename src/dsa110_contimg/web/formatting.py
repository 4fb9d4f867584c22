"""How values read on the pages: the Jinja2 filters of the templates.

``fmt`` formats a number (``–`` for None/NaN), ``age`` a duration in s, ``utc`` a Unix
time as UTC, ``printable`` a stored path readably (names that are not UTF-8 are stored
losslessly as ``fsb64:``; the JSON API keeps them so).
"""

from __future__ import annotations

import datetime as _dt
import math

from dsa110_contimg.core.paths import printable

MISSING = "–"


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


def register(env) -> None:
    """Make the filters available to the templates of Jinja2 environment ``env``."""
    env.filters.update(fmt=fmt, age=age, utc=utc, printable=printable)
