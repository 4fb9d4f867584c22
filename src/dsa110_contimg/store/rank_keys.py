"""Coarse, order-preserving keys of the metrics the source pages rank by.

``variability_stats`` carries, beside each ranked metric (``eta``, ``v``, ``weighted_mean``,
``n``), an integer key (:data:`KEY_COLUMNS`) and the page indexes are on the keys, not on the
values. A key is the top :data:`KEY_BITS` bits of the value's IEEE-754 double (sign, exponent
and the leading mantissa bits) read as a monotone integer, so ``a < b`` implies
``key(a) <= key(b)`` and ``key(a) < key(b)`` implies ``a < b``; equal values have equal keys
(``-0.0`` is keyed as ``0.0``); NULL (and a non-finite value, which is stored as NULL) has a
NULL key. A key moves only when its value crosses one of the 2**(KEY_BITS - 12) steps per
factor of two, so an image's write rewrites an index entry for few of its sources.

A page ranked by a metric is found from the key index and sorted exactly only inside the band
of keys its rows hold (``store/sources.py``): the same rows, order and ties as a sort of the
values. Every writer of the metrics writes their keys (:func:`rank_keys`,
``store/lightcurves.py: save_running_stats``); :func:`refresh_rank_keys` recomputes them for
rows written by other means.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk

#: Bits of a double kept by a key: sign, 11 exponent bits and 4 mantissa bits (16 steps per
#: factor of two, each at most 6.25 % of the value).
KEY_BITS = 16
#: Ranked metric -> its key column.
KEY_COLUMNS = {"eta": "eta_key", "v": "v_key", "weighted_mean": "weighted_mean_key", "n": "n_key"}
_LOW63 = np.int64(0x7FFFFFFFFFFFFFFF)


def rank_key(values) -> np.ndarray:
    """Keys of ``values`` (array-like of numbers; NaN, inf and None: no key), as float64
    holding integers in [-2**15, 2**15) with NaN where there is no key."""
    v = np.asarray([np.nan if x is None else x for x in values] if isinstance(values, list)
                   else values, dtype=float) + 0.0            # + 0.0 turns -0.0 into 0.0
    bits = v.view(np.int64)
    mono = np.where(bits < 0, bits ^ _LOW63, bits)            # negatives: larger magnitude lower
    keys = (mono >> np.int64(64 - KEY_BITS)).astype(float)
    keys[~np.isfinite(v)] = np.nan
    return keys


def rank_keys(columns: dict) -> dict[str, np.ndarray]:
    """The keys (:func:`rank_key`) of each ranked metric in ``columns`` (name -> values),
    by key column name."""
    return {KEY_COLUMNS[name]: rank_key(columns[name]) for name in KEY_COLUMNS}


def key_of(value) -> int | None:
    """The key of one value (None: no key)."""
    k = rank_key(np.array([np.nan if value is None else value], float))[0]
    return None if np.isnan(k) else int(k)


def as_sql(keys: np.ndarray) -> list:
    """Keys as SQL parameters (int, or None where there is no key)."""
    none = np.isnan(keys)
    out = np.where(none, 0.0, keys).astype(np.int64).astype(object)
    out[none] = None
    return out.tolist()


def refresh_rank_keys(conn: Connection) -> int:
    """Recompute every stored key from its value (for rows written without their keys, e.g.
    by hand or by a test's raw SQL); returns the number of rows rewritten."""
    names = tuple(KEY_COLUMNS)
    rows = conn.execute(sa.text(f"SELECT source_id, {', '.join(names)} FROM variability_stats")).all()
    if not rows:
        return 0
    vals = np.array([[np.nan if x is None else x for x in r[1:]] for r in rows], float)
    keys = [as_sql(rank_key(vals[:, j])) for j in range(len(names))]
    sql = ("UPDATE variability_stats SET " + ", ".join(f"{KEY_COLUMNS[c]} = ?" for c in names)
           + " WHERE source_id = ?")
    bulk.executemany(conn, sql, list(zip(*keys, [int(r[0]) for r in rows])))
    return len(rows)
