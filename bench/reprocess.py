"""Reprocessing benchmark: Dask distributed (1 and 2 workers) against a local process pool.

Usage::

    .venv/bin/python bench/reprocess.py [--n 40] [--size 1024] [--sources 400]

The same ``--n`` simulated images (``--size``² pixels, ``--sources`` catalogue sources,
one epoch per day) are reprocessed, each time into a fresh products database, by

1. **process pool** (baseline): ``concurrent.futures.ProcessPoolExecutor`` with 2
   processes running the same measure task, this process storing in epoch order;
2. **dask 1 worker** and 3. **dask 2 workers**: :func:`dsa110_contimg.service.reprocess.reprocess`
   on a ``LocalCluster`` (processes, one thread each, dashboard off, 127.0.0.1);

and, for reference, the in-process workflow (``measure_image`` + ``store_measured`` in
one process). Printed: images/min (cluster or pool start-up excluded, shown apart) and
the ratios against the process pool, all measured in one run on the same images.
The machine is shared: figures are noisy; compare the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from benchfield import field_catalogue, ingest, write_epochs

PIX_ARCSEC = 6.0


def make_inputs(root: Path, size: int, n_sources: int, n_images: int) -> list[Path]:
    rng = np.random.default_rng(1)
    ra, dec, flux_mjy, cat = field_catalogue(root, size, n_sources, PIX_ARCSEC, rng,
                                             min_separation_pix=12)
    ingest(cat, root / "catalogs")
    images = root / "images"
    images.mkdir()
    return write_epochs([images / f"2025-01-{i:04d}.img-image-pb.fits" for i in range(n_images)],
                        size, PIX_ARCSEC, ra, dec, flux_mjy, rng, gain_sd=0.03)


def fresh(root: Path, name: str, cfg):
    from dsa110_contimg.pipeline.manager import PhotometryManager
    from dsa110_contimg.service import reprocess as rp

    manager = PhotometryManager(root / f"{name}.sqlite3", default_config=cfg, catalog_dir=root / "catalogs")
    files, _ = rp.discover([root / "images"])
    return manager, rp.make_plan(files, manager.products)


def run_in_process(root, cfg) -> float:
    manager, plan = fresh(root, "inprocess", cfg)
    t = time.perf_counter()
    for task in plan.tasks:
        manager.store_measured(manager.measure_image(task.path, task.kind, cfg), cfg, data_id=task.data_id)
    return 60 * len(plan.tasks) / (time.perf_counter() - t)


def run_pool(root, cfg, workers: int) -> tuple[float, float]:
    from dsa110_contimg.service import reprocess as rp

    manager, plan = fresh(root, "pool", cfg)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(abs, range(workers)))          # start the processes
        started = time.perf_counter() - t0
        t = time.perf_counter()
        futures = [pool.submit(rp.measure_task, str(task.path), task.kind, cfg.to_dict(),
                               str(root / "catalogs")) for task in plan.tasks]
        report = rp.Report(planned=len(plan.tasks))
        for task, fut in zip(plan.tasks, futures):     # stored in epoch order as they come
            rp._store_one(task, fut.result(), manager, cfg, report, None)
        elapsed = time.perf_counter() - t
    assert report.done == len(plan.tasks), report.failures
    return 60 * report.done / elapsed, started


def run_dask(root, cfg, workers: int) -> tuple[float, float]:
    from dsa110_contimg.service import reprocess as rp

    manager, plan = fresh(root, f"dask{workers}", cfg)
    t0 = time.perf_counter()
    client = rp.open_client(workers=workers)
    client.wait_for_workers(workers)
    started = time.perf_counter() - t0
    try:
        report = rp.reprocess(plan, manager, cfg, client, catalog_dir=str(root / "catalogs"))
    finally:
        rp.close_client(client)
    assert report.done == len(plan.tasks), report.failures
    return report.images_per_min, started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--sources", type=int, default=400)
    args = ap.parse_args(argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from dsa110_contimg.core.config import PhotometryConfig

    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    root = Path(tempfile.mkdtemp(prefix="bench-reprocess-"))
    try:
        t = time.perf_counter()
        make_inputs(root, args.size, args.sources, args.n)
        print(f"{args.n} images {args.size}x{args.size}, {args.sources} sources "
              f"(made in {time.perf_counter() - t:.1f} s)")
        rows = []
        rate = run_in_process(root, cfg)
        rows.append(("in-process (1 process)", rate, None))
        pool, pool_start = run_pool(root, cfg, 2)
        rows.append(("process pool, 2 processes (baseline)", pool, pool_start))
        for workers in (1, 2):
            rate, start = run_dask(root, cfg, workers)
            rows.append((f"dask LocalCluster, {workers} worker{'s' * (workers > 1)}", rate, start))
        print(f"{'':40s} {'images/min':>11s} {'vs pool':>8s} {'start-up s':>11s}")
        for name, rate, start in rows:
            print(f"{name:40s} {rate:11.1f} {rate / pool:8.2f} "
                  f"{'' if start is None else f'{start:11.1f}'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
