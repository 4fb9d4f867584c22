"""Variable sources per field, from the stored per-source statistics
(:func:`dsa110_contimg.science.variables.select_variables`).

A *field* is a pointing: the images whose centres fall in one 0.1-degree cell (RA, Dec),
with the cell's mean centre and the largest image radius. Each field's population is the
sources in the box of that radius around its centre that have variability statistics
(at most ``limit``, by the ``sources (dec_deg, ra_deg)`` index joined to
``variability_stats`` by key), so a read is bounded by the field; the selection is
computed from those stored statistics, never from the light curves. A source in several
overlapping fields is listed once, with the field where it was selected first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.science.variables import select_variables
from dsa110_contimg.store.sky import cone_box
from dsa110_contimg.store.schema import images, sources, variability_stats

#: Pointing cell (degrees) that groups image centres into fields.
FIELD_CELL_DEG = 0.1
#: Most sources of one field's population.
FIELD_LIMIT = 20000
#: Statistics read per source (variability_stats columns).
STAT_COLUMNS = ("n", "eta", "v", "vs_max", "m_at_vs_max", "weighted_mean", "chi2_nu")


@dataclass(frozen=True)
class Field:
    """One pointing: mean centre (deg), largest image radius (deg), number of images."""

    ra_deg: float
    dec_deg: float
    radius_deg: float
    n_images: int

    @property
    def name(self) -> str:
        return f"{self.ra_deg:.2f}{self.dec_deg:+.2f}"


def fields(conn: Connection, max_fields: int = 1000) -> list[Field]:
    """The pointings of the stored images (at most ``max_fields``, most images first)."""
    cell_ra = sa.cast(images.c.ra_center_deg / FIELD_CELL_DEG, sa.Integer)
    cell_dec = sa.cast(images.c.dec_center_deg / FIELD_CELL_DEG, sa.Integer)
    count = sa.func.count()
    q = (sa.select(sa.func.avg(images.c.ra_center_deg), sa.func.avg(images.c.dec_center_deg),
                   sa.func.max(images.c.radius_deg), count)
         .where(images.c.ra_center_deg.is_not(None), images.c.dec_center_deg.is_not(None))
         .group_by(cell_ra, cell_dec).order_by(count.desc()).limit(int(max_fields)))
    return [Field(float(r[0]), float(r[1]), float(r[2] or 0.0), int(r[3])) for r in conn.execute(q)]


def field_statistics(conn: Connection, field: Field, limit: int = FIELD_LIMIT) -> dict[str, np.ndarray]:
    """Stored statistics of the sources of one field: ``source_id``, ``catalog_id``,
    ``ra_deg``, ``dec_deg`` and :data:`STAT_COLUMNS` (arrays; NaN where NULL)."""
    vs = variability_stats.c
    cond = cone_box(sources.c.ra_deg, sources.c.dec_deg, field.ra_deg, field.dec_deg,
                    max(field.radius_deg, 0.01))
    q = (sa.select(sources.c.id, sources.c.catalog_id, sources.c.ra_deg, sources.c.dec_deg,
                   *[vs[c] for c in STAT_COLUMNS])
         .join(variability_stats, vs.source_id == sources.c.id)
         .where(*cond).order_by(sources.c.id).limit(int(limit)))
    rows = conn.execute(q).all()
    out = {"source_id": np.array([r[0] for r in rows], np.int64),
           "catalog_id": np.array([r[1] for r in rows], object)}
    for j, name in enumerate(("ra_deg", "dec_deg") + STAT_COLUMNS):
        out[name] = np.array([np.nan if r[2 + j] is None else r[2 + j] for r in rows], float)
    return out


def field_variables(conn: Connection, cfg=None, *, max_fields: int = 1000) -> list[dict]:
    """Variable sources of every field, most significant (|Vs|, then eta) first.

    ``cfg``: the photometry configuration (``variable_eta_v_sigma``, ``variable_clip_sigma``,
    ``variable_vs_min``, ``variable_m_min``, ``variable_min_epochs``); defaults of
    :mod:`dsa110_contimg.science.variables` when None. Each row: ``source_id``,
    ``catalog_id``, ``ra_deg``, ``dec_deg``, ``field``, ``n_epochs``, ``eta``, ``v``,
    ``vs`` (|Vs| of the most significant consecutive pair), ``m`` (its signed m),
    ``weighted_mean_jyb``, ``criteria`` (``eta_v``, ``two_epoch``), ``reason`` and the
    field's ``eta_threshold`` / ``v_threshold`` (None when the field is too small to fit).
    """
    kw = selection_options(cfg)
    out: dict[int, dict] = {}
    for fld in fields(conn, max_fields):
        st = field_statistics(conn, fld)
        if not st["source_id"].size:
            continue
        sel = select_variables(st["eta"], st["v"], st["vs_max"], st["m_at_vs_max"], st["n"], **kw)
        th = sel.thresholds
        for i in np.flatnonzero(sel.variable):
            sid = int(st["source_id"][i])
            if sid in out:
                continue
            out[sid] = {
                "source_id": sid, "catalog_id": st["catalog_id"][i], "ra_deg": st["ra_deg"][i],
                "dec_deg": st["dec_deg"][i], "field": fld.name, "n_epochs": int(st["n"][i]),
                "eta": _f(st["eta"][i]), "v": _f(st["v"][i]), "vs": _f(st["vs_max"][i]),
                "m": _f(st["m_at_vs_max"][i]), "weighted_mean_jyb": _f(st["weighted_mean"][i]),
                "criteria": [c for c, hit in (("eta_v", sel.eta_v[i]), ("two_epoch", sel.two_epoch[i]))
                             if hit],
                "reason": sel.reasons[i],
                "eta_threshold": None if th is None else th.eta_threshold,
                "v_threshold": None if th is None else th.v_threshold}
    return sorted(out.values(), key=lambda r: (-(r["vs"] or 0.0), -(r["eta"] or 0.0), r["source_id"]))


def selection_options(cfg) -> dict:
    """Keyword arguments of ``select_variables`` from a photometry configuration (or {})."""
    if cfg is None:
        return {}
    return {"eta_v_sigma": cfg.variable_eta_v_sigma, "clip_sigma": cfg.variable_clip_sigma,
            "vs_min": cfg.variable_vs_min, "m_min": cfg.variable_m_min,
            "min_epochs": cfg.variable_min_epochs}


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


__all__ = ["FIELD_CELL_DEG", "Field", "field_statistics", "field_variables", "fields",
           "selection_options"]
