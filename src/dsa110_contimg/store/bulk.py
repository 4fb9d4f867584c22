"""Bulk statements at the DB-API level, for the per-image hot paths.

SQLAlchemy Core builds a parameter dictionary per row (``construct_params``) and
compiles an ``IN`` list per chunk; for the thousands of rows one image writes
(measurements, normalised fluxes, running sums) that bookkeeping cost more than
the database itself. These helpers send one parameterised statement with a list
of tuples straight to the driver's ``executemany`` (SQLite ``sqlite3``,
PostgreSQL ``psycopg``: both run it as one prepared statement) and fetch plain
tuples.

Statements are written with ``?`` placeholders and converted to ``%s`` for
drivers whose paramstyle is ``format``/``pyformat``; ``{in}`` marks an ``IN``
list that :func:`fetch_in` expands per chunk. Values must be Python scalars
(``ndarray.tolist()``), with SQL NULL as ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    import numpy as np

#: Parameters per IN-list chunk (below SQLite's historical limit of 999 variables).
CHUNK = 900


def _sql(conn: Connection, text: str) -> str:
    return text if conn.dialect.paramstyle in ("qmark", "numeric") else text.replace("?", "%s")


def cursor(conn: Connection):
    """A DB-API cursor inside ``conn``'s transaction (begun first if needed, so that the
    engine's begin hook -- SQLite ``BEGIN``/``BEGIN IMMEDIATE`` -- still runs)."""
    if not conn.in_transaction():
        conn.begin()
    return conn.connection.dbapi_connection.cursor()


def execute(conn: Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """One statement with positional ``?`` parameters; returns its rows (empty for DML)."""
    cur = cursor(conn)
    try:
        cur.execute(_sql(conn, sql), tuple(params))
        return cur.fetchall() if cur.description is not None else []
    finally:
        cur.close()


def rows(conn: Connection, sql: str, params: tuple = ()):
    """One read with positional ``?`` parameters through the connection's driver-level
    execution (``exec_driver_sql``: no statement is built or compiled); rows with their
    columns by name."""
    return conn.exec_driver_sql(_sql(conn, sql), tuple(params)).all()


def executemany(conn: Connection, sql: str, rows: Sequence[tuple]) -> None:
    """``sql`` (``?`` placeholders) executed for every tuple of ``rows`` in one call."""
    if not len(rows):
        return
    cur = cursor(conn)
    try:
        cur.executemany(_sql(conn, sql), list(rows))
    finally:
        cur.close()


def fetch_in(conn: Connection, sql: str, values: Sequence, params: tuple = (),
             tail_params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` whose ``{in}`` list is ``values`` (chunked); ``params`` are bound
    before the list, ``tail_params`` after it."""
    vals = list(values)
    out: list[tuple] = []
    if not vals:
        return out
    cur = cursor(conn)
    try:
        for start in range(0, len(vals), CHUNK):
            chunk = vals[start:start + CHUNK]
            text = sql.replace("{in}", ",".join("?" * len(chunk)))
            cur.execute(_sql(conn, text), tuple(params) + tuple(chunk) + tuple(tail_params))
            out.extend(cur.fetchall())
    finally:
        cur.close()
    return out


def delete_in(conn: Connection, table: str, column: str, values: Sequence, where: str = "",
              params: tuple = ()) -> None:
    """``DELETE FROM table WHERE [where AND] column IN values`` (chunked)."""
    vals = list(values)
    cond = f"{where} AND " if where else ""
    for start in range(0, len(vals), CHUNK):
        chunk = vals[start:start + CHUNK]
        execute(conn, f"DELETE FROM {table} WHERE {cond}{column} IN ({','.join('?' * len(chunk))})",
                tuple(params) + tuple(chunk))


def insert_sql(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)``."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column (SQLite >= 3.24
    and PostgreSQL): one statement per row instead of a delete and an insert."""
    rest = [c for c in columns if c not in key]
    return (f"{insert_sql(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in rest))


def nullable(a) -> list:
    """A float array as a list with non-finite values as None (SQL NULL)."""
    import numpy as np   # imported where arrays are written: the daemon's loop imports no numpy

    a = np.asarray(a, float)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a.tolist()
    out = a.astype(object)
    out[bad] = None
    return out.tolist()


def floats(values, default: float = float("nan")) -> np.ndarray:
    """Fetched values (None for NULL) as a float array with ``default`` for NULL."""
    import numpy as np

    return np.array([default if v is None else v for v in values], float)
