"""The durable job queue: batch jobs in the products database.

A job is one row of ``batch_jobs`` with its items (``batch_job_items``, one per
image). Life cycle::

    pending --claim--> running --complete--> done
                         |  \\--fail(permanent)--> failed
                         |   \\--fail(retryable)--> pending (back-off) ... --> dead
                         \\--lease expires (worker/daemon killed)--> pending (reaper)

* Claims are atomic: one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1)
  RETURNING`` inside ``BEGIN IMMEDIATE`` on SQLite (``FOR UPDATE SKIP LOCKED``
  on PostgreSQL), so two daemons on one database never run the same job.
* Every claim takes a lease (``lease_owner``, ``lease_until``); a running job
  extends it with :meth:`JobQueue.heartbeat`. Every write after the claim (job
  state, item rows, :meth:`JobQueue.fence` inside the result transaction) is
  fenced on the owner: a worker that lost its lease cannot overwrite a newer
  owner's result (:class:`LeaseLost`).
* Cancellation is a flag (``cancel_requested``), not an error string: a
  cancelled job is never retried, whatever its worker reports afterwards.
* A lease that expires (the daemon holding it died: its workers die with it)
  does not count the attempt; it counts an ``interruption`` instead, and only
  ``max_interruptions`` of those make a job ``dead`` (a file that kills the
  daemon itself cannot loop forever).
* Retryable failures back off exponentially with jitter; after
  ``max_attempts`` claims a job is ``dead`` and waits for ``retry``.
* Enqueue is idempotent on ``idempotency_key`` (the daemon uses
  ``path:size:mtime_ns``, one job per file version).

This module holds the producer and worker side (enqueue, claims, leases, settling);
the operator's actions (retry, requeue, cancel, acknowledge) are in
:mod:`~dsa110_contimg.store.job_actions` and the reads in
:mod:`~dsa110_contimg.store.job_queries`, both mixed into :class:`JobQueue`.

Timestamps are Unix seconds. The clock is injectable for tests.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.core.paths import printable
from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.job_actions import JobActions, settle_cancelled
from dsa110_contimg.store.job_queries import JobQueries
from dsa110_contimg.store.retry import with_retry  # noqa: F401 - re-exported
from dsa110_contimg.store.schema import batch_job_items, batch_jobs


def default_owner() -> str:
    """A lease owner id unique to this process: ``host:pid:uuid8``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(StoreError):
    """A write was refused: this worker no longer holds the job's lease."""

    def __init__(self, job_id: int, owner: str):
        super().__init__(f"job {job_id}: lease no longer held by {owner} (taken over, cancelled "
                         "or expired); write refused")
        self.job_id, self.owner = job_id, owner


