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

Writing (schema, one file's ingest) is :mod:`dsa110_contimg.store.catalog_ingest`; the sky
geometry of a query is a :class:`~dsa110_contimg.catalogs.region.Region` value (cone, box,
ellipse, image footprint) that :meth:`SurveyCatalog.query` reads through the zone index.
A query whose region is not covered by any ingested file raises :class:`CatalogMissing`,
unless the store has an online source (``allow_online``), in which case the region's
bounding cone is fetched (:class:`~dsa110_contimg.catalogs.online.VizierSource`), cached as
a file and served locally.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import sqlalchemy as sa
from astropy.table import Table

from dsa110_contimg.catalogs.coverage import Coverage
from dsa110_contimg.catalogs.readers import NormalisedTable, normalise, read_table
from dsa110_contimg.catalogs.region import Box, Cone, Ellipse, Footprint, Region
from dsa110_contimg.core.enums import MONITOR_SURVEY, SURVEYS, canonical_survey
from dsa110_contimg.core.errors import CatalogError, CatalogMissing, StoreError
from dsa110_contimg.store.catalog_ingest import (
    FLOAT_CORE,
    INSERT_CHUNK,
    create_schema,
    quote,
    write_table,
)
from dsa110_contimg.store.engine import make_engine

_MAX_UNION = 200  # SQLite allows 500 terms in a compound SELECT

#: SQLite settings of a catalogue file beyond the service's defaults: large pages
#: (effective only for a new file), memory-mapped reads, in-memory temporary tables.
_CATALOG_PRAGMAS = ("page_size=16384", "mmap_size=268435456", "temp_store=MEMORY")


def _make_engine(path: Path) -> sa.Engine:
    """Engine of one survey file (:func:`dsa110_contimg.store.engine.make_engine`: WAL,
    busy timeout; reads by default, writes with ``WRITE_OPTION``)."""
    return make_engine(path, pragmas=_CATALOG_PRAGMAS, reads_by_default=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    online_source : object, optional
        The online source to use instead of VizieR (anything with
        ``fetch(survey, cone) -> OnlineRegion``, :mod:`dsa110_contimg.catalogs.online`);
        implies ``allow_online``.
    """

    def __init__(self, catalog_dir: str | Path, *, allow_online: bool = False,
                 online_timeout_s: float = 30.0, online_source=None):
        self.catalog_dir = Path(catalog_dir).expanduser()
        if self.catalog_dir.exists() and not self.catalog_dir.is_dir():
            raise StoreError("catalogue directory is not a directory", self.catalog_dir)
        self.allow_online = bool(allow_online) or online_source is not None
        self.online_timeout_s = float(online_timeout_s)
        if online_source is None and self.allow_online:
            from dsa110_contimg.catalogs.online import VizierSource

            online_source = VizierSource(self.online_timeout_s)
        #: where regions missing locally are fetched (None: nowhere)
        self.online = online_source
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


class _NotLocal(Exception):
    """The local database does not (fully) cover a query region and it may be fetched."""


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
                    create_schema(self._engine, self.name, self.path)
            except sa.exc.SQLAlchemyError as exc:
                self._engine = None
                raise StoreError(f"cannot open catalogue database: {exc}", self.path) from exc
        elif create:
            create_schema(self._engine, self.name, self.path)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @_store_errors
    def _write(self, norm: NormalisedTable, key: str, *, sha256: str | None,
               coverage_cone: tuple[float, float, float] | None = None, progress=None) -> int:
        n, self.last_write_notes = write_table(self._db(create=True), self.name, norm, key,
                                               sha256=sha256, coverage_cone=coverage_cone,
                                               progress=progress)
        return n

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

    @_store_errors
    def query(self, region: Region, *, min_flux_mjy: float | None = None,
              max_sources: int | None = None) -> Table:
        """Sources inside ``region`` (:mod:`dsa110_contimg.catalogs.region`), brightest first.

        ``min_flux_mjy`` keeps ``flux_mjy >= min_flux_mjy`` (mJy); ``max_sources`` keeps the
        brightest (by ``flux_mjy``) after the region cut. Returns the normalised columns plus
        the survey's extras and the region's added columns, sorted by ``flux_mjy``
        descending (NaN last); ``meta['coverage']`` is ``'full'`` or ``'partial'`` (with
        ``meta['notes']``), ``meta['n_candidates']`` the rows read through the zone index.
        """
        if max_sources is not None and int(max_sources) < 0:
            raise CatalogError(f"max_sources must be >= 0, got {max_sources!r}")
        fetch = self.store.online is not None and self.name != "master"
        try:
            cols, n_read, full = self._read(region, min_flux_mjy, may_fetch=fetch)
        except _NotLocal:
            fetched = self.store.online.fetch(self.name, region.bounding_cone)
            self._write(fetched.table, fetched.key, sha256=None, coverage_cone=fetched.cone)
            cols, n_read, full = self._read(region, min_flux_mjy, may_fetch=False)
        return self._table(cols, n_read, full, region, max_sources)

    def _read(self, region: Region, min_flux_mjy, *, may_fetch: bool):
        """The candidate rows of ``region`` as columns (:func:`_to_columns`, shared with
        :data:`_CANDIDATES`: not to be modified), how many, and whether the local files
        cover it fully; ``_NotLocal`` when they do not and ``may_fetch``, else
        ``CatalogMissing`` when they hold nothing of it."""
        engine = self._db(create=False)
        if engine is None:
            self._not_local("never ingested", may_fetch)
        with engine.connect() as conn:
            extras, records = self._snapshot(conn)
            if not records:
                conn.rollback()
                self._not_local("has no ingested file", may_fetch)
            coverage = Coverage(records)
            inside = coverage.contains(*region.coverage_points())
            if self.name == MONITOR_SURVEY:      # a list of positions covers the whole sky
                inside[:] = True
            if not inside.all() and may_fetch:
                conn.rollback()
                raise _NotLocal("does not cover the region")
            if not inside.any() and not coverage.reaches(region.bounding_cone):
                conn.rollback()
                hint = "" if self.name == "master" else " or allow online queries"
                raise CatalogMissing(
                    f"{self.name}: the local catalogue does not cover the region around RA "
                    f"{region.centre[0]:.4f}, Dec {region.centre[1]:.4f} (ingest a file "
                    f"covering it{hint})", self.path)
            zones = region.zone_ranges()
            contents = _contents(conn)
            key = (str(self.path), contents, tuple(extras),
                   tuple((z, tuple(iv)) for z, iv in zones), min_flux_mjy)
            found = None if contents is None else _CANDIDATES.get(key)
            if found is None:
                rows = self._fetch(conn, zones, min_flux_mjy, extras)
                found = (_to_columns(rows, extras), len(rows))
                if contents is not None:
                    _CANDIDATES.put(key, found)
        return found[0], found[1], bool(inside.all())

    def _not_local(self, why: str, may_fetch: bool):
        if may_fetch:
            raise _NotLocal(why)
        hint = ("build it with `catalog build-master`" if self.name == "master"
                else f"ingest it with `catalog ingest {self.name} FILE`"
                + ("" if self.store.allow_online else " or allow online queries"))
        raise CatalogMissing(f"{self.name}: local catalogue {why}; {hint}", self.path)

    def _table(self, candidates: dict, n_read: int, full: bool, region: Region,
               max_sources) -> Table:
        """The candidates inside the region, sorted and limited, as a table (new arrays:
        ``candidates`` is left as it is)."""
        cols = dict(candidates)
        if n_read:
            inside, added = region.select(cols["ra_deg"], cols["dec_deg"])
            cols.update(added)
            sel = np.flatnonzero(inside)
            flux = cols["flux_mjy"][sel]
            order = np.argsort(-np.where(np.isfinite(flux), flux, -np.inf), kind="stable")
            if max_sources is not None:
                order = order[:int(max_sources)]
            sel = sel[order]
            cols = {k: v[sel] for k, v in cols.items()}
        else:
            cols = {k: v.copy() for k, v in cols.items()}
            cols.update((name, np.zeros(0)) for name in region.added_columns)
        table = Table(cols, copy=False)
        table.meta["survey"] = self.name
        table.meta["n_candidates"] = n_read  # rows read through the zone index
        table.meta["coverage"] = "full" if full else "partial"
        if not full:
            table.meta["notes"] = [f"{self.name}: the query region extends beyond the ingested "
                                   "catalogue coverage; sources there are missing"]
        return table

    def _fetch(self, conn, zone_ranges, min_flux_mjy, extras) -> list[tuple]:
        names = ["source_id"] + FLOAT_CORE + [e[0] for e in extras]
        select = f"SELECT {', '.join(quote(c) for c in names)} FROM sources WHERE "
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
        return self.query(Cone(ra_deg, dec_deg, radius_deg), min_flux_mjy=min_flux_mjy,
                          max_sources=max_sources)

    def box(self, ra_min: float, ra_max: float, dec_min: float, dec_max: float, *,
            min_flux_mjy: float | None = None, max_sources: int | None = None) -> Table:
        """Sources with ``dec_min <= Dec <= dec_max`` and RA from ``ra_min`` east to ``ra_max``.

        ``ra_min > ra_max`` (mod 360) is a box crossing RA 0/360, e.g. ``box(350, 10, ...)``.
        """
        return self.query(Box(ra_min, ra_max, dec_min, dec_max), min_flux_mjy=min_flux_mjy,
                          max_sources=max_sources)

    def ellipse(self, ra_deg: float, dec_deg: float, ra_radius_deg: float, dec_radius_deg: float,
                *, min_flux_mjy: float | None = None, max_sources: int | None = None) -> Table:
        """Sources with ``(dRA cos(dec0) / ra_radius)^2 + (dDec / dec_radius)^2 <= 1``.

        ``ra_radius_deg`` is an on-sky extent (already multiplied by cos Dec),
        ``dRA`` is wrapped to [-180, 180) deg.
        """
        return self.query(Ellipse(ra_deg, dec_deg, ra_radius_deg, dec_radius_deg),
                          min_flux_mjy=min_flux_mjy, max_sources=max_sources)

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
        return self.query(Footprint(image, margin_pix), min_flux_mjy=min_flux_mjy,
                          max_sources=max_sources)

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
            names = ["source_id"] + FLOAT_CORE + [e[0] for e in extras]
            result = conn.exec_driver_sql(
                f"SELECT {', '.join(quote(c) for c in names)} FROM sources ORDER BY zone, ra_deg")
            chunks = []
            while True:  # column-wise in chunks: a 2-million-row survey stays cheap in memory
                rows = result.fetchmany(INSERT_CHUNK)
                if not rows:
                    break
                chunks.append(_to_columns(rows, extras))
        if not chunks:
            chunks = [_to_columns([], extras)]
        cols = {k: (np.ma.concatenate if any(isinstance(c[k], np.ma.MaskedArray) for c in chunks)
                    else np.concatenate)([c[k] for c in chunks]) for k in chunks[0]}
        table = Table(cols, copy=False)
        table.meta["coverage_records"] = [tuple(c) for c in cov]
        return table


# --- helpers -----------------------------------------------------------------------------
def _contents(conn) -> tuple:
    """What identifies the rows of a survey file: its ingested files (id, path, SHA-256,
    row count, time) and the next row id (every ingest that adds rows advances it; one
    that removes rows changes or removes a file's row); None without a row counter."""
    files = conn.exec_driver_sql(
        "SELECT file_id, path, sha256, n_rows, ingested_at FROM files ORDER BY file_id").all()
    nxt = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'next_rid'").scalar()
    return None if nxt is None else (tuple(tuple(f) for f in files), nxt)


class _CandidateCache:
    """The candidate rows (columns) of the latest zone-index reads of this process, by
    survey file, its contents (:func:`_contents`, read in the query's transaction: an
    ingest by any process makes the entry unreachable), extra columns, zone ranges and
    flux limit: the images of one pointing read their catalogue rows once. Least recently
    used entries go first."""

    def __init__(self, size: int = 16):
        self.size = size
        self._entries: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._entries.pop(key, None)
            if value is not None:
                self._entries[key] = value          # most recent last
            return value

    def put(self, key, value):
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.pop(next(iter(self._entries)))
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CANDIDATES = _CandidateCache()


def _to_columns(rows: list[tuple], extras) -> dict:
    """Rows of (source_id, float core..., extras...) as a dict of numpy columns."""
    ncol = 1 + len(FLOAT_CORE) + len(extras)
    cols = list(zip(*rows)) if rows else [()] * ncol
    out = {"source_id": np.array(cols[0], dtype=str) if rows else np.array([], dtype="<U1")}
    for i, name in enumerate(FLOAT_CORE, start=1):
        out[name] = np.array(cols[i], dtype=float)
    for j, (name, kind) in enumerate(extras, start=1 + len(FLOAT_CORE)):
        out[name] = _column(cols[j], kind)
    return out


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
