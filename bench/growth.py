"""Growth: does anything an image, a page or a command reads grow with the table? A year of data
and two (10^6, 10^7, 5 x 10^7 and 10^8 measurement rows), on SQLite and on PostgreSQL.

Usage::

    .venv/bin/python bench/growth.py [--rows 1e6,1e7,5e7,1e8] [--backends sqlite,postgresql]
                                     [--pg-max-rows 1e7] [--size 2048] [--fields 100]
                                     [--root /tmp/growth]

The database: ``--fields`` fields of ``--sources`` (1,000) catalogue sources each (10^5 sources),
every field observed the same number of epochs (rows / sources: 10, 100, 500, 1,000 epochs, one
a day), one done job per image, ESE candidates for 1% of the sources, variability statistics for
all. Field 0 is real: its first epochs are measured by the pipeline (``PhotometryManager.run_image``
on simulated ``--size``² images of a catalogue ingested for it); every other epoch of every field
is a copy of the last real image and its rows (shifted on the sky for the other fields), written
inside the database through ``store/bulk.py`` (``INSERT ... SELECT``, one statement per image;
on PostgreSQL as a superuser without the measurements' foreign-key triggers, whose lookups and
row locks took four fifths of a copy, the copied sources' existence checked once per size),
so a size is built in minutes. A copied flux (raw and normalised, Jy/beam) is the template's
plus its error times a deterministic pseudo-normal deviate hashed in SQL from (image id, source
id) (:func:`scatter_sql`): steady sources have chi2_nu ~ 1, and 3 % scatter 1.7 times their
errors (chi2_nu ~ 2.9), so the ESE step's chi2 prefilter passes a few per cent of the sources
at every length, as on the sky. After each size is built the running statistics of every
source are recomputed from its light curve, field by field, as the variability step holds them
(``RunningStats.from_lightcurves``; checked for two sources against ``lightcurve_metrics`` to
1e-9), and every candidate's stored best template is put inside its light curve (``t_min_mjd``
between its first and last epoch), so the per-image ESE step refits known candidates on data.
The sizes are built in turn, each growing the last (earlier epochs added to every field), so
the timed images stay the newest of field 0; the build time is printed per size (copies,
statistics, seconds per 10^6 rows added). A SQLite size the disk cannot hold (at the last
size's bytes per row) is not built.

At each size: end to end per image (``run_image`` of a new epoch of field 0, median of
``--timed``) and its steps (``step_seconds``: store, normalise, variability, ese); ``status``,
``images list``, ``ese list`` and ``lightcurve`` (the CLI in process); every page of the web site
(Starlette ``TestClient``, median of 7 after a first request, Python's garbage collector
held off during each); the daemon's ``/metrics`` database
gauges (``Metrics.database_snapshot``); bytes per measurement row (SQLite: ``dbstat``;
PostgreSQL: ``pg_total_relation_size``). Printed: a table per backend with each figure and its
ratio to the smallest size's figure, and the ratios of the sizes above 5 x 10^7 rows to it:
the ESE step reads the light curves of a 540-day window (``SEARCH_WINDOW_DAYS``), and a field of
5 x 10^7 rows (500 epochs, 502 d with the timed ones) is just short of it while one of 10^8
(1,000 d) is past it, so that step (and everything bounded by the field's window) should be
flat between the two. Databases live under ``--root`` and are deleted at the end (``--keep``
leaves the SQLite ones there, one file per size, for inspection; 10^8 rows take ~13 GB; and
the PostgreSQL cluster running with the last size's database, its URL printed). After each
size the table so far is printed; on PostgreSQL the build ends with ``VACUUM (ANALYZE)``, the
state autovacuum keeps a running daemon's tables in.
Two light curves are timed (the CLI, the source page, its JSON and its CSV): ``{src}``, a
source of field 0 measured on every epoch, whose light curve is the field's history (13 points
at 10^6 rows, 502 at 5 x 10^7: the page's content grows) and ``{late}`` (:data:`LATE_SOURCE`),
a position first measured late (a new source, a monitor position added after years of data),
measured on the :data:`LATE_EPOCHS` newest epochs of field 0 of the first size that has them
and on no other: the same light curve at every size, so its ratios are what grows with the
table and the field's history, not with the page.
BLAS runs single-threaded, as in the service's workers (``bench/workerenv.py``); after each
build the status counters' deltas are compacted, as the daemon's reaper pass does.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workerenv  # noqa: E402,F401  (before numpy: the workers' single-threaded BLAS)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from benchfield import field_catalogue, ingest, write_epochs  # noqa: E402

PIX_ARCSEC = 6.0
#: explicit ids of field k's sources and images: field 0's + k * stride
SOURCE_STRIDE = 10_000
SEED_EPOCHS = 4
#: the second reference size of the printed ratios (5 x 10^7 rows: 500 epochs a field at
#: 100 fields, just short of the ESE step's window; above it the window is full)
SECOND_BASE = 50_000_000
#: field 0's late source: a position measured on LATE_EPOCHS epochs only (a monitor position
#: or a new source added late), so that its light curve has the same length at every size
LATE_SOURCE = SOURCE_STRIDE - 1
LATE_EPOCHS = 13


def _cols(table) -> list[str]:
    return [c.name for c in table.columns]


def _copy_sql(table, expr: dict, where: str, skip: tuple = ()) -> str:
    """An INSERT of ``table``'s rows that match ``where`` into ``table`` itself, column ``c``
    taken as the SQL expression ``expr.get(c, c)``; the columns ``skip`` are left out."""
    cols = [c for c in _cols(table) if c not in skip]
    return (f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT "
            + ", ".join(expr.get(c, c) for c in cols) + f" FROM {table.name} WHERE {where}")


#: modulus of the hashed uniforms (the prime 2**31 - 1: squares of residues fit in 63 bits)
HASH_MOD = 2_147_483_647
#: (image multiplier, source multiplier, offset) of each of the uniforms summed per deviate
HASH_TERMS = ((48_271, 69_621, 12_345), (16_807, 39_373, 67_891),
              (40_692, 52_774, 24_680), (62_089, 45_991, 13_579))
#: fraction (per cent) of the sources whose scatter is EXCESS_SCALE times their errors:
#: chi2_nu ~ EXCESS_SCALE**2 = 2.9, above the ESE step's chi2 prefilter (1.5) at any length,
#: as sources with unmodelled variability or underestimated errors are on the sky
EXCESS_PERCENT = 3
EXCESS_SCALE = 1.7


def scatter_sql(image_id: int, source_expr: str, backend: str = "sqlite") -> str:
    """SQL expression of a deterministic pseudo-normal deviate (mean 0, sd 1; |z| <= 3.46)
    of one measurement: sqrt(3) x (sum of 4 hashed uniforms - 2), each uniform the square
    mod :data:`HASH_MOD` of a linear form in (``image_id``, the source id ``source_expr``),
    divided by the modulus; times :data:`EXCESS_SCALE` for :data:`EXCESS_PERCENT` % of the
    sources. Integer arithmetic in 64 bits, the same on SQLite and PostgreSQL (there with
    ``mod()``, each operand evaluated once)."""
    m = HASH_MOD
    src = f"CAST({source_expr} AS BIGINT)"
    terms = []
    for a, b, c in HASH_TERMS:
        lin = _mod_sql(f"{(a * int(image_id) + c) % m} + {b} * {src}", m, backend)
        terms.append(f"CAST({_mod_sql(f'{lin} * {lin}', m, backend)} AS DOUBLE PRECISION)")
    u = " + ".join(terms)
    scale = (f"(CASE WHEN {_mod_sql(f'{src} * 7919', 100, backend)} < {EXCESS_PERCENT} "
             f"THEN {EXCESS_SCALE!r} ELSE 1.0 END)")
    return f"({scale} * 1.7320508075688772 * (({u}) / {float(m)!r} - 2.0))"


def _mod_sql(expr: str, m: int, backend: str = "sqlite") -> str:
    """``expr`` modulo ``m`` for non-negative integers, without ``%`` (a placeholder
    character for the PostgreSQL driver): PostgreSQL's ``mod()``, elsewhere by division."""
    if backend == "postgresql":
        return f"mod({expr}, {m})"
    return f"(({expr}) - ({expr}) / {m} * {m})"


