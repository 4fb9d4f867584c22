"""Benchmark of the local catalogue store on an all-sky NVSS-sized table.

Generates 1.8 million sources uniformly on the sphere in the NVSS VizieR
layout (``_RAJ2000``, ``_DEJ2000``, ``S1.4``, ``e_S1.4``, ``MajAxis``,
``MinAxis``, ``PA``), writes them to a FITS table, ingests it, and times cone
queries of 0.5 and 3.5 deg radius at random centres (including RA 0/360 and
|Dec| > 85 deg). The same-run baseline is a full-table numpy angular-distance
scan (the same exact cut, sort and limit on in-memory arrays).

Usage: ``.venv/bin/python bench/catalog.py [--rows N] [--queries Q] [--keep DIR]``
Targets (issue 3): 0.5 deg cone p50 <= 5 ms, 3.5 deg cone p50 <= 30 ms.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from dsa110_contimg.store.catalogs import CatalogStore
from dsa110_contimg.catalogs.spatial import angular_separation_deg


def generate(n: int, rng: np.random.Generator) -> Table:
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    flux = 2.5 * (1.0 - rng.uniform(0, 1, n)) ** (-1.0 / 0.8)  # N(>S) ~ S^-0.8 above 2.5 mJy
    t = Table()
    t["_RAJ2000"] = ra
    t["_RAJ2000"].unit = "deg"
    t["_DEJ2000"] = dec
    t["_DEJ2000"].unit = "deg"
    t["S1.4"] = np.round(flux, 1)
    t["S1.4"].unit = "mJy"
    t["e_S1.4"] = np.float32(0.45 + 0.03 * flux)
    t["e_S1.4"].unit = "mJy"
    t["MajAxis"] = np.float32(rng.uniform(20, 60, n))
    t["MinAxis"] = np.float32(rng.uniform(15, 45, n))
    t["PA"] = np.float32(rng.uniform(-90, 90, n))
    return t


def baseline(ra, dec, flux, ra0, dec0, r, max_sources=None):
    sep = angular_separation_deg(ra0, dec0, ra, dec)
    idx = np.flatnonzero(sep <= r)
    idx = idx[np.argsort(-flux[idx], kind="stable")]
    return idx[:max_sources] if max_sources else idx


def centres(rng, q):
    ra = rng.uniform(0, 360, q)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, q)))
    # A few edge cases every run: RA 0/360 and near the poles.
    ra[:4] = [0.1, 359.9, 180.0, 0.0]
    dec[:4] = [10.0, -30.0, 87.5, -88.0]
    return ra, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_800_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--keep", type=Path, default=None, help="keep the catalogue directory here")
    args = ap.parse_args()
    rng = np.random.default_rng(110)
    work = Path(tempfile.mkdtemp(prefix="catbench-"))
    try:
        t0 = time.perf_counter()
        table = generate(args.rows, rng)
        src = work / "nvss_allsky.fits"
        table.write(src)
        print(f"generated {args.rows:,d} rows in {time.perf_counter() - t0:.1f} s -> {src.name}")
        catdir = args.keep or work / "catalogs"
        store = CatalogStore(catdir)
        t0 = time.perf_counter()
        n = store.ingest("nvss", src, progress=False)
        t_ingest = time.perf_counter() - t0
        size = store.path_of("nvss").stat().st_size / 1e6
        print(f"ingest: {n:,d} rows in {t_ingest:.1f} s ({n / t_ingest:,.0f} rows/s), "
              f"database {size:.0f} MB")
        cat = store.survey("nvss")
        ra_all = np.asarray(table["_RAJ2000"], float)
        dec_all = np.asarray(table["_DEJ2000"], float)
        flux_all = np.asarray(table["S1.4"], float)
        cat.cone(10.0, 10.0, 0.5)  # warm the page cache / connection pool
        for radius in (0.5, 3.5):
            ra, dec = centres(rng, args.queries)
            ts, tb, counts = [], [], []
            for a, d in zip(ra, dec):
                t = time.perf_counter()
                res = cat.cone(a, d, radius)
                ts.append(time.perf_counter() - t)
                t = time.perf_counter()
                ref = baseline(ra_all, dec_all, flux_all, a, d, radius)
                tb.append(time.perf_counter() - t)
                counts.append(len(res))
                if len(res) != len(ref):
                    raise SystemExit(f"MISMATCH at ({a}, {d}, {radius}): store {len(res)}, "
                                     f"baseline {len(ref)}")
            ts_ms, tb_ms = np.array(ts) * 1e3, np.array(tb) * 1e3
            p50, p99 = np.percentile(ts_ms, [50, 99])
            b50 = np.percentile(tb_ms, 50)
            print(f"cone r={radius:3.1f} deg: {args.queries} queries, median {np.median(counts):.0f} "
                  f"sources; store p50 {p50:6.2f} ms p99 {p99:6.2f} ms; baseline (full numpy scan) "
                  f"p50 {b50:7.2f} ms; speed-up x{b50 / p50:.1f}; results identical")
        t = time.perf_counter()
        res = cat.cone(120.0, 40.0, 3.5, max_sources=20, min_flux_mjy=10.0)
        print(f"cone r=3.5 deg, min_flux 10 mJy, max_sources 20: {len(res)} rows in "
              f"{(time.perf_counter() - t) * 1e3:.2f} ms")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
