"""The status counts computed the slow way (GROUP BY over the whole tables), to compare with
the maintained counters of store/counters.py."""

from __future__ import annotations

import sqlalchemy as sa


def _reason_class(reason) -> str:
    return "unknown" if not reason else str(reason).split(":", 1)[0].strip()


def truth(conn) -> dict:
    """Every count the counters answer, from the rows themselves."""
    q = conn.execute
    jobs = {str(s): int(n) for s, n in q(sa.text(
        "SELECT status, count(*) FROM batch_jobs GROUP BY status")).all()}
    unack = {str(s): int(n) for s, n in q(sa.text(
        "SELECT status, count(*) FROM batch_jobs WHERE status IN ('failed', 'dead') "
        "AND acknowledged_at IS NULL GROUP BY status")).all()}
    hours: dict[int, int] = {}
    for (t,) in q(sa.text("SELECT finished_at FROM batch_jobs WHERE status = 'done' "
                          "AND finished_at IS NOT NULL")).all():
        hours[int(t // 3600)] = hours.get(int(t // 3600), 0) + 1
    rows = q(sa.text("SELECT qc_status, norm_status, norm_method, norm_reason, duplicate_of, "
                     "excluded, n_sources FROM images")).all()
    reasons: dict[str, int] = {}
    for r in rows:
        if r.norm_status == "failed":
            cls = _reason_class(r.norm_reason)
            reasons[cls] = reasons.get(cls, 0) + 1
    qc: dict[str, int] = {}
    for r in rows:
        qc[r.qc_status] = qc.get(r.qc_status, 0) + 1
    images = {
        "images": len(rows), "measurements": sum(int(r.n_sources or 0) for r in rows), "qc": qc,
        "norm_failed": sum(r.norm_status == "failed" for r in rows),
        "norm_not_requested": sum(r.norm_status == "not_requested" and r.duplicate_of is None
                                  for r in rows),
        "norm_ensemble": sum(r.norm_status == "ok" and r.norm_method == "ensemble" for r in rows),
        "duplicates": sum(r.duplicate_of is not None for r in rows),
        "excluded": sum(bool(r.excluded) for r in rows), "norm_reasons": reasons,
    }
    files = {str(d): int(n) for d, n in q(sa.text(
        "SELECT decision, count(*) FROM files GROUP BY decision")).all()}
    detections = int(q(sa.text("SELECT coalesce(sum(n_detections), 0) FROM image_depths")).scalar())
    own = {str(k): int(n) for k, n in q(sa.text(
        "SELECT kind, count(*) FROM sources WHERE kind <> 'catalogue' GROUP BY kind")).all()}
    events = {str(e): int(n) for e, n in q(sa.text("SELECT event, count(*) FROM alerts GROUP BY event")).all()}
    deliveries = {(str(k), str(s)): int(n) for k, s, n in q(sa.text(
        "SELECT kind, state, count(*) FROM alert_deliveries GROUP BY kind, state")).all()}
    return {"jobs": jobs, "unack": unack, "done_hours": hours, "images": images, "files": files,
            "detections": detections, "own_sources": own, "alert_events": events,
            "deliveries": deliveries}


def counted(conn, *, first_hour: int, last_hour: int) -> dict:
    """The same counts from the maintained counters (done jobs per hour from ``first_hour``
    to ``last_hour``, hour buckets of Unix s / 3600)."""
    from dsa110_contimg.store.counters import read_counts

    got = read_counts(conn)
    return {"jobs": got.jobs(), "unack": got.unacknowledged(),
            "done_hours": got.done_per_hour(first_hour, last_hour), "images": got.images(),
            "files": got.files(), "detections": got.detections(), "own_sources": got.own_sources(),
            "alert_events": got.alert_events(), "deliveries": got.deliveries()}


def check_counters_match(conn, now: float) -> None:
    """The counters equal the GROUP BY counts (done hours: the buckets the counters keep
    apart, the last :data:`~dsa110_contimg.store.counters.KEEP_HOURS` up to ``now``)."""
    from dsa110_contimg.store.counters import KEEP_HOURS

    last = int(now // 3600)
    want = truth(conn)
    want["done_hours"] = {h: n for h, n in want["done_hours"].items() if last - KEEP_HOURS <= h <= last}
    assert counted(conn, first_hour=last - KEEP_HOURS, last_hour=last) == want
