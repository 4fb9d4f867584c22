"""Cost of measuring, at an image's store, the own sources made while it was in flight.

Usage::

    .venv/bin/python bench/inflight.py [--size 2048] [--sources 1000] [--own 50] [--missed 5]
                                       [--rounds 5]

One simulated field (``--size``² pixels, ``--sources`` catalogue sources, blind detection
on): three epochs stored, a fourth measured once, then ``--own`` own (blind) sources of the
field put in the database, and the fourth epoch stored again and again
(:func:`~dsa110_contimg.pipeline.runner.store_measured`, its whole write transaction and
steps), alternating back to back, ``--rounds`` times each:

* ``old``   the ``store`` step without :func:`~dsa110_contimg.pipeline.inflight.measure_missed`;
* ``new``   with it, nothing missed (the common case: one read of the field's own sources
  under the lock);
* ``missed`` with it, ``--missed`` of the own sources not read at measurement time (made
  while the image was in flight): reopened and measured in the transaction.

Printed: CPU seconds of the process per store (median and minimum) and the ratios to
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
    ap.add_argument("--own", type=int, default=50)
    ap.add_argument("--missed", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.pipeline import inflight
    from dsa110_contimg.pipeline.runner import store_measured
    from dsa110_contimg.store import products as product_store
    from dsa110_contimg.store.detections import own_sources_near

    pix = 6.0
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-inflight-") as tmp:
        root = Path(tmp)
        ra, dec, flux, csv_path = field_catalogue(root, args.size, args.sources, pix, rng)
        ingest(csv_path, root / "catalogs")
        paths = write_epochs([root / f"e{i}.fits" for i in range(4)], args.size, pix, ra, dec,
                             flux, rng, gain_sd=0.02)
        cfg = PhotometryConfig(detect=True)
        manager = PhotometryManager(root / "p.sqlite3", catalog_dir=root / "catalogs",
                                    default_config=cfg)
        for p in paths[:3]:
            manager.run_image(p, "image", cfg)
        measured = manager.measure_image(paths[3], "image", cfg)
        # own sources of the field made after the measurement: ~1 arcmin off catalogue ones
        pick = rng.choice(ra.size, args.own, replace=False)
        with manager.products.engine.begin() as conn:
            product_store.upsert_sources(conn, "dsa110", [f"BENCH{i:04d}" for i in range(args.own)],
                                         ra[pick] + 1 / 60, dec[pick], kind="blind")
        engine = manager.products.engine
        store_measured(engine, measured, cfg)   # the sources its own detections make, first
        with engine.connect() as conn:
            s = measured.image
            every = own_sources_near(conn, *s.center_deg, s.radius_deg, kinds=inflight.SEEN_KINDS)
        ids = np.sort(every["id"])
        real = inflight.measure_missed
        rows = {}

        def store(variant):
            from dataclasses import replace

            seen = ids if variant != "missed" else ids[:-args.missed]   # the last made
            m = replace(measured, own_seen=seen)
            if variant == "old":
                inflight.measure_missed = lambda conn, ctx: 0
            try:
                t0 = time.process_time()
                out = store_measured(engine, m, cfg)
                took = time.process_time() - t0
            finally:
                inflight.measure_missed = real
            made = [n for n in out.notes if "made while the image was measured" in n]
            assert bool(made) == (variant == "missed"), out.notes
            rows.setdefault(variant, len(out.source_ids))
            assert len(out.source_ids) == rows[variant]
            return took

        variants = ("old", "new", "missed")
        for v in variants:                      # warm-up
            store(v)
        assert rows["missed"] == rows["new"] + args.missed == rows["old"] + args.missed, rows
        times = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                times[v].append(store(v))
    print(f"store of one {args.size}^2 image, {args.sources} catalogue + {args.own} own sources "
          f"({args.missed} missed in 'missed'), {args.rounds} rounds, CPU s")
    print(f"{'variant':8s} {'median':>8s} {'min':>8s} {'ratio(med)':>11s} {'ratio(min)':>11s}")
    base_med, base_min = statistics.median(times["old"]), min(times["old"])
    for v in variants:
        med, mn = statistics.median(times[v]), min(times[v])
        print(f"{v:8s} {med:8.4f} {mn:8.4f} {med / base_med:11.3f} {mn / base_min:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
