"""Maintained counts of images, jobs, files and detections (migration 0018).

Database triggers on ``images``, ``batch_jobs``, ``files`` and ``image_depths`` append one
row to ``status_count_deltas`` per counted change (+1 under the row's new key, -1 under its
old one), so no code path can forget a count and no writer waits for a shared counter row.
:func:`compact` folds the deltas into ``status_counts`` in one short transaction (the
daemon's housekeeping, and a reader when more than :data:`COMPACT_ABOVE` deltas wait).
:func:`read_counts` sums both tables in one statement: its cost is bounded by the number of
keys and the deltas since the last compaction, never by the counted tables.

Keys (``status``; the same expressions as the triggers of migration 0018):

- ``images``: ``qc_status|norm_status|norm_method|dup|excl|reason class`` (``dup`` when
  ``duplicate_of`` is set, ``excl`` when excluded, the reason class of a failed
  normalisation), ``total`` = ``n_sources``;
- ``batch_jobs``: ``status|unack`` (``unack``: failed or dead, not acknowledged);
  ``hour_bucket`` = ``floor(finished_at / 3600)`` of done jobs (Unix s), 0 otherwise; buckets
  older than :data:`KEEP_HOURS` are folded into bucket 0 by compaction;
- ``files``: ``decision``;
- ``image_depths``: one key, ``total`` = ``n_detections``;
- ``sources``: ``kind``, for the kinds not from the catalogue only (``monitor``, ``new``,
  ``blind``); ``alerts``: ``event``; ``alert_deliveries``: ``kind|state`` (migration 0021).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store.retry import with_retry
from dsa110_contimg.store.schema import status_count_deltas, status_counts

#: Hours of done-job buckets kept apart in ``status_counts`` (the 24 h chart and margin).
KEEP_HOURS = 48
#: A reader compacts first when more deltas than this wait (and it may write).
COMPACT_ABOVE = 10_000
#: Deltas folded per transaction (a bulk load's backlog is folded in several short ones).
CHUNK = 20_000

_KEY = ("tbl", "status", "hour_bucket")
#: The counted tables: those of migration 0018 (one trigger each on PostgreSQL), then those
#: of migration 0021 (one trigger per operation, each with its own WHEN clause).
COUNTED = ("images", "batch_jobs", "files", "image_depths", "sources", "alerts", "alert_deliveries")
_PER_OPERATION = ("sources", "alerts", "alert_deliveries")


@dataclass
class Counts:
    """Summed counts: ``rows[(tbl, status, hour_bucket)] = (n, total)`` and the number of
    delta rows read (``pending_deltas``)."""

    rows: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)
    pending_deltas: int = 0

    def by_status(self, tbl: str) -> dict[str, tuple[int, int]]:
        """``{status key: (n, total)}`` of one table, summed over the hour buckets."""
        out: dict[str, tuple[int, int]] = {}
        for (t, status, _), (n, total) in self.rows.items():
            if t == tbl:
                a, b = out.get(status, (0, 0))
                out[status] = (a + n, b + total)
        return out

    # -- jobs ------------------------------------------------------------------------
    def jobs(self) -> dict[str, int]:
        """Jobs by status (only the statuses present)."""
        out: dict[str, int] = {}
        for key, (n, _) in self.by_status("batch_jobs").items():
            status = key.split("|", 1)[0]
            out[status] = out.get(status, 0) + n
        return {k: v for k, v in out.items() if v}

    def unacknowledged(self) -> dict[str, int]:
        """Failed and dead jobs no operator acknowledged, by status (only those present)."""
        out: dict[str, int] = {}
        for key, (n, _) in self.by_status("batch_jobs").items():
            status, flag = key.split("|", 1)
            if flag == "unack" and n:
                out[status] = out.get(status, 0) + n
        return out

    def done_per_hour(self, first: int, last: int) -> dict[int, int]:
        """Done jobs by the hour they finished in (``hour_bucket`` ``first``..``last``)."""
        out: dict[int, int] = {}
        for (t, key, bucket), (n, _) in self.rows.items():
            if t == "batch_jobs" and first <= bucket <= last and key.startswith("done|"):
                out[bucket] = out.get(bucket, 0) + n
        return out

    # -- images, files, detections -----------------------------------------------------
    def images(self) -> dict:
        """``images`` (all), ``measurements`` (sum of n_sources), ``qc`` (qc_status -> n),
        ``norm_failed``, ``norm_not_requested`` (not duplicates), ``norm_ensemble``,
        ``duplicates``, ``excluded``, ``norm_reasons`` (reason class -> images)."""
        out = {"images": 0, "measurements": 0, "qc": {}, "norm_failed": 0, "norm_not_requested": 0,
               "norm_ensemble": 0, "duplicates": 0, "excluded": 0, "norm_reasons": {}}
        for key, (n, total) in self.by_status("images").items():
            qc, norm, method, dup, excl, reason = key.split("|", 5)
            out["images"] += n
            out["measurements"] += total
            out["qc"][qc] = out["qc"].get(qc, 0) + n
            out["duplicates"] += n if dup else 0
            out["excluded"] += n if excl else 0
            out["norm_not_requested"] += n if norm == "not_requested" and not dup else 0
            out["norm_ensemble"] += n if norm == "ok" and method == "ensemble" else 0
            if norm == "failed":
                out["norm_failed"] += n
                cls = reason.strip()
                out["norm_reasons"][cls] = out["norm_reasons"].get(cls, 0) + n
        out["qc"] = {k: v for k, v in out["qc"].items() if v}
        out["norm_reasons"] = {k: v for k, v in out["norm_reasons"].items() if v}
        return out

    def files(self) -> dict[str, int]:
        """File versions by decision (only those present)."""
        return {k: n for k, (n, _) in self.by_status("files").items() if n}

    def detections(self) -> int:
        """Blind detections summed over the images (``image_depths.n_detections``)."""
        return sum(total for _, total in self.by_status("image_depths").values())

    def own_sources(self) -> dict[str, int]:
        """Sources not from the catalogue by kind (``monitor``, ``new``, ``blind``; those present)."""
        return {k: n for k, (n, _) in self.by_status("sources").items() if n}

    def alert_events(self) -> dict[str, int]:
        """Alerts recorded by event (those present)."""
        return {k: n for k, (n, _) in self.by_status("alerts").items() if n}

    def deliveries(self) -> dict[tuple[str, str], int]:
        """Alert deliveries by ``(destination kind, state)`` (those present)."""
        return {tuple(k.split("|", 1)): n for k, (n, _) in self.by_status("alert_deliveries").items() if n}


def read_counts(conn: Connection) -> Counts:
    """The base totals plus the outstanding deltas, in one statement (one snapshot)."""
    parts = [sa.select(*[t.c[k] for k in _KEY], t.c.n, t.c.total, sa.literal(int(d)).label("d"))
             for t, d in ((status_counts, 0), (status_count_deltas, 1))]
    u = sa.union_all(*parts).subquery()
    q = (sa.select(*[u.c[k] for k in _KEY], sa.func.sum(u.c.n), sa.func.sum(u.c.total),
                   sa.func.sum(u.c.d))
         .group_by(*[u.c[k] for k in _KEY]))
    out = Counts()
    for tbl, status, bucket, n, total, d in conn.execute(q).all():
        out.pending_deltas += int(d or 0)
        if n or total:
            out.rows[(str(tbl), str(status), int(bucket))] = (int(n or 0), int(total or 0))
    return out


def counts(db, *, compact_above: int = COMPACT_ABOVE) -> Counts:
    """:func:`read_counts` on a connection of ``db``; compacts first (then reads again) when
    more than ``compact_above`` deltas wait and ``db`` may be written."""
    with db.engine.connect() as conn:
        got = read_counts(conn)
        conn.rollback()
    if got.pending_deltas > compact_above and try_compact(db):
        with db.engine.connect() as conn:
            got = read_counts(conn)
            conn.rollback()
    return got


def try_compact(db, *, now: float | None = None) -> bool:
    """:func:`compact` in transactions of at most :data:`CHUNK` deltas until fewer wait, when
    the database may be written; False when it may not (a read-only connection) or stayed
    locked."""
    try:
        while with_retry(lambda: _compact_tx(db, now)) >= CHUNK:
            pass
        return True
    except sa.exc.DBAPIError:
        return False


def _compact_tx(db, now):
    with db.engine.begin() as conn:
        return compact(conn, now=now)


def compact(conn: Connection, *, now: float | None = None, limit: int | None = None) -> int:
    """Fold the oldest ``limit`` (default :data:`CHUNK`) deltas (and done-job hour buckets older than
    :data:`KEEP_HOURS`) into ``status_counts``, in the caller's transaction; returns the
    number of deltas folded.

    The deltas folded are exactly those this statement deleted (``DELETE ... RETURNING``),
    so a delta committed meanwhile by another writer stays for the next compaction.
    """
    now = time.time() if now is None else now
    limit = CHUNK if limit is None else limit
    cutoff = int(now // 3600) - KEEP_HOURS
    d, c = status_count_deltas.c, status_counts.c
    sums: dict[tuple, list[int]] = {}

    def add(tbl, status, bucket, n, total):
        key = (tbl, status, 0 if 0 < bucket < cutoff else bucket)
        s = sums.setdefault(key, [0, 0])
        s[0] += int(n)
        s[1] += int(total)

    oldest = sa.select(d.id).order_by(d.id).limit(int(limit))
    rows = conn.execute(status_count_deltas.delete().where(d.id.in_(oldest))
                        .returning(d.tbl, d.status, d.hour_bucket, d.n, d.total)).all()
    for r in rows:
        add(*r)
    for r in conn.execute(status_counts.delete().where(c.hour_bucket > 0, c.hour_bucket < cutoff)
                          .returning(c.tbl, c.status, c.hour_bucket, c.n, c.total)).all():
        add(*r)
    if sums:
        _upsert(conn, [{"tbl": k[0], "status": k[1], "hour_bucket": k[2], "n": v[0], "total": v[1]}
                       for k, v in sums.items()])
        conn.execute(status_counts.delete().where(c.n == 0, c.total == 0))
    return len(rows)


def missing_triggers(conn: Connection) -> list[str]:
    """The counted tables whose counting triggers are missing (``db check``): their counts
    would drift from the rows."""
    if conn.dialect.name == "postgresql":
        have = {str(r[0]) for r in conn.execute(sa.text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'status_count_%'"))}
        want = {t: {f"status_count_{t}"} for t in COUNTED if t not in _PER_OPERATION}
    else:
        want = {}
        have = {str(r[0]) for r in conn.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'status_count_%'"))}
    for t in COUNTED:
        want.setdefault(t, {f"status_count_{t}_{op}" for op in ("ins", "del", "upd")})
    return [t for t in COUNTED if not want[t] <= have]


def _upsert(conn: Connection, values: list[dict]) -> None:
    """Add ``n`` and ``total`` to the base rows of these keys (created when absent)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(status_counts)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={"n": status_counts.c.n + stmt.excluded.n, "total": status_counts.c.total + stmt.excluded.total})
    conn.execute(stmt, values)


__all__ = ["CHUNK", "COMPACT_ABOVE", "COUNTED", "missing_triggers", "KEEP_HOURS", "Counts", "read_counts", "counts", "compact", "try_compact"]
