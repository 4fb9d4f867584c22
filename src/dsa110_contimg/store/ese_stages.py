"""ESE candidate stages: the current stage of candidates and the append-only history of
its changes (``ese_candidates.stage``, ``ese_stage_history``).

The stage itself is written with the candidate row
(:func:`~dsa110_contimg.store.lightcurves.upsert_ese_candidates`, which reports the
changes); :func:`record_stage_changes` appends those changes to the history in the same
transaction. Reads are bounded by the ids asked for (one field's sources, one candidate).
"""

from __future__ import annotations

import time
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.schema import ese_stage_history
from dsa110_contimg.store.values import finite_or_none


#: The stored best template of a candidate, as :func:`candidate_templates` returns it.
TEMPLATE_COLUMNS = ("stage", "t_min_mjd", "duration_days", "shape_significance", "depth",
                    "template", "baseline_jyb", "caustic_amp")


def candidate_templates(conn: Connection, source_ids: Sequence[int]) -> dict[int, dict]:
    """``{source_id: {column: value}}`` of the candidates among ``source_ids``, columns
    :data:`TEMPLATE_COLUMNS`: the stage (None when none) and the stored best template
    (epoch of minimum t_min_mjd, MJD; duration, days; significance, sigma; fractional
    depth; shape name; baseline, Jy/beam; fractional caustic amplitude; None when none)."""
    return {int(r[0]): dict(zip(TEMPLATE_COLUMNS, r[1:]))
            for r in bulk.fetch_in(
                conn, f"SELECT source_id, {', '.join(TEMPLATE_COLUMNS)} FROM ese_candidates "
                      "WHERE source_id IN ({in})", [int(s) for s in source_ids])}


def record_stage_changes(conn: Connection, changes: list[dict], rows: list[dict], *,
                         image_id: int | None, mjd: float | None,
                         significance: dict[int, float] | None = None,
                         now: float | None = None) -> int:
    """Append one history row per ``change == "stage"`` entry of ``changes`` (as reported by
    ``upsert_ese_candidates``); ``rows`` are the candidate rows written (their
    ``stage_reason``), ``significance`` the sigma behind each source's stage, ``mjd`` the
    latest epoch evaluated (MJD). Returns how many were appended."""
    significance = significance or {}
    now = time.time() if now is None else now
    by_source = {int(r["source_id"]): r for r in rows}
    new = []
    for c in changes:
        if c["change"] != "stage" or c.get("candidate_id") is None:
            continue
        row = by_source.get(int(c["source_id"]), {})
        new.append({"candidate_id": int(c["candidate_id"]), "created_at": now,
                    "stage": c["stage"], "previous_stage": c["previous_stage"],
                    "reason": row.get("stage_reason"),
                    "significance": finite_or_none(significance.get(int(c["source_id"]))),
                    "mjd": finite_or_none(mjd), "image_id": image_id})
    if new:
        conn.execute(ese_stage_history.insert(), new)
    return len(new)


def stage_history(conn: Connection, candidate_id: int, limit: int = 200) -> list[dict]:
    """A candidate's stage changes, oldest first (at most ``limit``, the latest ones)."""
    h = ese_stage_history.c
    rows = conn.execute(sa.select(ese_stage_history).where(h.candidate_id == int(candidate_id))
                        .order_by(h.created_at.desc(), h.id.desc()).limit(int(limit))).mappings()
    return [dict(r) for r in rows][::-1]


__all__ = ["TEMPLATE_COLUMNS", "candidate_templates", "record_stage_changes", "stage_history"]
