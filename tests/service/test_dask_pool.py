"""DaskPool: the daemon's jobs on a Dask cluster, with the daemon's queue and leases.

A real local Dask cluster (2 worker processes on 127.0.0.1) stands in for a remote
scheduler; the pool is used exactly as the daemon uses WorkerPool: claim (lease) ->
submit -> poll -> settle.
"""

from __future__ import annotations

import time

import pytest

from pgcluster import BACKENDS
from dsa110_contimg.service.dask_pool import DaskPool

pytestmark = pytest.mark.timeout(300)
FAKE = "fakes:FakePhotometryExecutor"


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    import logging
    import os

    from distributed import LocalCluster

    out = tmp_path_factory.mktemp("dask-out")
    os.environ["CONTIMG_FAKE_OUT"] = str(out)      # inherited by the worker processes
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", silence_logs=logging.ERROR)
    yield cluster.scheduler_address, out
    cluster.close()
    os.environ.pop("CONTIMG_FAKE_OUT", None)


def _drain(pool, n, timeout=120):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(pool.poll(0.2))
    return {o.job_id: o for o in got}


def test_outcomes_ok_error_and_timeout(scheduler):
    address, _ = scheduler
    pool = DaskPool(address, "fakes:SleepExecutor", job_timeout_s=3.0)
    pool.start()
    try:
        assert pool.size == 2 and pool.idle() == 2
        pool.submit(1, (0.1, "one"))
        pool.submit(2, (0.1, "two"))
        assert pool.idle() == 0
        with pytest.raises(RuntimeError, match="no idle worker"):
            pool.submit(3, (0.1,))
        out = _drain(pool, 2)
        assert {k: (o.status, o.result) for k, o in out.items()} == {1: ("ok", "one"), 2: ("ok", "two")}
        pool.submit(4, (10.0,))                          # over the time limit
        out = _drain(pool, 1)
        assert out[4].status == "timeout" and "time limit" in out[4].error
        assert pool.healthy()
    finally:
        pool.shutdown()
    pool = DaskPool(address, "fakes:RaiseExecutor", size=1)
    pool.start()
    try:
        assert pool.size == 1
        pool.submit(5, ("invalid", "bad header"))
        out = _drain(pool, 1)
        pool.submit(6, ("nospace", "database hiccup"))
        out.update(_drain(pool, 1))
        assert out[5].status == "error" and out[5].permanent and "bad header" in out[5].error
        assert out[6].status == "error" and not out[6].permanent
        assert pool.healthy()
    finally:
        pool.shutdown()


@pytest.mark.parametrize("backend", BACKENDS)
def test_queue_jobs_run_exactly_once_on_dask(scheduler, databases):
    """Jobs claimed from the durable queue with leases, run on Dask, settled by the caller:
    every job done once, one result row per image."""
    import sqlalchemy as sa

    from dsa110_contimg.service.runtime import JobContext, JobSummary, settle
    from harness import fits_bytes
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.queue import JobQueue
    from dsa110_contimg.store.schema import images

    address, out = scheduler
    url = databases.new()
    db = open_products_db(url)
    queue = JobQueue(db, owner="daskdaemon:1", lease_s=60)
    n = 12
    paths = []
    for i in range(n):
        p = databases.tmp_path / f"d{i:02d}.img-image-pb.fits"
        p.write_bytes(fits_bytes(i))
        paths.append(str(p))
        queue.enqueue({}, [(str(p), "image", None)], idempotency_key=f"k{i}")
    log = out / "executions.log"
    before = log.read_text().splitlines() if log.exists() else []
    pool = DaskPool(address, FAKE)
    pool.start()
    states = {}
    try:
        deadline = time.monotonic() + 180
        while len(states) < n and time.monotonic() < deadline:
            while pool.idle() > 0:
                job = queue.claim()
                if job is None:
                    break
                pool.submit(job.id, JobContext.from_claim(job, products_db=str(url), registry_db=None,
                                                          catalog_dir=None, lease_s=queue.lease_s))
            for o in pool.poll(0.2):
                assert o.status == "ok", o
                states[o.job_id] = settle(queue, o.job_id, JobSummary.coerce(o.result))
    finally:
        pool.shutdown()
    assert sorted(states.values()) == ["done"] * n
    assert queue.counts()["done"] == n
    runs = [line.split()[1] for line in log.read_text().splitlines()[len(before):]
            if line.split()[1] in paths]
    assert sorted(runs) == sorted(paths)                      # each image executed once
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(images)).scalar() == n
    db.dispose()


def test_daemon_dispatches_to_dask_every_image_once(scheduler, tmp_path, postgres_cluster):
    """``[daemon] executor = "dask"`` style: the daemon watches, queues and leases; the jobs
    run on the Dask workers; PostgreSQL holds the queue. Every image measured once."""
    import signal

    from harness import Service, drop

    address, out = scheduler
    svc = Service(tmp_path / "svc", executor=FAKE, dask_scheduler=address,
                  products_db=postgres_cluster.new_database("products"),
                  registry_db=postgres_cluster.new_database("registry"))
    log = out / "executions.log"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    try:
        proc = svc.start()
        n = 20
        paths = [svc.images / f"dk{i:03d}.img-image-pb.fits" for i in range(n)]
        for i, p in enumerate(paths):
            drop(p, i)
        svc.wait_for(svc.idle_with(n), 120, "all images done on Dask")
        by_path = svc.jobs_by_path()
        assert set(by_path) == {str(p) for p in paths}
        assert all(len(j) == 1 and j[0][1] == "done" for j in by_path.values()), by_path
        runs = [line.split() for line in log.read_text().splitlines()[before:]]
        ran = [r[1] for r in runs if r[1] in {str(p) for p in paths}]
        assert sorted(ran) == sorted(str(p) for p in paths)              # once each
        assert len({r[2] for r in runs}) == 2                            # on both Dask workers
        assert proc.pid not in {int(r[2]) for r in runs}
        assert svc.sql("SELECT workers FROM heartbeats") == [(2,)]       # the cluster's threads
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        svc.stop_all()
