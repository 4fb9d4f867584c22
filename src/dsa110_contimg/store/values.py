"""How Python/numpy values are stored: the one conversion rule for database rows and JSON.

Non-finite floats (NaN, +-inf) and masked values become ``None`` (SQL NULL, JSON null);
numpy scalars become Python scalars, bytes str; dicts, lists, tuples and arrays are converted element-wise.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys


def clean(value):
    """A storable / JSON-ready copy of ``value`` (see the module docstring).

    numpy is not imported here (the daemon's loop stores rows without loading it): a
    numpy value can only exist once numpy is loaded, so its types are checked then.
    """
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float):   # numpy.float64 too: a Python float comes out
        value = float(value)
        return value if math.isfinite(value) else None
    np = sys.modules.get("numpy")
    if np is None:
        return value
    if value is np.ma.masked:
        return None
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


#: the types of an object column that JSON takes as they are (text and None)
_TEXT_TYPES = frozenset({str, type(None)})


def column_values(values) -> list:
    """``clean(values)`` of one column (a 1-D array or a sequence), converted in bulk where
    the rule is the identity: a float array's values with its non-finite ones as None,
    an integer or boolean array's as Python numbers, an object array of text and None as
    it is; anything else element by element through :func:`clean`."""
    import numpy as np

    if not isinstance(values, np.ndarray) or values.ndim != 1 or np.ma.isMaskedArray(values):
        return clean(values)
    kind = values.dtype.kind
    if kind in "iub":
        return values.tolist()
    out = values.tolist()
    if kind == "f":
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            out[i] = None
        return out
    if kind == "U" or (kind == "O" and set(map(type, out)) <= _TEXT_TYPES):
        return out
    return clean(out)


def finite_or_none(x) -> float | None:
    """``float(x)``, or None for None and non-finite values."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def column_strings(col) -> list[str]:
    """``[str(v) for v in col]`` of a table column (masked values read ``--``); a numpy text
    column without masked values converts in one call, not element by element."""
    import numpy as np

    arr = np.asarray(col)
    if arr.dtype.kind == "U" and not np.ma.is_masked(col):
        return arr.tolist()
    return [str(v) for v in col]


def column_labels(col, default: str) -> list[str]:
    """The text of each value of a table column, ``default`` where it is missing (None, an
    empty string or masked)."""
    import numpy as np

    masked = np.ma.getmaskarray(col).tolist()
    return [default if m or v is None or v == "" else str(v)
            for v, m in zip(np.asarray(col, dtype=object).tolist(), masked)]


def iso_utc(unix_s) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2025-01-02T03:04:05Z``); None for None."""
    if unix_s is None:
        return None
    stamp = _dt.datetime.fromtimestamp(float(unix_s), _dt.timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def with_iso_times(row: dict) -> dict:
    """``row`` with ``<key>_iso`` (:func:`iso_utc`) beside every ``<key>_at`` holding Unix seconds
    (the JSON objects carry both: the number to compute with, the text to read)."""
    for key in [k for k in row if k.endswith("_at")]:
        value = row[key]
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            row[f"{key}_iso"] = iso_utc(value)
    return row


__all__ = ["clean", "column_labels", "column_values", "column_strings", "finite_or_none", "iso_utc", "with_iso_times"]
