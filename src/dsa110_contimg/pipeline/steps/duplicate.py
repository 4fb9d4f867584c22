"""Step ``duplicate``: one epoch per observation.

An image whose data (:func:`dsa110_contimg.store.products.data_digest`: the header and
pixels sampled through the file, whatever its name or modification time) is already
stored under another path is the same observation again: it is recorded as a duplicate of
that image (``images.duplicate_of``, no measurements, no normalisation) and every later
step is skipped, so it adds no epoch to any light curve, variability statistic or ESE
search. A changed file at the same path is no duplicate: it replaces its earlier
measurement as before.

Prepare (read connection): look for the original, so that a duplicate skips the other
steps' reads (not again when the caller just looked: ``ctx.duplicate_checked``). Write (first in the image's transaction, authoritative under the write
lock): the duplicate row, and when this path held an epoch before (the file was
overwritten with a copy of another), the sources it measured recomputed without it.
The result is ``{"duplicate_of", "original_path"}`` or None.
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.pipeline.steps.base import ImageContext, Step
from dsa110_contimg.pipeline.steps.measurements import data_digest, image_row
from dsa110_contimg.store import products as product_store


def prepare(conn, ctx: ImageContext) -> None:
    if ctx.duplicate_checked:        # looked for on a read connection just before
        return
    original = product_store.original_image(conn, data_digest(ctx), ctx.path)
    if original is not None:
        ctx.duplicate_of = original["id"]


def write(conn, ctx: ImageContext) -> dict | None:
    original = product_store.original_image(conn, data_digest(ctx), ctx.path)
    if original is None:
        ctx.duplicate_of = None
        return None
    ctx.duplicate_of = original["id"]
    ctx.notes.append(duplicate_note(original))
    ctx.image_id = record_duplicate(conn, ctx.cfg, image_row(ctx), original["id"])
    ctx.source_ids = np.zeros(0, np.int64)
    return {"duplicate_of": original["id"], "original_path": original["path"]}


def duplicate_note(original: dict) -> str:
    """The workflow note of a duplicate of ``original`` (``{"id", "path"}``)."""
    return (f"duplicate of image #{original['id']} ({original['path']}): the same data under "
            "another path; not an epoch of any light curve")


def record_duplicate(conn, cfg, row: dict, original_id: int) -> int:
    """Store ``row`` as a duplicate of image ``original_id``; when its path held an epoch
    before, recompute the sources it measured without it. Returns its ``images.id``."""
    from dsa110_contimg.pipeline.recompute import recompute_sources

    image_id, held = product_store.store_duplicate(conn, row, original_id)
    if held:
        recompute_sources(conn, cfg, ra_deg=row["ra_center_deg"], dec_deg=row["dec_center_deg"],
                          radius_deg=row["radius_deg"], source_ids=sorted(held),
                          epoch_mjd=row.get("mjd"))
    return image_id


STEP = Step("duplicate", write, prepare)
