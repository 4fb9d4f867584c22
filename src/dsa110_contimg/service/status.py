"""Status queries for ``contimg-photometry status`` and ``jobs`` (read-only).

The CLI never talks to the daemon: it reads the heartbeat row the daemon
updates every few seconds and the queue tables, through a read-only
connection (``mode=ro``) that cannot block the daemon's writes.

Exit codes of ``status``: 0 healthy; 1 degraded (failed or dead jobs, a
heartbeat older than ``stale_after_s`` from a daemon that did not stop
cleanly, or the daemon's health thread reporting a held database lock, a full
disk or a stalled loop); 3 not running (no heartbeat, or the last daemon stopped); 4 database
missing or unreadable.
"""

from __future__ import annotations

import datetime as _dt
import json
import time

import sqlalchemy as sa

from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.files import file_counts, heartbeat_rows, running_jobs_by_owner
from dsa110_contimg.store.schema import (
    JOB_STATES, QC_STATES, batch_job_items, batch_jobs, ese_candidates, images, measurements,
)

EXIT_OK, EXIT_DEGRADED, EXIT_NOT_RUNNING, EXIT_NO_DB = 0, 1, 3, 4


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO-8601 UTC (None stays None)."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


def _first_path():
    return (sa.select(sa.func.min(batch_job_items.c.fits_path))
            .where(batch_job_items.c.batch_id == batch_jobs.c.id).scalar_subquery())


