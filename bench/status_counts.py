"""Benchmark: ``/``, ``/api/status`` and ``status`` against the number of image and job rows.

Builds products databases of ``--rows`` image + job rows (half each; as many ``files``
records as images; a mix of QC verdicts, normalisation outcomes, job states, done jobs
finished over the last 30 days) by bulk inserts, and times each read in a fresh
subprocess: one warm-up, then the median CPU time (``time.process_time``) and wall time
of ``--repeat`` requests through the site's test client. The same databases are read by
this tree and, with ``--before-src DIR``, by an earlier tree's ``src`` (e.g. extracted with
``git archive COMMIT src | tar -x -C DIR``), in the same run: the ratio says what the
maintained counters (store/counters.py) save. The build also times the compaction of the
bulk load's deltas.

With ``--databases SMALL,LARGE`` it measures two existing products databases instead of
building them (e.g. those ``bench/growth.py --keep`` leaves, 10^6 and 5 x 10^7 measurement
rows); the reads are then also ``status --json`` (the CLI in process) and ``/metrics``'s
database gauges (``Metrics.database_snapshot``).

Run: .venv/bin/python bench/status_counts.py [--rows 1000000] [--small 100000]
     [--before-src /tmp/before/src] [--keep DIR] [--databases A.sqlite3,B.sqlite3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PAGES = ("/", "/api/status")
READS = (*PAGES, "status", "status --json", "/metrics")


def build(path: Path, rows: int) -> dict:
    """A database of ``rows // 2`` images and as many jobs and file records; returns the
    fill and compaction times (s)."""
    from dsa110_contimg.store.counters import try_compact
    from dsa110_contimg.store.engine import open_products_db

    open_products_db(path).dispose()
    n = rows // 2
    now = time.time()
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    with con:
        qc = ("passed",) * 17 + ("warning", "warning", "failed")
        norm = ("ok",) * 18 + ("failed", "not_requested")
        con.executemany(
            "INSERT INTO images (id, path, content_id, kind, mjd, ra_center_deg, dec_center_deg, "
            "radius_deg, method, catalog, n_sources, n_success, qc_status, norm_status, norm_method, "
            "norm_reason, measured_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((i, f"/data/img{i:08d}.fits", "c", "image", 60000.0 + i / 288.0, (i * 7.3) % 360, 30.0,
              1.0, "forced", "nvss", 800, 790, qc[i % 20], norm[i % 20],
              "ensemble" if i % 50 == 0 else "catalogue",
              "too few references: 1 < 3" if norm[i % 20] == "failed" else None,
              now - (n - i) * 5.0) for i in range(1, n + 1)))
        states = ("done",) * 98 + ("failed", "dead")    # and a backlog of 20 pending
        con.executemany(
            "INSERT INTO batch_jobs (id, type, status, origin, params, total_items, completed_items, "
            "failed_items, attempts, max_attempts, not_before, created_at, updated_at, finished_at, "
            "acknowledged_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((i, "photometry", "pending" if i > n - 20 else states[i % 100], "daemon", "{}", 1, 1, 0,
              1, 3, 0.0, now - (n - i) * 5.0, now - (n - i) * 5.0,
              None if i > n - 20 else now - (n - i) * 5.0 + 20,
              now if states[i % 100] in ("failed", "dead") and i % 1000 else None)
             for i in range(1, n + 1)))
        con.executemany(
            "INSERT INTO files (path, size, mtime_ns, kind, decision, batch_id, first_seen, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            ((f"/data/img{i:08d}.fits", 1000, i, "image", "queued", i, now, now) for i in range(1, n + 1)))
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    db = open_products_db(path)
    compacted = try_compact(db)
    db.dispose()
    return {"fill_s": fill, "compact_s": time.perf_counter() - t0 if compacted else None}


def measure(db_paths: str, repeat: int) -> list[dict]:
    """CPU and wall ms (medians) of each read of :data:`READS` on each database of the
    comma-separated ``db_paths``, with whatever ``dsa110_contimg`` is first on the path. The
    databases are read in turn, request by request (a, b, a, b, ...), so a change of the
    machine's load falls on all of them alike."""
    import warnings

    import dsa110_contimg
    from dsa110_contimg.service.metrics import Metrics
    from dsa110_contimg.service.status import collect_status
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    def timed(fns):
        for fn in fns:
            fn()   # warm-up: imports, templates, SQLite page cache
        cpu, wall = [[] for _ in fns], [[] for _ in fns]
        for _ in range(repeat):
            for i, fn in enumerate(fns):
                c0, w0 = time.process_time(), time.perf_counter()
                fn()
                cpu[i].append(time.process_time() - c0)
                wall[i].append(time.perf_counter() - w0)
        return [{"cpu_ms": 1e3 * statistics.median(c), "wall_ms": 1e3 * statistics.median(w)}
                for c, w in zip(cpu, wall)]

    paths = db_paths.split(",")
    out = [{"package": str(Path(dsa110_contimg.__file__).parent)} for _ in paths]
    clients = [TestClient(create_app(p)) for p in paths]
    dbs = [open_products_db(p, read_only=True) for p in paths]
    metrics = [Metrics("", p) for p in paths]

    def get(client, page):
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code)

    reads = {page: [lambda c=c, page=page: get(c, page) for c in clients] for page in PAGES}
    reads["status"] = [lambda db=db: collect_status(db) for db in dbs]
    reads["status --json"] = [lambda p=p: _cli_status(p) for p in paths]
    reads["/metrics"] = [m.database_snapshot for m in metrics]
    for name, fns in reads.items():
        for o, t in zip(out, timed(fns)):
            o[name] = t
    for db in dbs:
        db.dispose()
    return out


