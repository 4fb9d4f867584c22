"""Per-image outcome queries: QC verdict, normalisation, reference choices (``images`` CLI).

Write side: :func:`save_reference_choices` (inside the image's transaction).
Read side: :func:`list_images`, :func:`image_detail` (the images not normalised, by reason
class, are counted by :mod:`dsa110_contimg.store.counters`).
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store.schema import batch_job_items, images, reference_choices, sources

_IMAGE_COLS = ("id", "path", "kind", "data_id", "mjd", "method", "catalog", "beam_source",
               "n_sources", "n_success", "qc_status", "qc_reasons", "norm_status", "norm_method",
               "norm_factor", "norm_factor_err", "norm_scatter", "norm_n_refs", "norm_reason",
               "notes", "measured_at", "duplicate_of", "excluded", "excluded_reason", "excluded_at")


def save_reference_choices(conn: Connection, image_id: int, rows: Sequence[dict]) -> None:
    """Replace the image's reference decisions (rows: source_id, chosen, compactness, snr,
    reason, optional role; a chosen one is ``not_chosen`` until its correction says
    ``used`` or ``clipped``, see :func:`record_reference_outcomes`)."""
    from dsa110_contimg.store import bulk

    image_id = int(image_id)
    bulk.execute(conn, "DELETE FROM reference_choices WHERE image_id = ?", (image_id,))
    out = []
    for r in rows:
        snr, reason = r.get("snr"), str(r["reason"])
        snr = None if snr is None or not math.isfinite(snr) else float(snr)
        out.append((image_id, int(r["source_id"]), bool(r["chosen"]), str(r["compactness"]), snr,
                    reason, r.get("role") or ("not_chosen" if r["chosen"] or reason.startswith("not ")
                                              else "rejected")))
    bulk.executemany(conn, bulk.insert_sql(
        "reference_choices", ("image_id", "source_id", "chosen", "compactness", "snr", "reason",
                              "role")), out)


_OUTCOMES = ("used", "clipped", "rejected")


def record_reference_outcomes(conn: Connection, image_id: int, outcomes: Sequence[dict]) -> None:
    """What the correction of one image did with each of its chosen references.

    ``outcomes``: dicts with ``source_id``, ``role`` (``used`` / ``clipped`` / ``rejected``),
    ``ratio`` (flux / baseline or None) and ``reason``; the reference's earlier decision
    text (why it was chosen) is kept after the new reason. A reference without a decision
    row (an image normalised again with another image's references) gets one.
    """
    from dsa110_contimg.store import bulk

    ids = [int(o["source_id"]) for o in outcomes]
    if not ids:
        return
    old = {int(sid): why for sid, why in bulk.fetch_in(
        conn, "SELECT source_id, reason FROM reference_choices WHERE image_id = ? AND "
              "source_id IN ({in})", ids, (int(image_id),))}
    upd, ins = [], []
    for o in outcomes:
        sid = int(o["source_id"])
        ratio = o.get("ratio")
        ratio = float(ratio) if ratio is not None and np.isfinite(ratio) else None
        why = old.get(sid) or ""
        if why.split(":", 1)[0] in _OUTCOMES:          # written by an earlier correction
            why = why.split("; ", 1)[1] if "; " in why else ""
        reason = str(o["reason"]) + (f"; {why}" if why else "")
        row = (o["role"] == "used", o["role"], ratio, reason)
        if sid in old:
            upd.append(row + (int(image_id), sid))
        else:
            ins.append((int(image_id), sid, "unknown") + row)
    if upd:
        bulk.executemany(conn, "UPDATE reference_choices SET chosen = ?, role = ?, ratio = ?, "
                               "reason = ? WHERE image_id = ? AND source_id = ?", upd)
    if ins:
        bulk.executemany(conn, bulk.insert_sql(
            "reference_choices", ("image_id", "source_id", "compactness", "chosen", "role",
                                  "ratio", "reason")), ins)


def _row(r) -> dict:
    d = dict(r._mapping)
    for key in ("qc_reasons", "notes"):
        d[key] = json.loads(d[key]) if d.get(key) else []
    return d


def list_images(conn: Connection, *, norm_status: str | None = None, qc_status: str | None = None,
                limit: int | None = 100) -> list[dict]:
    """Images, newest measured first, with their QC verdict and normalisation outcome."""
    q = sa.select(*(images.c[c] for c in _IMAGE_COLS)).order_by(images.c.measured_at.desc(),
                                                                 images.c.id.desc())
    if norm_status:
        q = q.where(images.c.norm_status == norm_status)
    if qc_status:
        q = q.where(images.c.qc_status == qc_status)
    if limit:
        q = q.limit(int(limit))
    return [_row(r) for r in conn.execute(q)]


def find_image(conn: Connection, key: str) -> int | None:
    """Image id from an id, a path (absolute or ending with ``key``) or a data id."""
    if str(key).isdigit():
        hit = conn.execute(sa.select(images.c.id).where(images.c.id == int(key))).scalar()
        if hit is not None:
            return int(hit)
    for cond in (images.c.path == str(key), images.c.data_id == str(key),
                 images.c.path.like("%/" + str(key).lstrip("/"))):
        hit = conn.execute(sa.select(images.c.id).where(cond).order_by(images.c.id.desc())
                           .limit(1)).scalar()
        if hit is not None:
            return int(hit)
    return None


def image_detail(conn: Connection, image_id: int) -> dict | None:
    """One image's outcome, its reference decisions and the jobs that measured it."""
    r = conn.execute(sa.select(*(images.c[c] for c in _IMAGE_COLS)).where(
        images.c.id == image_id)).first()
    if r is None:
        return None
    out = _row(r)
    out["references"] = image_references(conn, image_id)
    from dsa110_contimg.store.detections import image_detections

    keep = ("id", "source_id", "source_name", "status", "ra_deg", "dec_deg", "ra_err_arcsec",
            "dec_err_arcsec", "peak_jyb", "peak_err_jyb", "snr", "de_ruiter_r", "reason")
    out["detections"] = [{k: d[k] for k in keep} for d in image_detections(conn, image_id)]
    out["jobs"] = sorted({int(j) for (j,) in conn.execute(
        sa.select(batch_job_items.c.batch_id).where(batch_job_items.c.image_id == image_id))})
    return out


#: order of the roles in a listing
_ROLE_ORDER = {"used": 0, "clipped": 1, "rejected": 2, "not_chosen": 3}


def image_references(conn: Connection, image_id: int) -> list[dict]:
    """Every candidate reference of one image: ``source_id``, ``catalog_id``, ``chosen``
    (used by the correction), ``role`` (used / clipped / rejected / not_chosen),
    ``ratio`` (flux / baseline), ``compactness``, ``snr`` and ``reason``; used first, then
    clipped, rejected and not chosen, by decreasing SNR."""
    refs = conn.execute(sa.select(reference_choices.c.source_id, sources.c.catalog_id,
                                  reference_choices.c.chosen, reference_choices.c.role,
                                  reference_choices.c.ratio, reference_choices.c.compactness,
                                  reference_choices.c.snr, reference_choices.c.reason)
                        .join(sources, sources.c.id == reference_choices.c.source_id)
                        .where(reference_choices.c.image_id == int(image_id))).all()
    rows = [dict(x._mapping) for x in refs]
    rows.sort(key=lambda d: (_ROLE_ORDER.get(d["role"], 4), -(d["snr"] or 0.0)))
    return rows


def image_outcome(conn: Connection, image_id: int | None, path: str | None = None) -> dict | None:
    """Short outcome of an image by id (else by path) for ``jobs show``, or None.

    Keys: ``image_id``, ``qc_status``, ``norm_status``, ``norm_reason``, ``method`` and
    ``see`` (the command that shows everything).
    """
    q = sa.select(images.c.id, images.c.qc_status, images.c.norm_status, images.c.norm_reason,
                  images.c.method)
    r = None
    if image_id is not None:
        r = conn.execute(q.where(images.c.id == int(image_id))).first()
    if r is None and path:
        r = conn.execute(q.where(images.c.path == str(path))).first()
    if r is None:
        return None
    return {"image_id": r.id, "qc_status": r.qc_status, "norm_status": r.norm_status,
            "norm_reason": r.norm_reason, "method": r.method,
            "see": f"contimg-photometry images show {r.id}"}


def stored_content_ids(conn: Connection) -> dict[str, str]:
    """``{path: content_id}`` of every stored image (what reprocess skips)."""
    return dict(conn.execute(sa.select(images.c.path, images.c.content_id)).all())


def norm_reasons(conn: Connection, image_ids: Sequence[int]) -> dict[int, str | None]:
    """``{image_id: norm_reason}`` of the given images (bounded by the caller's list)."""
    from dsa110_contimg.store import bulk

    return {int(i): r for i, r in bulk.fetch_in(
        conn, "SELECT id, norm_reason FROM images WHERE id IN ({in})", [int(i) for i in image_ids])}


def image_field(conn: Connection, image_id: int) -> dict | None:
    """Where an image is and what it holds: ``id, path, mjd, ra_center_deg, dec_center_deg,
    radius_deg`` (deg), ``excluded``, ``excluded_reason``, ``duplicate_of``; None when absent."""
    r = conn.execute(sa.select(images.c.id, images.c.path, images.c.mjd, images.c.ra_center_deg,
                               images.c.dec_center_deg, images.c.radius_deg, images.c.excluded,
                               images.c.excluded_reason, images.c.duplicate_of)
                     .where(images.c.id == int(image_id))).first()
    return None if r is None else dict(r._mapping)


def set_exclusion(conn: Connection, image_id: int, *, excluded: bool, reason: str | None,
                  at: float | None) -> None:
    """Take an image out of (``excluded``) or back into the light curves; the reason and
    time (Unix s) are kept while it is excluded."""
    conn.execute(images.update().where(images.c.id == int(image_id)).values(
        excluded=bool(excluded), excluded_reason=reason if excluded else None,
        excluded_at=at if excluded else None))

