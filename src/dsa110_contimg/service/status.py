"""Status queries for ``contimg-photometry status`` and ``jobs`` (read-only).

The CLI never talks to the daemon: it reads the heartbeat row the daemon
updates every few seconds and the queue tables, through a read-only
connection (``mode=ro``) that cannot block the daemon's writes.

One verdict, ``health`` in the status (:func:`assess`), decides the exit code of
``status``; ``health.exit_code`` is that code and ``health.reasons`` say why:

``ok`` (0)
    a live daemon, nothing needing an operator;
``degraded`` (1)
    failed or dead jobs no operator acknowledged (``jobs ack``), a heartbeat older than
    ``stale_after_s`` from a daemon that did not stop cleanly, or the daemon's health
    thread reporting a held database lock, a full disk or a stalled loop;
``not_running`` (3)
    the last daemon stopped;
``not_started`` (3)
    no daemon has run on this database yet (no heartbeat, or no database yet).

The daemon's own verdict (its health thread's ``health.json``, with a full disk seen
from here) is ``daemon.health``; its reasons are among ``health.reasons``.

A database that exists but cannot be read is exit 4 (the CLI's ``NoDatabase``).

Every count says its window (:data:`WINDOWS`, also under ``windows`` in the status):
``jobs`` and ``images`` are all time, ``last_hour`` the last 3600 s; the daemon's
own ``status_text`` gives images/h over its last 5 minutes, and pending and failed
jobs of the queue as ``jobs`` counts them.
"""

from __future__ import annotations

import datetime as _dt
import json
import time

from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.schema import JOB_STATES, QC_STATES
from dsa110_contimg.store.status import read_status_counts

EXIT_OK, EXIT_DEGRADED, EXIT_NOT_RUNNING, EXIT_NO_DB = 0, 1, 3, 4
#: Exit code of each verdict.
VERDICT_EXIT = {"ok": EXIT_OK, "degraded": EXIT_DEGRADED, "not_running": EXIT_NOT_RUNNING,
                "not_started": EXIT_NOT_RUNNING}
NOT_STARTED = "the daemon has not started yet"
#: The time window of each count of the status.
WINDOWS = {"jobs": "all time", "images": "all time", "measurements": "all time", "qc": "all time",
           "last_hour": "the last 3600 s", "daemon.status_text": "since that daemon started"}


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
    return status_from_counts(snap, now=now, stale_after_s=stale_after_s, photometry=photometry,
                              state_dir=state_dir)


def not_started_status(where: str, *, now: float | None = None, photometry=None) -> dict:
    """The status before the daemon's first run: no products database at ``where`` yet."""
    now = time.time() if now is None else now
    st = status_from_counts(_empty_counts(now), now=now, stale_after_s=60.0, photometry=photometry)
    st["health"]["reasons"] = [f"{NOT_STARTED}: no products database at {where} yet (its first "
                               "run creates it)"]
    return st


def _empty_counts(now: float) -> dict:
    """The counts of a database without a row: the status queries run on an empty schema
    in memory, so every key is there and zero."""
    from dsa110_contimg.store.engine import empty_products_database

    db = empty_products_database()
    try:
        return read_status_counts(db, now=now)
    finally:
        db.dispose()


def status_from_counts(snap: dict, *, now: float, stale_after_s: float, photometry=None,
                       state_dir=None) -> dict:
    """The status dict of :func:`collect_status` from the counts of
    :func:`~dsa110_contimg.store.status.read_status_counts`."""
    daemon = _daemon(snap, now=now, stale_after_s=stale_after_s, state_dir=state_dir)
    counts, oldest = snap["job_counts"], snap["oldest_pending_at"]
    fcounts, qc_counts = snap["file_counts"], snap["qc_counts"]
    jobs = {s: int(counts.get(s, 0)) for s in JOB_STATES}
    unack = {s: int(snap["unacknowledged"].get(s, 0)) for s in ("failed", "dead")}
    st = {
        "time": iso(now),
        "windows": WINDOWS,
        "daemon": daemon,
        "jobs": {
            **jobs,
            "total": sum(jobs.values()),
            "unacknowledged": unack,
            "oldest_pending_age_s": None if oldest is None else round(now - oldest, 1),
            "done_last_hour": snap["done_last_hour"],
            "running_jobs": [{"id": r["id"], "path": r["path"], "attempts": r["attempts"],
                              "owner": r["lease_owner"],
                              "lease_remaining_s": None if r["lease_until"] is None
                              else round(r["lease_until"] - now, 1),
                              "started_at": iso(r["started_at"])} for r in snap["running"]],
        },
        "last_hour": {"done": snap["done_last_hour"], "failed": snap["failed_last_hour"]},
        "failures": [{**{k: r[k] for k in ("id", "status", "path", "attempts", "error")},
                      "finished_at": iso(r["finished_at"])} for r in snap["failures"]],
        "images": {"measured": snap["images"], "skipped": fcounts["skipped"],
                   "queued": fcounts["queued"], "incomplete": fcounts["incomplete"],
                   "duplicates": snap.get("duplicates", 0),
                   "excluded": snap.get("excluded_count", 0),
                   "recently_excluded": snap.get("excluded", [])},
        "measurements": {"total": snap["measurements"]},
        "qc": {**{k: int(qc_counts.get(k, 0)) for k in QC_STATES},
               "not_normalised": snap["norm_failed"],
               "recent_failures": [{"path": r["path"], "mjd": r["mjd"],
                                    "reasons": json.loads(r["qc_reasons"]) if r["qc_reasons"] else []}
                                   for r in snap["qc_failed"]]},
        "ese": {"candidates": snap["ese_active"]},
        "transients": snap["transients"],
        "normalisation": {"not_normalised": snap["norm_failed"],
                          "not_requested": snap["norm_not_requested"],
                          "ensemble": snap["norm_ensemble"],
                          "reasons": snap["norm_reasons"]},
        "science": _science(photometry),
    }
    st["health"] = assess(st)
    return st


