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
    ap.add_argument("--own", type=int, default=50)
    ap.add_argument("--missed", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from dsa110_contimg.pipeline import inflight
    from dsa110_contimg.pipeline.runner import store_measured
    from dsa110_contimg.store import products as product_store
    from dsa110_contimg.store.detections import own_sources_near

    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-inflight-") as tmp:
        ra, dec, paths, cfg, manager = stored_field(Path(tmp), args.size, args.sources, 4, 3, rng)
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
        times = alternate(store, variants, args.rounds)
    print(f"store of one {args.size}^2 image, {args.sources} catalogue + {args.own} own sources "
          f"({args.missed} missed in 'missed'), {args.rounds} rounds, CPU s")
    print_ratios(times, "old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
