"""Taking an epoch out of the light curves by hand, and putting it back.

:func:`set_excluded` marks one image excluded (with the operator's reason) or included
again and, in the same write transaction, recomputes what its field's epochs feed for the
sources it measured (:func:`dsa110_contimg.pipeline.recompute.recompute_sources`): the
reference baselines it was part of and the normalisations that used them, running
statistics and ESE candidates. The image's measurements are kept, so including it again
restores every number it contributed to exactly.
"""

from __future__ import annotations

import time

from dsa110_contimg.core.errors import PhotometryError
from dsa110_contimg.pipeline.recompute import recompute_sources
from dsa110_contimg.store import images as image_store
from dsa110_contimg.store.engine import serialise_writes
from dsa110_contimg.store.products import image_source_ids


class ExclusionError(PhotometryError):
    """An image cannot be excluded or included (absent, or a duplicate that is no epoch)."""


def set_excluded(engine, cfg, image_id: int, *, excluded: bool, reason: str | None = None) -> dict:
    """Exclude (``excluded=True``, with ``reason``) or include image ``image_id`` and
    recompute its field; returns ``{"image_id", "excluded", "reason", "changed",
    "renormalised", "sources", "ese_flagged"}`` (``changed`` False when it already was in
    that state: nothing is recomputed then).

    Raises :class:`ExclusionError` when the image does not exist or is a duplicate, or
    when excluding without a reason.
    """
    if excluded and not (reason or "").strip():
        raise ExclusionError("a reason is required to exclude an image")
    with engine.begin() as conn:
        serialise_writes(conn)
        row = image_store.image_field(conn, image_id)
        if row is None:
            raise ExclusionError(f"no image #{image_id}")
        if row["duplicate_of"] is not None:
            raise ExclusionError(f"image #{image_id} is a duplicate of image #{row['duplicate_of']}"
                                 " and no epoch of any light curve")
        out = {"image_id": int(image_id), "excluded": bool(excluded),
               "reason": reason if excluded else None, "changed": False, "renormalised": [],
               "sources": 0, "ese_flagged": 0}
        if bool(row["excluded"]) == bool(excluded) and (not excluded or
                                                        row["excluded_reason"] == reason):
            return out
        image_store.set_exclusion(conn, image_id, excluded=excluded, reason=reason,
                                  at=time.time())
        if bool(row["excluded"]) != bool(excluded):
            out.update(recompute_sources(conn, cfg, ra_deg=row["ra_center_deg"],
                                         dec_deg=row["dec_center_deg"],
                                         radius_deg=row["radius_deg"],
                                         source_ids=sorted(image_source_ids(conn, [image_id])),
                                         epoch_mjd=row["mjd"]))
        out["changed"] = True
        return out


__all__ = ["ExclusionError", "set_excluded"]
