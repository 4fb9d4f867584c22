"""Per-image cost against the length of a field's history (the soak's fields, in process).

Usage::

    .venv/bin/python bench/fieldhistory.py build DIR [--epochs 1700] [--save-at 500,1700]
    .venv/bin/python bench/fieldhistory.py measure DIR [--extra 20]

``build`` runs ``PhotometryManager.run_image`` over ``--epochs`` daily epochs of one field of
the soak (``bench/soak.py``: 128^2 images, 25 catalogue sources, 6 arcsec pixels, normalisation
and ESE detection on) and keeps a copy of the products database after each epoch count of
``--save-at`` (``DIR/history-<n>.sqlite3``). ``measure`` runs ``--extra`` further epochs on a
fresh copy of each saved database, back to back in one process, and prints per history length
the median per step (CPU ms: ``result.step_seconds`` with the step timer reading
``time.process_time``, so that a busy machine does not inflate it), the median CPU time of ``run_image`` (ms,
``time.process_time``) and the median number of SQL statements and of SQLite virtual-machine steps (thousands: the
rows the engine reads) per image.
Compare two versions of the code by running ``measure`` with each on the same ``DIR``: a flat
cost has the same figures at every history length.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchfield import ingest  # noqa: E402
from soak import Fields  # noqa: E402

STEPS = ("measure", "store", "qc", "normalise", "variability", "ese", "write_lock")


def _config():
    from dsa110_contimg.core.config import PhotometryConfig

    return PhotometryConfig(catalog="nvss", method="forced", normalize=True, detect_ese=True)


class SqlCounter:
    """Statements executed through every SQLAlchemy engine of the process, and SQLite virtual
    machine steps (units of 1,000 instructions: the rows the engine scans, whatever the
    statements return)."""

    def __init__(self):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.statements = 0
        self.rows = 0
        event.listen(Engine, "after_cursor_execute", self._after)
        event.listen(Engine, "connect", self._connect)

    def _after(self, conn, cursor, statement, params, context, executemany):
        self.statements += 1

    def _tick(self) -> int:
        self.rows += 1
        return 0

    def _connect(self, dbapi_conn, record):
        if hasattr(dbapi_conn, "set_progress_handler"):
            dbapi_conn.set_progress_handler(self._tick, 1000)


def _run(manager, fields: Fields, tmp: Path, i: int, cfg, counter: SqlCounter | None):
    path = tmp / f"epoch{i:05d}.fits"
    path.write_bytes(fields.image_bytes(i))
    s0, r0 = (counter.statements, counter.rows) if counter else (0, 0)
    c = time.process_time()
    res = manager.run_image(path, "image", cfg)
    cpu = time.process_time() - c
    path.unlink()
    stats = (counter.statements - s0, counter.rows - r0) if counter else (0, 0)
    return res, cpu, stats


def build(root: Path, epochs: int, save_at: list[int]) -> None:
    from dsa110_contimg.pipeline.manager import PhotometryManager

    root.mkdir(parents=True, exist_ok=True)
    fields = Fields(1, 128, 25)
    ingest(fields.write_catalogue(root), root / "catalogs")
    db = root / "products.sqlite3"
    manager = PhotometryManager(db, None, catalog_dir=root / "catalogs")
    cfg = _config()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fieldhistory-") as tmp:
        for i in range(epochs):
            _run(manager, fields, Path(tmp), i, cfg, None)
            if i + 1 in save_at:
                manager.products.engine.dispose()
                shutil.copy(db, root / f"history-{i + 1}.sqlite3")
                print(f"saved history-{i + 1} ({time.perf_counter() - t0:.0f} s)", flush=True)


class _CpuClock:
    """Stands in for the ``time`` module of ``pipeline/timing.py``: the step timer reads CPU
    time (this process) instead of wall time."""

    perf_counter = staticmethod(time.process_time)

    def __getattr__(self, name):
        return getattr(time, name)


def measure(root: Path, extra: int) -> None:
    from dsa110_contimg.pipeline import timing
    from dsa110_contimg.pipeline.manager import PhotometryManager

    timing.time = _CpuClock()

    fields = Fields(1, 128, 25)
    cfg = _config()
    counter = SqlCounter()
    saved = sorted(root.glob("history-*.sqlite3"), key=lambda p: int(p.stem.split("-")[1]))
    rows = []
    for src in saved:
        n = int(src.stem.split("-")[1])
        with tempfile.TemporaryDirectory(prefix="fieldhistory-") as tmp:
            tmp = Path(tmp)
            shutil.copy(src, tmp / "products.sqlite3")
            manager = PhotometryManager(tmp / "products.sqlite3", None,
                                        catalog_dir=root / "catalogs")
            _run(manager, fields, tmp, n, cfg, counter)        # warm caches
            per = [_run(manager, fields, tmp, n + 1 + k, cfg, counter) for k in range(extra)]
            manager.products.engine.dispose()
        med = {s: 1000 * float(np.median([r.step_seconds.get(s, 0.0) for r, _, _ in per]))
               for s in STEPS}
        rows.append((n, med, 1000 * float(np.median([c for _, c, _ in per])),
                     float(np.median([st[0] for _, _, st in per])),
                     float(np.median([st[1] for _, _, st in per]))))
    head = f"{'epochs':>7} " + " ".join(f"{s:>9}" for s in STEPS) + \
        f" {'cpu/img':>8} {'stmts':>6} {'kVMsteps':>8}"
    print("per image, median of", extra, "epochs (CPU ms; SQL statements and thousands of "
          "SQLite VM steps per image)")
    print(head)
    for n, med, cpu, st, rw in rows:
        print(f"{n:>7} " + " ".join(f"{med[s]:9.1f}" for s in STEPS) +
              f" {cpu:8.1f} {st:6.0f} {rw:8.0f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"ratio {b[0]} / {a[0]} epochs: cpu/img {b[2] / a[2]:.2f}, "
              + ", ".join(f"{s} {b[1][s] / a[1][s]:.2f}" for s in ("qc", "normalise",
                                                                   "variability", "ese")
                          if a[1][s] > 0)
              + f", SQLite VM steps {b[4] / max(a[4], 1):.2f}")


def main(argv=None) -> int:
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("console", "warning", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("dir", type=Path)
    b.add_argument("--epochs", type=int, default=1700)
    b.add_argument("--save-at", default="500,1700")
    m = sub.add_parser("measure")
    m.add_argument("dir", type=Path)
    m.add_argument("--extra", type=int, default=20)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(args.dir, args.epochs, [int(x) for x in args.save_at.split(",")])
    else:
        measure(args.dir, args.extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
