"""Between the job queue and the worker pool: claim, settle, keep leases, hand back.

:class:`Dispatcher` claims due jobs while workers are idle (at once after a local
enqueue or a finished job, else polling the queue every second), settles each
finished job in the queue (done / failed / retried / dead, from the worker's
:class:`~dsa110_contimg.service.runtime.JobSummary` or its error), extends the leases
of running jobs every ``lease_s / 4``, and at shutdown hands the unfinished jobs back
to ``pending`` without counting the attempt.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import structlog

from dsa110_contimg.service.pool import Outcome
from dsa110_contimg.service.runtime import JobContext, JobSummary, settle, settle_error
from dsa110_contimg.store.queue import JobQueue

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Settled job state -> the counter it increments.
_SETTLED = {"done": "done", "failed": "failed", "dead": "dead", "pending": "retried"}


class Dispatcher:
    """Claims jobs for the pool and settles what it finishes.

    Parameters
    ----------
    queue : JobQueue
        The job queue (this daemon's owner and lease).
    pool : WorkerPool or DaskPool
        Runs the jobs (``idle``, ``submit``, ``poll``, ``healthy``).
    paths : PathsConfig
        Databases and catalogue directory handed to each job.
    on_settled : callable
        ``on_settled(state=, worker_status=, result=, error=, duration_s=)`` after each
        settled job (:meth:`Metrics.on_settled`).
    on_finished : callable
        Called whenever a job finished (the alert thread is woken).
    """

    def __init__(self, queue: JobQueue, pool, *, paths, on_settled: Callable[..., None],
                 on_finished: Callable[[], None] = lambda: None):
        self.queue = queue
        self.pool = pool
        self.paths = paths
        self.on_settled = on_settled
        self.on_finished = on_finished
        self.inflight: dict[int, tuple] = {}     # job id -> (claimed job, wall time started)
        self.stats = dict.fromkeys(("claimed", "done", "failed", "retried", "dead"), 0)
        now = time.monotonic()
        self._next_claim, self._next_lease = now, now + queue.lease_s / 4

    def claim_now(self) -> None:
        """A job was queued here, or a worker is free: claim in this tick."""
        self._next_claim = 0.0

    def dispatch(self) -> None:
        """Claim jobs while workers are idle."""
        if not self.pool.healthy() or time.monotonic() < self._next_claim:
            return
        while self.pool.idle() > 0:
            job = self.queue.claim()
            if job is None:   # nothing due: poll the queue again in 1 s (or at once, claim_now)
                self._next_claim = time.monotonic() + 1.0
                return
            ctx = JobContext.from_claim(job, products_db=self.paths.products_db,
                                        registry_db=self.paths.registry_db,
                                        catalog_dir=self.paths.catalog_dir, lease_s=self.queue.lease_s)
            self.pool.submit(job.id, ctx)
            self.inflight[job.id] = (job, time.time())
            self.stats["claimed"] += 1
            log.info("job_started", job_id=job.id, attempt=job.attempts,
                     path=ctx.items[0]["fits_path"] if ctx.items else None, n_items=len(ctx.items))

    def settle_finished(self, wait_s: float) -> None:
        """Settle the jobs the pool finished (waiting up to ``wait_s``); extend running leases."""
        for outcome in self.pool.poll(wait_s):
            self._settle(outcome)
        if time.monotonic() >= self._next_lease:
            for job_id in list(self.inflight):
                if not self.queue.heartbeat(job_id):
                    log.warning("lease_lost", job_id=job_id)
            self._next_lease = time.monotonic() + self.queue.lease_s / 4

    def _settle(self, o: Outcome) -> None:
        self.claim_now()      # a worker is free
        self.on_finished()    # the job may have recorded alerts
        entry = self.inflight.pop(o.job_id, None)
        if entry is None:
            return
        job, started = entry
        error, durations, result = o.error, None, None
        if o.status == "ok":
            try:
                summary = JobSummary.coerce(o.result)
            except TypeError as exc:
                summary = JobSummary(failed=1, permanent=False, error=str(exc))
            state = settle(self.queue, o.job_id, summary)
            error, durations, result = summary.error, summary.durations, dataclasses.asdict(summary)
        else:   # error; crashed or timeout: the worker died under a live daemon, the attempt counts
            state = settle_error(self.queue, o.job_id, o.error,
                                 permanent=o.permanent if o.status == "error" else False)
        if state in _SETTLED:
            self.stats[_SETTLED[state]] += 1
        self.on_settled(state=state, worker_status=o.status, result=result, error=error,
                        duration_s=o.duration_s)
        (log.info if state == "done" else log.warning)(
            "job_finished", job_id=o.job_id, path=job.items[0].fits_path if job.items else None,
            outcome=state, worker_status=o.status, attempt=job.attempts, duration_s=round(o.duration_s, 3),
            wall_s=round(time.time() - started, 3), error=error, durations=durations, exitcode=o.exitcode)

    def hand_back(self) -> int:
        """Release every unfinished job to ``pending`` (its workers are gone); the number."""
        n = 0
        for job_id, (job, _) in list(self.inflight.items()):
            del self.inflight[job_id]
            try:
                handed = self.queue.release(job_id)
            except Exception as exc:  # noqa: BLE001 - its lease expires; a later daemon reaps it
                handed = False
                log.error("hand_back_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            log.warning("job_handed_back", job_id=job_id, released=handed,
                        path=job.items[0].fits_path if job.items else None)
            n += 1
        return n


__all__ = ["Dispatcher"]