def collect_status(db: Database, *, stale_after_s: float = 60.0, n_failures: int = 5,
                   now: float | None = None, photometry=None, state_dir=None) -> dict:
    """Everything ``status`` shows, as one JSON-ready dict with stable nested keys.

    ``photometry`` (the deployment's PhotometryConfig, when known) adds the ``science``
    section: whether normalisation and ESE detection are on, with a warning when off.

    ``state_dir``: where the daemon's health thread writes ``health.json``; a
    fresh verdict other than ``ok`` (database lock held by another process, disk
    full, stalled loop) makes the daemon ``degraded`` with the reasons, even
    while the heartbeat row cannot be written.
    """
    from dsa110_contimg.store.images import norm_reason_summary

    now = time.time() if now is None else now
    with db.engine.connect() as conn:
        beats = heartbeat_rows(conn)
        counts = dict(conn.execute(sa.select(batch_jobs.c.status, sa.func.count())
                                   .group_by(batch_jobs.c.status)).all())
        oldest = conn.execute(sa.select(sa.func.min(batch_jobs.c.created_at))
                              .where(batch_jobs.c.status == "pending")).scalar()
        done_hour = conn.execute(sa.select(sa.func.count()).where(
            batch_jobs.c.status == "done", batch_jobs.c.finished_at >= now - 3600)).scalar()
        running = conn.execute(sa.select(batch_jobs.c.id, batch_jobs.c.attempts, batch_jobs.c.lease_owner,
                                         batch_jobs.c.lease_until, batch_jobs.c.started_at,
                                         _first_path().label("path"))
                               .where(batch_jobs.c.status == "running").order_by(batch_jobs.c.id)).all()
        failures = conn.execute(sa.select(batch_jobs.c.id, batch_jobs.c.status, batch_jobs.c.error,
                                          batch_jobs.c.attempts, batch_jobs.c.finished_at,
                                          _first_path().label("path"))
                                .where(batch_jobs.c.status.in_(("failed", "dead")))
                                .order_by(batch_jobs.c.updated_at.desc()).limit(n_failures)).all()
        fcounts = file_counts(conn)
        n_images = conn.execute(sa.select(sa.func.count()).select_from(images)).scalar()
        n_meas = conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar()
        n_ese = conn.execute(sa.select(sa.func.count()).select_from(ese_candidates).where(
            ese_candidates.c.status == "active")).scalar()
        qc_counts = dict(conn.execute(sa.select(images.c.qc_status, sa.func.count())
                                      .group_by(images.c.qc_status)).all())
        qc_failed = conn.execute(sa.select(images.c.path, images.c.mjd, images.c.qc_reasons)
                                 .where(images.c.qc_status == "failed")
                                 .order_by(images.c.measured_at.desc()).limit(n_failures)).all()
        norm_failed = conn.execute(sa.select(sa.func.count()).select_from(images).where(
            images.c.norm_status == "failed")).scalar()
        norm_reasons = norm_reason_summary(conn)
        norm_off = conn.execute(sa.select(sa.func.count()).select_from(images).where(
            images.c.norm_status == "not_requested")).scalar()
        norm_ensemble = conn.execute(sa.select(sa.func.count()).select_from(images).where(
            images.c.norm_status == "ok", images.c.norm_method == "ensemble")).scalar()
        running_by_owner = running_jobs_by_owner(conn)
        conn.rollback()
    # every instance (one heartbeat row per daemon); the headline is the freshest live one,
    # so one of two daemons stopping does not hide the other
    def inst_state(b):
        if b["state"] == "stopped":
            return "stopped"
        return "stale" if now - b["beat_at"] > stale_after_s else b["state"]

    live = [b for b in beats if inst_state(b) in ("running", "draining", "degraded")]
    beat = live[0] if live else (beats[0] if beats else None)
    age = None if beat is None else max(0.0, now - beat["beat_at"])
    if beat is None or beat["state"] == "stopped":
        daemon_state = "not_running"
    elif age > stale_after_s:
        daemon_state = "stale"
    else:
        daemon_state = beat["state"]
    health = None
    if state_dir is not None:
        from dsa110_contimg.service.health import MIN_FREE_BYTES, free_bytes, read_health_file

        health = read_health_file(state_dir, max_age_s=stale_after_s)
        free = free_bytes(state_dir)
        if free is not None and free < MIN_FREE_BYTES and daemon_state not in ("not_running",):
            health = {"verdict": "degraded", "reasons": [f"disk full: {free} bytes free in {state_dir}"]
                      + (health or {}).get("reasons", [])}
        if health is not None and health.get("verdict") != "ok" and daemon_state in ("running", "stale"):
            daemon_state = "degraded"
    jobs = {s: int(counts.get(s, 0)) for s in JOB_STATES}
    return {
        "time": iso(now),
        "daemon": {
            "running": daemon_state in ("running", "draining", "degraded"),
            "state": daemon_state,
            "heartbeat_age_s": None if age is None else round(age, 1),
            "owner": beat and beat["owner"], "host": beat and beat["host"], "pid": beat and beat["pid"],
            "workers": beat["workers"] if beat else 0,
            "started_at": iso(beat["started_at"]) if beat else None,
            "status_text": beat and beat["status_text"],
            "node": beat and beat.get("node"),
            "instances": len(live),
            "nodes": [{"node": b.get("node") or b["host"], "owner": b["owner"], "host": b["host"],
                       "pid": b["pid"], "state": inst_state(b), "workers": b["workers"],
                       "heartbeat_age_s": round(max(0.0, now - b["beat_at"]), 1),
                       "started_at": iso(b["started_at"]), "status_text": b["status_text"],
                       "running_jobs": int(running_by_owner.get(b["owner"], 0))}
                      for b in beats if inst_state(b) != "stopped"],
            "health": None if health is None else {"verdict": health.get("verdict"),
                                                   "reasons": health.get("reasons", [])},
        },
        "jobs": {
            **jobs,
            "total": sum(jobs.values()),
            "oldest_pending_age_s": None if oldest is None else round(now - oldest, 1),
            "done_last_hour": int(done_hour or 0),
            "running_jobs": [{"id": r.id, "path": r.path, "attempts": r.attempts, "owner": r.lease_owner,
                              "lease_remaining_s": None if r.lease_until is None
                              else round(r.lease_until - now, 1),
                              "started_at": iso(r.started_at)} for r in running],
        },
        "failures": [{"id": r.id, "status": r.status, "path": r.path, "attempts": r.attempts,
                      "error": r.error, "finished_at": iso(r.finished_at)} for r in failures],
        "images": {"measured": int(n_images or 0), "skipped": fcounts["skipped"],
                   "queued": fcounts["queued"], "incomplete": fcounts["incomplete"]},
        "measurements": {"total": int(n_meas or 0)},
        "qc": {**{k: int(qc_counts.get(k, 0)) for k in QC_STATES},
               "not_normalised": int(norm_failed or 0),
               "recent_failures": [{"path": r.path, "mjd": r.mjd,
                                    "reasons": json.loads(r.qc_reasons) if r.qc_reasons else []}
                                   for r in qc_failed]},
        "ese": {"candidates": int(n_ese or 0)},
        "normalisation": {"not_normalised": int(norm_failed or 0),
                          "not_requested": int(norm_off or 0),
                          "ensemble": int(norm_ensemble or 0),
                          "reasons": norm_reasons},
        "science": _science(photometry),
    }


