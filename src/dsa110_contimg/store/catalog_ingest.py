"""Writing one survey's catalogue database: its schema and the ingest of one file.

Layout of ``<catalog_dir>/<survey>.sqlite3`` (described in :mod:`dsa110_contimg.store.catalogs`):
``sources`` (clustered by ``(zone, ra_deg, rid)``), ``files`` (one row per ingested file or
cached online region, with its coverage), ``extra_columns`` and ``meta``.

:func:`write_table` stores a normalised table under a file key in one transaction: the
key's earlier rows (the same path, or the same content under another path) and earlier
rows of the same source names (overlapping extracts, cached online cones) are replaced,
so a query never returns a source twice; within the file the first row of a name is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import sqlalchemy as sa

from dsa110_contimg.catalogs import spatial
from dsa110_contimg.catalogs.coverage import coverage_box
from dsa110_contimg.catalogs.readers import CORE_COLUMNS, NormalisedTable
from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.core.progress import ProgressBar
from dsa110_contimg.store import bulk
from dsa110_contimg.store.engine import WRITE_OPTION

#: the float core columns, in their stored order (``source_id`` is TEXT)
FLOAT_CORE = [c for c in CORE_COLUMNS if c != "source_id"]
#: core columns besides the clustering key
_VALUE_CORE = [c for c in FLOAT_CORE if c not in ("ra_deg", "dec_deg")]
_SQL_TYPES = {"float": "REAL", "int": "INTEGER", "bool": "INTEGER", "str": "TEXT"}
#: rows inserted (and read back by a full scan) per statement batch
INSERT_CHUNK = 50_000
_PROGRESS_MIN_ROWS = 200_000


def quote(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def create_schema(engine: sa.Engine, survey: str, path: Path) -> None:
    """Create the tables of a survey database if missing; ``StoreError`` when the file was
    made with another zone height (its rows are in other zones)."""
    core = ", ".join(f"{c} REAL" for c in _VALUE_CORE)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS files (file_id INTEGER PRIMARY KEY, path TEXT UNIQUE "
            "NOT NULL, sha256 TEXT, layout TEXT, n_rows INTEGER, ingested_at TEXT, "
            "ra_lo REAL, ra_hi REAL, dec_min REAL, dec_max REAL, "
            "cov_ra REAL, cov_dec REAL, cov_radius REAL)")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS extra_columns (name TEXT PRIMARY KEY, "
                             "kind TEXT NOT NULL, position INTEGER NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS sources (zone INTEGER NOT NULL, ra_deg REAL NOT NULL, "
            "rid INTEGER NOT NULL, dec_deg REAL NOT NULL, file_id INTEGER NOT NULL, "
            f"source_id TEXT NOT NULL, {core}, PRIMARY KEY (zone, ra_deg, rid)) WITHOUT ROWID")
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS sources_file ON sources (file_id)")
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS sources_name ON sources (source_id)")
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('zone_height_deg', ?), "
            "('survey', ?), ('next_rid', '0')", (repr(spatial.ZONE_HEIGHT_DEG), survey))
        zh = conn.exec_driver_sql("SELECT value FROM meta WHERE key='zone_height_deg'").scalar()
    if float(zh) != spatial.ZONE_HEIGHT_DEG:
        raise StoreError(f"database uses zones of {zh} deg, this version {spatial.ZONE_HEIGHT_DEG}"
                         " deg: re-ingest into a new catalogue directory", path)


@dataclass
class _FileRows:
    """The rows of a normalised table to store: the first row of each name (``keep``, rows
    of the table), in ``(zone, RA)`` order (``order``, positions in ``keep``)."""

    norm: NormalisedTable
    keep: np.ndarray
    ids: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    zone: np.ndarray
    order: np.ndarray
    n_repeated: int

    @classmethod
    def of(cls, norm: NormalisedTable) -> "_FileRows":
        core = norm.core
        ids = np.asarray(core["source_id"]).astype(str)
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        ra, dec = core["ra_deg"][keep], core["dec_deg"][keep]
        zone = spatial.zone_of(dec)
        return cls(norm, keep, ids[keep], ra, dec, zone, np.lexsort((ra, zone)),
                   len(ids) - keep.size)

    @property
    def n(self) -> int:
        return int(self.keep.size)


def write_table(engine: sa.Engine, survey: str, norm: NormalisedTable, key: str, *,
                sha256: str | None, coverage_cone: tuple[float, float, float] | None = None,
                progress=None) -> tuple[int, list[str]]:
    """Store ``norm`` under the file key ``key`` in one transaction (see the module docstring).

    ``coverage_cone`` (deg) is the exact coverage of a region cached from an online source;
    otherwise the file covers its sources' padded box. Returns the rows stored and notes on
    what the ingest changed besides adding rows (names replaced or repeated).
    """
    rows = _FileRows.of(norm)
    n = rows.n
    box = coverage_box(rows.ra, rows.dec) if n and coverage_cone is None else (None,) * 4
    cone = coverage_cone or (None, None, None)
    bar = _progress(n, f"{survey} {Path(key).name}", progress)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        replaced = _remove_earlier(conn, key, sha256, rows.ids.tolist())
        notes = (([f"{replaced} row(s) of earlier files had the same names and were replaced"]
                  if replaced else [])
                 + ([f"{rows.n_repeated} repeated name(s) in the file: the first row of each "
                     "kept"] if rows.n_repeated else []))
        extras = _add_extra_columns(conn, norm.extras)
        fid = conn.exec_driver_sql(
            "INSERT INTO files (path, sha256, layout, n_rows, ingested_at, ra_lo, ra_hi, "
            "dec_min, dec_max, cov_ra, cov_dec, cov_radius) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, sha256, norm.layout, n, datetime.now(timezone.utc).isoformat(timespec="seconds"),
             *box, *cone)).lastrowid
        rid0 = int(conn.exec_driver_sql("SELECT value FROM meta WHERE key='next_rid'").scalar())
        _insert_sources(conn, rows, fid, rid0, extras, bar)
        conn.exec_driver_sql("UPDATE meta SET value = ? WHERE key = 'next_rid'", (str(rid0 + n),))
    if n == 0:
        bar(0)
    return n, notes


def _remove_earlier(conn, key: str, sha256: str | None, names: list[str]) -> int:
    """Delete the rows of the same file (path or content) and of the same names in other
    files (whose row counts are updated); returns how many rows of other files had them."""
    old = conn.exec_driver_sql(
        "SELECT file_id FROM files WHERE path = ? OR (sha256 IS NOT NULL AND sha256 = ?)",
        (key, sha256)).scalars().all()
    for fid in old:
        conn.exec_driver_sql("DELETE FROM sources WHERE file_id = ?", (fid,))
        conn.exec_driver_sql("DELETE FROM files WHERE file_id = ?", (fid,))
    per_file = bulk.fetch_in(conn, "SELECT file_id, count(*) FROM sources "
                                   "WHERE source_id IN ({in}) GROUP BY file_id", names)
    bulk.delete_in(conn, "sources", "source_id", names)
    for tf in {int(f) for f, _ in per_file}:
        conn.exec_driver_sql("UPDATE files SET n_rows = (SELECT count(*) FROM sources "
                             "WHERE file_id = ?) WHERE file_id = ?", (tf, tf))
    return sum(int(k) for _, k in per_file)


def _insert_sources(conn, rows: _FileRows, fid: int, rid0: int, extras: list[str], bar) -> None:
    """Insert the rows in ``(zone, RA)`` order, ``INSERT_CHUNK`` at a time, with row ids
    from ``rid0``."""
    names = ["zone", "ra_deg", "rid", "dec_deg", "file_id", "source_id"] + _VALUE_CORE + extras
    sql = (f"INSERT INTO sources ({', '.join(quote(c) for c in names)}) "
           f"VALUES ({', '.join('?' * len(names))})")
    core = rows.norm.core
    for start in range(0, rows.n, INSERT_CHUNK):
        idx = rows.order[start:start + INSERT_CHUNK]
        m = idx.size
        src = rows.keep[idx]                  # rows of the normalised table
        cols = [rows.zone[idx].tolist(), rows.ra[idx].tolist(),
                list(range(rid0 + start, rid0 + start + m)), rows.dec[idx].tolist(), [fid] * m,
                rows.ids[idx].tolist()]
        cols += [core[c][src].tolist() for c in _VALUE_CORE]
        cols += [_storable(rows.norm.extras[c][src]) for c in extras]
        conn.exec_driver_sql(sql, list(zip(*cols)))
        bar(start + m)


def _add_extra_columns(conn, extras: dict) -> list[str]:
    known = dict(conn.exec_driver_sql("SELECT lower(name), kind FROM extra_columns").all())
    pos = len(known)
    for name, values in extras.items():
        kind = _kind_of(values)
        if name.lower() not in known:
            conn.exec_driver_sql(f"ALTER TABLE sources ADD COLUMN {quote(name)} {_SQL_TYPES[kind]}")
            conn.exec_driver_sql("INSERT INTO extra_columns (name, kind, position) VALUES (?,?,?)",
                                 (name, kind, pos))
            known[name.lower()] = kind
            pos += 1
        elif _widen(known[name.lower()], kind) != known[name.lower()]:
            conn.exec_driver_sql("UPDATE extra_columns SET kind = ? WHERE lower(name) = ?",
                                 (_widen(known[name.lower()], kind), name.lower()))
    return list(extras)


def _kind_of(values) -> str:
    k = np.asarray(values).dtype.kind
    if k == "f":
        return "float"
    if k in "iu":
        return "int"
    if k == "b":
        return "bool"
    return "str"


def _widen(old: str, new: str) -> str:
    if old == new:
        return old
    if "str" in (old, new):
        return "str"
    return "float" if "float" in (old, new) else "int"


def _storable(values) -> list:
    if isinstance(values, np.ma.MaskedArray):
        out = np.asarray(values.data).astype(object)
        out[np.ma.getmaskarray(values)] = None  # (MaskedArray.filled(None) fills '?')
        return out.tolist()
    return values.tolist()


def _progress(total: int, label: str, progress) -> Callable[[int], None]:
    """Row-progress reporter of an ingest: ``progress`` is a callable ``(done, total)``,
    True/False (bar on/off) or None (a bar on a terminal for long ingests)."""
    callback = progress if callable(progress) else None
    bar = ProgressBar(total, label, unit="rows", enabled=False if callback else progress,
                      min_total=_PROGRESS_MIN_ROWS)

    def update(done: int) -> None:
        if callback is not None:
            callback(done, max(total, 1))
        bar.update(done)
        if done >= total:
            bar.close()

    return update


__all__ = ["FLOAT_CORE", "INSERT_CHUNK", "create_schema", "quote", "write_table"]
