"""Operator actions on the job queue: retry, requeue, cancel, acknowledge.

These are what ``contimg-photometry jobs retry|requeue|cancel|ack`` do; they are
mixed into :class:`~dsa110_contimg.store.queue.JobQueue` (which owns the claims and
leases) so one object steers the queue. Each action is one short transaction and
returns whether it changed the job (False: the job is not in a state it applies to).

* ``retry``: a ``failed``, ``dead`` or ``cancelled`` job back to ``pending`` with fresh
  attempts; its finished items are kept.
* ``requeue``: a finished job (``done`` too) back to ``pending`` with every item pending,
  so its images are measured again.
* ``cancel``: a ``pending`` job at once, a ``running`` one by flag (its worker stops
  between images; whatever it reports afterwards, the job ends ``cancelled``).
* ``ack``: an operator has seen a ``failed`` or ``dead`` job; it stays listed (and can
  still be retried) but no longer makes ``status`` degraded. A job that fails again
  after a retry or requeue is unacknowledged again.

Times are Unix seconds (the queue's injectable clock).
"""

from __future__ import annotations

import sqlalchemy as sa

from dsa110_contimg.store.engine import read_connection
from dsa110_contimg.store.retry import with_retry
from dsa110_contimg.store.schema import batch_job_items, batch_jobs

#: States ``retry`` starts again (finished items kept).
RETRYABLE = ("dead", "failed", "cancelled")
#: States ``requeue`` starts again (every item measured again).
REQUEUEABLE = ("done", "failed", "dead", "cancelled")
#: States an operator acknowledges (the ones that make ``status`` degraded).
ACKNOWLEDGEABLE = ("failed", "dead")


def settle_cancelled(conn, job_id: int, now: float, error: str | None) -> None:
    """Inside a transaction: end a job ``cancelled`` (its unfinished items too), keeping the
    last attempt's error after the operator's reason."""
    conn.execute(batch_jobs.update().where(batch_jobs.c.id == job_id).values(
        status="cancelled", lease_owner=None, lease_until=None, updated_at=now, finished_at=now,
        error=("cancelled by an operator" + (f"; last attempt: {error}" if error else ""))))
    conn.execute(batch_job_items.update().where(
        batch_job_items.c.batch_id == job_id,
        batch_job_items.c.status.in_(("pending", "running"))).values(status="cancelled"))


class JobActions:
    """The operator's actions and the cancel flag as the worker sees it (needs the queue's
    ``db``, ``owner``, ``clock`` and lease condition ``_held``)."""

    def retry(self, job_id: int) -> bool:
        """Put a ``dead``, ``failed`` or ``cancelled`` job back to ``pending`` with fresh attempts."""
        now = self.clock()

        def _do():
            with self.db.engine.begin() as conn:
                n = conn.execute(batch_jobs.update().where(
                    batch_jobs.c.id == job_id, batch_jobs.c.status.in_(RETRYABLE)).values(
                    status="pending", attempts=0, interruptions=0, not_before=0.0, error=None,
                    updated_at=now, finished_at=None, cancel_requested=False,
                    acknowledged_at=None)).rowcount
                if n:
                    conn.execute(batch_job_items.update().where(
                        batch_job_items.c.batch_id == job_id,
                        batch_job_items.c.status != "done").values(status="pending", error=None))
                return n == 1

        return with_retry(_do)

    def requeue(self, job_id: int) -> bool:
        """Put a finished job back to ``pending`` (every item, attempts 0): its images are
        measured again and the new measurements replace the earlier ones."""
        now = self.clock()

        def _do():
            with self.db.engine.begin() as conn:
                n = conn.execute(batch_jobs.update().where(
                    batch_jobs.c.id == job_id, batch_jobs.c.status.in_(REQUEUEABLE)).values(
                    status="pending", attempts=0, not_before=0.0, error=None, updated_at=now,
                    started_at=None, finished_at=None, completed_items=0, failed_items=0,
                    lease_owner=None, lease_until=None, acknowledged_at=None)).rowcount
                if n:
                    conn.execute(batch_job_items.update().where(batch_job_items.c.batch_id == job_id)
                                 .values(status="pending", error=None))
                return n == 1

        return with_retry(_do)

    def cancel(self, job_id: int) -> bool:
        """Cancel a ``pending`` job at once; flag a ``running`` one (``cancel_requested``).

        A running job's executor sees the flag between images (and through its
        :class:`~dsa110_contimg.service.runtime.JobContext`); whatever its worker
        reports afterwards (success, retryable failure, crash, lease expiry), the
        job ends ``cancelled`` and never runs again, unless an operator retries it.
        """
        now = self.clock()

        def _do():
            with self.db.engine.begin() as conn:
                n = conn.execute(batch_jobs.update().where(
                    batch_jobs.c.id == job_id, batch_jobs.c.status.in_(("pending", "running"))).values(
                    status=sa.case((batch_jobs.c.status == "pending", "cancelled"),
                                   else_=batch_jobs.c.status),
                    cancel_requested=True,
                    finished_at=sa.case((batch_jobs.c.status == "pending", now),
                                        else_=batch_jobs.c.finished_at),
                    updated_at=now)).rowcount
                conn.execute(batch_job_items.update().where(
                    batch_job_items.c.batch_id == job_id,
                    batch_job_items.c.status == "pending").values(status="cancelled"))
                return n == 1

        return with_retry(_do)

    def cancel_requested(self, job_id: int) -> bool:
        """True when an operator asked to cancel this job (read by the worker between images)."""
        with read_connection(self.db.engine) as conn:
            flag = conn.execute(sa.select(batch_jobs.c.cancel_requested)
                                .where(batch_jobs.c.id == job_id)).scalar()
        return bool(flag)

    def finish_cancelled(self, job_id: int, *, owner: str | None = None) -> bool:
        """Settle a running job whose cancellation was requested (fenced on the owner)."""
        owner = owner or self.owner

        def _do():
            with self.db.engine.begin() as conn:
                if conn.execute(sa.select(batch_jobs.c.id).where(self._held(job_id, owner))).first() is None:
                    return False
                settle_cancelled(conn, job_id, self.clock(), None)
                return True

        return with_retry(_do)

    def ack(self, job_id: int | None = None) -> list[int]:
        """Acknowledge one ``failed``/``dead`` job (``job_id``), or every unacknowledged one
        (``None``). Returns the ids acknowledged now (an already acknowledged job is not
        listed again)."""
        now = self.clock()
        bj = batch_jobs.c
        which = sa.and_(bj.status.in_(ACKNOWLEDGEABLE), bj.acknowledged_at.is_(None))
        if job_id is not None:
            which = sa.and_(which, bj.id == job_id)

        def _do():
            with self.db.engine.begin() as conn:
                ids = [int(r[0]) for r in conn.execute(
                    batch_jobs.update().where(which).values(acknowledged_at=now)
                    .returning(bj.id)).all()]
                return sorted(ids)

        return with_retry(_do)
