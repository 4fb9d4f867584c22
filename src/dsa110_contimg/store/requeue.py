"""Re-measuring a finished job: ``contimg-photometry jobs requeue ID``.

:func:`requeue_job` puts a finished job (``done``, ``failed``, ``dead`` or
``cancelled``) back to ``pending`` with fresh attempts and every item pending,
so the daemon (or ``contimg-photometry worker``) measures its images again; the
new measurements replace the earlier ones of the same image path. A pending or
running job is left alone. :func:`list_jobs` is the read-only listing behind
``jobs list`` (path, state, attempts, times, reason).
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.store.schema import JOB_STATES, batch_job_items, batch_jobs

#: States from which ``requeue`` starts a job again.
REQUEUEABLE = ("done", "failed", "dead", "cancelled")


def requeue_job(db, job_id: int, *, now: float | None = None) -> bool:
    """Put a finished job back to ``pending`` (all items, attempts 0). True when requeued."""
    now = time.time() if now is None else now
    with db.engine.begin() as conn:
        n = conn.execute(batch_jobs.update().where(
            batch_jobs.c.id == job_id, batch_jobs.c.status.in_(REQUEUEABLE)).values(
            status="pending", attempts=0, not_before=0.0, error=None, updated_at=now,
            started_at=None, finished_at=None, completed_items=0, failed_items=0,
            lease_owner=None, lease_until=None)).rowcount
        if n:
            conn.execute(batch_job_items.update().where(batch_job_items.c.batch_id == job_id)
                         .values(status="pending", error=None))
    return n == 1


def list_jobs(db, *, state: str | None = None, limit: int = 50) -> list[dict]:
    """Most recent jobs first with the path of their first item and their item count.

    ``limit`` 0 (or negative) lists every job. Times are Unix seconds.
    """
    if state is not None and state not in JOB_STATES:
        raise StoreError(f"unknown job state {state!r}; expected one of {', '.join(JOB_STATES)}")
    first_path = (sa.select(sa.func.min(batch_job_items.c.fits_path))
                  .where(batch_job_items.c.batch_id == batch_jobs.c.id).scalar_subquery())
    q = sa.select(batch_jobs, first_path.label("path")).order_by(batch_jobs.c.id.desc())
    if state is not None:
        q = q.where(batch_jobs.c.status == state)
    if limit and limit > 0:
        q = q.limit(int(limit))
    with db.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings().all()]
        ids = [r["id"] for r in rows]
        paths: dict[int, list[str]] = {}
        for i in range(0, len(ids), 500):   # bounded IN lists
            for bid, path in conn.execute(
                    sa.select(batch_job_items.c.batch_id, batch_job_items.c.fits_path)
                    .where(batch_job_items.c.batch_id.in_(ids[i:i + 500]))
                    .order_by(batch_job_items.c.id)):
                paths.setdefault(bid, []).append(path)
        conn.rollback()
    for r in rows:
        r["paths"] = paths.get(r["id"], [])
    return rows
