"""Benchmark: storing one image's measurements in the products database.

Prints the time to store 2,000 measurements (sources upsert + image row +
bulk insert, one transaction) into an empty database, then again after the
database holds about 2 million measurements, and the ratio between the two
(target: store <= 50 ms, ratio <= 1.3). A same-run baseline of one
transaction per row (the pattern to avoid) is timed on a small sample.

Run: .venv/bin/python bench/store.py [--rows 2000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps

N_PER_IMAGE = 2000


def columns(n, rng):
    cols = {k: rng.normal(size=n) for k in ps.MEASUREMENT_COLUMNS}
    cols["dof"] = np.full(n, 80)
    cols["cluster_id"] = np.full(n, -1)
    cols["flags"] = np.zeros(n, int)
    cols["success"] = np.ones(n, bool)
    return cols


def store_image(db, path, names, ra, dec, cols, mjd):
    with db.engine.begin() as conn:
        sid = ps.upsert_sources(conn, "nvss", names, ra, dec, np.ones(len(names)))
        ps.store_image_measurements(conn, {"path": path, "content_id": "c", "kind": "image",
                                           "method": "forced", "catalog": "nvss", "mjd": mjd}, sid, cols)


def time_stores(db, rng, names, ra, dec, tag, repeats=15):
    times = []
    for i in range(repeats):
        cols = columns(N_PER_IMAGE, rng)
        t = time.perf_counter()
        store_image(db, f"/bench/{tag}-{i}.fits", names, ra, dec, cols, 60000.0 + i)
        times.append(time.perf_counter() - t)
    return statistics.median(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="measurements to preload")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_products_db(Path(tmp) / "products.sqlite3")
        # a field of 2,000 catalogue sources measured on every image, as in production
        names = [f"NVSS J{i:06d}" for i in range(N_PER_IMAGE)]
        ra = rng.uniform(0, 10, N_PER_IMAGE)
        dec = rng.uniform(30, 40, N_PER_IMAGE)

        empty_med, empty_max = time_stores(db, rng, names, ra, dec, "empty")
        print(f"store {N_PER_IMAGE} measurements, empty database : median {empty_med*1e3:7.1f} ms "
              f"(max {empty_max*1e3:.1f} ms)")

        t = time.perf_counter()
        n_images = args.rows // N_PER_IMAGE
        cols = columns(N_PER_IMAGE, rng)
        for i in range(n_images):
            store_image(db, f"/bench/fill-{i}.fits", names, ra, dec, cols, 59000.0 + i)
        fill = time.perf_counter() - t
        print(f"preloaded {n_images * N_PER_IMAGE:,} measurements ({n_images} images) in {fill:.1f} s "
              f"({n_images * N_PER_IMAGE / fill:,.0f} rows/s)")

        full_med, full_max = time_stores(db, rng, names, ra, dec, "full")
        print(f"store {N_PER_IMAGE} measurements, full database  : median {full_med*1e3:7.1f} ms "
              f"(max {full_max*1e3:.1f} ms)")
        print(f"ratio full/empty: {full_med / empty_med:.2f}  (target <= 1.3; store target <= 50 ms)")

        # baseline: one transaction per measurement row (what the service avoids)
        sample = 200
        small = columns(1, rng)
        t = time.perf_counter()
        for i in range(sample):
            store_image(db, f"/bench/row-{i}.fits", names[:1], ra[:1], dec[:1], small, 61000.0)
        per_row = (time.perf_counter() - t) / sample
        print(f"baseline, one transaction per row: {per_row*1e3:.2f} ms/row -> "
              f"{per_row * N_PER_IMAGE * 1e3:.0f} ms for {N_PER_IMAGE} rows; "
              f"batched is {per_row * N_PER_IMAGE / empty_med:.0f}x faster")


if __name__ == "__main__":
    main()