def _instance_state(beat: dict, now: float, stale_after_s: float) -> str:
    if beat["state"] == "stopped":
        return "stopped"
    return "stale" if now - beat["beat_at"] > stale_after_s else beat["state"]


def _daemon(snap: dict, *, now: float, stale_after_s: float, state_dir) -> dict:
    """The ``daemon`` section: the freshest live instance as the headline (so one of two
    daemons stopping does not hide the other), every instance under ``nodes``."""
    beats, running_by_owner = snap["heartbeats"], snap["running_by_owner"]
    states = [_instance_state(b, now, stale_after_s) for b in beats]
    live = [b for b, s in zip(beats, states) if s in ("running", "draining", "degraded")]
    beat = live[0] if live else (beats[0] if beats else None)
    age = None if beat is None else max(0.0, now - beat["beat_at"])
    if beat is None:
        state = "not_started"
    elif beat["state"] == "stopped":
        state = "not_running"
    else:
        state = "stale" if age > stale_after_s else beat["state"]
    self_check = _self_check(state_dir, stale_after_s) if state != "not_started" else None
    if self_check is not None and self_check["verdict"] != "ok" and state in ("running", "stale"):
        state = "degraded"
    return {
        "running": state in ("running", "draining", "degraded"),
        "state": state,
        "heartbeat_age_s": None if age is None else round(age, 1),
        "owner": beat and beat["owner"], "host": beat and beat["host"], "pid": beat and beat["pid"],
        "workers": beat["workers"] if beat else 0,
        "started_at": iso(beat["started_at"]) if beat else None,
        "status_text": beat and beat["status_text"],
        "node": beat and beat.get("node"),
        "instances": len(live),
        "nodes": [{"node": b.get("node") or b["host"], "owner": b["owner"], "host": b["host"],
                   "pid": b["pid"], "state": s, "workers": b["workers"],
                   "heartbeat_age_s": round(max(0.0, now - b["beat_at"]), 1),
                   "started_at": iso(b["started_at"]), "status_text": b["status_text"],
                   "running_jobs": int(running_by_owner.get(b["owner"], 0))}
                  for b, s in zip(beats, states) if s != "stopped"],
        "health": self_check,   # the daemon's own verdict (health.json + a full disk seen here)
    }


def _self_check(state_dir, stale_after_s: float) -> dict | None:
    """The daemon's own health thread's last verdict (``health.json``), with a full disk
    seen from here added; None when unknown."""
    if state_dir is None:
        return None
    from dsa110_contimg.service.health import MIN_FREE_BYTES, free_bytes, read_health_file

    health = read_health_file(state_dir, max_age_s=stale_after_s)
    free = free_bytes(state_dir)
    if free is not None and free < MIN_FREE_BYTES:
        health = {"verdict": "degraded", "reasons": [f"disk full: {free} bytes free in {state_dir}"]
                  + (health or {}).get("reasons", [])}
    if health is None:
        return None
    return {"verdict": health.get("verdict"), "reasons": list(health.get("reasons", []))}


def assess(st: dict) -> dict:
    """The one verdict of a status (see the module docstring): ``verdict``, ``exit_code``
    and the ``reasons`` an operator acts on."""
    d, unack = st["daemon"], st["jobs"]["unacknowledged"]
    reasons = []
    if d["state"] == "not_started":
        verdict = "not_started"
        reasons.append(f"{NOT_STARTED}: no daemon has written a heartbeat to this database")
    elif d["state"] == "not_running":
        verdict = "not_running"
        reasons.append("the daemon is not running (it stopped)")
    else:
        verdict = "ok"
        if d["state"] == "stale":
            reasons.append(f"heartbeat {d['heartbeat_age_s']:.0f} s old (daemon hung or killed)")
        check = d.get("health")
        if check and check["verdict"] != "ok":
            reasons += [f"daemon {check['verdict']}: {r}" for r in check["reasons"]] or \
                       [f"daemon {check['verdict']}"]
        elif d["state"] == "degraded":   # as the daemon wrote it in its heartbeat
            reasons.append(f"daemon degraded: {d['status_text'] or 'no reason given'}")
    if unack["failed"] or unack["dead"]:
        reasons.append(f"{unack['failed']} failed and {unack['dead']} dead job(s) not acknowledged "
                       "(contimg-photometry jobs list --state failed; jobs retry ID or jobs ack --all)")
    if verdict == "ok" and reasons:
        verdict = "degraded"
    return {"verdict": verdict, "exit_code": VERDICT_EXIT[verdict], "reasons": reasons}


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
    """0 healthy, 1 degraded, 3 not running or not started: ``health.exit_code``."""
    return int(st["health"]["exit_code"])


