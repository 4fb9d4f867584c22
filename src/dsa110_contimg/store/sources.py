"""Source listings and searches for ``sources list|show``, the web site's ``/sources`` and
a source page's neighbours (SQL).

:class:`SourceQuery` holds the filters and the order of a listing; :func:`search_sources`
runs it, one page at a time (``limit``/``offset``), and returns the page with the number
of matching sources (:func:`list_sources` and :func:`count_sources` are its two halves).
What a listing reads is bounded by its page or its cone, never by the size of the table:
a name is matched as a prefix through the ``catalog_id`` index, a cone (radius at most
:data:`MAX_RADIUS_DEG`) through the ``(dec_deg, ra_deg)`` index and then by the exact
separation, an order by a metric walks that metric's index (sources without the metric
are left out of such a ranking). Filters are added by giving :class:`SourceQuery` a field
and :func:`_conditions` its condition (and, for an order, :data:`ORDERS` an entry).

Every row (:func:`source_rows`): ``id``, ``name`` (the survey's or the service's own
designation), ``survey``, ``kind`` (catalogue | monitor | new | blind), ``ra_deg``,
``dec_deg`` (the running weighted-mean position once detected), ``first_detected_mjd``
(null when never detected), ``new_high_sigma`` (null unless new), ``likely_transient``,
``n_detections``, ``n_measurements`` (the points of its light curve), ``catalog_flux_mjy``
(mJy), ``mean_flux_jyb`` (weighted mean flux density, Jy/beam), ``eta``, ``v``,
``candidate_id`` and ``candidate_status`` (its ESE candidate, if any) and, for a cone,
``separation_arcsec``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.catalogs.naming import NAME_FORMATS
from dsa110_contimg.core.geometry import angular_separation_deg
from dsa110_contimg.store.schema import (
    ese_candidates, new_sources, source_detections, sources, variability_stats,
)
from dsa110_contimg.store.sky import cone_box

#: Largest search radius (deg): a cone reads every source inside it.
MAX_RADIUS_DEG = 2.0
#: Orders ranked by a metric (highest first): name -> column; sources without it left out.
METRIC_ORDERS = {"eta": variability_stats.c.eta, "v": variability_stats.c.v,
                 "flux": variability_stats.c.weighted_mean, "epochs": variability_stats.c.n}
#: Orders of a listing: name -> ORDER BY clauses (``distance``: from a cone's centre).
ORDERS = {
    "id": (sources.c.id,),
    "significance": (new_sources.c.new_high_sigma.desc().nulls_last(), sources.c.id),
    "name": (sources.c.catalog_id, sources.c.id),
    **{name: (col.desc(), sources.c.id) for name, col in METRIC_ORDERS.items()},
    "distance": (sources.c.id,),
}
#: The code point after every character: the end of a prefix range.
_PREFIX_END = "\U0010ffff"
#: The distinct surveys, one index seek each (a loose index scan of (survey, catalog_id)).
_SURVEYS = sa.text("WITH RECURSIVE s(x) AS (SELECT min(survey) FROM sources UNION ALL "
                   "SELECT (SELECT min(survey) FROM sources WHERE survey > s.x) FROM s WHERE s.x IS NOT NULL) "
                   "SELECT x FROM s WHERE x IS NOT NULL")


@dataclass(frozen=True)
class SourceQuery:
    """Filters and order of a source listing (extend with new fields and conditions).

    ``name``: a designation prefix (case-insensitive; a bare ``J...`` matches under any
    survey prefix); ``ra_deg``, ``dec_deg``, ``radius_deg``: a cone (deg); ``min_epochs``:
    at least that many measurements; ``order``: a key of :data:`ORDERS`.
    """

    kinds: tuple[str, ...] = ()
    order: str = "id"
    limit: int | None = 100
    offset: int = 0
    name: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    radius_deg: float | None = None
    min_epochs: int | None = None

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if (self.ra_deg is None) != (self.dec_deg is None):
            raise ValueError("a position needs both RA and Dec")
        if self.cone and not 0.0 < float(self.radius_deg or 0.0) <= MAX_RADIUS_DEG:
            raise ValueError(f"the radius must be > 0 and at most {MAX_RADIUS_DEG:g} deg")
        if self.order == "distance" and not self.cone:
            raise ValueError("ordering by distance needs a position")

    @property
    def cone(self) -> bool:
        return self.ra_deg is not None


def _name_prefixes(conn: Connection, name: str) -> list[str]:
    """The designation prefixes a typed name stands for: itself (upper case, single spaces)
    and, for a bare designation (``J...``), the same under the name prefix of every survey
    (the first word of its first and last names; index seeks only)."""
    text = " ".join(name.upper().split())
    if not text.startswith("J"):
        return [text]
    surveys = [r[0] for r in conn.execute(_SURVEYS)]
    ends = [n for survey in surveys for n in conn.execute(
        sa.select(sa.func.min(sources.c.catalog_id), sa.func.max(sources.c.catalog_id))
        .where(sources.c.survey == survey)).one() if n]
    heads = {n.split(" ", 1)[0].upper() for n in ends if " " in n}
    heads |= {NAME_FORMATS[s.lower()][0] for s in surveys if s.lower() in NAME_FORMATS}
    return [text] + sorted(f"{h} {text}" for h in heads)


def _conditions(q: SourceQuery, conn: Connection | None = None) -> list:
    cond = []
    if q.kinds:
        cond.append(sources.c.kind.in_(list(q.kinds)))
    if q.name:
        cond.append(sa.or_(*[sources.c.catalog_id.between(p, p + _PREFIX_END)
                             for p in _name_prefixes(conn, q.name)]))
    if q.cone:
        cond += cone_box(sources.c.ra_deg, sources.c.dec_deg, q.ra_deg, q.dec_deg, q.radius_deg)
    if q.min_epochs:
        cond.append(variability_stats.c.n >= int(q.min_epochs))
    if q.order in METRIC_ORDERS:
        cond.append(METRIC_ORDERS[q.order].is_not(None))
    return cond


def _joined():
    sd, ns, vs, ec = source_detections, new_sources, variability_stats, ese_candidates
    return (sources.outerjoin(sd, sd.c.source_id == sources.c.id)
            .outerjoin(ns, ns.c.source_id == sources.c.id)
            .outerjoin(vs, vs.c.source_id == sources.c.id)
            .outerjoin(ec, ec.c.source_id == sources.c.id))


def _select():
    sd, ns, vs, ec = source_detections, new_sources, variability_stats, ese_candidates
    cols = [sources.c.id, sources.c.catalog_id.label("name"), sources.c.survey, sources.c.kind,
            sa.func.coalesce(sd.c.wm_ra_deg, sources.c.ra_deg).label("ra_deg"),
            sa.func.coalesce(sd.c.wm_dec_deg, sources.c.dec_deg).label("dec_deg"),
            sd.c.first_detected_mjd, ns.c.new_high_sigma, ns.c.likely_transient,
            ns.c.image_id.label("new_image_id"), ns.c.sigma_image_id,
            sa.func.coalesce(sd.c.n_detections, 0).label("n_detections"),
            sa.func.coalesce(vs.c.n, 0).label("n_measurements"), sources.c.catalog_flux_mjy,
            vs.c.weighted_mean.label("mean_flux_jyb"), vs.c.eta, vs.c.v,
            ec.c.id.label("candidate_id"), ec.c.status.label("candidate_status")]
    return sa.select(*cols).select_from(_joined())


def source_rows(rows) -> list[dict]:
    out = []
    for r in rows:
        d = dict(r)
        d["likely_transient"] = None if d["likely_transient"] is None else bool(d["likely_transient"])
        out.append(d)
    return out


def _cone_rows(conn: Connection, query: SourceQuery, cond: list) -> list[dict]:
    """Every source of the cone's box within the radius, with its separation, in order."""
    rows = source_rows(conn.execute(_select().where(*cond)).mappings().all())
    if rows:
        sep = 3600.0 * angular_separation_deg([r["ra_deg"] for r in rows], [r["dec_deg"] for r in rows],
                                              query.ra_deg, query.dec_deg)
        for r, s in zip(rows, sep.tolist()):
            r["separation_arcsec"] = s
        rows = [r for r in rows if r["separation_arcsec"] <= 3600.0 * query.radius_deg]
    key = {"id": "id", "name": "name", "distance": "separation_arcsec", "significance": "new_high_sigma",
           "eta": "eta", "v": "v", "flux": "mean_flux_jyb", "epochs": "n_measurements"}[query.order]
    ascending = query.order in ("id", "name", "distance")
    present = [r for r in rows if r[key] is not None]
    present.sort(key=lambda r: (r[key] if ascending else -r[key], r["id"]))
    return present + [r for r in rows if r[key] is None]


