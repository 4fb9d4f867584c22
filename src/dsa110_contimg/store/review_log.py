"""The review log of ESE candidates: append-only entries (when, who, action, status after,
note), the pipeline's own flagging beside the reviewers' actions.

Written by :func:`flag` (the ESE step, in the transaction that creates the candidates) and
:func:`review` (the web site and ``ese investigate|dismiss|reactivate``); never updated or
deleted. Entries are read in the order they were appended (by id), which a clock set
back cannot reorder. Read one candidate's history (:func:`history`) or the latest entry of many
(:func:`latest`, for exports).
"""

from __future__ import annotations

import time
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.schema import ESE_STATES, ese_candidates, review_log
from dsa110_contimg.store.values import clean, with_iso_times

#: Who the pipeline's own entries name.
PIPELINE = "pipeline"
#: The action recorded for each status a review sets.
ACTION_OF_STATUS = {"investigated": "investigating", "dismissed": "dismissed", "active": "reactivated"}
_ENTRY = (review_log.c.candidate_id, review_log.c.created_at, review_log.c.reviewer, review_log.c.action,
          review_log.c.status, review_log.c.note)


def flag(conn: Connection, source_ids: Sequence[int], *, at: float, note_of: dict | None = None) -> None:
    """Record that the pipeline flagged the candidates of ``source_ids`` (new candidates),
    with an optional note per source id (e.g. the criteria that fired)."""
    ids = [int(s) for s in source_ids]
    if not ids:
        return
    rows = bulk.fetch_in(conn, "SELECT id, source_id FROM ese_candidates WHERE source_id IN ({in})", ids)
    notes = note_of or {}
    bulk.executemany(conn, bulk.insert_sql("review_log", ("candidate_id", "created_at", "reviewer", "action",
                                                          "status", "note")),
                     [(int(cid), float(at), PIPELINE, "flagged", "active", notes.get(int(sid)))
                      for cid, sid in rows])


def review(conn: Connection, candidate_id: int, status: str, *, reviewer: str, note: str | None = None,
           at: float | None = None) -> bool:
    """Apply a review: the candidate's status (and its latest note when one is given)
    changes and the action is appended to its log. False when there is no such candidate.

    ``reviewer`` names who acted; the candidate's ``flagged_by`` (who found it) is kept.
    """
    if status not in ESE_STATES:
        raise ValueError(f"status must be one of {', '.join(ESE_STATES)}, not {status!r}")
    now = time.time() if at is None else float(at)
    values = {"status": status, "updated_at": now}
    if status == "investigated":
        values["investigated_at"] = now
    elif status == "dismissed":
        values["dismissed_at"] = now
    if note is not None:
        values["notes"] = note
    changed = conn.execute(ese_candidates.update().where(ese_candidates.c.id == int(candidate_id))
                           .values(**values)).rowcount == 1
    if changed:
        conn.execute(review_log.insert().values(candidate_id=int(candidate_id), created_at=now,
                                                reviewer=str(reviewer), action=ACTION_OF_STATUS[status],
                                                status=status, note=note))
    return changed


def _entry(r) -> dict:
    return with_iso_times(clean(dict(r._mapping)))


def history(conn: Connection, candidate_id: int) -> list[dict]:
    """Every entry of one candidate in the order they were appended: ``created_at`` (Unix s) and
    ``created_at_iso``, ``reviewer``, ``action``, ``status``, ``note``."""
    q = (sa.select(*_ENTRY[1:]).where(review_log.c.candidate_id == int(candidate_id))
         .order_by(review_log.c.id))
    return [_entry(r) for r in conn.execute(q)]


def latest(conn: Connection, candidate_ids: Sequence[int]) -> dict[int, dict]:
    """The latest entry and the number of review actions (entries that are not the
    pipeline's flagging) per candidate: ``{candidate_id: {..., "n_reviews": n}}``."""
    out: dict[int, dict] = {}
    ids = [int(c) for c in candidate_ids]
    for chunk in (ids[i:i + bulk.CHUNK] for i in range(0, len(ids), bulk.CHUNK)):
        q = sa.select(*_ENTRY).where(review_log.c.candidate_id.in_(chunk)).order_by(review_log.c.id)
        for r in conn.execute(q):
            e = _entry(r)
            cid = e.pop("candidate_id")
            n = out.get(cid, {}).get("n_reviews", 0) + (e["action"] != "flagged")
            out[cid] = {**e, "n_reviews": n}
    return out


__all__ = ["ACTION_OF_STATUS", "PIPELINE", "flag", "history", "latest", "review"]