@dataclass(frozen=True)
class JobItem:
    """One image of a batch job."""

    id: int
    fits_path: str
    kind: str
    data_id: str | None
    status: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job this process holds the lease on."""

    id: int
    type: str
    params: dict
    data_id: str | None
    attempts: int
    max_attempts: int
    lease_owner: str
    items: tuple[JobItem, ...] = field(default_factory=tuple)


def insert_job(conn, params: dict, items, *, now: float, data_id: str | None = None,
               origin: str = "api", job_type: str = "photometry",
               idempotency_key: str | None = None, max_attempts: int = 3) -> int:
    """Insert a pending job and its items ``(fits_path, kind, data_id)`` on ``conn``, inside
    the caller's transaction (a step queues follow-up work atomically with its results).
    Returns the job id."""
    items = list(items)
    job_id = conn.execute(batch_jobs.insert().values(
        type=job_type, status="pending", origin=origin, idempotency_key=idempotency_key,
        data_id=data_id, params=json.dumps(params, sort_keys=True),
        total_items=len(items), completed_items=0, failed_items=0, attempts=0,
        max_attempts=int(max_attempts), not_before=0.0, created_at=now, updated_at=now,
    ).returning(batch_jobs.c.id)).scalar_one()
    if items:
        conn.execute(batch_job_items.insert(), [
            {"batch_id": job_id, "fits_path": str(p), "kind": k, "data_id": d,
             "status": "pending"} for p, k, d in items])
    return int(job_id)


class JobQueue(JobActions, JobQueries):
    """Queue operations on the ``batch_jobs`` table (operator actions and reads mixed in).

    Parameters
    ----------
    db : Database
        The opened products database.
    owner : str, optional
        Lease owner id (default: :func:`default_owner`).
    lease_s : float
        Lease length; a job whose lease expires is handed to another worker.
    backoff_base_s, backoff_cap_s : float
        Retry delay ``min(cap, base * 2**(attempts-1)) * U(0.5, 1)``.
    max_interruptions : int
        Lease expiries (daemon deaths) a job survives before it is ``dead``.
    clock : callable
        Returns the current Unix time (injectable in tests).
    """

    def __init__(self, db: Database, *, owner: str | None = None, lease_s: float = 300.0,
                 backoff_base_s: float = 5.0, backoff_cap_s: float = 600.0,
                 max_interruptions: int = 10, clock: Callable[[], float] = time.time):
        self.db = db
        self.owner = owner or default_owner()
        self.lease_s = float(lease_s)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_cap_s = float(backoff_cap_s)
        self.max_interruptions = int(max_interruptions)
        self.clock = clock

    # -- producing ---------------------------------------------------------------
    def enqueue(self, params: dict, items: Iterable[tuple[str, str, str | None]], *,
                data_id: str | None = None, origin: str = "api", job_type: str = "photometry",
                idempotency_key: str | None = None, max_attempts: int = 3) -> tuple[int, bool]:
        """Add a job with its items ``(fits_path, kind, data_id)``.

        Returns ``(job_id, created)``; with an ``idempotency_key`` already
        present, the existing job id and ``False``.
        """
        items = list(items)
        now = self.clock()

        def _do():
            with self.db.engine.begin() as conn:
                if idempotency_key is not None:
                    existing = conn.execute(sa.select(batch_jobs.c.id).where(
                        batch_jobs.c.idempotency_key == idempotency_key)).scalar()
                    if existing is not None:
                        return int(existing), False
                return insert_job(conn, params, items, now=now, data_id=data_id, origin=origin,
                                  job_type=job_type, idempotency_key=idempotency_key,
                                  max_attempts=max_attempts), True

        try:
            return with_retry(_do)
        except IntegrityError:
            # lost an enqueue race on the idempotency key: the other insert won
            with self.db.engine.connect() as conn:
                existing = conn.execute(sa.select(batch_jobs.c.id).where(
                    batch_jobs.c.idempotency_key == idempotency_key)).scalar()
            if existing is None:
                raise
            return int(existing), False

    # -- consuming ---------------------------------------------------------------
    def claim(self, *, job_type: str = "photometry") -> ClaimedJob | None:
        """Atomically take the oldest due pending job, or return None."""
        now = self.clock()
        due = (sa.select(batch_jobs.c.id)
               .where(batch_jobs.c.status == "pending", batch_jobs.c.not_before <= now,
                      batch_jobs.c.type == job_type)
               .order_by(batch_jobs.c.id).limit(1)
               .with_for_update(skip_locked=True).scalar_subquery())
        stmt = (batch_jobs.update().where(batch_jobs.c.id == due)
                .values(status="running", lease_owner=self.owner, lease_until=now + self.lease_s,
                        attempts=batch_jobs.c.attempts + 1, updated_at=now,
                        started_at=sa.func.coalesce(batch_jobs.c.started_at, now))
                .returning(batch_jobs.c.id, batch_jobs.c.type, batch_jobs.c.params,
                           batch_jobs.c.data_id, batch_jobs.c.attempts, batch_jobs.c.max_attempts))

        def _do():
            with self.db.engine.begin() as conn:
                row = conn.execute(stmt).first()
                if row is None:
                    return None
                items = conn.execute(
                    sa.select(batch_job_items.c.id, batch_job_items.c.fits_path,
                              batch_job_items.c.kind, batch_job_items.c.data_id,
                              batch_job_items.c.status)
                    .where(batch_job_items.c.batch_id == row.id).order_by(batch_job_items.c.id)).all()
                return ClaimedJob(int(row.id), row.type, json.loads(row.params), row.data_id,
                                  int(row.attempts), int(row.max_attempts), self.owner,
                                  tuple(JobItem(int(i.id), i.fits_path, i.kind, i.data_id, i.status)
                                        for i in items))

        return with_retry(_do)

    def _held(self, job_id: int, owner: str):
        return sa.and_(batch_jobs.c.id == job_id, batch_jobs.c.lease_owner == owner,
                       batch_jobs.c.status == "running")

    def _fenced(self, job_id: int, values: dict, *, owner: str | None = None) -> bool:
        owner = owner or self.owner

        def _do():
            with self.db.engine.begin() as conn:
                res = conn.execute(batch_jobs.update().where(self._held(job_id, owner))
                                   .values(updated_at=self.clock(), **values))
                return res.rowcount == 1

        return with_retry(_do)

    def fence(self, conn, job_id: int, *, owner: str | None = None) -> None:
        """Inside a caller's write transaction: assert this owner still holds the lease.

        Touches the job row (``UPDATE ... WHERE lease_owner = owner``), which also takes
        the row's write lock until the caller commits, so the check and the caller's
        writes are atomic. Raises :class:`LeaseLost` (the caller's transaction rolls back).
        """
        owner = owner or self.owner
        res = conn.execute(batch_jobs.update().where(self._held(job_id, owner))
                           .values(updated_at=self.clock()))
        if res.rowcount != 1:
            raise LeaseLost(job_id, owner)

    def heartbeat(self, job_id: int, *, owner: str | None = None) -> bool:
        """Extend the lease of a running job; False if the lease was lost."""
        return self._fenced(job_id, {"lease_until": self.clock() + self.lease_s}, owner=owner)

    def complete(self, job_id: int, *, owner: str | None = None, error: str | None = None) -> bool:
        """Mark a running job ``done`` (all items settled). False if the lease was lost.

        Item counters are recomputed from the items; a job whose every item
        failed ends ``failed`` with ``error``.
        """
        now = self.clock()
        with self.db.engine.connect() as conn:
            counts = dict(conn.execute(
                sa.select(batch_job_items.c.status, sa.func.count())
                .where(batch_job_items.c.batch_id == job_id)
                .group_by(batch_job_items.c.status)).all())
            conn.rollback()
        done, failed = counts.get("done", 0), counts.get("failed", 0)
        status = "failed" if failed and not done else "done"
        return self._fenced(job_id, {
            "status": status, "completed_items": done, "failed_items": failed,
            "finished_at": now, "lease_owner": None, "lease_until": None, "error": _storable(error),
        }, owner=owner)

    def fail(self, job_id: int, error: str, *, retryable: bool, owner: str | None = None) -> str | None:
        """Record a failed attempt. Returns the new state (``pending``, ``dead``
        or ``failed``), or None if the lease was lost."""
        now = self.clock()
        error = _storable(error)

        def _do():
            with self.db.engine.begin() as conn:
                row = conn.execute(sa.select(batch_jobs.c.attempts, batch_jobs.c.max_attempts,
                                             batch_jobs.c.cancel_requested).where(
                    self._held(job_id, owner or self.owner))).first()
                if row is None:
                    return None
                if row.cancel_requested:  # never retried once an operator cancelled it
                    settle_cancelled(conn, job_id, now, error)
                    return "cancelled"
                state, not_before = self._after_failure(row.attempts, row.max_attempts, retryable, now)
                conn.execute(batch_jobs.update().where(batch_jobs.c.id == job_id).values(
                    status=state, not_before=not_before, error=error, lease_owner=None,
                    lease_until=None, updated_at=now,
                    finished_at=now if state in ("failed", "dead") else None))
                if state in ("failed", "dead"):
                    conn.execute(batch_job_items.update().where(
                        batch_job_items.c.batch_id == job_id,
                        batch_job_items.c.status.in_(("pending", "running"))).values(
                        status="failed", error=error, completed_at=now))
                return state

        return with_retry(_do)

    def _after_failure(self, attempts: int, max_attempts: int, retryable: bool, now: float):
        if not retryable:
            return "failed", 0.0
        if attempts >= max_attempts:
            return "dead", 0.0
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(attempts - 1, 0))
        return "pending", now + delay * random.uniform(0.5, 1.0)

    def release(self, job_id: int, *, owner: str | None = None) -> bool:
        """Hand a running job back unfinished (graceful stop): ``pending`` again,
        this attempt not counted (``cancelled`` when a cancel was requested)."""
        owner = owner or self.owner

        def _cancel():
            with self.db.engine.begin() as conn:
                row = conn.execute(sa.select(batch_jobs.c.cancel_requested)
                                   .where(self._held(job_id, owner))).first()
                if row is not None and row.cancel_requested:
                    settle_cancelled(conn, job_id, self.clock(), None)
                    return True
                return False

        if with_retry(_cancel):
            return True
        return self._fenced(job_id, {"status": "pending", "lease_owner": None, "lease_until": None,
                                     "attempts": sa.case((batch_jobs.c.attempts > 0,
                                                          batch_jobs.c.attempts - 1), else_=0),
                                     "not_before": 0.0}, owner=owner)

    def reap_expired(self, *, owners_gone: Iterable[str] = ()) -> dict[str, int]:
        """Re-queue running jobs whose lease expired (or whose owner is known dead).

        Returns counts ``{"pending": n, "dead": m, "cancelled": c}``. The lost
        attempt is not counted (the daemon holding it died; a worker that dies
        under a live daemon is reported by the pool and does count); it counts
        as an interruption instead, and a job interrupted ``max_interruptions``
        times becomes ``dead``. A job whose cancellation was requested ends
        ``cancelled``.
        """
        now = self.clock()
        gone = list(owners_gone)
        cond = batch_jobs.c.lease_until < now
        if gone:
            cond = sa.or_(cond, batch_jobs.c.lease_owner.in_(gone))
        running = sa.and_(batch_jobs.c.status == "running", cond)

        def _do():
            with self.db.engine.begin() as conn:
                ids = [r[0] for r in conn.execute(sa.select(batch_jobs.c.id).where(
                    running, batch_jobs.c.cancel_requested)).all()]
                for jid in ids:
                    settle_cancelled(conn, jid, now, None)
                dead = conn.execute(batch_jobs.update().where(
                    running, batch_jobs.c.interruptions + 1 >= self.max_interruptions).values(
                    status="dead", lease_owner=None, lease_until=None, updated_at=now,
                    finished_at=now, interruptions=batch_jobs.c.interruptions + 1,
                    error=f"interrupted {self.max_interruptions} times by the death of the daemon "
                          "running it (lease expired); not retried automatically")).rowcount
                if dead:
                    conn.execute(batch_job_items.update().where(
                        batch_job_items.c.batch_id.in_(sa.select(batch_jobs.c.id).where(
                            batch_jobs.c.status == "dead", batch_jobs.c.finished_at == now)),
                        batch_job_items.c.status.in_(("pending", "running"))).values(
                        status="failed", error="job dead: interrupted too often", completed_at=now))
                pending = conn.execute(batch_jobs.update().where(running).values(
                    status="pending", lease_owner=None, lease_until=None, updated_at=now,
                    attempts=sa.case((batch_jobs.c.attempts > 0, batch_jobs.c.attempts - 1), else_=0),
                    interruptions=batch_jobs.c.interruptions + 1,
                    not_before=now)).rowcount
                conn.execute(batch_job_items.update().where(
                    batch_job_items.c.status == "running",
                    batch_job_items.c.batch_id.in_(sa.select(batch_jobs.c.id).where(
                        batch_jobs.c.status == "pending"))).values(status="pending"))
                return {"pending": pending, "dead": dead, "cancelled": len(ids)}

        return with_retry(_do)

    # -- items ------------------------------------------------------------------
    def update_item(self, item_id: int, status: str, *, error: str | None = None,
                    image_id: int | None = None, n_measurements: int | None = None,
                    owner: str | None = None) -> bool:
        """Record the outcome of one image of a job, fenced on the job's lease.

        Returns False (nothing written) when ``owner`` (default this queue's
        owner) no longer holds the lease of the item's job.
        """
        owner = owner or self.owner
        now = self.clock()
        values: dict[str, Any] = {"status": status, "error": _storable(error)}
        if status == "running":
            values["started_at"] = now
        else:
            values["completed_at"] = now
        if image_id is not None:
            values["image_id"] = image_id
        if n_measurements is not None:
            values["n_measurements"] = n_measurements

        held = sa.exists().where(batch_jobs.c.id == batch_job_items.c.batch_id,
                                 batch_jobs.c.lease_owner == owner, batch_jobs.c.status == "running")

        def _do():
            with self.db.engine.begin() as conn:
                n = conn.execute(batch_job_items.update().where(
                    batch_job_items.c.id == item_id, held).values(**values)).rowcount
                if n != 1:
                    return False
                if status in ("done", "failed"):
                    col = batch_jobs.c.completed_items if status == "done" else batch_jobs.c.failed_items
                    conn.execute(batch_jobs.update().where(batch_jobs.c.id == sa.select(
                        batch_job_items.c.batch_id).where(batch_job_items.c.id == item_id)
                        .scalar_subquery()).values({col: col + 1, "updated_at": now}))
                return True

        return with_retry(_do)


def _storable(text: str | None) -> str | None:
    """An error text any database can hold: a reason naming a file whose name is not
    valid UTF-8 carries surrogate escapes, rendered as ``\\xNN``."""
    return None if text is None else printable(str(text))
