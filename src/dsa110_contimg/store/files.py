"""Repository functions for the watcher's ``files`` table and the ``heartbeats`` table.

``files`` holds one row per file *version* ``(path, size, mtime_ns)`` the
daemon has seen, with its decision: ``queued`` (a job exists: ``batch_id``),
``skipped`` (with the reason: residual, PSF, ...) or ``incomplete`` (not yet
complete; re-checked). The table is the daemon's memory of what it has
already decided, so a reconciliation scan after a restart or an inotify
overflow inserts only what is new.

``heartbeats`` holds one row per daemon (``owner`` = ``host:pid:uuid``),
updated every loop; the status CLI reads its age.

Times are Unix seconds.
"""

from __future__ import annotations

import os
import socket
import time

import sqlalchemy as sa

from dsa110_contimg.core.paths import FileKey, printable  # noqa: F401 - FileKey re-exported
from dsa110_contimg.store.engine import Database, dialect_insert, read_connection
from dsa110_contimg.store.retry import with_retry
from dsa110_contimg.store.schema import files, heartbeats

DECISIONS = ("queued", "skipped", "incomplete")


def record_file(db: Database, key: FileKey, decision: str, *, kind: str | None = None,
                reason: str | None = None, batch_id: int | None = None,
                now: float | None = None) -> None:
    """Insert or update the decision for one file version.

    Older ``incomplete`` rows of the same path (earlier sizes while it was
    being written) are removed.
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
    now = time.time() if now is None else now
    reason = None if reason is None else printable(reason)   # a name in the reason may not be UTF-8

    def _do():
        with db.engine.begin() as conn:
            # one statement: two daemons watching one shared folder record the same version
            # at once, and the second merges into the first's row instead of raising
            ins = dialect_insert(conn, files).values(
                path=key.path, size=key.size, mtime_ns=key.mtime_ns, kind=kind,
                decision=decision, reason=reason, batch_id=batch_id, first_seen=now,
                updated_at=now)
            conn.execute(ins.on_conflict_do_update(
                index_elements=[files.c.path, files.c.size, files.c.mtime_ns],
                set_={"decision": decision, "kind": kind, "reason": reason,
                      "batch_id": batch_id, "updated_at": now}))
            if decision != "incomplete":
                conn.execute(files.delete().where(
                    files.c.path == key.path, files.c.decision == "incomplete",
                    sa.or_(files.c.size != key.size, files.c.mtime_ns != key.mtime_ns)))

    with_retry(_do)


def forget_incomplete(db: Database, path: str) -> int:
    """Delete the ``incomplete`` rows of a path (the file vanished before it was decided)."""
    def _do():
        with db.engine.begin() as conn:
            return conn.execute(files.delete().where(files.c.path == path,
                                                     files.c.decision == "incomplete")).rowcount

    return with_retry(_do)


def decided_keys(db: Database) -> set[FileKey]:
    """Every file version already queued or skipped."""
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(files.c.path, files.c.size, files.c.mtime_ns).where(
            files.c.decision != "incomplete")).all()
        conn.rollback()
    return {FileKey(r.path, int(r.size), int(r.mtime_ns)) for r in rows}


def incomplete_files(db: Database) -> list[dict]:
    """Rows of files still waiting to be complete (oldest first)."""
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(files).where(files.c.decision == "incomplete")
                            .order_by(files.c.first_seen)).mappings().all()
        conn.rollback()
    return [dict(r) for r in rows]


def list_files(db: Database, *, decisions=("skipped", "incomplete"), limit: int = 50) -> list[dict]:
    """File versions with one of ``decisions``, most recently decided first, with their
    ``reason`` (why skipped, or what the daemon waits for). ``limit`` 0 lists every one."""
    unknown = set(decisions) - set(DECISIONS)
    if unknown:
        raise ValueError(f"decisions must be among {DECISIONS}, not {sorted(unknown)}")
    q = (sa.select(files.c.path, files.c.size, files.c.mtime_ns, files.c.kind, files.c.decision,
                   files.c.reason, files.c.batch_id, files.c.first_seen, files.c.updated_at)
         .where(files.c.decision.in_(tuple(decisions)))
         .order_by(files.c.updated_at.desc(), files.c.id.desc()))
    if limit and limit > 0:
        q = q.limit(int(limit))
    with read_connection(db.engine) as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def file_counts(conn) -> dict[str, int]:
    """Files per decision (every decision present), from the maintained counters."""
    from dsa110_contimg.store.counters import read_counts

    rows = read_counts(conn).files()
    return {d: int(rows.get(d, 0)) for d in DECISIONS}


# -- heartbeats -------------------------------------------------------------------
def beat(db: Database, owner: str, *, started_at: float, workers: int, state: str,
         status_text: str | None = None, now: float | None = None, node: str | None = None) -> None:
    """Upsert this daemon's heartbeat row (``node``: its ``[daemon] node`` name)."""
    now = time.time() if now is None else now

    def _do():
        with db.engine.begin() as conn:
            n = conn.execute(heartbeats.update().where(heartbeats.c.owner == owner).values(
                beat_at=now, workers=workers, state=state, status_text=status_text)).rowcount
            if not n:
                conn.execute(heartbeats.insert().values(
                    owner=owner, host=socket.gethostname(), pid=os.getpid(), started_at=started_at,
                    beat_at=now, workers=workers, state=state, status_text=status_text,
                    node=node or socket.gethostname()))

    with_retry(_do)


def heartbeat_rows(conn) -> list[dict]:
    """All heartbeat rows, newest beat first."""
    return [dict(r) for r in conn.execute(
        sa.select(heartbeats).order_by(heartbeats.c.beat_at.desc())).mappings().all()]


def dead_local_owners(db: Database, *, exclude: str) -> list[str]:
    """Owners of heartbeat rows on this host whose process no longer exists.

    Their running jobs can be re-queued at once, before their leases expire.
    """
    host = socket.gethostname()
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(heartbeats.c.owner, heartbeats.c.pid).where(
            heartbeats.c.host == host, heartbeats.c.owner != exclude)).all()
        conn.rollback()
    gone = []
    for owner, pid in rows:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            gone.append(owner)
        except PermissionError:
            continue
    return gone


def forget_owners(db: Database, owners) -> None:
    """Delete heartbeat rows (dead daemons already reaped)."""
    owners = list(owners)
    if not owners:
        return

    def _do():
        with db.engine.begin() as conn:
            conn.execute(heartbeats.delete().where(heartbeats.c.owner.in_(owners)))

    with_retry(_do)
