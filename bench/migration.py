"""Time of the schema migrations that rewrite the measurements table, per 10^7 rows.

Usage::

    .venv/bin/python bench/migration.py [--rows 1e6] [--backends sqlite,postgresql]
                                        [--root /tmp/migration-bench]

A products database is migrated to the revision before ``--revision`` (0023: measurements
keyed by (image_id, source_id), without mjd, snr and id), filled with ``--rows`` measurement rows
(1,000 sources per image, written inside the database by ``INSERT ... SELECT``), and then
upgraded to ``--revision`` as ``db upgrade`` does. Printed per backend: rows, upgrade seconds
(wall and CPU of this process), seconds per 10^7 rows, and the measurements' bytes per row
before and after (table + indexes; on PostgreSQL also after ``VACUUM FULL measurements``, which
returns the dropped columns' space).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

PER_IMAGE = 1000


def fill(engine, n_rows: int) -> None:
    """``n_rows`` measurements of 1,000 sources over ``n_rows / 1000`` images (the schema before --revision)."""
    n_img = max(n_rows // PER_IMAGE, 1)
    with engine.begin() as conn:
        q = conn.exec_driver_sql
        q("INSERT INTO sources (id, survey, catalog_id, ra_deg, dec_deg, reference_ok, kind) "
          f"SELECT g, 'nvss', 'S' || g, 150.0 + g * 1e-4, 37.0, false, 'catalogue' FROM ({_series(PER_IMAGE)}) s")
        q("INSERT INTO images (id, path, content_id, kind, mjd, method, catalog, n_sources, "
          "n_success, qc_status, norm_status, measured_at, excluded) SELECT g, '/img/' || g, 'c', "
          f"'image', 60000.0 + g, 'forced', 'nvss', {PER_IMAGE}, {PER_IMAGE}, 'passed', 'ok', 0.0, "
          f"false FROM ({_series(n_img)}) s")
        q("INSERT INTO measurements (image_id, source_id, mjd, ra_deg, dec_deg, x_pix, y_pix, "
          "peak_jyb, peak_err_jyb, local_rms_jyb, snr, chi2, dof, cluster_id, flags, success, "
          "norm_flux_jyb, norm_err_jyb) SELECT i.id, s.id, i.mjd, s.ra_deg, s.dec_deg, "
          "1000.5 + s.id, 2000.25 + s.id, 0.0123 + s.id * 1e-5, 0.00071, 0.0007, "
          "(0.0123 + s.id * 1e-5) / 0.00071, 1.234, 24, s.id, 0, true, 0.0125 + s.id * 1e-5, "
          "0.00072 FROM images i CROSS JOIN sources s ORDER BY i.id, s.id")


def _series(n: int) -> str:
    return (f"WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) "
            "SELECT g FROM c")


def table_bytes(engine) -> float:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return float(conn.exec_driver_sql(
                "SELECT pg_total_relation_size('measurements')").scalar())
        names = [r[0] for r in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'measurements'")]
        marks = ",".join("?" * len(names))
        return float(conn.exec_driver_sql(
            f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", tuple(names)).scalar())


def run(url: str, n_rows: int, revision: str) -> dict:
    from dsa110_contimg.store.engine import make_engine
    from dsa110_contimg.store.migrate import revisions, upgrade

    before = revisions("products")[revisions("products").index(revision) - 1]
    engine = make_engine(url)
    upgrade(engine, "products", before)
    fill(engine, n_rows)
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM measurements").scalar()
    out = {"rows": n, "bytes_before": table_bytes(engine) / n}
    t, c = time.perf_counter(), time.process_time()
    upgrade(engine, "products", revision)
    out["wall"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
    out["bytes_after"] = table_bytes(engine) / n
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            t = time.perf_counter()
            conn.exec_driver_sql("VACUUM FULL measurements")
            out["vacuum_full"] = time.perf_counter() - t
        out["bytes_vacuumed"] = table_bytes(engine) / n
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=float, default=1e6)
    ap.add_argument("--revision", default="0023")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--root", type=Path, default=Path("/tmp/migration-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    args.root.mkdir(parents=True)
    try:
        for backend in args.backends.split(","):
            pg = None
            if backend == "postgresql":
                from pgcluster import PostgresCluster

                pg = PostgresCluster()
                url = pg.new_database("products", migrated=False)
            else:
                url = str(args.root / "products.sqlite3")
            try:
                r = run(url, int(args.rows), args.revision)
            finally:
                if pg is not None:
                    pg.stop()
            per = 1e7 / r["rows"]
            line = (f"{backend}: {r['rows']:,} rows, upgrade to {args.revision} {r['wall']:.1f} s "
                    f"(CPU {r['cpu']:.1f} s) = {r['wall'] * per:.0f} s per 10^7 rows; "
                    f"measurements + indexes {r['bytes_before']:.0f} -> {r['bytes_after']:.0f} B/row")
            if "vacuum_full" in r:
                line += (f", after VACUUM FULL ({r['vacuum_full'] * per:.0f} s per 10^7 rows) "
                         f"{r['bytes_vacuumed']:.0f} B/row")
            print(line, flush=True)
    finally:
        shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
