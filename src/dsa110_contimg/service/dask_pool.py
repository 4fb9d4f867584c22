"""The daemon's jobs on a Dask distributed cluster: a drop-in for :class:`WorkerPool`.

:class:`DaskPool` has the interface the daemon uses of
:class:`~dsa110_contimg.service.pool.WorkerPool` (``size``, ``start``, ``shutdown``,
``idle``, ``wait_ready``, ``running``, ``worker_pids``, ``submit``, ``poll``,
``healthy``, ``broken_reason``) and returns the same
:class:`~dsa110_contimg.service.pool.Outcome` objects, so the queue, the leases and the
exactly-once guarantees stay in the daemon: it claims a job (lease), submits it here,
extends the lease while it runs and settles it from the outcome. Dask only decides
*where* the task runs.

* ``size`` is the number of jobs in flight, by default the scheduler's worker threads
  (so the daemon claims no more jobs than the cluster can start).
* A task that raises is an ``error`` outcome (``permanent`` as for the local pool);
  a worker lost with its task (``KilledWorker``, scheduler gone) is ``crashed``: the
  daemon retries the job with back-off, as for a SIGKILLed local worker.
* A task over ``job_timeout_s`` is reported as ``timeout`` and its future cancelled;
  Dask cannot kill a running task, so it may still finish: its writes are idempotent
  (re-measuring replaces an image's rows) and the job is retried under a new lease.
* Tasks are submitted with ``pure=False`` and a unique key, never merged or cached.

The executor task (``module:function``) must be importable on the workers (install this
package there), and the workers must see the images, the catalogues and the database
(PostgreSQL URL) at the same paths/URLs as the daemon.
"""

from __future__ import annotations

import os
import time
from typing import Any

from dsa110_contimg.service.pool import Outcome, resolve_task
from dsa110_contimg.service.runtime import is_permanent as _is_permanent


class DaskPool:
    """Jobs on the Dask scheduler at ``address`` (``tcp://host:port``).

    Parameters
    ----------
    address : str
        Scheduler address.
    task : str
        The executor spec (``photometry`` or ``package.module:attribute``); each job is
        ``executor.run(context)`` on a worker.
    size : int, optional
        Jobs in flight; default: the scheduler's worker threads when started.
    job_timeout_s : float
        Wall-clock limit per job (s).
    connect_timeout_s : float
        How long :meth:`start` waits for the scheduler and a first worker.
    """

    def __init__(self, address: str, task: str, *, size: int | None = None,
                 job_timeout_s: float = 1800.0, connect_timeout_s: float = 60.0):
        self.address = address
        self.task = task
        self._fixed_size = size
        self.size = int(size or 1)
        self.job_timeout_s = float(job_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.client = None
        self.broken_reason: str | None = None
        self._fn = None
        self._inflight: dict[int, tuple[Any, float]] = {}   # job_id -> (future, started)

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        from distributed import Client

        self._fn = resolve_task(self.task)
        self.client = Client(self.address, timeout=f"{self.connect_timeout_s}s")
        self.client.wait_for_workers(1, timeout=self.connect_timeout_s)
        if self._fixed_size is None:
            self.size = max(1, sum(self.client.nthreads().values()))

    def shutdown(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Cancel what is in flight (the daemon has handed those jobs back) and disconnect."""
        if self.client is None:
            return
        for fut, _ in self._inflight.values():
            fut.cancel()
        self._inflight.clear()
        try:
            self.client.close(timeout=timeout)
        except Exception:  # noqa: BLE001 - scheduler already gone
            pass
        self.client = None

    # -- jobs ----------------------------------------------------------------------
    def idle(self) -> int:
        if self.client is None or self.broken_reason:
            return 0
        return max(0, self.size - len(self._inflight))

    def wait_ready(self, timeout: float = 60.0) -> bool:
        return self.client is not None

    def running(self) -> dict[int, float]:
        now = time.monotonic()
        return {job_id: now - t for job_id, (_, t) in self._inflight.items()}

    def worker_pids(self) -> list[int]:
        """Dask workers run on other hosts; their pids are not ours to signal."""
        return []

    def submit(self, job_id: int, payload) -> None:
        """Run ``executor.run(payload)`` (a :class:`~dsa110_contimg.service.runtime.JobContext`)
        on a Dask worker."""
        if self.idle() <= 0:
            raise RuntimeError("no idle worker")
        fut = self.client.submit(run_executor, self.task, payload, pure=False,
                                 key=f"contimg-job-{job_id}-{os.getpid()}-{time.time_ns()}")
        self._inflight[job_id] = (fut, time.monotonic())

    def poll(self, timeout: float = 0.2) -> list[Outcome]:
        """Outcomes of finished, failed, lost and timed-out jobs (waits up to ``timeout``)."""
        from distributed import wait

        if self._inflight:
            try:
                wait([f for f, _ in self._inflight.values()], timeout=timeout, return_when="FIRST_COMPLETED")
            except Exception:  # noqa: BLE001 - distributed's TimeoutError: nothing finished
                pass
        else:
            time.sleep(timeout)
        out: list[Outcome] = []
        now = time.monotonic()
        for job_id, (fut, started) in list(self._inflight.items()):
            dt = now - started
            if fut.status == "finished":
                try:
                    out.append(Outcome(job_id, "ok", result=fut.result(), duration_s=dt))
                except Exception as exc:  # noqa: BLE001 - lost between status and result
                    out.append(Outcome(job_id, "crashed", error=f"result lost: {exc}", duration_s=dt))
            elif fut.status == "error":
                exc = fut.exception()
                if type(exc).__name__ == "KilledWorker":
                    out.append(Outcome(job_id, "crashed", duration_s=dt,
                                       error=f"Dask worker died running the job ({exc})"))
                else:
                    out.append(Outcome(job_id, "error", duration_s=dt, permanent=_is_permanent(exc),
                                       error=f"{type(exc).__name__}: {exc}"))
            elif fut.status in ("cancelled", "lost"):
                out.append(Outcome(job_id, "crashed", duration_s=dt,
                                   error=f"Dask task {fut.status} (scheduler restarted or unreachable)"))
            elif dt > self.job_timeout_s:
                fut.cancel()
                out.append(Outcome(job_id, "timeout", duration_s=dt,
                                   error=f"job exceeded the time limit of {self.job_timeout_s:g} s; "
                                         "Dask task cancelled"))
            else:
                continue
            del self._inflight[job_id]
        return out

    def healthy(self) -> bool:
        if self.client is not None and self.client.status not in ("running", "connecting"):
            self.broken_reason = self.broken_reason or f"Dask client {self.client.status}"
        return self.broken_reason is None


def run_executor(spec: str, payload):
    """The Dask task: load the executor named by ``spec`` on the worker and run the job."""
    return resolve_task(spec).run(payload)


def make_pool(daemon_cfg):
    """The daemon's pool for a :class:`~dsa110_contimg.service.config.DaemonConfig`:
    :class:`DaskPool` on ``dask_scheduler`` when set, else the local :class:`WorkerPool`."""
    from dsa110_contimg.service.pool import WorkerPool

    if daemon_cfg.dask_scheduler:
        return DaskPool(daemon_cfg.dask_scheduler, daemon_cfg.task, job_timeout_s=daemon_cfg.job_timeout_s)
    return WorkerPool(daemon_cfg.workers, daemon_cfg.task, job_timeout_s=daemon_cfg.job_timeout_s,
                      memory_limit_mb=daemon_cfg.worker_memory_limit_mb)
