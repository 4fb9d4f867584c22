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
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    import workerenv  # noqa: F401  (before numpy: the service workers' one thread per library)

import numpy as np  # noqa: E402
from benchfield import alternate, print_ratios, stored_field  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--job", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from dsa110_contimg.core.paths import db_path
    from dsa110_contimg.pipeline.backfill import measure_backfill, sources_covered, store_backfill
    from dsa110_contimg.store import products as product_store
    from dsa110_contimg.store.engine import read_connection, serialise_writes

    pix = 6.0
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        ra, dec, paths, cfg, manager = stored_field(Path(tmp), args.size, args.sources, 3, 3, rng,
                                                    pix_arcsec=pix)
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
        times = alternate(lambda v: run(v)[0], variants, args.rounds)
        manager.products.dispose()
    print(f"backfill item on one {args.size}^2 image ({args.sources} catalogue sources), job of "
          f"{args.job} positions ({half} on the image), {args.rounds} rounds, CPU s")
    print_ratios(times, "old", rows={**counts, "read": 0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
