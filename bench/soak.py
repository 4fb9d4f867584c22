"""Soak: the real daemon (``contimg-photometry run``, real photometry) over many small images of
several fields at accelerated cadence, sampling its resources as it goes.

Usage::

    .venv/bin/python bench/soak.py [--images 10000] [--fields 6] [--size 128] [--sources 25]
                                   [--workers 2] [--interval 0] [--backlog 4] [--out DIR]

Every ``--sample-s`` seconds the soak records, for the daemon and its worker processes: resident
memory (RSS, MiB; the daemon and the sum of its children), open file descriptors and threads (both
counted from /proc), the images done, the queue backlog and the database size (file + WAL, MiB).
Per image it records the job's run time (``finished_at - started_at``, s) and its queue latency
(``started_at`` - the file's close, s). It writes ``samples.csv``, ``images.csv`` and ``soak.png``
to ``--out`` and prints the trend after warm-up (the first ``--warmup`` fraction of the images):
the least-squares slope of each series per 1,000 images, and the last decile's median against the
first post-warm-up decile's (ratio).

Cadence: ``--interval S`` writes one image every S seconds (the daemon must keep up); the default
(0) writes as fast as the daemon takes them, keeping at most ``--backlog`` images waiting, which
accelerates the DSA-110 cadence (one image per field every ~5 minutes) as far as the machine
allows. Image ``i`` is epoch ``i // fields`` of field ``i % fields``; a field's epochs are
``--epoch-days`` apart in MJD (default 1: a transit array sees each field once a sidereal day).

Warm-up: the per-image ESE step reads a field's last 540 days (``science/ese_window.py``), so
per-image work grows until a field has 540 days of epochs and is flat after. With 6 fields at
one epoch a day that is image 3,240; the default ``--warmup`` of 0.35 of 10,000 images covers it.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchfield import BEAM, ingest  # noqa: E402

PIX_ARCSEC = 6.0
DEC0 = 37.0
# 2020-01-01: 10,000 images of 6 fields a day apart end in 2024, inside the leap-second table
# (a header dated past it makes ERFA warn "dubious year" on the soak's terminal)
MJD0 = 58849.25


# ----------------------------------------------------------------------------- inputs
class Fields:
    """``n`` fields along RA (2 deg apart at Dec 37), each with ``n_sources`` catalogue sources,
    observed every ``epoch_days`` (MJD)."""

    def __init__(self, n: int, size: int, n_sources: int, epoch_days: float = 1.0, seed: int = 7):
        from dsa110_contimg.science.simulate import random_sky_positions, sky_wcs

        rng = np.random.default_rng(seed)
        self.size = size
        self.epoch_days = epoch_days
        self.centres = [(150.0 + 2.0 * k, DEC0) for k in range(n)]
        self.sources = []
        for ra0, dec0 in self.centres:
            wcs = sky_wcs(ra0, dec0, PIX_ARCSEC, (size, size))
            ra, dec, _, _ = random_sky_positions(wcs, (size, size), n_sources, rng, margin_pix=12,
                                                 min_separation_pix=10)
            flux = 10 ** rng.uniform(np.log10(10), np.log10(300), n_sources)   # mJy
            self.sources.append((ra, dec, flux))

    def write_catalogue(self, root: Path) -> Path:
        path = root / "nvss_soak.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["NVSS", "RAJ2000", "DEJ2000", "S1.4"])
            for k, (ra, dec, flux) in enumerate(self.sources):
                for j in range(len(ra)):
                    w.writerow([f"F{k}S{j:04d}", ra[j], dec[j], flux[j]])
        return path

    def image_bytes(self, i: int) -> bytes:
        """FITS bytes of image ``i``: field ``i % n``, MJD0 + (i // n) * epoch_days, fresh noise."""
        import io

        from astropy.io import fits

        from dsa110_contimg.science.simulate import simulate_image

        k = i % len(self.centres)
        ra, dec, flux = self.sources[k]
        ra0, dec0 = self.centres[k]
        sim = simulate_image((self.size, self.size), ra0_deg=ra0, dec0_deg=dec0,
                             pixscale_arcsec=PIX_ARCSEC, beam_arcsec=BEAM, ra_deg=ra, dec_deg=dec,
                             peak_jyb=flux / 1000, noise_rms=1e-3, naxis=2,
                             mjd=MJD0 + (i // len(self.centres)) * self.epoch_days, seed=i)
        buf = io.BytesIO()
        fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(buf)
        return buf.getvalue()


# ----------------------------------------------------------------------------- /proc sampling
def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def proc_sample(pid: int) -> dict:
    """RSS (MiB), open fds and threads of the daemon ``pid`` and of all its descendants."""
    kids, todo = [], _children(pid)
    while todo:
        c = todo.pop()
        kids.append(c)
        todo += _children(c)
    return {"rss_daemon_mib": _rss_mib(pid), "rss_children_mib": sum(_rss_mib(c) for c in kids),
            "fds_daemon": _count(f"/proc/{pid}/fd"), "threads_daemon": _count(f"/proc/{pid}/task"),
            "fds_children": sum(_count(f"/proc/{c}/fd") for c in kids),
            "threads_children": sum(_count(f"/proc/{c}/task") for c in kids),
            "n_children": len(kids)}


# ----------------------------------------------------------------------------- the run
class Soak:
    """A daemon configured under ``root`` and fed images of ``fields``."""

    def __init__(self, root: Path, fields: Fields, workers: int):
        from dsa110_contimg.service.config import render_config

        self.root, self.fields = root, fields
        self.images = root / "images"
        for d in ("images", "mosaics", "state", "catalogs"):
            (root / d).mkdir(parents=True, exist_ok=True)
        ingest(fields.write_catalogue(root), root / "catalogs")
        self.db = root / "state" / "products.sqlite3"
        self.config = root / "photometry.toml"
        self.config.write_text(render_config(
            root, photometry={"catalog": "nvss", "normalize": True, "detect_ese": True},
            daemon={"workers": workers, "pbcor_wait_s": 0.0, "settle_s": 0.5,
                    "heartbeat_interval_s": 1.0, "metrics_listen": ""},
            logging={"format": "json", "level": "warning"}))
        self.closed: dict[str, float] = {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.root / "daemon.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "run",
                                      "--config", str(self.config)], stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + 120
        while not self._query("SELECT count(*) FROM heartbeats", default=[(0,)])[0][0]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("daemon did not start:\n"
                                 + (self.root / "daemon.log").read_text()[-3000:])
            time.sleep(0.2)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def _query(self, sql: str, default=None):
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError:
            return default

    def counts(self) -> tuple[int, int]:
        """(jobs settled, jobs waiting or running)."""
        rows = self._query("SELECT status IN ('done','failed','dead','cancelled'), count(*) "
                           "FROM batch_jobs GROUP BY 1", default=[])
        d = dict(rows)
        return d.get(1, 0), d.get(0, 0)

    def db_mib(self) -> float:
        return sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*")) / 2**20

    def write(self, i: int) -> None:
        k = i % len(self.fields.centres)
        d = self.images / f"field{k}"
        d.mkdir(exist_ok=True)
        path = d / f"e{i // len(self.fields.centres):06d}.img-image-pb.fits"
        tmp = path.with_name("." + path.name + ".part")
        tmp.write_bytes(self.fields.image_bytes(i))
        os.replace(tmp, path)
        self.closed[str(path)] = time.time()

    def per_image(self) -> list[dict]:
        # one row per job of one item: a job of several items is a backfill of earlier images
        # (new sources measured on them), not an arrival
        rows = self._query(
            "SELECT min(i.fits_path), j.status, j.started_at, j.finished_at FROM batch_jobs j "
            "JOIN batch_job_items i ON i.batch_id = j.id GROUP BY j.id HAVING count(*) = 1 "
            "ORDER BY j.id", default=[])
        out = []
        for n, (path, status, started, finished) in enumerate(rows):
            closed = self.closed.get(path)
            out.append({"n": n, "path": path, "status": status,
                        "run_s": (finished - started) if started and finished else float("nan"),
                        "queue_latency_s": (started - closed) if started and closed else float("nan")})
        return out


def feed(soak: Soak, n: int, interval: float, backlog: int, stop: threading.Event) -> None:
    for i in range(n):
        if stop.is_set():
            return
        if interval > 0:
            time.sleep(interval)
        else:
            while i - soak.counts()[0] >= backlog and not stop.is_set():
                time.sleep(0.05)
        soak.write(i)


def run(args) -> tuple[list[dict], list[dict], int | None]:
    root = Path(args.work or tempfile.mkdtemp(prefix="soak-"))
    fields = Fields(args.fields, args.size, args.sources, args.epoch_days)
    soak = Soak(root, fields, args.workers)
    samples: list[dict] = []
    stop = threading.Event()
    t0 = time.time()
    rc = None
    try:
        soak.start()
        feeder = threading.Thread(target=feed, args=(soak, args.images, args.interval,
                                                     args.backlog, stop), daemon=True)
        feeder.start()
        last_print = 0.0
        while True:
            done, waiting = soak.counts()
            s = {"t_s": round(time.time() - t0, 2), "written": len(soak.closed), "done": done,
                 "waiting": waiting, "db_mib": round(soak.db_mib(), 3), **proc_sample(soak.proc.pid)}
            samples.append(s)
            if soak.proc.poll() is not None:
                print(f"daemon exited {soak.proc.returncode} after {done} images", file=sys.stderr)
                break
            if done >= args.images:
                break
            if args.max_s and time.time() - t0 > args.max_s:
                print(f"time limit: stopped after {done} images", file=sys.stderr)
                break
            if time.time() - last_print > 60:
                last_print = time.time()
                print(f"[{s['t_s']:7.0f} s] {done}/{args.images} done, rss {s['rss_daemon_mib']:.0f}"
                      f"+{s['rss_children_mib']:.0f} MiB, fds {s['fds_daemon']}+{s['fds_children']},"
                      f" threads {s['threads_daemon']}, db {s['db_mib']:.1f} MiB", flush=True)
            time.sleep(args.sample_s)
        stop.set()
        feeder.join(30)
        images = soak.per_image()
    finally:
        stop.set()
        rc = soak.stop()
        if not args.work and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return samples, images, rc


# ----------------------------------------------------------------------------- report
def trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(least-squares slope of y per 1,000 units of x, median of the last decile / first)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 10:
        return float("nan"), float("nan")
    slope = np.polyfit(x, y, 1)[0] * 1000
    k = max(len(y) // 10, 1)
    first, last = np.median(y[:k]), np.median(y[-k:])
    return float(slope), float(last / first) if first else float("nan")


SERIES = [("rss_daemon_mib", "daemon RSS (MiB)"), ("rss_children_mib", "workers RSS (MiB)"),
          ("fds_daemon", "daemon open fds"), ("fds_children", "workers open fds"),
          ("threads_daemon", "daemon threads"), ("threads_children", "workers threads"),
          ("db_mib", "database (MiB)")]


def report(samples, images, warmup: float, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("samples.csv", samples), ("images.csv", images)):
        if rows:
            with open(out / name, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    n_total = max((s["done"] for s in samples), default=0)
    cut = warmup * n_total
    post = [s for s in samples if s["done"] >= cut]
    x = np.array([s["done"] for s in post], float)
    print(f"\nsoak: {n_total} images done, {len(samples)} samples; trend after warm-up "
          f"({warmup:.0%} of the images), per 1,000 images:")
    print(f"{'series':24s} {'start':>10s} {'end':>10s} {'slope/1k':>10s} {'end/start':>10s}")
    for key, label in SERIES:
        y = np.array([s[key] for s in post], float)
        slope, ratio = trend(x, y)
        if len(y):
            print(f"{label:24s} {y[0]:10.1f} {y[-1]:10.1f} {slope:10.3f} {ratio:10.3f}")
    ok = [r for r in images if r["status"] == "done"]
    xi = np.array([r["n"] for r in ok], float)
    for key, label in (("run_s", "per-image run (s)"), ("queue_latency_s", "queue latency (s)")):
        y = np.array([r[key] for r in ok], float)
        post_i = xi >= warmup * len(images)
        slope, ratio = trend(xi[post_i], y[post_i])
        if post_i.any():
            print(f"{label:24s} {np.nanmedian(y[post_i][:max(len(y[post_i]) // 10, 1)]):10.3f} "
                  f"{np.nanmedian(y[post_i][-max(len(y[post_i]) // 10, 1):]):10.3f} {slope:10.4f} "
                  f"{ratio:10.3f}")
    bad = len(images) - len(ok)
    print(f"jobs not done: {bad}; database {samples[-1]['db_mib']:.1f} MiB "
          f"({samples[-1]['db_mib'] * 2**20 / max(n_total, 1) / 1024:.1f} KiB per image)")
    _plot(samples, images, warmup, out / "soak.png")


def _plot(samples, images, warmup: float, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(3, 2, figsize=(11, 9), sharex=True)
    x = [s["done"] for s in samples]
    pairs = [(("rss_daemon_mib", "rss_children_mib"), "RSS (MiB)"),
             (("fds_daemon", "fds_children"), "open fds"),
             (("threads_daemon", "threads_children"), "threads"), (("db_mib",), "database (MiB)")]
    for ax, (keys, label) in zip(axes.flat, pairs):
        for k in keys:
            ax.plot(x, [s[k] for s in samples], label=k)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    ok = [r for r in images if r["status"] == "done"]
    for ax, key, label in ((axes.flat[4], "run_s", "per-image run (s)"),
                           (axes.flat[5], "queue_latency_s", "queue latency (s)")):
        ax.plot([r["n"] for r in ok], [r[key] for r in ok], ".", ms=2, alpha=0.5)
        ax.set_ylabel(label)
        ax.set_yscale("log")
    n_total = max(x, default=0)
    for ax in axes.flat:
        ax.axvline(warmup * n_total, color="grey", lw=0.5, ls="--")
    for ax in axes[-1]:
        ax.set_xlabel("images done")
    fig.suptitle(f"soak: {n_total} images")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--fields", type=int, default=6)
    ap.add_argument("--size", type=int, default=128, help="image side (pixels, 6 arcsec)")
    ap.add_argument("--sources", type=int, default=25, help="catalogue sources per field")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.0,
                    help="seconds between images (0: as fast as the daemon takes them)")
    ap.add_argument("--backlog", type=int, default=4, help="images waiting at most (interval 0)")
    ap.add_argument("--sample-s", type=float, default=2.0)
    ap.add_argument("--epoch-days", type=float, default=1.0, help="days between a field's epochs")
    ap.add_argument("--warmup", type=float, default=0.35,
                    help="fraction of images ignored (the ESE window filling; see above)")
    ap.add_argument("--max-s", type=float, default=0.0,
                    help="stop after this many seconds even if not all images are done (0: never)")
    ap.add_argument("--out", type=Path, default=Path("soak-out"))
    ap.add_argument("--work", type=Path, help="working directory (kept; default a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    args = ap.parse_args()
    samples, images, rc = run(args)
    print(f"daemon exit code after SIGTERM: {rc}")
    report(samples, images, args.warmup, args.out)


if __name__ == "__main__":
    main()
