"""The supervised spawn pool: a SIGKILLed worker fails only its own job and is replaced;
per-job time limit; permanent vs transient errors; worker environment and signals."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dsa110_contimg.service.pool import WorkerPool

T = "fakes"  # tests/support/fakes.py (tests/support is on sys.path under pytest)


def collect(pool, n, timeout=60):
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for o in pool.poll(0.2):
            out[o.job_id] = o
    return out


@pytest.fixture
def pool_factory():
    pools = []

    def make(size, task, **kw):
        p = WorkerPool(size, task, **kw)
        p.start()
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.shutdown(kill=True)


def test_killed_worker_fails_only_its_job_and_is_replaced(pool_factory):
    pool = pool_factory(2, f"{T}:SleepExecutor")
    pool.submit(1, (0.8, "one"))
    pool.submit(2, (30, "two"))
    time.sleep(0.3)
    victim = [s for s in pool.slots if s.job_id == 2][0]
    os.kill(victim.pid, signal.SIGKILL)
    out = collect(pool, 2)
    assert out[1].status == "ok" and out[1].result == "one"
    assert out[2].status == "crashed" and out[2].exitcode == -signal.SIGKILL
    assert "SIGKILL" in out[2].error
    assert pool.replaced == 1 and pool.healthy()
    # the replacement works
    pool.submit(3, (0.0, "three"))
    pool.submit(4, (0.0, "four"))
    out = collect(pool, 2)
    assert {o.result for o in out.values()} == {"three", "four"}


def test_task_that_kills_its_worker(pool_factory):
    pool = pool_factory(1, f"{T}:SelfKillExecutor")
    pool.submit(7, None)
    out = collect(pool, 1)
    assert out[7].status == "crashed"
    assert pool.wait_ready(60) and pool.idle() == 1


def test_time_limit_kills_and_reports(pool_factory):
    pool = pool_factory(1, f"{T}:SleepExecutor", job_timeout_s=1.0)
    t0 = time.monotonic()
    pool.submit(5, (60,))
    out = collect(pool, 1)
    assert out[5].status == "timeout" and "time limit" in out[5].error
    assert time.monotonic() - t0 < 20
    assert pool.replaced == 1


@pytest.mark.parametrize("kind, permanent, words", [
    ("invalid", True, "bad pixels"),
    ("verify", True, "FITS header fails verification"),
    ("overflow", True, "numeric overflow"),
    ("permission", True, "permission denied"),
    ("other", True, "RuntimeError"),
    ("nospace", False, "No space left"),
    ("dblocked", False, "database is locked"),
])
def test_errors_are_classified(pool_factory, kind, permanent, words):
    """Only environmental errors (disk, database) are retried; input errors fail at once."""
    pool = pool_factory(1, f"{T}:RaiseExecutor")
    pool.submit(1, (kind, "bad pixels"))
    out = collect(pool, 1)
    assert out[1].status == "error" and out[1].permanent is permanent
    assert words in out[1].error
    assert pool.wait_ready(60) and pool.idle() == 1


def test_memory_limit_turns_an_absurd_allocation_into_a_permanent_failure(pool_factory):
    pool = pool_factory(1, f"{T}:AllocateExecutor", memory_limit_mb=1024)
    pool.submit(1, 64)            # fits
    out = collect(pool, 1)
    assert out[1].status == "ok" and out[1].result[1] == 1024 * 1024 * 1024
    pool.submit(2, 4096)          # 4 GiB: refused inside the worker, the worker survives
    out = collect(pool, 1)
    assert out[2].status == "error" and out[2].permanent
    assert "memory" in out[2].error and "1024 MB" in out[2].error
    assert pool.replaced == 0


def test_worker_environment_and_signals(pool_factory, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    pool = pool_factory(1, f"{T}:EnvExecutor")
    assert os.environ["NOTIFY_SOCKET"] == "/nonexistent/notify"  # the parent keeps it
    pool.submit(1, ["NOTIFY_SOCKET", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"])
    out = collect(pool, 1)
    env, term_ignored, int_ignored = out[1].result
    assert env == {"NOTIFY_SOCKET": None, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert term_ignored and int_ignored


def test_broken_task_makes_the_pool_unhealthy(pool_factory):
    pool = pool_factory(1, "dsa110_contimg.no_such_module:f")
    assert pool.size == 1
    deadline = time.monotonic() + 60
    while pool.healthy() and time.monotonic() < deadline:
        pool.poll(0.2)
    assert not pool.healthy() and "no_such_module" in pool.broken_reason


def test_workers_dying_before_ready_are_respawned_with_back_off(pool_factory):
    """A worker that cannot start is re-spawned after a doubling delay, not in a tight loop
    (a broken interpreter once gave ~900 spawns per second); after 5 deaths the pool is
    unhealthy, which stops the watchdog so systemd restarts the service."""
    pool = pool_factory(1, "dsa110_contimg.no_such_module:f")
    t0 = time.monotonic()
    while pool.healthy() and time.monotonic() - t0 < 120:
        pool.poll(0.05)
    took = time.monotonic() - t0
    assert not pool.healthy()
    assert pool.slots[0].deaths_idle == 5
    # four back-off pauses (0.5 + 1 + 2 + 4 s) separate the five deaths
    assert took >= 7.0, took
