"""Database upkeep behind ``contimg-photometry db check`` and ``db prune``.

:func:`check_database`
    Integrity (SQLite: ``PRAGMA quick_check`` or the full ``integrity_check``, and
    ``foreign_key_check``), the schema revision against this release's, and the tables
    against this release's schema. Reads only.
:func:`prune`
    Removes settled job records finished before a date: ``done`` and ``cancelled`` jobs,
    and ``failed``/``dead`` ones an operator acknowledged (an unacknowledged failure is
    kept: it is still news), with their items; ``files`` records of file versions that are
    gone from disk or replaced by a newer version (a rescan can never see them again, so
    nothing is measured twice); heartbeat rows of daemons stopped before the date. Images,
    sources, measurements, normalisation, variability and ESE rows are never touched.
    Deletes in chunks of :data:`CHUNK` rows, one short transaction each, so a running
    daemon keeps writing.

Times are Unix seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import sqlalchemy as sa

from dsa110_contimg.core.paths import fs_path
from dsa110_contimg.store.counters import missing_triggers, read_counts
from dsa110_contimg.store.engine import Database, read_connection
from dsa110_contimg.store.migrate import current_revision, head_revision, schema_differences
from dsa110_contimg.store.retry import with_retry
from dsa110_contimg.store.schema import batch_job_items, batch_jobs, files, heartbeats

#: Rows deleted per transaction.
CHUNK = 1000
#: Job states ``prune`` removes; failed and dead ones only once acknowledged.
PRUNED_STATES = ("done", "cancelled", "failed", "dead")


@dataclass
class CheckReport:
    """The outcome of :func:`check_database`: ``problems`` empty when it passed."""

    which: str
    revision: str | None
    head: str
    integrity: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_database(db: Database, which: str, *, full: bool = False) -> CheckReport:
    """Check one database (``which``: ``products`` or ``registry``); ``full`` runs SQLite's
    complete ``integrity_check`` (reads every index entry; slow on a large file) instead
    of ``quick_check``."""
    head = head_revision(which)
    try:
        return _check(db, which, head, full)
    except sa.exc.DatabaseError as exc:      # damage the driver refuses to read at all
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:300]
        return CheckReport(which, None, head, "unreadable", [f"unreadable: {reason}"])


def _check(db: Database, which: str, head: str, full: bool) -> CheckReport:
    with read_connection(db.engine) as conn:
        revision = current_revision(conn, which)
        report = CheckReport(which, revision, head, "not checked")
        if conn.dialect.name == "sqlite":
            pragma = "integrity_check" if full else "quick_check"
            found = [str(r[0]) for r in conn.exec_driver_sql(f"PRAGMA {pragma}")]
            report.integrity = pragma + (" ok" if found == ["ok"] else " FAILED")
            if found != ["ok"]:
                report.problems.append(f"{pragma}: {'; '.join(found[:5])}")
            orphans = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if orphans:
                report.problems.append(f"{len(orphans)} row(s) point at a missing parent (first: "
                                       f"table {orphans[0][0]}, row {orphans[0][1]})")
        else:
            report.integrity = "server database (integrity is the server's: see pg_amcheck)"
        if revision is None:
            report.problems.append(f"no {which} schema (the daemon or `db upgrade` creates it)")
        elif revision != head:
            report.problems.append(f"schema at revision {revision}, this release is at {head} "
                                   "(`contimg-photometry db upgrade` after a backup)")
        else:
            diff = schema_differences(conn, which)
            if diff:
                report.problems.append(f"{len(diff)} difference(s) from this release's schema "
                                       f"(first: {diff[0]!r:.200})")
            uncounted = missing_triggers(conn) if which == "products" else []
            if uncounted:
                report.problems.append("status count triggers missing on " + ", ".join(uncounted)
                                       + " (status and the web pages would count them wrongly)")
    return report


@dataclass
class PruneReport:
    """What :func:`prune` removed (or would remove, with ``dry_run``)."""

    jobs: dict[str, int] = field(default_factory=dict)
    items: int = 0
    files: int = 0
    heartbeats: int = 0
    kept_unacknowledged: int = 0
    measurements: int = 0

    def lines(self, *, dry_run: bool = False) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        by_state = ", ".join(f"{n} {s}" for s, n in self.jobs.items() if n) or "none"
        out = [f"{verb} {sum(self.jobs.values())} job(s) ({by_state}) with {self.items} item(s)",
               f"{verb} {self.files} file record(s) of file versions gone from disk or replaced",
               f"{verb} {self.heartbeats} heartbeat row(s) of stopped daemons"]
        if self.kept_unacknowledged:
            out.append(f"kept {self.kept_unacknowledged} failed or dead job(s) not acknowledged "
                       "(`contimg-photometry jobs ack --all` to let them go)")
        out.append(f"measurements untouched: {self.measurements}")
        return out


def prune(db: Database, *, before: float, dry_run: bool = False) -> PruneReport:
    """Remove settled records older than ``before`` (see the module docstring)."""
    report = PruneReport()
    bj = batch_jobs.c
    old = sa.and_(bj.finished_at < before, bj.status.in_(PRUNED_STATES),
                  sa.or_(bj.status.in_(("done", "cancelled")), bj.acknowledged_at.is_not(None)))
    with read_connection(db.engine) as conn:
        report.jobs = {str(s): int(n) for s, n in conn.execute(
            sa.select(bj.status, sa.func.count()).where(old).group_by(bj.status)).all()}
        report.kept_unacknowledged = int(conn.execute(sa.select(sa.func.count()).where(
            bj.finished_at < before, bj.status.in_(("failed", "dead")),
            bj.acknowledged_at.is_(None))).scalar())
        report.measurements = read_counts(conn).images()["measurements"]
    report.items = _delete_jobs(db, old, dry_run)
    report.files = _delete_file_records(db, before, dry_run)
    stopped = sa.and_(heartbeats.c.state == "stopped", heartbeats.c.beat_at < before)
    report.heartbeats = _delete_where(db, heartbeats, stopped, dry_run)
    return report


def _delete_jobs(db: Database, old, dry_run: bool) -> int:
    """Delete the jobs matching ``old`` and their items, a chunk per transaction (each
    chunk is matched again inside it: a job retried meanwhile stays); returns the number
    of items."""
    n_items, after_id = 0, 0
    while True:
        with read_connection(db.engine) as conn:
            ids = [int(r[0]) for r in conn.execute(
                sa.select(batch_jobs.c.id).where(old, batch_jobs.c.id > after_id)
                .order_by(batch_jobs.c.id).limit(CHUNK))]
            if not ids:
                return n_items
            if dry_run:
                n_items += int(conn.execute(sa.select(sa.func.count()).where(
                    batch_job_items.c.batch_id.in_(ids))).scalar())
        after_id = ids[-1]
        if not dry_run:
            def _do(ids=ids):
                with db.engine.begin() as conn:
                    still = sa.select(batch_jobs.c.id).where(batch_jobs.c.id.in_(ids), old)
                    n = conn.execute(batch_job_items.delete().where(
                        batch_job_items.c.batch_id.in_(still))).rowcount
                    conn.execute(batch_jobs.delete().where(batch_jobs.c.id.in_(ids), old))
                    return int(n)

            n_items += with_retry(_do)


def _gone(path: str, size: int, mtime_ns: int) -> bool:
    """True when this version of the file can never be seen again: the file is missing
    from a folder that exists (an unmounted folder proves nothing), or replaced by
    another version."""
    local = fs_path(path)
    try:
        st = os.stat(local)
    except FileNotFoundError:
        return os.path.isdir(os.path.dirname(local))
    except OSError:
        return False
    return (int(st.st_size), int(st.st_mtime_ns)) != (int(size), int(mtime_ns))


def _delete_file_records(db: Database, before: float, dry_run: bool) -> int:
    n, after_id = 0, 0
    while True:
        with read_connection(db.engine) as conn:
            rows = conn.execute(sa.select(files.c.id, files.c.path, files.c.size, files.c.mtime_ns)
                                .where(files.c.updated_at < before, files.c.id > after_id)
                                .order_by(files.c.id).limit(CHUNK)).all()
        if not rows:
            return n
        after_id = int(rows[-1].id)
        ids = [int(r.id) for r in rows if _gone(r.path, r.size, r.mtime_ns)]
        n += len(ids)
        if ids and not dry_run:
            def _do(ids=ids):
                with db.engine.begin() as conn:
                    conn.execute(files.delete().where(files.c.id.in_(ids)))

            with_retry(_do)


def _delete_where(db: Database, table: sa.Table, where, dry_run: bool) -> int:
    if dry_run:
        with read_connection(db.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar())

    def _do():
        with db.engine.begin() as conn:
            return int(conn.execute(table.delete().where(where)).rowcount)

    return with_retry(_do)
