"""The invariant of ``variability_stats``'s rank keys (``store/rank_keys.py``): every key
column holds the key of its metric's stored value (NULL exactly where the value is NULL)."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa


def assert_rank_keys_true(conn) -> int:
    """Raise on a row whose stored key is not its value's; ``conn``: a sqlite3 or SQLAlchemy
    connection. Returns the number of rows checked (so a caller can insist on some)."""
    from dsa110_contimg.store.rank_keys import KEY_COLUMNS, key_of

    sql = ("SELECT source_id, " + ", ".join(f"{m}, {k}" for m, k in KEY_COLUMNS.items())
           + " FROM variability_stats")
    rows = conn.execute(sql).fetchall() if isinstance(conn, sqlite3.Connection) \
        else conn.execute(sa.text(sql)).all()
    for r in rows:
        stored = [r[2 + 2 * j] for j in range(len(KEY_COLUMNS))]
        wanted = [key_of(r[1 + 2 * j]) for j in range(len(KEY_COLUMNS))]
        assert stored == wanted, f"source {r[0]}: keys {stored}, values {list(r[1::2])} want {wanted}"
    return len(rows)
