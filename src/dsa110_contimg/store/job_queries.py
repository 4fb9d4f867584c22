"""Read-only queries on the job queue: counts by state, one job with its items, listings.

:class:`JobQueries` is mixed into :class:`~dsa110_contimg.store.queue.JobQueue`;
:func:`list_jobs` is the listing behind ``contimg-photometry jobs list`` (path, state,
attempts, times, reason). Times are Unix seconds.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.store.engine import read_connection
from dsa110_contimg.store.schema import JOB_STATES, batch_job_items, batch_jobs

#: Item paths read per statement when listing jobs (a bounded ``IN`` list).
_IDS_PER_QUERY = 500


def _check_state(state: str | None) -> None:
    if state is not None and state not in JOB_STATES:
        raise StoreError(f"unknown job state {state!r}; expected one of {', '.join(JOB_STATES)}")


class JobQueries:
    """Reads of the queue (needs ``self.db``)."""

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, 0 when none), from the
        maintained counters. A read that never waits for the write lock (safe from the
        health thread)."""
        from dsa110_contimg.store.counters import read_counts

        with read_connection(self.db.engine) as conn:
            rows = read_counts(conn).jobs()
        return {s: int(rows.get(s, 0)) for s in JOB_STATES}

    def get(self, job_id: int) -> dict | None:
        """A job as a dict with its ``items`` list, or None."""
        with read_connection(self.db.engine) as conn:
            job = conn.execute(sa.select(batch_jobs).where(batch_jobs.c.id == job_id)).mappings().first()
            if job is None:
                return None
            items = conn.execute(sa.select(batch_job_items).where(
                batch_job_items.c.batch_id == job_id).order_by(batch_job_items.c.id)).mappings().all()
        out = dict(job)
        out["params"] = json.loads(out["params"])
        out["items"] = [dict(i) for i in items]
        return out

    def list(self, *, state: str | None = None, limit: int = 50) -> list[dict]:
        """Most recent jobs first, optionally in one state."""
        _check_state(state)
        q = sa.select(batch_jobs).order_by(batch_jobs.c.id.desc()).limit(int(limit))
        if state is not None:
            q = q.where(batch_jobs.c.status == state)
        with read_connection(self.db.engine) as conn:
            rows = [dict(r) for r in conn.execute(q).mappings().all()]
        for r in rows:
            r["params"] = json.loads(r["params"])
        return rows


def list_jobs(db, *, state: str | None = None, limit: int = 50,
              unacknowledged: bool = False) -> list[dict]:
    """Most recent jobs first with every item's path (``paths``) and the first one (``path``).

    ``limit`` 0 (or negative) lists every job; ``unacknowledged`` keeps only failed and
    dead jobs no operator has acknowledged yet.
    """
    _check_state(state)
    first_path = (sa.select(sa.func.min(batch_job_items.c.fits_path))
                  .where(batch_job_items.c.batch_id == batch_jobs.c.id).scalar_subquery())
    q = sa.select(batch_jobs, first_path.label("path")).order_by(batch_jobs.c.id.desc())
    if state is not None:
        q = q.where(batch_jobs.c.status == state)
    if unacknowledged:
        q = q.where(batch_jobs.c.status.in_(("failed", "dead")), batch_jobs.c.acknowledged_at.is_(None))
    if limit and limit > 0:
        q = q.limit(int(limit))
    with read_connection(db.engine) as conn:
        rows = [dict(r) for r in conn.execute(q).mappings().all()]
        ids = [r["id"] for r in rows]
        paths: dict[int, list[str]] = {}
        for i in range(0, len(ids), _IDS_PER_QUERY):
            for bid, path in conn.execute(
                    sa.select(batch_job_items.c.batch_id, batch_job_items.c.fits_path)
                    .where(batch_job_items.c.batch_id.in_(ids[i:i + _IDS_PER_QUERY]))
                    .order_by(batch_job_items.c.id)):
                paths.setdefault(bid, []).append(path)
    for r in rows:
        r["paths"] = paths.get(r["id"], [])
    return rows
