"""The local catalogue store: one SQLite database per survey, indexed by declination zone.

Layout of ``<catalog_dir>/<survey>.sqlite3`` (SQLAlchemy Core over SQLite, WAL):

* ``sources`` -- one row per catalogue source: the normalised columns
  (:data:`~dsa110_contimg.catalogs.readers.CORE_COLUMNS`), the
  survey's own columns ("extras", added with ``ALTER TABLE`` as files bring
  them), and ``zone``, ``rid`` (row id), ``file_id``. It is a ``WITHOUT ROWID``
  table whose primary key ``(zone, ra_deg, rid)`` clusters rows by declination
  zone and RA, so a cone search reads one short contiguous run per zone.
* ``files`` -- one row per ingested file (or cached online region): its path
  and SHA-256 (the idempotency key: re-ingesting replaces its rows), layout,
  row count and sky coverage.
* ``extra_columns`` -- name and kind (float/int/bool/str) of every extra column.

A query whose region is not covered by any ingested file raises
:class:`CatalogMissing`, unless the store allows online queries, in which case
the region is fetched from VizieR, cached as a file and served locally.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import sqlalchemy as sa
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales

from dsa110_contimg.catalogs import spatial
from dsa110_contimg.catalogs.readers import (
    CORE_COLUMNS,
    NormalisedTable,
    normalise,
    read_table,
)
from dsa110_contimg.core.enums import MONITOR_SURVEY, SURVEYS, canonical_survey
from dsa110_contimg.core.errors import (
    CatalogError,
    CatalogMissing,
    StoreError,
)
from dsa110_contimg.core.progress import ProgressBar
from dsa110_contimg.store import bulk
from dsa110_contimg.store.engine import WRITE_OPTION, make_engine


_FLOAT_CORE = [c for c in CORE_COLUMNS if c != "source_id"]
_SQL_TYPES = {"float": "REAL", "int": "INTEGER", "bool": "INTEGER", "str": "TEXT"}
_INSERT_CHUNK = 50_000
_MAX_UNION = 200  # SQLite allows 500 terms in a compound SELECT
_PROGRESS_MIN_ROWS = 200_000


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


#: SQLite settings of a catalogue file beyond the service's defaults: large pages
#: (effective only for a new file), memory-mapped reads, in-memory temporary tables.
_CATALOG_PRAGMAS = ("page_size=16384", "mmap_size=268435456", "temp_store=MEMORY")


def _make_engine(path: Path) -> sa.Engine:
    """Engine of one survey file (:func:`dsa110_contimg.store.engine.make_engine`: WAL,
    busy timeout; reads by default, writes with ``WRITE_OPTION``)."""
    return make_engine(path, pragmas=_CATALOG_PRAGMAS, reads_by_default=True)


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


# --- the store --------------------------------------------------------------------
class CatalogStore:
    """Local catalogues of every survey in one directory.

    Parameters
    ----------
    catalog_dir : str or Path
        Directory holding ``<survey>.sqlite3`` (created on the first ingest).
    allow_online : bool
        Fetch regions missing locally from VizieR (astroquery) and cache them.
        Off by default: without it a missing region raises :class:`CatalogMissing`.
    online_timeout_s : float
        Time-out of one online query (s).
    """

    def __init__(self, catalog_dir: str | Path, *, allow_online: bool = False,
                 online_timeout_s: float = 30.0):
        self.catalog_dir = Path(catalog_dir).expanduser()
        if self.catalog_dir.exists() and not self.catalog_dir.is_dir():
            raise StoreError("catalogue directory is not a directory", self.catalog_dir)
        self.allow_online = bool(allow_online)
        self.online_timeout_s = float(online_timeout_s)
        self._surveys: dict[str, SurveyCatalog] = {}

    def __repr__(self) -> str:
        return f"CatalogStore({str(self.catalog_dir)!r}, allow_online={self.allow_online})"

    def path_of(self, survey: str) -> Path:
        """The database file of ``survey``."""
        return self.catalog_dir / f"{canonical_survey(survey)}.sqlite3"

    def survey(self, name: str) -> "SurveyCatalog":
        """The query interface of one survey (``UnknownCatalog`` for a bad name)."""
        key = canonical_survey(name)
        if key not in self._surveys:
            self._surveys[key] = SurveyCatalog(self, key)
        return self._surveys[key]

    def close(self) -> None:
        """Dispose of every open database engine."""
        for cat in self._surveys.values():
            cat.close()

    # --- ingest ---------------------------------------------------------------
    def ingest(self, survey: str, paths: str | Path | Iterable[str | Path], *,
               ra_column: str | None = None, dec_column: str | None = None,
               flux_column: str | None = None, flux_unit: str | None = None,
               progress: bool | Callable[[int, int], None] | None = None) -> int:
        """Read catalogue files into ``survey``; returns the number of rows ingested.

        Each file is one transaction keyed by its resolved path and SHA-256:
        ingesting a file again (or an identical copy) replaces its rows.

        Parameters
        ----------
        survey : str
            ``nvss``, ``first``, ``rax`` (``racs``) or ``vlass``.
        paths : path or list of paths
            CSV/ECSV/FITS/VOTable files, optionally gzipped.
        ra_column, dec_column, flux_column, flux_unit : str, optional
            Explicit columns / flux unit for layouts the readers do not know.
        progress : bool or callable, optional
            ``None``: a stderr bar on a TTY for long ingests; ``True``/``False``
            force it on/off; a callable receives ``(rows_done, rows_total)``.
        """
        key = canonical_survey(survey)
        if key == "master":
            raise CatalogError("the master catalogue is built, not ingested: use build_master()")
        if isinstance(paths, (str, Path)):
            paths = [paths]
        total = 0
        for path in paths:
            path = Path(path).expanduser()
            table = read_table(path)
            norm = normalise(table, key, path=path, ra_column=ra_column, dec_column=dec_column,
                             flux_column=flux_column, flux_unit=flux_unit)
            total += self.survey(key)._write(norm, str(path.resolve()), sha256=_sha256(path),
                                             progress=progress)
        return total

    def ingest_table(self, survey: str, norm: NormalisedTable, key: str, *,
                     coverage_cone: tuple[float, float, float] | None = None,
                     progress=None) -> int:
        """Store an already normalised table under the file key ``key`` (replaces it)."""
        return self.survey(survey)._write(norm, key, sha256=None, coverage_cone=coverage_cone,
                                          progress=progress)

    def build_master(self, *, match_radius_arcsec: float = 7.5, progress=None) -> int:
        """Build the master reference catalogue from NVSS, FIRST and VLASS (see ``master.py``)."""
        from dsa110_contimg.catalogs.master import build_master

        return build_master(self, match_radius_arcsec=match_radius_arcsec, progress=progress)

    def list(self) -> list[dict]:
        """One dict per survey present: rows, coverage and source files."""
        out = []
        for key in SURVEYS:
            if not self.path_of(key).exists():
                continue
            out.append(self.survey(key).info())
        return out


# --- one survey ---------------------------------------------------------------------
def _store_errors(method):
    """Turn SQLAlchemy/SQLite failures (locked, disk full, damaged file) into StoreError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise StoreError(f"{self.name} catalogue database failed in "
                             f"{method.__name__.lstrip('_')}: {exc}", self.path) from exc
    return wrapper


