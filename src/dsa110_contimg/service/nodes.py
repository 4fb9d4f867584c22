"""The daemons sharing one products database (several hosts on PostgreSQL), for ``status``.

Read from the ``heartbeats`` table (one row per daemon process, ``owner`` =
``host:pid:uuid``) and the running jobs each one holds a lease on. A daemon whose last
beat is older than ``stale_after_s`` and did not stop cleanly is listed as ``stale``;
cleanly stopped ones are left out.
"""

from __future__ import annotations

import sqlalchemy as sa

from dsa110_contimg.store.schema import batch_jobs, heartbeats


def collect_nodes(conn, *, now: float, stale_after_s: float) -> list[dict]:
    """One dict per daemon that has not stopped: ``owner``, ``host``, ``pid``, ``state``
    (running | draining | stale), ``workers``, ``heartbeat_age_s``, ``running_jobs``."""
    rows = conn.execute(sa.select(heartbeats).where(heartbeats.c.state != "stopped")
                        .order_by(heartbeats.c.host, heartbeats.c.started_at)).mappings().all()
    running = dict(conn.execute(sa.select(batch_jobs.c.lease_owner, sa.func.count())
                                .where(batch_jobs.c.status == "running")
                                .group_by(batch_jobs.c.lease_owner)).all())
    out = []
    for r in rows:
        age = max(0.0, now - r["beat_at"])
        out.append({"owner": r["owner"], "host": r["host"], "pid": r["pid"],
                    "state": "stale" if age > stale_after_s else r["state"],
                    "workers": int(r["workers"] or 0), "heartbeat_age_s": round(age, 1),
                    "running_jobs": int(running.get(r["owner"], 0))})
    return out


def format_nodes(nodes: list[dict]) -> list[str]:
    """Lines for the human-readable status (nothing for a single daemon)."""
    if len(nodes) < 2:
        return []
    lines = [f"nodes:         {len(nodes)} daemons share this database"]
    for n in nodes:
        lines.append(f"  {n['host']} pid {n['pid']}: {n['state']}, {n['workers']} workers, "
                     f"{n['running_jobs']} running, heartbeat {n['heartbeat_age_s']:.1f} s ago")
    return lines