def _cli_status(db_path: str) -> None:
    """``contimg-photometry status --json`` in process (output discarded)."""
    import contextlib
    import io

    from dsa110_contimg.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["status", "--products-db", db_path, "--json"])
        except SystemExit:
            pass


def measure_with(src: Path, dbs: list[Path], repeat: int) -> list[dict]:
    """:func:`measure` of ``dbs`` in a fresh process importing ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, __file__, "--measure", ",".join(map(str, dbs)),
                          "--repeat", str(repeat)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="image + job rows of the large database")
    ap.add_argument("--small", type=int, default=100_000, help="image + job rows of the small database")
    ap.add_argument("--before-src", type=Path, help="an earlier tree's src directory to compare with")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the databases")
    ap.add_argument("--databases", metavar="SMALL,LARGE",
                    help="measure these two existing databases instead of building them")
    ap.add_argument("--measure", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return
    trees = [("this tree", SRC)] + ([("before", args.before_src)] if args.before_src else [])
    if args.databases:
        compare_existing([Path(p) for p in args.databases.split(",")], trees, args.repeat)
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-status-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    for rows in (args.small, args.rows):
        db = root / f"products-{rows}.sqlite3"
        if not db.exists():
            b = build(db, rows)
            print(f"{rows:>9,d} image+job rows: bulk fill {b['fill_s']:.1f} s, compaction of its "
                  f"deltas {b['compact_s']:.1f} s")
        else:   # a kept database: brought to this tree's schema first
            from dsa110_contimg.store.engine import open_products_db

            open_products_db(db).dispose()
        for name, src in trees:
            results[(name, rows)] = measure_with(src, [db], args.repeat)[0]
    for name, _ in trees:
        print(f"{name}: {results[(name, args.rows)]['package']}")
    print(f"\nmedian of {args.repeat} (ms), CPU / wall")
    print(f"{'tree':<10} {'read':<12}" + "".join(f"{f'{r:,d} rows':>20}" for r in (args.small, args.rows))
          + "   large/small (CPU)")
    for name, _ in trees:
        for page in (*PAGES, "status"):
            a, b = results[(name, args.small)][page], results[(name, args.rows)][page]
            print(f"{name:<10} {page:<12}" + "".join(f"{x['cpu_ms']:>9.1f} / {x['wall_ms']:<8.1f}" for x in (a, b))
                  + f"   {b['cpu_ms'] / a['cpu_ms']:.2f}")
    if args.before_src:
        print(f"\nbefore / this tree at {args.rows:,d} rows (CPU):  " + ",  ".join(
            f"{p} {results[('before', args.rows)][p]['cpu_ms'] / results[('this tree', args.rows)][p]['cpu_ms']:.1f}x"
            for p in (*PAGES, "status")))


def compare_existing(dbs: list[Path], trees, repeat: int) -> None:
    """Every read of :data:`READS` on two existing databases with each tree (a fresh process
    per tree, reading the databases in turn), printed with the large/small CPU ratio."""
    def rows(db: Path) -> int:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT coalesce(sum(total), 0) FROM status_counts "
                                   "WHERE tbl = 'images'").fetchone()[0])
        finally:
            con.close()

    sizes = [rows(db) for db in dbs]
    res = {}
    for name, src in trees:
        for i, got in enumerate(measure_with(src, dbs, repeat)):
            res[(name, i)] = got
    print(f"\nmedian of {repeat} (ms), CPU / wall; databases: "
          + ", ".join(f"{db} ({n:,} measurement rows)" for db, n in zip(dbs, sizes)))
    print(f"{'tree':<10} {'read':<14}" + "".join(f"{f'{n:,} rows':>22}" for n in sizes)
          + "   large/small (CPU)")
    for name, _ in trees:
        for read in READS:
            a, b = res[(name, 0)][read], res[(name, 1)][read]
            print(f"{name:<10} {read:<14}" + "".join(f"{x['cpu_ms']:>11.1f} / {x['wall_ms']:<8.1f}"
                                                     for x in (a, b))
                  + f"   {b['cpu_ms'] / a['cpu_ms']:.2f}")


if __name__ == "__main__":
    main()