def format_status(st: dict) -> str:
    """Human-readable status; every count names its window."""
    lines = _daemon_lines(st) + _job_lines(st) + _science_lines(st)
    if st["failures"]:
        lines.append("failures not acknowledged (latest first; `contimg-photometry jobs ack ID|--all` "
                     "once seen):")
        for f in st["failures"]:
            lines.append(f"  #{f['id']} {f['status']} {f['path']}: {f['error']}")
    return "\n".join(lines)


def _daemon_lines(st: dict) -> list[str]:
    d, health = st["daemon"], st["health"]
    if d["state"] == "not_started":
        detail = health["reasons"][0].split(": ", 1)[-1]
        lines = [f"daemon:        not started yet ({detail})"]
    elif d["state"] == "not_running":
        lines = ["daemon:        not running" + (f" (last beat {d['heartbeat_age_s']:.0f} s ago)"
                                                 if d["heartbeat_age_s"] is not None else "")]
    else:
        lines = [f"daemon:        {d['state']} (pid {d['pid']} on {d['host']}, heartbeat "
                 f"{d['heartbeat_age_s']:.1f} s ago, {d['workers']} workers, started {d['started_at']})"]
        if d["status_text"]:
            lines.append(f"since start:   {d['status_text']}")
    if health["verdict"] not in ("ok", "not_started"):
        lines.append(f"health:        {health['verdict']}: {'; '.join(health['reasons'])}")
    if len(d.get("nodes", [])) > 1 or any(n["state"] == "stale" for n in d.get("nodes", [])):
        lines.append(f"instances:     {d['instances']} live")
        for n in d["nodes"]:
            lines.append(f"  {n['node']}: {n['state']} (pid {n['pid']} on {n['host']}, heartbeat "
                         f"{n['heartbeat_age_s']:.1f} s ago, {n['workers']} workers, "
                         f"{n.get('running_jobs', 0)} running)")
    return lines


def _job_lines(st: dict) -> list[str]:
    j, unack = st["jobs"], st["jobs"]["unacknowledged"]
    states = []
    for s in JOB_STATES:
        n_unack = unack.get(s, 0)
        states.append(f"{s} {j[s]}" + (f" ({n_unack} not acknowledged)" if n_unack else ""))
    lines = ["jobs, all time: " + ", ".join(states)]
    if j["oldest_pending_age_s"] is not None:
        lines.append(f"oldest pending: {j['oldest_pending_age_s']:.0f} s")
    hour = st["last_hour"]
    lines.append(f"last hour:     {hour['done']} jobs done, {hour['failed']} failed or dead")
    for r in j["running_jobs"]:
        lines.append(f"  running #{r['id']} {r['path']} (attempt {r['attempts']}, lease "
                     f"{r['lease_remaining_s']} s)")
    im = st["images"]
    lines.append(f"images, all time: {im['measured']} measured, {im['skipped']} skipped, "
                 f"{im['incomplete']} waiting (contimg-photometry files list); "
                 f"{st['measurements']['total']} measurements")
    return lines


def _science_lines(st: dict) -> list[str]:
    qc = st["qc"]
    lines = [f"image QC, all time: {qc['passed']} passed, {qc['warning']} warning, {qc['failed']} "
             f"failed (kept out of light curves); {qc['not_normalised']} not normalisable"]
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
    im = st["images"]
    if im.get("duplicates"):
        lines.append(f"  {im['duplicates']} image(s) duplicate of another image (the same data "
                     "under another path; no epoch): contimg-photometry images list")
    if im.get("excluded"):
        lines.append(f"  {im['excluded']} image(s) excluded from the light curves by an operator")
        lines += [f"    #{r['id']} {r['path']}: {r['excluded_reason']}"
                  for r in im.get("recently_excluded", [])]
    for w in st["science"]["warnings"]:
        lines.append(f"warning:       {w}")
    lines.append(f"ESE candidates (active): {st['ese']['candidates']}")
    tr = st.get("transients") or {}
    lines.append(f"blind detection (all time): {tr.get('detections', 0)} detections, "
                 f"{tr.get('new_sources', 0)} new sources, {tr.get('blind_sources', 0)} other "
                 f"non-catalogue sources, {tr.get('monitor_sources', 0)} monitor positions")
    return lines