def scatter_values(image_id, source_id) -> np.ndarray:
    """:func:`scatter_sql` in numpy (same integers; for checks)."""
    img = np.asarray(image_id, np.int64)
    src = np.asarray(source_id, np.int64)
    m = HASH_MOD
    u = sum(((((a * img + c) % m + b * src) % m) ** 2 % m).astype(float) for a, b, c in HASH_TERMS)
    scale = np.where((src * 7919) % 100 < EXCESS_PERCENT, EXCESS_SCALE, 1.0)
    return scale * 1.7320508075688772 * (u / float(m) - 2.0)


class GrowthDB:
    """One database growing from size to size (``url``: SQLite path or SQLAlchemy URL)."""

    def __init__(self, url: str, root: Path, *, size: int, n_sources: int, n_fields: int):
        from dsa110_contimg.core.config import PhotometryConfig
        from dsa110_contimg.pipeline.manager import PhotometryManager
        from dsa110_contimg.store.engine import open_products_db

        self.url, self.root = url, root
        self.size, self.n_sources, self.n_fields = size, n_sources, n_fields
        self.db = open_products_db(url)
        self.backend = self.db.engine.dialect.name
        self.fast_copies = False
        if self.backend == "postgresql":
            from dsa110_contimg.store import bulk

            with self.db.engine.begin() as conn:
                self.fast_copies = bool(bulk.execute(
                    conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0])
        self.cfg = PhotometryConfig(catalog="nvss", method="forced", normalize=True, detect_ese=True)
        self.manager = PhotometryManager(url, None, catalog_dir=root / "catalogs")
        self.epochs_per_field = 0       # epochs of every field (field 0: copies + real ones)
        self.n_copies = 0               # copied epochs per field (MJDs before the real ones)
        self.next_epoch = 0             # next real image of field 0 to measure
        self.template = None            # image id of field 0 copied for the other epochs
        self.late_added = False         # whether LATE_SOURCE and its measurements exist
        self.images_dir = root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(size)
        self.ra, self.dec, self.flux, cat = field_catalogue(root, size, n_sources, PIX_ARCSEC, rng,
                                                            min_separation_pix=8)
        ingest(cat, root / "catalogs")
        self.rng = rng

    # ------------------------------------------------------------------ real images of field 0
    def real_image(self) -> Path:
        i = self.next_epoch
        self.next_epoch += 1
        path = self.images_dir / f"field0-{i:04d}.img-image-pb.fits"
        write_epochs([path], self.size, PIX_ARCSEC, self.ra, self.dec, self.flux,
                     np.random.default_rng(1000 + i), gain_sd=0.02, naxis=2)
        # write_epochs dates its first path MJD 60676.25: date this one by its index
        from astropy.io import fits

        with fits.open(path, mode="update") as hdul:
            from astropy.time import Time

            mjd = 60676.25 + i
            hdul[0].header["MJD-OBS"] = mjd
            hdul[0].header["DATE-OBS"] = Time(mjd, format="mjd").isot
        return path

    def measure_real(self) -> tuple[tuple[float, float], dict]:
        """Measure the next real epoch of field 0: ((wall s, CPU s) end to end, step_seconds)."""
        path = self.real_image()
        t, c = time.perf_counter(), time.process_time()
        res = self.manager.run_image(path, "image", self.cfg)
        dt = (time.perf_counter() - t, time.process_time() - c)
        path.unlink()
        if not res.measurements_successful:
            raise SystemExit(f"run_image measured nothing on {path}")
        return dt, dict(res.step_seconds)

    def seed(self) -> None:
        for _ in range(SEED_EPOCHS):
            self.measure_real()
        with self.db.engine.begin() as conn:
            from dsa110_contimg.store import bulk

            self.template = bulk.execute(conn, "SELECT max(id) FROM images")[0][0]
            self.field0_sources = [r[0] for r in bulk.execute(
                conn, "SELECT DISTINCT source_id FROM measurements WHERE image_id = ?",
                (self.template,))]
            assert max(self.field0_sources) < LATE_SOURCE
            tmpl = bulk.execute(conn, "SELECT ra_center_deg, dec_center_deg FROM images "
                                "WHERE id = ?", (self.template,))[0]
            self.centre = tmpl
        self.epochs_per_field = SEED_EPOCHS
        self._clone_fields()

    # ------------------------------------------------------------------ bulk copies
    def _offset(self, k: int) -> tuple[float, float]:
        """Sky offset (deg) of field k from field 0: 8 deg steps in RA, rows 12 deg apart."""
        return 8.0 * (k % 40), -12.0 * (k // 40)

    def _ra(self, col: str, dra: float) -> str:
        return (f"(CASE WHEN {col} + {dra!r} >= 360.0 THEN {col} + {dra!r} - 360.0 "
                f"ELSE {col} + {dra!r} END)")

    def _clone_fields(self) -> None:
        """Fields 1..n-1: field 0's sources (shifted, explicit ids + k * stride), their
        variability statistics, and one copy of the template image each (its measurements)."""
        from dsa110_contimg.store import bulk
        from dsa110_contimg.store.schema import images, sources, variability_stats

        with self.db.engine.begin() as conn:
            for k in range(1, self.n_fields):
                dra, ddec = self._offset(k)
                off = k * SOURCE_STRIDE
                expr = {"id": f"id + {off}", "catalog_id": f"catalog_id || '~{k}'",
                        "ra_deg": self._ra("ra_deg", dra), "dec_deg": f"dec_deg + {ddec!r}"}
                bulk.execute(conn, _copy_sql(sources, expr, f"id < {SOURCE_STRIDE}"))
                bulk.execute(conn, _copy_sql(variability_stats, {"source_id": f"source_id + {off}"},
                                             f"source_id < {SOURCE_STRIDE}"))
            # one image per field k: the template's copy, id = template + k * stride
            for k in range(1, self.n_fields):
                self._copy_image(conn, self.template, 0, k, self.template + k * SOURCE_STRIDE,
                                 mjd_expr="mjd", tag=f"f{k}")
            self._candidates(conn)
            self._fix_sequences(conn, images, sources)

    def _copy_image(self, conn, src_image: int, src_field: int, k: int, new_id: int, *,
                    mjd_expr: str, tag: str) -> None:
        """Copy image ``src_image`` of field ``src_field`` as image ``new_id`` of field ``k``
        with its measurements, each flux moved by its error times :func:`scatter_sql`."""
        from dsa110_contimg.store import bulk
        from dsa110_contimg.store.schema import images, measurements

        dra, ddec = (a - b for a, b in zip(self._offset(k), self._offset(src_field)))
        off = (k - src_field) * SOURCE_STRIDE
        # the copy's source-id range: that of the rows copied (the late source's left out)
        rng = {f"source_id_{f}": f"(SELECT {f}(source_id) + {off} FROM measurements WHERE "
                                 f"image_id = {int(src_image)} AND source_id != {LATE_SOURCE})"
               for f in ("min", "max")}
        iexpr = {"id": str(new_id), "path": f"path || '~{tag}'", "mjd": mjd_expr,
                 "ra_center_deg": self._ra("ra_center_deg", dra),
                 "dec_center_deg": f"dec_center_deg + {ddec!r}", **rng}
        bulk.execute(conn, _copy_sql(images, iexpr, "id = ?"), (src_image,))
        z = scatter_sql(new_id, f"source_id + {off}", self.backend)
        mexpr = {"image_id": str(new_id), "source_id": f"source_id + {off}",
                 "ra_deg": self._ra("ra_deg", dra), "dec_deg": f"dec_deg + {ddec!r}",
                 "peak_jyb": f"peak_jyb + peak_err_jyb * {z}",
                 "norm_flux_jyb": f"norm_flux_jyb + norm_err_jyb * {z}"}
        # "id": an earlier tree's surrogate key
        with self._without_row_checks(conn):
            bulk.execute(conn, _copy_sql(measurements, mexpr, "image_id = ? AND source_id != ?",
                                         skip=("id",)), (src_image, LATE_SOURCE))

    @contextlib.contextmanager
    def _without_row_checks(self, conn):
        """On PostgreSQL as a superuser, the statements inside run without the foreign-key
        triggers (``session_replication_role = replica``; four fifths of a copy's time, two
        lookups and a row lock per row): a copy's image row is inserted just before it and
        its sources' shifted ids exist (:meth:`check_copy_sources`). The images' and jobs'
        own inserts stay outside, so the status counters' triggers fire for them."""
        if not self.fast_copies:
            yield
            return
        from dsa110_contimg.store import bulk

        bulk.execute(conn, "SET LOCAL session_replication_role = replica")
        try:
            yield
        finally:
            bulk.execute(conn, "SET LOCAL session_replication_role = origin")

    def check_copy_sources(self) -> None:
        """Every source id a copy of a field's template writes exists (the foreign key the
        copies do not check row by row on PostgreSQL)."""
        from dsa110_contimg.store import bulk

        with self.db.engine.begin() as conn:
            for k in range(self.n_fields):
                missing = bulk.execute(conn, (
                    "SELECT count(*) FROM measurements m WHERE m.image_id = ? AND m.source_id != ? "
                    "AND NOT EXISTS (SELECT 1 FROM sources s WHERE s.id = m.source_id)"),
                    (self.template + k * SOURCE_STRIDE, LATE_SOURCE))[0][0]
                if missing:
                    raise SystemExit(f"field {k}: {missing} template rows without their source")

    def add_late_source(self, conn) -> None:
        """:data:`LATE_SOURCE`: a copy of a field-0 source (0.005 deg north of it, catalogue id
        ``~late``) measured on the :data:`LATE_EPOCHS` newest epochs of field 0 only, each flux
        scattered as in :meth:`_copy_image`. Added once, when the field has that many epochs;
        the earlier epochs added later and the real ones measured later (from the catalogue,
        which does not hold it) leave its light curve as it is."""
        from dsa110_contimg.store import bulk
        from dsa110_contimg.store.products import widen_source_id_range
        from dsa110_contimg.store.schema import measurements, sources

        model = sorted(self.field0_sources)[len(self.field0_sources) // 2]
        sexpr = {"id": str(LATE_SOURCE), "catalog_id": "catalog_id || '~late'",
                 "dec_deg": "dec_deg + 0.005"}
        bulk.execute(conn, _copy_sql(sources, sexpr, "id = ?"), (model,))
        newest = sorted(self.field0_images(conn), key=lambda r: r[1])[-LATE_EPOCHS:]
        for iid, _ in newest:
            z = scatter_sql(iid, str(LATE_SOURCE), self.backend)
            mexpr = {"source_id": str(LATE_SOURCE), "dec_deg": "dec_deg + 0.005",
                     "peak_jyb": f"peak_jyb + peak_err_jyb * {z}",
                     "norm_flux_jyb": f"norm_flux_jyb + norm_err_jyb * {z}"}
            bulk.execute(conn, _copy_sql(measurements, mexpr, "image_id = ? AND source_id = ?",
                                         skip=("id",)), (iid, model))
            widen_source_id_range(conn, iid, [LATE_SOURCE])
        self.late_added = True

    def field0_images(self, conn) -> list[tuple[int, float]]:
        """(id, MJD) of every image of field 0 (copies tagged ``~c<copy>f0``, real images
        untagged)."""
        from dsa110_contimg.store import bulk

        return [(iid, mjd) for iid, mjd, path in bulk.execute(
            conn, "SELECT id, mjd, path FROM images")
            if "~" not in path or int(path.rsplit("~", 1)[1].rsplit("f", 1)[1]) == 0]

    def _candidates(self, conn) -> None:
        """ESE candidates for 1% of the sources of every field (those without one)."""
        from dsa110_contimg.store import bulk

        now = time.time()
        bulk.execute(conn, (
            "INSERT INTO ese_candidates (source_id, status, flagged_by, criteria, preset, score, "
            "confidence, sigma_deviation, chi2_nu, eta, v, shape_significance, depth, "
            "duration_days, t_min_mjd, template, baseline_jyb, caustic_amp, n_epochs, "
            "first_flagged_at, updated_at) SELECT id, 'active', 'auto', '[\"shape\"]', "
            "'moderate', (id - id / 97 * 97) / 9.7, CASE WHEN id - id / 3 * 3 = 0 THEN 'high' ELSE 'low' END, "
            "5.0, 3.0, 3.0, 0.1, 4.0, 0.4, 40.0, 60600.0, 'dip', catalog_flux_mjy / 1000.0, "
            "0.0, 10, ?, ? FROM sources s WHERE id - id / 100 * 100 = 7 AND NOT EXISTS "
            "(SELECT 1 FROM ese_candidates e WHERE e.source_id = s.id)"), (now, now))
        store_sparklines(conn)

    def _fix_sequences(self, conn, *tables) -> None:
        if self.backend != "postgresql":
            return
        from dsa110_contimg.store import bulk

        for t in tables:
            bulk.execute(conn, f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                         f"(SELECT max(id) FROM {t.name}))")

    def grow_to(self, n_rows: int, progress=print, deadline: float = float("inf")) -> float:
        """Add earlier epochs to every field until the measurements hold ~``n_rows`` (or the
        Unix time ``deadline`` passes); returns the seconds it took."""
        from dsa110_contimg.store import bulk, counters
        from dsa110_contimg.store.schema import images

        t0 = time.perf_counter()
        if self.fast_copies:
            self.check_copy_sources()
        per_epoch = len(self.field0_sources) * self.n_fields
        add = max(int(np.ceil((n_rows - self.n_measurements()) / per_epoch)), 0)
        now = time.time()
        with self.db.engine.begin() as conn:
            next_id = bulk.execute(conn, "SELECT max(id) FROM images")[0][0] + 1
        done = 0
        for j0 in range(0, add, 10):
            if time.time() > deadline:
                progress(f"  {self.backend}: build deadline passed, stopped at this size")
                break
            with self.db.engine.begin() as conn:
                jobs = []
                for j in range(j0, min(add, j0 + 10)):
                    c = self.n_copies + j + 1          # copy number c: MJD 60676.25 - c
                    for k in range(self.n_fields):
                        new_id, next_id = next_id, next_id + 1
                        # each field's first image (field 0's: the template): their
                        # normalised fluxes stay those of the seed (field 0's real images
                        # may normalise the template again)
                        self._copy_image(conn, self.template + k * SOURCE_STRIDE, k, k, new_id,
                                         mjd_expr=f"{60676.25 - c!r}", tag=f"c{c}f{k}")
                        jobs.append(("photometry", "done", "daemon", "{}", 1, 1, 0, 1, 3, 0.0,
                                     now - 86400 * c, now - 86400 * c + 20, now - 86400 * c + 20))
                    done += 1
                bulk.executemany(conn, "INSERT INTO batch_jobs (type, status, origin, params, "
                                 "total_items, completed_items, failed_items, attempts, "
                                 "max_attempts, not_before, created_at, updated_at, finished_at) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", jobs)
            if j0 % 50 == 0:
                progress(f"  {self.backend}: {self.epochs_per_field + done} epochs/field, "
                         f"{time.perf_counter() - t0:.0f} s")
        add = done
        self.n_copies += add
        self.epochs_per_field += add
        if not self.late_added and self.epochs_per_field >= LATE_EPOCHS:
            with self.db.engine.begin() as conn:
                self.add_late_source(conn)
        self.copy_seconds = time.perf_counter() - t0
        self.stats_seconds = self.recompute_stats()
        with self.db.engine.begin() as conn:
            self._fix_sequences(conn, images)
        if self.backend == "postgresql":
            # the state autovacuum keeps a running daemon's database in (its thresholds are
            # rows added, migration 0025): statistics current, every page of the copies in the
            # visibility map, no vacuum of the whole build pending while the figures are taken
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE)")
        else:
            with self.db.engine.begin() as conn:
                bulk.execute(conn, "ANALYZE")
        # the status counts as a running daemon keeps them: its reaper pass folds the
        # triggers' deltas into the totals every few seconds (store/counters.py)
        counters.try_compact(self.db)
        return time.perf_counter() - t0

    def field_images(self, conn) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Field -> (image ids, MJDs) of its normalised images (those its light curves hold):
        copies carry their field in the path's tag (``~f<k>``, ``~c<copy>f<k>``), the real
        images are field 0's."""
        from dsa110_contimg.store import bulk

        out: dict[int, list] = {}
        for iid, mjd, path in bulk.execute(conn, "SELECT id, mjd, path FROM images "
                                           "WHERE norm_status = 'ok'"):
            tag = path.rsplit("~", 1)[1] if "~" in path else ""
            k = int(tag.rsplit("f", 1)[1]) if tag else 0
            out.setdefault(k, []).append((iid, mjd))
        return {k: (np.array([r[0] for r in v], np.int64), np.array([r[1] for r in v], float))
                for k, v in out.items()}

    def recompute_stats(self) -> float:
        """Running statistics of every source from its light curve, as the variability step
        holds them after a recomputation: per field, one bulk read of its sources' normalised
        light curves (``load_lightcurves``), ``RunningStats.from_lightcurves``, its metrics,
        one bulk upsert (``save_running_stats``). Then the candidates' stored best templates
        are put inside their light curves (:meth:`place_candidates`). Returns the seconds."""
        from dsa110_contimg.science.variability import RunningStats
        from dsa110_contimg.store import lightcurves as lc_store

        t0 = time.perf_counter()
        src0 = np.array(sorted(self.field0_sources), np.int64)
        with self.db.engine.begin() as conn:
            fields = self.field_images(conn)
        for k in range(self.n_fields):
            ids, mjd = fields[k]
            with self.db.engine.begin() as conn:
                src = src0 + k * SOURCE_STRIDE
                if k == 0 and self.late_added:
                    src = np.append(src, LATE_SOURCE)
                f, e, t, _ = lc_store.load_lightcurves(conn, src, ids, normalized=True, epochs=mjd)
                stats = RunningStats.from_lightcurves(f, e, t)
                lc_store.save_running_stats(conn, src, stats.to_dict(), stats.metrics(),
                                            "normalized")
        with self.db.engine.begin() as conn:
            self.place_candidates(conn)
        return time.perf_counter() - t0

    def place_candidates(self, conn) -> None:
        """Each candidate's stored best template (``t_min_mjd``, ``n_epochs``) inside its light
        curve: the dip's minimum at a fraction (0.1-0.9, by source id) of the way from its
        first to its last epoch, so the per-image search refits known candidates where
        their data are."""
        from dsa110_contimg.store import bulk

        bulk.execute(conn, (
            "UPDATE ese_candidates SET "
            "t_min_mjd = (SELECT v.first_mjd + (v.last_mjd - v.first_mjd) * "
            f"(0.1 + 0.8 * {_mod_sql('ese_candidates.source_id * 37', 101)} / 100.0) "
            "FROM variability_stats v WHERE v.source_id = ese_candidates.source_id), "
            "n_epochs = (SELECT v.n FROM variability_stats v "
            "WHERE v.source_id = ese_candidates.source_id)"))

    def check_stats(self, source_id: int) -> None:
        """Assert that the stored statistics of ``source_id`` are those the science code
        computes from its light curve (``lightcurve_metrics`` on its normalised measurements
        over the normalised images, read row by row), to 1e-9 relative."""
        from dsa110_contimg.science.variability import lightcurve_metrics
        from dsa110_contimg.store import bulk
        from dsa110_contimg.store.schema import METRIC_COLUMNS

        with self.db.engine.begin() as conn:
            rows = bulk.execute(conn, (
                "SELECT m.norm_flux_jyb, m.norm_err_jyb, i.mjd FROM measurements m "
                "JOIN images i ON i.id = m.image_id WHERE m.source_id = ? AND m.success = ? "
                "AND i.norm_status = 'ok'"), (int(source_id), True))
            cols = ("n", "first_mjd", "last_mjd", "min_flux", "max_flux", "vs_max",
                    "m_at_vs_max") + tuple(c for c in METRIC_COLUMNS if c != "p_value")
            stored = dict(zip(cols, bulk.execute(
                conn, f"SELECT {', '.join(cols)} FROM variability_stats WHERE source_id = ?",
                (int(source_id),))[0]))
        f, e, t = (np.array([r[j] for r in rows], float) for j in range(3))
        ref = lightcurve_metrics(f, e, t)
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
        ref.update(first_mjd=t[ok].min(), last_mjd=t[ok].max(), min_flux=f[ok].min(),
                   max_flux=f[ok].max())
        bad = {c: (stored[c], ref[c]) for c in cols
               if not np.isclose(stored[c], ref[c], rtol=1e-9, atol=0.0)}
        if bad:
            raise SystemExit(f"variability_stats of source {source_id} differ from its light "
                             f"curve's metrics: {bad}")

    def check_source_id_ranges(self) -> None:
        """Every image's recorded source-id range is that of its measurement rows (what the
        light-curve reads trust)."""
        from dsa110_contimg.store import bulk

        with self.db.engine.begin() as conn:
            bad = bulk.execute(conn, "SELECT count(*) FROM images WHERE "
                               "coalesce(source_id_min, -1) != coalesce((SELECT min(source_id) "
                               "FROM measurements WHERE image_id = images.id), -1) OR "
                               "coalesce(source_id_max, -1) != coalesce((SELECT max(source_id) "
                               "FROM measurements WHERE image_id = images.id), -1)")[0][0]
        assert bad == 0, f"{bad} images whose source-id range is not their rows'"

    def describe(self) -> str:
        """One line on what the per-image steps find: the running statistics' n and
        chi2_nu over all sources, the share above the ESE prefilter, the candidates'
        templates inside their light curves."""
        from dsa110_contimg.pipeline.steps.ese import SHAPE_PREFILTER_CHI2_NU
        from dsa110_contimg.store import bulk

        with self.db.engine.begin() as conn:
            n, chi = (np.array(c, float) for c in zip(*bulk.execute(
                conn, "SELECT n, chi2_nu FROM variability_stats")))
            inside, cands = bulk.execute(conn, (
                "SELECT sum(CASE WHEN e.t_min_mjd BETWEEN v.first_mjd AND v.last_mjd THEN 1 "
                "ELSE 0 END), count(*) FROM ese_candidates e JOIN variability_stats v "
                "ON v.source_id = e.source_id"))[0]
        return (f"running statistics n {n.min():.0f}-{n.max():.0f}, median chi2_nu "
                f"{np.nanmedian(chi):.2f}, {np.nanmean(chi > SHAPE_PREFILTER_CHI2_NU):.1%} of "
                f"{n.size:,} sources above the ESE prefilter ({SHAPE_PREFILTER_CHI2_NU}); "
                f"{cands:,} candidates ({cands / n.size:.1%}), {inside:,} with t_min inside "
                f"their light curve")

    def n_measurements(self) -> int:
        from dsa110_contimg.store import bulk

        with self.db.engine.begin() as conn:
            return bulk.execute(conn, "SELECT count(*) FROM measurements")[0][0]

    def bytes_per_row(self) -> tuple[float, float]:
        """(bytes of the measurements table + its indexes, of the whole database) per
        measurement row."""
        from dsa110_contimg.store import bulk

        n = self.n_measurements()
        with self.db.engine.begin() as conn:
            if self.backend == "sqlite":
                page = bulk.execute(conn, "PRAGMA page_size")[0][0]
                total = bulk.execute(conn, "PRAGMA page_count")[0][0] * page
                tab = _sqlite_table_bytes(conn, "measurements")
            else:
                tab = bulk.execute(conn, "SELECT pg_total_relation_size('measurements')")[0][0]
                total = bulk.execute(conn, "SELECT pg_database_size(current_database())")[0][0]
        return (float("nan") if tab is None else tab / n), total / n


def _sqlite_table_bytes(conn, table: str) -> float | None:
    """Bytes of ``table`` and its indexes in a SQLite database (the ``dbstat`` virtual table;
    None where the library was built without it)."""
    from dsa110_contimg.store import bulk

    names = [table] + [r[0] for r in bulk.execute(
        conn, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
    try:
        return float(bulk.execute(conn, "SELECT sum(pgsize) FROM dbstat WHERE name IN ("
                                  + ",".join("?" * len(names)) + ")", tuple(names))[0][0])
    except Exception:   # noqa: BLE001 - no dbstat in this SQLite build
        return None


def store_sparklines(conn) -> None:
    """Give every candidate without one the stored sparkline the ESE step would write for a
    light curve of 60 epochs or more (its size: :data:`~dsa110_contimg.science.sparkline.SPARKLINE_POINTS`
    points), so the candidates page draws what it draws on a database filled by the pipeline."""
    from dsa110_contimg.science.sparkline import SPARKLINE_POINTS, encode
    from dsa110_contimg.store import bulk

    mjd = 60676.25 - np.arange(SPARKLINE_POINTS)[::-1] * 5.0
    flux = 0.05 * (1.0 - 0.3 * np.exp(-0.5 * ((mjd - mjd[SPARKLINE_POINTS // 2]) / 15.0) ** 2))
    bulk.execute(conn, "UPDATE ese_candidates SET sparkline = ? WHERE sparkline IS NULL",
                 (encode(mjd, flux, SPARKLINE_POINTS),))


# ----------------------------------------------------------------------------- measurements
#: calls timed per command, page and gauge (after one untimed): their medians are printed
REPEAT = 7


def _timed(fn, repeat: int = REPEAT) -> tuple[float, float]:
    """(median wall s, median CPU s of this process) of ``fn`` over ``repeat`` calls after one."""
    fn()
    runs = [_once(fn) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _once(fn) -> tuple[float, float]:
    """(wall s, CPU s) of one call, with Python's garbage collector run before and held off
    during it (as ``timeit`` does): a collection's cost follows the objects this long-lived
    process holds, not the call."""
    gc.collect()
    gc.disable()
    try:
        t, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t, time.process_time() - c
    finally:
        gc.enable()


#: how the printed rows name the two light curves timed
LEGEND = ("{src}: a source of field 0 measured on every epoch (its light curve grows with the "
          "field's history); {late}: one measured on its last " + str(LATE_EPOCHS)
          + " epochs only (the same light curve at every size: what grows with the table)")


def cli_times(url: str, source_id: int, late_id: int | None = None) -> dict[str, float]:
    from dsa110_contimg.cli.main import main

    def run(*argv):
        def f():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                main(list(argv))
        return f

    return {"status": _timed(run("status", "--products-db", url)),
            "status --json": _timed(run("status", "--products-db", url, "--json")),
            "images list": _timed(run("images", "list", "--products-db", url)),
            "ese list": _timed(run("ese", "list", "--products-db", url)),
            "lightcurve {src}": _timed(run("lightcurve", "--products-db", url, str(source_id))),
            **({"lightcurve {late}": _timed(run("lightcurve", "--products-db", url, str(late_id)))}
               if late_id is not None else {})}


def page_times(url: str, source_id: int, image_id: int,
               late_id: int | None = None) -> dict[str, float]:
    import warnings

    from dsa110_contimg.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        client = TestClient(create_app(url))
    paths = ["/", "/api/status", "/candidates", "/candidates?page=5", "/api/candidates",
             "/images", "/images?page=20", f"/images/{image_id}", f"/api/images/{image_id}",
             "/sources", "/sources?sort=flux&page=50", f"/sources/{source_id}",
             f"/api/sources/{source_id}", f"/sources/{source_id}/lightcurve.csv", "/new-sources"]
    names = {str(source_id): "{src}", str(image_id): "{img}"}
    if late_id is not None:
        paths += [f"/sources/{late_id}", f"/api/sources/{late_id}",
                  f"/sources/{late_id}/lightcurve.csv"]
        names[str(late_id)] = "{late}"
    out = {}
    for p in paths:
        def get(p=p):
            r = client.get(p)
            assert r.status_code == 200, (p, r.status_code)
        key = "/".join(names.get(part, part) for part in p.split("/"))
        out["GET " + key] = _timed(get)
    return out


def metrics_time(url: str) -> tuple[float, float]:
    from dsa110_contimg.service.metrics import Metrics

    m = Metrics("", url)
    return _timed(m.database_snapshot)


def measure(gdb: GrowthDB, n_timed: int) -> dict[str, tuple[float, float]]:
    """Figures at the current size: name -> (wall s, CPU s; NaN where only wall is known)."""
    out: dict[str, tuple[float, float]] = {}
    runs = [gdb.measure_real() for _ in range(n_timed)]
    out["per image (end to end)"] = (statistics.median(r[0][0] for r in runs),
                                     statistics.median(r[0][1] for r in runs))
    for step in ("store", "normalise", "variability", "ese", "write_lock"):
        vals = [r[1].get(step) for r in runs if r[1].get(step) is not None]
        if vals:
            out[f"  step {step} (wall)"] = (statistics.median(vals), float("nan"))
    from dsa110_contimg.store import bulk

    with gdb.db.engine.begin() as conn:
        img = bulk.execute(conn, "SELECT max(id) FROM images WHERE path LIKE ?",
                           ("%field0-%.fits",))[0][0]
        src = gdb.field0_sources[len(gdb.field0_sources) // 2]
    late = LATE_SOURCE if gdb.late_added else None
    out.update(cli_times(gdb.url, src, late))
    out.update(page_times(gdb.url, src, img, late))
    out["/metrics (database gauges)"] = metrics_time(gdb.url)
    return out


# ----------------------------------------------------------------------------- main
def run_backend(backend: str, sizes: list[int], args, pg=None) -> tuple[dict, dict]:
    root = args.root / backend
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if backend == "sqlite":
        url = str(root / "products.sqlite3")
    else:
        url = pg.new_database("products")
    gdb = GrowthDB(url, root, size=args.size, n_sources=args.sources, n_fields=args.fields)
    t = time.perf_counter()
    gdb.seed()
    print(f"{backend}: seeded ({SEED_EPOCHS} real images, {args.fields} fields) in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    figures, info = {}, {}
    for n in sizes:
        if figures and time.time() > args.deadline:
            print(f"{backend}: past the build deadline, {n:,} rows not built", flush=True)
            break
        if backend == "sqlite" and info and not _disk_allows(root, n, info):
            break
        secs = gdb.grow_to(n, progress=lambda s: print(s, flush=True), deadline=args.deadline)
        rows = gdb.n_measurements()
        added = rows - (info[max(info)][0] if info else 0)
        per_row = gdb.bytes_per_row()
        print(f"{backend}: {rows:,} measurement rows ({gdb.epochs_per_field} epochs/field) built "
              f"in {secs:.0f} s (copies {gdb.copy_seconds:.1f} s, running statistics of all "
              f"rows {gdb.stats_seconds:.1f} s; {secs / max(added, 1) * 1e6:.1f} s per 10^6 rows "
              f"added); bytes per measurement row: table + indexes "
              f"{per_row[0]:.0f}, whole database {per_row[1]:.0f}", flush=True)
        for src in (gdb.field0_sources[len(gdb.field0_sources) // 2],
                    gdb.field0_sources[-1] + (args.fields - 1) * SOURCE_STRIDE,
                    *([LATE_SOURCE] if gdb.late_added else [])):
            gdb.check_stats(src)
        gdb.check_source_id_ranges()
        print(f"{backend}: " + gdb.describe(), flush=True)
        if args.keep and backend == "sqlite" and n != sizes[-1]:
            kept = keep_copy(gdb, root / f"products-{n}.sqlite3")
            print(f"{backend}: kept a copy as {kept}", flush=True)
        figures[n] = measure(gdb, args.timed)
        info[n] = (rows, gdb.epochs_per_field, per_row[1], per_row[0])
        print(f"{backend}: measured at {rows:,} rows", flush=True)
        if len(figures) < len(sizes):   # the table so far (a long run may be stopped)
            print_table(backend, figures, info)
    gdb.db.dispose()
    if backend == "postgresql" and args.keep:
        print(f"{backend}: kept {url} (cluster {pg.data}; stop it with "
              f"pg_ctl -D {pg.data} stop)", flush=True)
    elif backend == "postgresql":
        pg.drop_database(url)
    if args.keep and backend == "sqlite":
        last = root / f"products-{sizes[-1]}.sqlite3"
        _checkpoint(url)
        Path(url).rename(last)
        if Path(url + "-wal").exists():     # not folded: it goes with its database
            Path(url + "-wal").rename(str(last) + "-wal")
        Path(url + "-shm").unlink(missing_ok=True)
        print(f"{backend}: kept {last}", flush=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return figures, info


def _disk_allows(root: Path, n_rows: int, info: dict) -> bool:
    """Whether the disk under ``root`` holds the database grown to ``n_rows`` rows (at the
    last size's bytes per row, plus 20 % for the write-ahead log and the indexes' growth);
    says why not on stderr."""
    rows, _, per_row, _ = info[max(info)]
    need = (n_rows - rows) * per_row * 1.2
    free = shutil.disk_usage(root).free
    if need > free:
        print(f"sqlite: {n_rows:,} rows not built: needs ~{need / 1e9:.0f} GB more under "
              f"{root}, {free / 1e9:.0f} GB free", file=sys.stderr, flush=True)
        return False
    return True


def _checkpoint(path: str) -> None:
    """Fold the write-ahead log into the SQLite file (so the file alone is the database)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def keep_copy(gdb: GrowthDB, dest: Path) -> Path:
    """A consistent copy of the SQLite database at its current size (SQLite's backup API)."""
    import sqlite3

    dest.unlink(missing_ok=True)
    src, dst = sqlite3.connect(gdb.url), sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return dest


def print_table(backend: str, figures: dict, info: dict) -> None:
    """Per figure and size: wall ms (ratio to the smallest size) and CPU ms of this process
    (ratio): on a shared machine the CPU ratio is the steadier one (SQLite work is in process;
    PostgreSQL's is in the server, so there only wall time shows it)."""
    sizes = sorted(figures)
    base = sizes[0]
    print(f"\n{backend}: wall ms (ratio to {info[base][0]:,} rows) | CPU ms of the client (ratio)")
    print(LEGEND)
    print(f"{'':34s}" + "".join(f"{info[n][0]:>32,}" for n in sizes))
    print(f"{'epochs per field':34s}" + "".join(f"{info[n][1]:>32}" for n in sizes))
    print(f"{'db bytes per measurement row':34s}" + "".join(f"{info[n][2]:>32.0f}" for n in sizes))
    print(f"{'  measurements + indexes':34s}" + "".join(f"{info[n][3]:>32.0f}" for n in sizes))
    for key in figures[base]:
        cells = []
        for n in sizes:
            w, c = figures[n].get(key, (float("nan"), float("nan")))
            w0, c0 = figures[base][key]
            cells.append(f"{w * 1e3:8.1f} ({w / w0:4.2f}x) | {c * 1e3:7.1f} ({c / c0:4.2f}x)")
        print(f"{key[:34]:34s}" + "".join(f"{c:>32}" for c in cells))
    last = figures[sizes[-1]]
    wall = max(last[k][0] / figures[base][k][0] for k in figures[base])
    cpu = np.nanmax([last[k][1] / figures[base][k][1] for k in figures[base]])
    print(f"worst ratio at {info[sizes[-1]][0]:,} rows: wall {wall:.2f}x, CPU {cpu:.2f}x")
    ref = [n for n in sizes if n >= SECOND_BASE and n != base]
    if len(ref) < 2:
        return
    print(f"\n{backend}: ratios to {info[ref[0]][0]:,} rows ({info[ref[0]][1]} epochs per field; "
          f"the ESE step's window is {_search_window_days():.0f} d): wall | CPU")
    print(f"{'':34s}" + "".join(f"{info[n][0]:>22,}" for n in ref[1:]))
    for key in figures[ref[0]]:
        w0, c0 = figures[ref[0]][key]
        cells = [f"{figures[n].get(key, (np.nan, np.nan))[0] / w0:5.2f}x | "
                 f"{figures[n].get(key, (np.nan, np.nan))[1] / c0:5.2f}x" for n in ref[1:]]
        print(f"{key[:34]:34s}" + "".join(f"{c:>22}" for c in cells))


def _search_window_days() -> float:
    from dsa110_contimg.science.ese import SEARCH_WINDOW_DAYS

    return float(SEARCH_WINDOW_DAYS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1e6,1e7,5e7,1e8")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-max-rows", type=float, default=1e7,
                    help="largest size built on PostgreSQL (time: the machine is shared)")
    ap.add_argument("--size", type=int, default=2048, help="side of field 0's images (pixels)")
    ap.add_argument("--sources", type=int, default=1000, help="catalogue sources per field")
    ap.add_argument("--fields", type=int, default=100)
    ap.add_argument("--timed", type=int, default=3, help="images timed per size")
    ap.add_argument("--root", type=Path, default=Path("/tmp/growth"))
    ap.add_argument("--build-minutes", type=float, default=0.0,
                    help="stop growing after this many minutes and measure the size reached "
                         "(0: no limit)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the SQLite databases under ROOT/sqlite/products-<rows>.sqlite3 "
                         "(a copy at each size, the last one moved there) and the PostgreSQL "
                         "cluster running with the last size's database, for inspection")
    args = ap.parse_args()
    args.deadline = time.time() + args.build_minutes * 60 if args.build_minutes else float("inf")
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("console", "warning", stream=sys.stderr)
    sizes = sorted(int(float(s)) for s in args.rows.split(","))
    args.root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for backend in args.backends.split(","):
            pg = None
            b_sizes = sizes
            if backend == "postgresql":
                from pgcluster import PostgresCluster

                pg = PostgresCluster()
                b_sizes = [n for n in sizes if n <= args.pg_max_rows]
            try:
                results[backend] = run_backend(backend, b_sizes, args, pg)
            finally:
                if pg is not None and not args.keep:
                    pg.stop()
    finally:
        if not args.keep:
            shutil.rmtree(args.root, ignore_errors=True)
    for backend, (figures, info) in results.items():
        print_table(backend, figures, info)


if __name__ == "__main__":
    main()
