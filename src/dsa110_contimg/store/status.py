"""The read-only queries behind ``status`` (the service layer turns them into a verdict).

:func:`read_status_counts` returns plain Python values (ints, lists of dicts). The counts
come from the maintained counters (:mod:`dsa110_contimg.store.counters`), the last hour's
jobs from the ``batch_jobs (status, finished_at)`` index, the lists from indexed orderings
with a limit: nothing it reads grows with the tables. It writes only to compact the
counters, when more than :data:`~dsa110_contimg.store.counters.COMPACT_ABOVE` deltas wait
and the database is writable.

The queue's unsettled states (pending, running, failed and dead not acknowledged) are a few
rows among the settled ``done`` ones. A job list is read only when the counters say it is
not empty, and its state filter is marked as matching few rows (:func:`few`): after
``ANALYZE`` SQLite's statistics hold only the average rows per ``status`` (nearly all the
table, all jobs being done), and without the mark it scans ``batch_jobs`` whole rather than
seek the state in its index. PostgreSQL's statistics know each state's frequency.
"""

from __future__ import annotations

import sqlalchemy as sa

from dsa110_contimg.store import counters
from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.files import DECISIONS, heartbeat_rows
from dsa110_contimg.store.schema import batch_job_items, batch_jobs, ese_candidates, images

#: the fraction of rows SQLite's planner is told a :func:`few` filter matches
FEW = "0.000001"


def few(conn, clause):
    """``clause`` marked for SQLite's planner as true of very few rows (``likelihood``), so
    it seeks the clause's index whatever ``ANALYZE`` recorded; unchanged elsewhere."""
    if conn.dialect.name == "sqlite":
        return sa.func.likelihood(clause, sa.literal_column(FEW))
    return clause


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
    v = conn.execute(sa.select(sa.func.min(bj.created_at))
                     .where(few(conn, bj.status == "pending"))).scalar()
    return None if v is None else float(v)


def running_jobs(conn) -> list[dict]:
    """The running jobs (id order), each with its first file as ``path``."""
    bj = batch_jobs.c
    return [dict(r) for r in conn.execute(
        sa.select(bj.id, bj.attempts, bj.lease_owner, bj.lease_until, bj.started_at,
                  _first_path().label("path"))
        .where(few(conn, bj.status == "running")).order_by(bj.id)).mappings()]


def unacknowledged_failures(conn, n: int) -> list[dict]:
    """The latest ``n`` failed or dead jobs no operator acknowledged (latest update first),
    each with its first file as ``path``."""
    bj = batch_jobs.c
    return [dict(r) for r in conn.execute(
        sa.select(bj.id, bj.status, bj.error, bj.attempts, bj.finished_at,
                  _first_path().label("path"))
        .where(few(conn, bj.status.in_(("failed", "dead"))), bj.acknowledged_at.is_(None))
        .order_by(bj.updated_at.desc()).limit(n)).mappings()]


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
    im, jobs, unack = got.images(), got.jobs(), got.unacknowledged()
    with db.engine.connect() as conn:
        bj = batch_jobs.c
        running = running_jobs(conn) if jobs.get("running") else []
        out = {
            "heartbeats": heartbeat_rows(conn),
            "job_counts": jobs,
            "oldest_pending_at": oldest_pending_at(conn) if jobs.get("pending") else None,
            "done_last_hour": _count(conn, batch_jobs, bj.status == "done",
                                     bj.finished_at >= now - 3600),
            "failed_last_hour": _count(conn, batch_jobs, bj.status.in_(("failed", "dead")),
                                       bj.finished_at >= now - 3600),
            "unacknowledged": unack,
            "running": running,
            "failures": unacknowledged_failures(conn, n_failures) if unack else [],
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
            "running_by_owner": _owners(running),
        }
        conn.rollback()
    return out


def _owners(running: list[dict]) -> dict[str, int]:
    """Running jobs per lease owner (one daemon process)."""
    out: dict[str, int] = {}
    for r in running:
        out[r["lease_owner"]] = out.get(r["lease_owner"], 0) + 1
    return out


__all__ = ["read_status_counts", "job_counts", "oldest_pending_at", "last_success_at",
           "active_candidates_by_confidence", "running_jobs",
           "unacknowledged_failures", "few"]