def search_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> tuple[list[dict], int]:
    """One page of sources matching ``query`` and how many match in all."""
    cond = _conditions(query, conn)
    stop = None if query.limit is None else query.offset + int(query.limit)
    if query.cone:
        rows = _cone_rows(conn, query, cond)
        return rows[query.offset:stop], len(rows)
    stmt = _select().where(*cond).order_by(*ORDERS[query.order])
    if query.limit is not None:
        stmt = stmt.limit(int(query.limit)).offset(int(query.offset))
    rows = source_rows(conn.execute(stmt).mappings().all())
    counted = sources.outerjoin(variability_stats, variability_stats.c.source_id == sources.c.id)
    total = conn.execute(sa.select(sa.func.count()).select_from(counted).where(*cond)).scalar()
    return rows, int(total or 0)


def list_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> list[dict]:
    """One page of sources matching ``query`` (see the module docstring for the fields)."""
    return search_sources(conn, query)[0]


def count_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> int:
    return search_sources(conn, SourceQuery(**{**query.__dict__, "limit": 0, "offset": 0}))[1]


def sources_near(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float, *,
                 exclude_id: int | None = None, limit: int = 20) -> list[dict]:
    """The sources within ``radius_deg`` of a position, nearest first (at most ``limit``,
    ``exclude_id`` left out), as the rows of :func:`search_sources`."""
    rows, _ = search_sources(conn, SourceQuery(ra_deg=ra_deg, dec_deg=dec_deg, order="distance",
                                               radius_deg=min(radius_deg, MAX_RADIUS_DEG), limit=limit + 1))
    return [r for r in rows if r["id"] != exclude_id][:limit]


def source_by_id(conn: Connection, source_id: int) -> dict | None:
    """One source's row (as :func:`list_sources`), or None."""
    rows = source_rows(conn.execute(_select().where(sources.c.id == int(source_id))).mappings().all())
    return rows[0] if rows else None


__all__ = ["MAX_RADIUS_DEG", "METRIC_ORDERS", "ORDERS", "SourceQuery", "count_sources", "list_sources",
           "search_sources", "source_by_id", "sources_near"]
