"""Daemon benchmark: latency, sustained throughput vs a direct in-process baseline, queue rate.

Usage::

    .venv/bin/python bench/daemon.py [--size 2048] [--sources 1000] [--n 8] [--workers 2]

Figures printed:

1. **latency** close-after-write -> stored result (``images`` row committed), one image
   at a time into an idle daemon (p50, p95 over ``--n`` drops);
2. **sustained throughput**: ``--n`` images dropped at once, images/minute with the
   daemon's worker pool, against the same workflow called directly in one process
   (:meth:`PhotometryManager.run_image` in a loop) -> ratio;
3. **queue**: claim-and-complete rate of :class:`JobQueue` (one process, then two).

The images are simulated 2048x2048 DSA-110-like fields (6 arcsec pixels: 3.4 deg, the
image extent) with ``--sources`` catalogue sources ingested as an NVSS-like catalogue.
The machine is shared: timings are noisy; the ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchfield import field_catalogue, ingest, write_epochs

PIX_ARCSEC = 6.0


def make_inputs(root: Path, size: int, n_sources: int, n_images: int):
    rng = np.random.default_rng(1)
    ra, dec, flux_mjy, cat = field_catalogue(root, size, n_sources, PIX_ARCSEC, rng,
                                             min_separation_pix=12)
    for catdir in (root / "daemon" / "catalogs", root / "direct" / "catalogs"):
        ingest(cat, catdir)
    src = root / "src"
    src.mkdir()
    return write_epochs([src / f"2025-01-01T{i:04d}.img-image-pb.fits" for i in range(n_images)],
                        size, PIX_ARCSEC, ra, dec, flux_mjy, rng, gain_sd=0.02)


def config_text(root: Path, workers: int) -> str:
    from dsa110_contimg.service.config import render_config

    return render_config(root, daemon={"workers": workers, "pbcor_wait_s": 0.0,
                                       "heartbeat_interval_s": 1.0},
                         logging={"format": "json", "level": "warning"})


def stored_at(db: Path, path: str):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT measured_at FROM images WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]
    finally:
        con.close()


def jobs_settled(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM batch_jobs WHERE status IN ('done','failed','dead')"
                           ).fetchone()[0]
    finally:
        con.close()


def copy_in(src: Path, dest_dir: Path, name: str) -> tuple[Path, float]:
    """Write the file in place (open, write, close) and return the close time (Unix s)."""
    dest = dest_dir / name
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 22)
    return dest, time.time()


def bench_daemon(root: Path, paths, workers: int):
    d = root / "daemon"
    for sub in ("images", "mosaics", "state"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    cfg = d / "photometry.toml"
    cfg.write_text(config_text(d, workers))
    db = d / "state" / "products.sqlite3"
    log = open(d / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        while not db.exists() or not _has_heartbeat(db):
            if proc.poll() is not None:
                raise SystemExit(f"daemon died: {(d / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(3.0)  # workers warm
        # warm-up image (first job pays the catalogue open, imports)
        p, _ = copy_in(paths[0], d / "images", "warmup.img-image-pb.fits")
        while stored_at(db, str(p)) is None:
            time.sleep(0.02)
        latencies = []
        for i, src in enumerate(paths):
            p, closed = copy_in(src, d / "images", f"lat{i:03d}.img-image-pb.fits")
            while stored_at(db, str(p)) is None:   # committed and visible to a reader
                time.sleep(0.01)
            latencies.append(time.time() - closed)
        # sustained: all at once
        before = jobs_settled(db)
        t0 = time.time()
        for i, src in enumerate(paths):
            copy_in(src, d / "images", f"burst{i:03d}.img-image-pb.fits")
        while jobs_settled(db) < before + len(paths):
            time.sleep(0.05)
        burst_s = time.time() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return np.array(latencies), len(paths) / burst_s * 60


def _has_heartbeat(db: Path) -> bool:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM heartbeats").fetchone()[0] > 0
        finally:
            con.close()
    except sqlite3.OperationalError:
        return False


def bench_direct(root: Path, paths):
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.manager import PhotometryManager

    d = root / "direct"
    m = PhotometryManager(d / "products.sqlite3", None, catalog_dir=d / "catalogs")
    cfg = PhotometryConfig(catalog="nvss", method="forced")
    m.run_image(paths[0], "image", cfg)  # warm-up (not timed), like the daemon's
    times = []
    t0 = time.perf_counter()
    for p in paths:
        t = time.perf_counter()
        dest = d / f"{p.stem}-copy.fits"
        shutil.copy(p, dest)  # the daemon's inputs are fresh files too
        m.run_image(dest, "image", cfg)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return np.array(times), len(paths) / total * 60


def _claimer(db: str, n_out):
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.queue import JobQueue

    q = JobQueue(open_products_db(db, migrate=False))
    n = 0
    while (job := q.claim()) is not None:
        q.complete(job.id)
        n += 1
    n_out.put(n)


def bench_queue(root: Path, n: int = 3000):
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.queue import JobQueue

    out = {}
    for procs in (1, 2):
        path = root / f"queue{procs}.sqlite3"
        db = open_products_db(path)
        q = JobQueue(db)
        t = time.perf_counter()
        for i in range(n):
            q.enqueue({}, [(f"/x/{i}.fits", "image", None)], idempotency_key=f"k{i}")
        enq = n / (time.perf_counter() - t)
        ctx = mp.get_context("spawn")
        res = ctx.Queue()
        ps = [ctx.Process(target=_claimer, args=(str(path), res)) for _ in range(procs)]
        t = time.perf_counter()
        for p in ps:
            p.start()
        counts = [res.get() for _ in ps]
        dt = time.perf_counter() - t
        for p in ps:
            p.join()
        assert sum(counts) == n, counts
        out[procs] = (enq, n / dt)
        db.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--n", type=int, default=8, help="images per measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue-jobs", type=int, default=3000)
    args = ap.parse_args()
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("console", "warning", stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    try:
        t = time.perf_counter()
        paths = make_inputs(root, args.size, args.sources, args.n)
        print(f"inputs: {args.n} images {args.size}x{args.size}, {args.sources} catalogue sources "
              f"({time.perf_counter() - t:.1f} s to simulate), cores: {os.cpu_count()}")
        per_image, direct_rate = bench_direct(root, paths)
        print(f"direct (one process, PhotometryManager.run_image): {np.median(per_image):.2f} s/image "
              f"median -> {direct_rate:.1f} images/min")
        lat, daemon_rate = bench_daemon(root, paths, args.workers)
        print(f"daemon latency close-after-write -> stored result: p50 {np.percentile(lat, 50):.2f} s, "
              f"p95 {np.percentile(lat, 95):.2f} s (n={len(lat)}; min {lat.min():.2f}, max {lat.max():.2f})")
        print(f"latency overhead over the direct per-image time (p50): "
              f"{np.percentile(lat, 50) - np.median(per_image):+.2f} s")
        print(f"daemon sustained throughput, {args.workers} workers: {daemon_rate:.1f} images/min; "
              f"ratio to direct: {daemon_rate / direct_rate:.2f}x")
        q = bench_queue(root, args.queue_jobs)
        for procs, (enq, rate) in q.items():
            print(f"queue: enqueue {enq:.0f} jobs/s; claim+complete {rate:.0f} jobs/s with {procs} process(es)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
