"""The read-only queries behind ``status`` (the service layer turns them into a verdict).

:func:`read_status_counts` returns plain Python values (ints, lists of dicts). The counts
come from the maintained counters (:mod:`dsa110_contimg.store.counters`), the last hour's
jobs from the ``batch_jobs (status, finished_at)`` index, the lists from indexed orderings
with a limit: nothing it reads grows with the tables. It writes only to compact the
counters, when more than :data:`~dsa110_contimg.store.counters.COMPACT_ABOVE` deltas wait
and the database is writable.
"""

from __future__ import annotations

import sqlalchemy as sa

from dsa110_contimg.store import counters
from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.files import DECISIONS, heartbeat_rows, running_jobs_by_owner
from dsa110_contimg.store.schema import batch_job_items, batch_jobs, ese_candidates, images


def _first_path():
    return (sa.select(sa.func.min(batch_job_items.c.fits_path))
            .where(batch_job_items.c.batch_id == batch_jobs.c.id).scalar_subquery())


def _count(conn, table, *where) -> int:
    q = sa.select(sa.func.count()).select_from(table)
    if where:
        q = q.where(*where)
    return int(conn.execute(q).scalar() or 0)


def job_counts(conn) -> dict[str, int]:
    """Number of jobs by status (only the statuses present), from the maintained counters."""
    return counters.read_counts(conn).jobs()


def oldest_pending_at(conn) -> float | None:
    """Creation time (Unix s) of the oldest pending job, None when none is pending."""
    bj = batch_jobs.c
    v = conn.execute(sa.select(sa.func.min(bj.created_at)).where(bj.status == "pending")).scalar()
    return None if v is None else float(v)


def last_success_at(conn) -> float | None:
    """Finish time (Unix s) of the latest job done, None when none is."""
    bj = batch_jobs.c
    v = conn.execute(sa.select(sa.func.max(bj.finished_at)).where(bj.status == "done")).scalar()
    return None if v is None else float(v)


def active_candidates_by_confidence(conn) -> dict[str, int]:
    """Active ESE candidates by confidence level."""
    ec = ese_candidates.c
    return {str(k): int(v) for k, v in conn.execute(
        sa.select(ec.confidence, sa.func.count()).where(ec.status == "active")
        .group_by(ec.confidence)).all()}


from dsa110_contimg.store.detections import detection_counts  # noqa: E402


def read_status_counts(db: Database, *, now: float, n_failures: int = 5) -> dict:
    """Heartbeats, queue and product counts for ``status`` (``now``: Unix seconds).

    Keys: ``heartbeats`` (:func:`~dsa110_contimg.store.files.heartbeat_rows`),
    ``job_counts`` (status -> n), ``oldest_pending_at`` (Unix s or None),
    ``done_last_hour``, ``failed_last_hour`` (failed or dead), ``unacknowledged``
    (``failed``/``dead`` -> jobs no operator acknowledged), ``running`` and ``failures``
    (the latest ``n_failures`` unacknowledged failed/dead jobs; dicts with the job's first
    file as ``path``), ``file_counts``,
    ``images``, ``measurements``, ``ese_active``, ``qc_counts`` (qc_status -> n),
    ``qc_failed`` (latest ``n_failures`` QC-failed images), ``norm_failed``,
    ``norm_not_requested``, ``norm_ensemble``, ``norm_reasons``, ``running_by_owner``,
    ``transients`` (:func:`~dsa110_contimg.store.detections.detection_counts`).
    """
    got = counters.counts(db)
    im = got.images()
    with db.engine.connect() as conn:
        bj = batch_jobs.c
        out = {
            "heartbeats": heartbeat_rows(conn),
            "job_counts": got.jobs(),
            "oldest_pending_at": oldest_pending_at(conn),
            "done_last_hour": _count(conn, batch_jobs, bj.status == "done",
                                     bj.finished_at >= now - 3600),
            "failed_last_hour": _count(conn, batch_jobs, bj.status.in_(("failed", "dead")),
                                       bj.finished_at >= now - 3600),
            "unacknowledged": got.unacknowledged(),
            "running": [dict(r) for r in conn.execute(
                sa.select(bj.id, bj.attempts, bj.lease_owner, bj.lease_until, bj.started_at,
                          _first_path().label("path"))
                .where(bj.status == "running").order_by(bj.id)).mappings()],
            "failures": [dict(r) for r in conn.execute(
                sa.select(bj.id, bj.status, bj.error, bj.attempts, bj.finished_at,
                          _first_path().label("path"))
                .where(bj.status.in_(("failed", "dead")), bj.acknowledged_at.is_(None))
                .order_by(bj.updated_at.desc()).limit(n_failures)).mappings()],
            "file_counts": {d: int(got.files().get(d, 0)) for d in DECISIONS},
            "images": im["images"],
            "measurements": im["measurements"],
            "ese_active": _count(conn, ese_candidates, ese_candidates.c.status == "active"),
            "transients": detection_counts(conn, got),
            "qc_counts": im["qc"],
            "qc_failed": [dict(r) for r in conn.execute(
                sa.select(images.c.path, images.c.mjd, images.c.qc_reasons)
                .where(images.c.qc_status == "failed")
                .order_by(images.c.measured_at.desc()).limit(n_failures)).mappings()],
            "norm_failed": im["norm_failed"],
            "norm_reasons": [{"reason": k, "images": v} for k, v in
                             sorted(im["norm_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))],
            "norm_not_requested": im["norm_not_requested"],
            "duplicates": im["duplicates"],
            "excluded": [dict(r) for r in conn.execute(
                sa.select(images.c.id, images.c.path, images.c.excluded_reason)
                .where(images.c.excluded == sa.true())
                .order_by(images.c.excluded_at.desc()).limit(n_failures)).mappings()],
            "excluded_count": im["excluded"],
            "norm_ensemble": im["norm_ensemble"],
            "running_by_owner": running_jobs_by_owner(conn),
        }
        conn.rollback()
    return out


__all__ = ["read_status_counts", "job_counts", "oldest_pending_at", "last_success_at",
           "active_candidates_by_confidence"]
