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

from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.schema import JOB_STATES, QC_STATES
from dsa110_contimg.store.status import read_status_counts

EXIT_OK, EXIT_DEGRADED, EXIT_NOT_RUNNING, EXIT_NO_DB = 0, 1, 3, 4


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO-8601 UTC (None stays None)."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


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
    now = time.time() if now is None else now
    snap = read_status_counts(db, now=now, n_failures=n_failures)
    beats, counts, oldest = snap["heartbeats"], snap["job_counts"], snap["oldest_pending_at"]
    running_by_owner, fcounts, qc_counts = snap["running_by_owner"], snap["file_counts"], snap["qc_counts"]
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
            "done_last_hour": snap["done_last_hour"],
            "running_jobs": [{"id": r["id"], "path": r["path"], "attempts": r["attempts"],
                              "owner": r["lease_owner"],
                              "lease_remaining_s": None if r["lease_until"] is None
                              else round(r["lease_until"] - now, 1),
                              "started_at": iso(r["started_at"])} for r in snap["running"]],
        },
        "failures": [{**{k: r[k] for k in ("id", "status", "path", "attempts", "error")},
                      "finished_at": iso(r["finished_at"])} for r in snap["failures"]],
        "images": {"measured": snap["images"], "skipped": fcounts["skipped"],
                   "queued": fcounts["queued"], "incomplete": fcounts["incomplete"]},
        "measurements": {"total": snap["measurements"]},
        "qc": {**{k: int(qc_counts.get(k, 0)) for k in QC_STATES},
               "not_normalised": snap["norm_failed"],
               "recent_failures": [{"path": r["path"], "mjd": r["mjd"],
                                    "reasons": json.loads(r["qc_reasons"]) if r["qc_reasons"] else []}
                                   for r in snap["qc_failed"]]},
        "ese": {"candidates": snap["ese_active"]},
        "normalisation": {"not_normalised": snap["norm_failed"],
                          "not_requested": snap["norm_not_requested"],
                          "ensemble": snap["norm_ensemble"],
                          "reasons": snap["norm_reasons"]},
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