class SurveyCatalog:
    """Queries and writes of one survey's database (obtain it from :meth:`CatalogStore.survey`)."""

    def __init__(self, store: CatalogStore, survey: str):
        self.store = store
        self.name = survey
        self.path = store.path_of(survey)
        self._engine: sa.Engine | None = None
        self._engine_pid = os.getpid()
        #: what the last ingest changed besides adding rows (names replaced or repeated)
        self.last_write_notes: list[str] = []

    def __repr__(self) -> str:
        return f"SurveyCatalog({self.name!r}, {str(self.path)!r})"

    # --- database -------------------------------------------------------------------
    def _db(self, *, create: bool) -> sa.Engine | None:
        if self._engine is not None and self._engine_pid != os.getpid():
            # A forked child must not reuse the parent's pooled SQLite connections.
            self._engine.dispose(close=False)
            self._engine = None
        if self._engine is None:
            if not self.path.exists():
                if not create:
                    return None
                self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._engine = _make_engine(self.path)
                self._engine_pid = os.getpid()
                if create:
                    self._create_schema()
            except sa.exc.SQLAlchemyError as exc:
                self._engine = None
                raise StoreError(f"cannot open catalogue database: {exc}", self.path) from exc
        elif create:
            self._create_schema()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _create_schema(self) -> None:
        core = ", ".join(f"{c} REAL" for c in _FLOAT_CORE if c not in ("ra_deg", "dec_deg"))
        with self._engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
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
                "('survey', ?), ('next_rid', '0')", (repr(spatial.ZONE_HEIGHT_DEG), self.name))
            zh = conn.exec_driver_sql("SELECT value FROM meta WHERE key='zone_height_deg'").scalar()
        if float(zh) != spatial.ZONE_HEIGHT_DEG:
            raise StoreError(f"database uses zones of {zh} deg, this version {spatial.ZONE_HEIGHT_DEG}"
                             " deg: re-ingest into a new catalogue directory", self.path)

    # --- writing ----------------------------------------------------------------------
    @_store_errors
    def _write(self, norm: NormalisedTable, key: str, *, sha256: str | None,
               coverage_cone: tuple[float, float, float] | None = None, progress=None) -> int:
        engine = self._db(create=True)
        core = norm.core
        ids = np.asarray(core["source_id"]).astype(str)
        # a name is one source: within the file its first row is kept
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        n_dup_in_file = len(ids) - keep.size
        n = keep.size
        ids = ids[keep]
        ra, dec = core["ra_deg"][keep], core["dec_deg"][keep]
        zone = spatial.zone_of(dec)
        order = np.lexsort((ra, zone))
        if n:
            ra_lo, ra_hi, dec_min, dec_max = _coverage_box(ra, dec)
        else:
            ra_lo = ra_hi = dec_min = dec_max = None
        cov = coverage_cone or (None, None, None)
        if coverage_cone is not None:
            ra_lo = ra_hi = dec_min = dec_max = None  # a cached online cone covers exactly the cone
        bar = _progress(n, f"{self.name} {Path(key).name}", progress)
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            # Idempotency: the same path, or the same content under another path.
            old = conn.exec_driver_sql(
                "SELECT file_id FROM files WHERE path = ? OR (sha256 IS NOT NULL AND sha256 = ?)",
                (key, sha256)).scalars().all()
            for fid in old:
                conn.exec_driver_sql("DELETE FROM sources WHERE file_id = ?", (fid,))
                conn.exec_driver_sql("DELETE FROM files WHERE file_id = ?", (fid,))
            # the same names in files ingested earlier (overlapping extracts, cached online
            # cones): this file's rows replace them, so a cone never returns a source twice
            names = ids.tolist()
            per_file = bulk.fetch_in(conn, "SELECT file_id, count(*) FROM sources "
                                           "WHERE source_id IN ({in}) GROUP BY file_id", names)
            touched = {int(f) for f, _ in per_file}
            replaced = sum(int(k) for _, k in per_file)
            bulk.delete_in(conn, "sources", "source_id", names)
            for tf in touched:
                conn.exec_driver_sql("UPDATE files SET n_rows = (SELECT count(*) FROM sources "
                                     "WHERE file_id = ?) WHERE file_id = ?", (tf, tf))
            self.last_write_notes = (
                ([f"{replaced} row(s) of earlier files had the same names and were replaced"]
                 if replaced else [])
                + ([f"{n_dup_in_file} repeated name(s) in the file: the first row of each kept"]
                   if n_dup_in_file else []))
            extras = self._add_extra_columns(conn, norm.extras)
            fid = conn.exec_driver_sql(
                "INSERT INTO files (path, sha256, layout, n_rows, ingested_at, ra_lo, ra_hi, "
                "dec_min, dec_max, cov_ra, cov_dec, cov_radius) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, sha256, norm.layout, n, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 ra_lo, ra_hi, dec_min, dec_max, *cov)).lastrowid
            rid0 = int(conn.exec_driver_sql("SELECT value FROM meta WHERE key='next_rid'").scalar())
            names = ["zone", "ra_deg", "rid", "dec_deg", "file_id", "source_id"] + \
                [c for c in _FLOAT_CORE if c not in ("ra_deg", "dec_deg")] + extras
            sql = (f"INSERT INTO sources ({', '.join(_q(c) for c in names)}) "
                   f"VALUES ({', '.join('?' * len(names))})")
            for start in range(0, n, _INSERT_CHUNK):
                idx = order[start:start + _INSERT_CHUNK]
                m = idx.size
                src = keep[idx]                  # rows of the normalised table
                cols = [zone[idx].tolist(), ra[idx].tolist(),
                        list(range(rid0 + start, rid0 + start + m)), dec[idx].tolist(), [fid] * m,
                        ids[idx].tolist()]
                cols += [core[c][src].tolist() for c in _FLOAT_CORE if c not in ("ra_deg", "dec_deg")]
                cols += [_storable(norm.extras[c][src]) for c in extras]
                conn.exec_driver_sql(sql, list(zip(*cols)))
                bar(start + m)
            conn.exec_driver_sql("UPDATE meta SET value = ? WHERE key = 'next_rid'", (str(rid0 + n),))
        if n == 0:
            bar(0)
        return n

    def _add_extra_columns(self, conn, extras: dict) -> list[str]:
        known = dict(conn.exec_driver_sql("SELECT lower(name), kind FROM extra_columns").all())
        pos = len(known)
        for name, values in extras.items():
            kind = _kind_of(values)
            if name.lower() not in known:
                conn.exec_driver_sql(f"ALTER TABLE sources ADD COLUMN {_q(name)} {_SQL_TYPES[kind]}")
                conn.exec_driver_sql("INSERT INTO extra_columns (name, kind, position) VALUES (?,?,?)",
                                     (name, kind, pos))
                known[name.lower()] = kind
                pos += 1
            elif _widen(known[name.lower()], kind) != known[name.lower()]:
                conn.exec_driver_sql("UPDATE extra_columns SET kind = ? WHERE lower(name) = ?",
                                     (_widen(known[name.lower()], kind), name.lower()))
        return list(extras)

    # --- reading ----------------------------------------------------------------------
    @_store_errors
    def info(self) -> dict:
        """Row count, coverage and source files of this survey."""
        engine = self._db(create=False)
        files = []
        if engine is not None:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT path, layout, n_rows, ingested_at, ra_lo, ra_hi, dec_min, dec_max, "
                    "cov_ra, cov_dec, cov_radius FROM files ORDER BY file_id").mappings().all()
                files = [dict(r) for r in rows]
        n = sum(f["n_rows"] or 0 for f in files)
        decs = [(f["dec_min"], f["dec_max"]) for f in files if f["dec_min"] is not None]
        decs += [(f["cov_dec"] - f["cov_radius"], f["cov_dec"] + f["cov_radius"])
                 for f in files if f["cov_radius"] is not None]
        return {
            "survey": self.name,
            "n_rows": n,
            "n_files": len(files),
            "dec_min": min((d[0] for d in decs), default=None),
            "dec_max": max((d[1] for d in decs), default=None),
            "files": files,
            "database": str(self.path),
        }

    def _snapshot(self, conn):
        """Extra-column registry and coverage records, read in the query's transaction."""
        extras = conn.exec_driver_sql(
            "SELECT name, kind FROM extra_columns ORDER BY position").all()
        cov = conn.exec_driver_sql(
            "SELECT ra_lo, ra_hi, dec_min, dec_max, cov_ra, cov_dec, cov_radius FROM files").all()
        return extras, cov

    @staticmethod
    def _covered(cov, ra, dec) -> np.ndarray:
        ra, dec = np.atleast_1d(ra).astype(float), np.atleast_1d(dec).astype(float)
        ok = np.zeros(ra.shape, dtype=bool)
        for ra_lo, ra_hi, dmin, dmax, cra, cdec, crad in cov:
            if crad is not None:
                ok |= spatial.angular_separation_deg(cra, cdec, ra, dec) <= crad + 1e-9
            elif dmin is not None:
                ok |= (dec >= dmin) & (dec <= dmax) & spatial.in_ra_arc(ra, ra_lo, ra_hi)
        return ok

    @staticmethod
    def _touches(cov, bcone) -> bool:
        """Whether any coverage record reaches into the bounding cone (ra, dec, radius)."""
        bra, bdec, brad = bcone
        for ra_lo, ra_hi, dmin, dmax, cra, cdec, crad in cov:
            if crad is not None:
                pts, extra = ([cra], [cdec]), crad
            elif dmin is not None:
                mid = ra_lo + (ra_hi - ra_lo) / 2.0
                pts = ([ra_lo, ra_lo, ra_hi, ra_hi, mid], [dmin, dmax, dmin, dmax, (dmin + dmax) / 2])
                extra = 0.0
            else:
                continue
            sep = spatial.angular_separation_deg(bra, bdec, np.mod(pts[0], 360.0), pts[1])
            if np.any(sep <= brad + extra):
                return True
        return False

    @_store_errors
    def _run(self, zone_ranges, min_flux_mjy, region, keep: Callable[[dict], np.ndarray],
             max_sources, *, _online_done: bool = False) -> Table:
        """Fetch candidates of ``zone_ranges``, apply ``keep``, sort, limit.

        ``region`` = (centre_ra, centre_dec, sample_ra, sample_dec, bounding_cone)
        decides whether the local store covers the query.
        """
        if max_sources is not None and int(max_sources) < 0:
            raise CatalogError(f"max_sources must be >= 0, got {max_sources!r}")
        engine = self._db(create=False)
        cra, cdec, sra, sdec, bcone = region
        if engine is None:
            return self._missing(region, "never ingested", zone_ranges, min_flux_mjy, keep,
                                 max_sources, _online_done)
        with engine.connect() as conn:
            extras, cov = self._snapshot(conn)
            if not cov:
                conn.rollback()
                return self._missing(region, "has no ingested file", zone_ranges, min_flux_mjy,
                                     keep, max_sources, _online_done)
            inside = self._covered(cov, np.r_[cra, sra], np.r_[cdec, sdec])
            if self.name == MONITOR_SURVEY:      # a list of positions covers the whole sky
                inside[:] = True
            if not inside.all() and self.store.allow_online and not _online_done \
                    and self.name != "master":
                conn.rollback()
                return self._missing(region, "does not cover the region", zone_ranges,
                                     min_flux_mjy, keep, max_sources, _online_done)
            if not inside.any() and not self._touches(cov, bcone):
                conn.rollback()
                hint = "" if self.name == "master" else " or allow online queries"
                raise CatalogMissing(
                    f"{self.name}: the local catalogue does not cover the region around RA "
                    f"{cra:.4f}, Dec {cdec:.4f} (ingest a file covering it{hint})", self.path)
            rows = self._fetch(conn, zone_ranges, min_flux_mjy, extras)
        cols = self._to_columns(rows, extras)
        n_candidates = len(rows)
        if rows:
            sel = np.flatnonzero(keep(cols))
            flux = cols["flux_mjy"][sel]
            order = np.argsort(-np.where(np.isfinite(flux), flux, -np.inf), kind="stable")
            if max_sources is not None:
                order = order[:int(max_sources)]
            sel = sel[order]
            cols = {k: v[sel] for k, v in cols.items()}
        table = Table(cols, copy=False)
        table.meta["survey"] = self.name
        table.meta["n_candidates"] = n_candidates  # rows read through the zone index
        table.meta["coverage"] = "full" if inside.all() else "partial"
        if not inside.all():
            table.meta["notes"] = [f"{self.name}: the query region extends beyond the ingested "
                                   "catalogue coverage; sources there are missing"]
        return table

    def _missing(self, region, why, zone_ranges, min_flux_mjy, keep, max_sources, online_done):
        if not self.store.allow_online or online_done or self.name == "master":
            hint = ("build it with `catalog build-master`" if self.name == "master"
                    else f"ingest it with `catalog ingest {self.name} FILE`"
                    + ("" if self.store.allow_online else " or allow online queries"))
            raise CatalogMissing(f"{self.name}: local catalogue {why}; {hint}", self.path)
        from dsa110_contimg.catalogs import online

        ra, dec, radius = region[4]
        table = online.fetch_cone(self.name, ra, dec, radius, timeout_s=self.store.online_timeout_s)
        if len(table):
            norm = normalise(table, self.name, path=f"vizier:{online.VIZIER_CATALOGS[self.name]}")
        else:  # an empty region is a valid answer: cache it so it is not asked again
            core = {c: np.empty(0) for c in CORE_COLUMNS}
            core["source_id"] = np.empty(0, dtype=str)
            norm = NormalisedTable(core=core, extras={}, layout="vizier-empty")
        key = f"vizier:{online.VIZIER_CATALOGS[self.name]}:cone({ra:.6f},{dec:.6f},{radius:.6f})"
        self._write(norm, key, sha256=None, coverage_cone=(ra, dec, radius))
        return self._run(zone_ranges, min_flux_mjy, region, keep, max_sources, _online_done=True)

    def _fetch(self, conn, zone_ranges, min_flux_mjy, extras) -> list[tuple]:
        names = ["source_id"] + _FLOAT_CORE + [e[0] for e in extras]
        select = f"SELECT {', '.join(_q(c) for c in names)} FROM sources WHERE "
        flux_sql = "" if min_flux_mjy is None else " AND flux_mjy >= ?"
        terms, params = [], []
        for z, intervals in zone_ranges:
            for lo, hi in intervals:
                if lo <= 0.0 and hi >= 360.0:
                    terms.append(select + "zone = ?" + flux_sql)
                    params.append((z,))
                else:
                    terms.append(select + "zone = ? AND ra_deg BETWEEN ? AND ?" + flux_sql)
                    params.append((z, lo, hi))
                if min_flux_mjy is not None:
                    params[-1] = params[-1] + (float(min_flux_mjy),)
        rows: list[tuple] = []
        conn.exec_driver_sql("SELECT 1")  # make sure the read transaction (snapshot) is open
        # Plain tuples from the driver cursor, inside SQLAlchemy's transaction: Row
        # objects would cost a third of a large query's time.
        cursor = conn.connection.driver_connection.cursor()
        try:
            for i in range(0, len(terms), _MAX_UNION):
                sql = " UNION ALL ".join(terms[i:i + _MAX_UNION])
                flat = tuple(v for p in params[i:i + _MAX_UNION] for v in p)
                rows.extend(cursor.execute(sql, flat).fetchall())
        finally:
            cursor.close()
        return rows

    @staticmethod
    def _to_columns(rows: list[tuple], extras) -> dict:
        """Rows of (source_id, float core..., extras...) as a dict of numpy columns."""
        ncol = 1 + len(_FLOAT_CORE) + len(extras)
        cols = list(zip(*rows)) if rows else [()] * ncol
        out = {"source_id": np.array(cols[0], dtype=str) if rows else np.array([], dtype="<U1")}
        for i, name in enumerate(_FLOAT_CORE, start=1):
            out[name] = np.array(cols[i], dtype=float)
        for j, (name, kind) in enumerate(extras, start=1 + len(_FLOAT_CORE)):
            out[name] = _column(cols[j], kind)
        return out

    # --- public queries -------------------------------------------------------------------
    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *,
             min_flux_mjy: float | None = None, max_sources: int | None = None) -> Table:
        """Sources within ``radius_deg`` of (``ra_deg``, ``dec_deg``), brightest first.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Centre (deg).
        radius_deg : float
            Great-circle radius (deg); the cut is exact (``<=``).
        min_flux_mjy : float, optional
            Keep ``flux_mjy >= min_flux_mjy`` (mJy).
        max_sources : int, optional
            Keep the ``max_sources`` brightest (by ``flux_mjy``) **after** the radius cut.

        Returns
        -------
        astropy.table.Table
            Normalised columns plus the survey's extras, sorted by ``flux_mjy``
            descending (NaN last). ``meta['coverage']`` is ``'full'`` or ``'partial'``.
        """
        ra0, dec0, r = _check_cone(ra_deg, dec_deg, radius_deg)
        sra, sdec = spatial.circle_points(ra0, dec0, r)
        zones = spatial.cone_zone_ranges(ra0, dec0, r)

        def keep(t):
            return spatial.angular_separation_deg(ra0, dec0, t["ra_deg"], t["dec_deg"]) <= r

        return self._run(zones, min_flux_mjy, (ra0, dec0, sra, sdec, (ra0, dec0, r)), keep,
                         max_sources)

    def box(self, ra_min: float, ra_max: float, dec_min: float, dec_max: float, *,
            min_flux_mjy: float | None = None, max_sources: int | None = None) -> Table:
        """Sources with ``dec_min <= Dec <= dec_max`` and RA from ``ra_min`` east to ``ra_max``.

        ``ra_min > ra_max`` (mod 360) is a box crossing RA 0/360, e.g. ``box(350, 10, ...)``.
        """
        for v, n in ((ra_min, "ra_min"), (ra_max, "ra_max"), (dec_min, "dec_min"),
                     (dec_max, "dec_max")):
            if not np.isfinite(v):
                raise CatalogError(f"{n} must be finite, got {v!r}")
        if dec_min > dec_max or dec_min > 90 or dec_max < -90:
            raise CatalogError(f"invalid Dec range [{dec_min}, {dec_max}] (deg)")
        intervals = spatial.ra_range_intervals(float(ra_min), float(ra_max))
        zones = spatial.box_zone_ranges(intervals, dec_min, dec_max)
        span = sum(hi - lo for lo, hi in intervals)
        ra_c = (intervals[0][0] + span / 2.0) % 360.0
        dec_c = 0.5 * (max(dec_min, -90) + min(dec_max, 90))
        k = 9  # boundary samples per edge (coverage test, bounding cone of an online fetch)
        e = np.linspace(0, 1, k)
        lo0 = intervals[0][0]
        sra = np.r_[lo0 + e * span, lo0 + e * span, np.full(k, lo0), np.full(k, lo0 + span)] % 360
        side = dec_c + (e - 0.5) * (dec_max - dec_min)
        sdec = np.r_[np.full(k, max(dec_min, -90)), np.full(k, min(dec_max, 90)), side, side]
        sdec = np.clip(sdec, -90, 90)
        radius = float(np.max(spatial.angular_separation_deg(ra_c, dec_c, sra, sdec))) * 1.02
        if span >= 360.0:
            radius = 180.0

        def keep(t):
            ok = (t["dec_deg"] >= dec_min) & (t["dec_deg"] <= dec_max)
            inr = np.zeros(len(t["ra_deg"]), dtype=bool)
            for lo, hi in intervals:
                inr |= (t["ra_deg"] >= lo) & (t["ra_deg"] <= hi)
            return ok & inr

        return self._run(zones, min_flux_mjy, (ra_c, dec_c, sra, sdec, (ra_c, dec_c, radius)),
                         keep, max_sources)

    def ellipse(self, ra_deg: float, dec_deg: float, ra_radius_deg: float, dec_radius_deg: float,
                *, min_flux_mjy: float | None = None, max_sources: int | None = None) -> Table:
        """Sources with ``(dRA cos(dec0) / ra_radius)^2 + (dDec / dec_radius)^2 <= 1``.

        ``ra_radius_deg`` is an on-sky extent (already multiplied by cos Dec),
        ``dRA`` is wrapped to [-180, 180) deg.
        """
        ra0, dec0, rr = _check_cone(ra_deg, dec_deg, ra_radius_deg)
        _, _, rd = _check_cone(ra_deg, dec_deg, dec_radius_deg)
        cosd = math.cos(math.radians(dec0))
        hw = 180.0 if cosd * 180.0 <= rr or abs(dec0) + rd > spatial.POLAR_DEC_DEG else rr / cosd
        intervals = spatial.ra_intervals(ra0, hw * (1 + 1e-9) + 1e-9)
        zones = spatial.box_zone_ranges(intervals, dec0 - rd, dec0 + rd)
        t = np.radians(np.arange(16) * 22.5)
        sra = np.mod(ra0 + np.sin(t) * hw, 360.0)
        sdec = np.clip(dec0 + np.cos(t) * rd, -90, 90)
        radius = min(180.0, float(np.max(spatial.angular_separation_deg(ra0, dec0, sra, sdec))) * 1.01
                     + 1e-6)

        def keep(tab):
            dra = spatial.wrap_delta_ra(tab["ra_deg"], ra0) * cosd
            ddec = np.asarray(tab["dec_deg"]) - dec0
            return (dra / rr) ** 2 + (ddec / rd) ** 2 <= 1.0

        return self._run(zones, min_flux_mjy, (ra0, dec0, sra, sdec, (ra0, dec0, radius)), keep,
                         max_sources)

    def in_footprint(self, image, *, min_flux_mjy: float | None = None,
                     max_sources: int | None = None, margin_pix: float = 0.0) -> Table:
        """Sources inside an image's pixel footprint, NaN-blanked pixels excluded.

        Parameters
        ----------
        image : object
            With ``.wcs`` (celestial astropy WCS), ``.shape`` ``(ny, nx)`` and
            ``.data`` (2-D; NaN = blanked; may be ``None`` to skip the blank test).
        margin_pix : float
            Keep sources at least this many pixels inside the array edges; when
            > 0 the pixels ``margin_pix`` away along x and y must be finite too.

        Returns
        -------
        astropy.table.Table
            As :meth:`cone`, plus ``x_pix``, ``y_pix`` (0-based pixel position).
        """
        wcs = image.wcs.celestial if hasattr(image.wcs, "celestial") else image.wcs
        ny, nx = (int(v) for v in tuple(image.shape)[-2:])
        data = getattr(image, "data", None)
        # Sample the array border densely and find its sky extent.
        m = max(8, min(512, max(nx, ny)))
        bx = np.r_[np.linspace(-0.5, nx - 0.5, m), np.full(m, nx - 0.5),
                   np.linspace(nx - 0.5, -0.5, m), np.full(m, -0.5)]
        by = np.r_[np.full(m, -0.5), np.linspace(-0.5, ny - 0.5, m), np.full(m, ny - 0.5),
                   np.linspace(ny - 0.5, -0.5, m)]
        wra, wdec = wcs.pixel_to_world_values(bx, by)
        cra, cdec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0))
        good = np.isfinite(wra) & np.isfinite(wdec)
        if not good.any() or not np.isfinite(cra):
            raise CatalogError("image footprint has no valid sky coordinates (check its WCS)",
                               getattr(image, "path", None))
        wra, wdec = np.mod(wra[good], 360.0), wdec[good]
        scale = float(np.max(np.abs(proj_plane_pixel_scales(wcs))))  # deg/pixel (plain floats)
        scale = getattr(scale, "value", scale)
        pad = 2.0 * scale * max(1.0, max(nx, ny) / m)
        pole = None
        for p in (90.0, -90.0):
            px, py = wcs.world_to_pixel_values(0.0, p)
            if np.isfinite(px) and -0.5 <= px <= nx - 0.5 and -0.5 <= py <= ny - 0.5:
                pole = p
        d = spatial.wrap_delta_ra(wra, cra)
        dec_min, dec_max = float(wdec.min()) - pad, float(wdec.max()) + pad
        if pole is not None:
            intervals = [(0.0, 360.0)]
            dec_min, dec_max = (dec_min, 90.0) if pole > 0 else (-90.0, dec_max)
        else:
            cosd = max(math.cos(math.radians(min(89.9, max(abs(dec_min), abs(dec_max))))), 1e-6)
            lo, hi = cra + d.min() - pad / cosd, cra + d.max() + pad / cosd
            if max(abs(dec_min), abs(dec_max)) > spatial.POLAR_DEC_DEG or hi - lo >= 360.0:
                intervals = [(0.0, 360.0)]
            else:
                intervals = spatial.ra_range_intervals(lo, hi)
        zones = spatial.box_zone_ranges(intervals, dec_min, dec_max)
        radius = min(180.0, float(np.max(spatial.angular_separation_deg(cra, cdec, wra, wdec)))
                     + pad)
        step = max(1, wra.size // 32)

        def keep(tab):
            x, y = wcs.world_to_pixel_values(np.asarray(tab["ra_deg"]), np.asarray(tab["dec_deg"]))
            x, y = np.asarray(x, float), np.asarray(y, float)
            mg = float(margin_pix)
            ok = np.isfinite(x) & np.isfinite(y)
            ok &= (x >= -0.5 + mg) & (x <= nx - 0.5 - mg) & (y >= -0.5 + mg) & (y <= ny - 0.5 - mg)
            if data is not None:
                arr = np.asarray(data)
                for dx, dy in ((0, 0),) + (((mg, 0), (-mg, 0), (0, mg), (0, -mg)) if mg > 0 else ()):
                    ix = np.clip(np.round(np.where(ok, x + dx, 0)).astype(int), 0, nx - 1)
                    iy = np.clip(np.round(np.where(ok, y + dy, 0)).astype(int), 0, ny - 1)
                    ok &= np.isfinite(arr[iy, ix])
            tab["x_pix"] = x
            tab["y_pix"] = y
            return ok

        table = self._run(zones, min_flux_mjy,
                          (cra, cdec, wra[::step], wdec[::step], (cra, cdec, radius)), keep,
                          max_sources)
        if "x_pix" not in table.colnames:
            table["x_pix"] = np.zeros(len(table))
            table["y_pix"] = np.zeros(len(table))
        return table

    @_store_errors
    def all_rows(self, columns: list[str] | None = None) -> Table:
        """The whole survey table (used to build the master list)."""
        engine = self._db(create=False)
        if engine is None:
            raise CatalogMissing(f"{self.name}: local catalogue never ingested", self.path)
        with engine.connect() as conn:
            extras, cov = self._snapshot(conn)
            if columns is not None:
                extras = [e for e in extras if e[0] in columns]
            names = ["source_id"] + _FLOAT_CORE + [e[0] for e in extras]
            result = conn.exec_driver_sql(
                f"SELECT {', '.join(_q(c) for c in names)} FROM sources ORDER BY zone, ra_deg")
            chunks = []
            while True:  # column-wise in chunks: a 2-million-row survey stays cheap in memory
                rows = result.fetchmany(_INSERT_CHUNK)
                if not rows:
                    break
                chunks.append(self._to_columns(rows, extras))
        if not chunks:
            chunks = [self._to_columns([], extras)]
        cols = {k: (np.ma.concatenate if any(isinstance(c[k], np.ma.MaskedArray) for c in chunks)
                    else np.concatenate)([c[k] for c in chunks]) for k in chunks[0]}
        table = Table(cols, copy=False)
        table.meta["coverage_records"] = [tuple(c) for c in cov]
        return table


# --- helpers -----------------------------------------------------------------------------
def _coverage_box(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float, float, float]:
    """Sky box covered by a file's sources, padded by three mean source spacings.

    The extreme sources sit a little inside the true survey edge; the pad
    (0.01 to 1 deg) keeps queries at the edge from being refused.
    """
    ra_lo, ra_hi = spatial.ra_coverage(ra)
    dec_min, dec_max = float(dec.min()), float(dec.max())
    mid = math.radians(0.5 * (dec_min + dec_max))
    area = max((ra_hi - ra_lo) * math.cos(mid), 1e-6) * max(dec_max - dec_min, 1e-6)
    pad = min(1.0, max(0.01, 3.0 * math.sqrt(area / ra.size)))
    dec_min, dec_max = max(-90.0, dec_min - pad), min(90.0, dec_max + pad)
    if ra_hi - ra_lo < 360.0:
        cos_edge = max(math.cos(math.radians(max(abs(dec_min), abs(dec_max)))), 1e-3)
        widen = pad / cos_edge
        span = ra_hi - ra_lo + 2 * widen
        if span >= 360.0:
            ra_lo, ra_hi = 0.0, 360.0
        else:
            ra_lo = (ra_lo - widen) % 360.0
            ra_hi = ra_lo + span
    return ra_lo, ra_hi, dec_min, dec_max


def _check_cone(ra, dec, radius) -> tuple[float, float, float]:
    ra, dec, radius = float(ra), float(dec), float(radius)
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(radius)):
        raise CatalogError(f"cone centre and radius must be finite, got ({ra}, {dec}, {radius})")
    if abs(dec) > 90.0:
        raise CatalogError(f"Dec must be within [-90, 90] deg, got {dec}")
    if not radius > 0.0:
        raise CatalogError(f"radius must be > 0 deg, got {radius}")
    return ra % 360.0, dec, min(radius, 180.0)


def _storable(values) -> list:
    if isinstance(values, np.ma.MaskedArray):
        out = np.asarray(values.data).astype(object)
        out[np.ma.getmaskarray(values)] = None  # (MaskedArray.filled(None) fills '?')
        return out.tolist()
    return values.tolist()


def _column(values: tuple, kind: str):
    if kind == "float":
        return np.array(values, dtype=float)
    if kind == "str":
        return np.array(["" if v is None else v for v in values], dtype=str) if values \
            else np.array([], dtype="<U1")
    dtype = bool if kind == "bool" else np.int64
    if any(v is None for v in values):
        mask = np.array([v is None for v in values])
        data = np.array([0 if v is None else v for v in values], dtype=dtype)
        return np.ma.MaskedArray(data, mask=mask)
    return np.array(values, dtype=dtype)


__all__ = ["CatalogStore", "SurveyCatalog", "SURVEYS", "canonical_survey"]