def _science(photometry) -> dict:
    """Whether the deployment normalises and detects ESEs (None when the config is unknown)."""
    if photometry is None:
        return {"normalize": None, "detect_ese": None, "warnings": []}
    warnings = []
    if not photometry.normalize:
        warnings.append("normalisation is OFF (photometry.normalize = false): fluxes are not put "
                        "on a common scale")
    if not photometry.detect_ese:
        warnings.append("ESE detection is OFF (photometry.detect_ese = false): no variability "
                        "statistics or ESE candidates")
    return {"normalize": bool(photometry.normalize), "detect_ese": bool(photometry.detect_ese),
            "warnings": warnings}


def status_exit_code(st: dict) -> int:
    """0 healthy, 1 degraded, 3 not running (see the module docstring)."""
    if st["daemon"]["state"] == "not_running":
        return EXIT_NOT_RUNNING
    if st["daemon"]["state"] in ("stale", "degraded") or st["jobs"]["failed"] or st["jobs"]["dead"]:
        return EXIT_DEGRADED
    return EXIT_OK


def format_status(st: dict) -> str:
    """Human-readable status."""
    d, j = st["daemon"], st["jobs"]
    lines = []
    if d["state"] == "not_running":
        lines.append("daemon:        not running" + (f" (last beat {d['heartbeat_age_s']:.0f} s ago)"
                                                     if d["heartbeat_age_s"] is not None else ""))
    else:
        lines.append(f"daemon:        {d['state']} (pid {d['pid']} on {d['host']}, heartbeat "
                     f"{d['heartbeat_age_s']:.1f} s ago, {d['workers']} workers)")
        if d["status_text"]:
            lines.append(f"               {d['status_text']}")
        health = d.get("health")
        if health and health["verdict"] != "ok":
            lines.append(f"health:        {health['verdict']}: {'; '.join(health['reasons'])}")
    if len(d.get("nodes", [])) > 1 or any(n["state"] == "stale" for n in d.get("nodes", [])):
        lines.append(f"instances:     {d['instances']} live")
        for n in d["nodes"]:
            lines.append(f"  {n['node']}: {n['state']} (pid {n['pid']} on {n['host']}, heartbeat "
                         f"{n['heartbeat_age_s']:.1f} s ago, {n['workers']} workers, "
                         f"{n.get('running_jobs', 0)} running)")
    lines.append("jobs:          " + ", ".join(f"{s} {j[s]}" for s in JOB_STATES))
    if j["oldest_pending_age_s"] is not None:
        lines.append(f"oldest pending: {j['oldest_pending_age_s']:.0f} s")
    lines.append(f"throughput:    {j['done_last_hour']} jobs done in the last hour")
    for r in j["running_jobs"]:
        lines.append(f"  running #{r['id']} {r['path']} (attempt {r['attempts']}, lease "
                     f"{r['lease_remaining_s']} s)")
    im = st["images"]
    lines.append(f"images:        {im['measured']} measured, {im['skipped']} skipped, "
                 f"{im['incomplete']} incomplete; {st['measurements']['total']} measurements")
    qc = st["qc"]
    lines.append(f"image QC:      {qc['passed']} passed, {qc['warning']} warning, {qc['failed']} "
                 f"failed (kept out of light curves); {qc['not_normalised']} not normalisable")
    for r in qc["recent_failures"]:
        lines.append(f"  QC failed {r['path']}: {'; '.join(r['reasons'])}")
    nm = st["normalisation"]
    for r in nm["reasons"]:
        lines.append(f"  {r['images']} image{'s' if r['images'] != 1 else ''} not normalised: "
                     f"{r['reason']} (contimg-photometry images list --norm-status failed)")
    if nm["ensemble"]:
        lines.append(f"  {nm['ensemble']} image(s) normalised with the fallback ensemble of "
                     "self-observed steady sources")
    if nm["not_requested"]:
        lines.append(f"  {nm['not_requested']} image(s) measured with normalisation off")
    for w in st["science"]["warnings"]:
        lines.append(f"warning:       {w}")
    lines.append(f"ESE candidates: {st['ese']['candidates']}")
    if st["failures"]:
        lines.append("last failures:")
        for f in st["failures"]:
            lines.append(f"  #{f['id']} {f['status']} {f['path']}: {f['error']}")
    return "\n".join(lines)
