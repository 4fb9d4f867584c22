"""Normalising images again on demand (``contimg-photometry images renormalise``).

The normalise step already normalises a field's earlier epochs once the field has
references (docs/science.md §7.3.1), a bounded batch per new image. This does the same
at once for chosen images: the ones given, the un-normalised images of one image's field,
or those observed since an MJD. Each image is corrected with its own stored references
when it has a normalisation, else with those of the normalised image of its field nearest
in MJD, with the current baselines
(:func:`dsa110_contimg.pipeline.steps.normalise.correct_image`); then the running sums
and the ESE evaluation of the sources of every image normalised are recomputed
(:mod:`dsa110_contimg.pipeline.recompute`). Work goes in write transactions of at most
``BATCH`` images, so the write lock is never held for long.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import sqlalchemy as sa

from dsa110_contimg.store import lightcurves as lc_store

#: Images per write transaction.
BATCH = 8


def select_images(conn, *, image_ids: Sequence[int] = (), field_of: int | None = None,
                  since_mjd: float | None = None) -> list[int]:
    """The images to normalise again: ``image_ids`` as given, plus the un-normalised
    (``norm_status = failed``) images of the field of image ``field_of`` and those observed
    at or after ``since_mjd`` (MJD); duplicates and excluded images never. Earliest first."""
    from dsa110_contimg.store import images as image_store
    from dsa110_contimg.store.schema import images

    chosen = {int(i) for i in image_ids}
    if field_of is not None:
        row = image_store.image_field(conn, int(field_of))
        if row is not None:
            radius = lc_store.neighbourhood_radius(conn, row["radius_deg"])
            near = lc_store.images_near(conn, row["ra_center_deg"], row["dec_center_deg"], radius)
            chosen |= {int(i) for i, st in zip(near["id"], near["norm_status"]) if st == "failed"}
    if since_mjd is not None:
        q = sa.select(images.c.id).where(images.c.norm_status == "failed",
                                         images.c.mjd >= float(since_mjd))
        chosen |= {int(i) for (i,) in conn.execute(q)}
    if not chosen:
        return []
    rows = conn.execute(sa.select(images.c.id, images.c.mjd, images.c.duplicate_of,
                                  images.c.excluded).where(images.c.id.in_(sorted(chosen)))).all()
    keep = [(m if m is not None else np.inf, i) for i, m, dup, exc in rows
            if dup is None and not exc]
    return [i for _, i in sorted(keep)]


def _references_for(conn, field, image_id: int, mjd: float | None):
    """(reference ids, method, donor image id) for one image: its own stored references when
    it is normalised, else those of the field's normalised image nearest in MJD."""
    from dsa110_contimg.store.schema import images

    ok = [(i, r) for i, r, st in zip(field.ids, list(field.norm_ref_ids), list(field.norm_status))
          if st == "ok" and r]
    own = [r for i, r in ok if int(i) == image_id]
    if own:
        donor, refs = image_id, own[0]
    elif ok:
        t = np.nan_to_num(np.asarray([field.mjd[np.flatnonzero(field.ids == i)[0]] for i, _ in ok],
                                     float), nan=np.inf)
        k = int(np.argmin(np.abs(t - (np.inf if mjd is None else mjd))))
        donor, refs = int(ok[k][0]), ok[k][1]
    else:
        return None, None, None
    method = conn.execute(sa.select(images.c.norm_method).where(images.c.id == donor)).scalar()
    return np.array(json.loads(refs), np.int64), method, donor


def renormalise_one(conn, cfg, image_id: int) -> dict:
    """Normalise one image again inside the caller's write transaction; returns
    ``{"image_id", "status", "reason", "factor", "factor_err", "references_from"}``."""
    from dsa110_contimg.pipeline.recompute import field_context
    from dsa110_contimg.pipeline.steps.normalise import correct_image
    from dsa110_contimg.store import images as image_store

    row = image_store.image_field(conn, image_id)
    out = {"image_id": int(image_id), "status": "failed", "reason": None, "factor": None,
           "factor_err": None, "references_from": None}
    if row is None:
        out["reason"] = "no such image"
        return out
    ctx = field_context(conn, cfg, row["ra_center_deg"], row["dec_center_deg"], row["radius_deg"], [])
    refs, method, donor = _references_for(conn, ctx.field_images(conn), int(image_id), row["mjd"])
    if refs is None:
        out["reason"] = "no normalised image in its field to take references from"
        return out
    baselines = lc_store.load_baselines(conn, refs)
    ids, f, e, flux = lc_store.image_fluxes(conn, int(image_id), refs)
    res = correct_image(conn, ctx, int(image_id), refs, baselines, flux=flux, all_flux=f,
                        all_err=e, all_ids=ids, method=method)
    out.update(status=res["status"], reason=res.get("reason"), factor=res.get("factor"),
               factor_err=res.get("factor_err"), references_from=donor)
    return out


def renormalise_images(engine, cfg, image_ids: Sequence[int], *, batch: int = BATCH) -> dict:
    """Normalise ``image_ids`` again, ``batch`` per write transaction, each batch followed
    (in its transaction) by the running sums and ESE evaluation of the sources of the
    images it normalised. Returns ``{"images": [per-image results], "normalised": n,
    "sources": n, "ese_flagged": n}``."""
    from dsa110_contimg.pipeline.recompute import (field_context, recompute_running_stats,
                                                   reevaluate_ese)
    from dsa110_contimg.store import images as image_store
    from dsa110_contimg.store.engine import serialise_writes
    from dsa110_contimg.store.products import image_source_ids

    ids = [int(i) for i in image_ids]
    results, n_src, flagged = [], 0, 0
    for start in range(0, len(ids), max(int(batch), 1)):
        with engine.begin() as conn:
            serialise_writes(conn)
            part = [renormalise_one(conn, cfg, i) for i in ids[start:start + batch]]
            results += part
            done = [r["image_id"] for r in part if r["status"] == "ok"]
            if done:
                row = image_store.image_field(conn, done[0])
                src = sorted(image_source_ids(conn, done))
                ctx = field_context(conn, cfg, row["ra_center_deg"], row["dec_center_deg"],
                                    row["radius_deg"], src)
                n_src += recompute_running_stats(conn, ctx, src)
                flagged += reevaluate_ese(conn, ctx, src)
    return {"images": results, "normalised": sum(r["status"] == "ok" for r in results),
            "sources": n_src, "ese_flagged": flagged}


__all__ = ["BATCH", "renormalise_images", "renormalise_one", "select_images"]
