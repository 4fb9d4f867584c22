"""Cost of one backfill item whose job names sources off its image.

Usage::

    .venv/bin/python bench/backfill_item.py [--size 2048] [--sources 1000] [--job 40]
                                            [--rounds 5]

One simulated field (``--size``² pixels, ``--sources`` catalogue sources, blind detection
on), three epochs stored; a backfill job of ``--job`` monitor positions, half on the field
and half one field-width aside (another field's). One item (the last epoch) is run again
and again, alternating back to back, ``--rounds`` times each:

* ``old``   every source of the job measured and stored on the image (what the item did:
  a failed row for each position off it);
* ``new``   :func:`~dsa110_contimg.pipeline.backfill.sources_covered` (a read of the
  image's stored footprint), then only the covered half measured and stored;
* ``read``  the coverage read alone.

Printed: CPU seconds of the process per item (median and minimum) and the ratios to
``old`` of the same run. The machine is shared: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    import workerenv  # noqa: F401  (before numpy: the service workers' one thread per library)

import numpy as np  # noqa: E402
from benchfield import field_catalogue, ingest, write_epochs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--job", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.core.paths import db_path
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.pipeline.backfill import measure_backfill, sources_covered, store_backfill
    from dsa110_contimg.store import products as product_store
    from dsa110_contimg.store.engine import read_connection, serialise_writes

    pix = 6.0
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        root = Path(tmp)
        ra, dec, flux, csv_path = field_catalogue(root, args.size, args.sources, pix, rng)
        ingest(csv_path, root / "catalogs")
        paths = write_epochs([root / f"e{i}.fits" for i in range(3)], args.size, pix, ra, dec,
                             flux, rng, gain_sd=0.02)
        cfg = PhotometryConfig(detect=True)
        manager = PhotometryManager(root / "p.sqlite3", catalog_dir=root / "catalogs",
                                    default_config=cfg)
        for p in paths:
            manager.run_image(p, "image", cfg)
        engine = manager.products.engine
        half = args.job // 2
        pick = rng.choice(ra.size, args.job, replace=False)
        width = args.size * pix / 3600 / np.cos(np.radians(np.median(dec)))
        j_ra = ra[pick] + np.r_[np.zeros(half), np.full(args.job - half, 1.5 * width)] + 1 / 60
        j_dec = dec[pick]
        with engine.begin() as conn:
            ids = product_store.upsert_sources(conn, "monitor", [f"M{i:03d}" for i in range(args.job)],
                                               j_ra, j_dec, kind="monitor")
        job = [{"id": int(i), "ra_deg": float(r), "dec_deg": float(d)}
               for i, r, d in zip(ids, j_ra, j_dec)]
        path = db_path(paths[-1].resolve())

        def covered():
            with read_connection(engine) as conn:
                return sources_covered(conn, path, job)[1]

        def item(sources):
            table = measure_backfill(path, cfg, sources)
            with engine.begin() as conn:
                serialise_writes(conn)
                store_backfill(conn, path, sources, table, cfg)
            return len(table)

        def run(variant):
            t0 = time.process_time()
            if variant == "old":
                n = item(job)
            elif variant == "new":
                n = item(covered())
            else:
                n = len(covered())
            return time.process_time() - t0, n

        variants = ("old", "new", "read")
        counts = {v: run(v)[1] for v in variants}          # warm-up
        assert counts == {"old": args.job, "new": half, "read": half}, counts
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                times[v].append(run(v)[0])
        manager.products.dispose()
    print(f"backfill item on one {args.size}^2 image ({args.sources} catalogue sources), job of "
          f"{args.job} positions ({half} on the image), {args.rounds} rounds, CPU s")
    print(f"{'variant':8s} {'rows':>5s} {'median':>8s} {'min':>8s} {'ratio(med)':>11s} {'ratio(min)':>11s}")
    base_med, base_min = statistics.median(times["old"]), min(times["old"])
    for v in variants:
        med, mn = statistics.median(times[v]), min(times[v])
        rows = counts[v] if v != "read" else 0
        print(f"{v:8s} {rows:5d} {med:8.4f} {mn:8.4f} {med / base_med:11.3f} {mn / base_min:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
