"""Source listings for ``sources list|show`` and the web (SQL).

:class:`SourceQuery` holds the filters and the order of a listing; :func:`list_sources`
runs it, one page at a time (``limit``/``offset``), so what a listing reads is bounded by
the page. Filters are added by giving :class:`SourceQuery` a field and
:func:`_conditions` its condition (and, for an order, :data:`ORDERS` an entry).

Every row (:func:`source_rows`): ``id``, ``name`` (the survey's or the service's own
designation), ``survey``, ``kind`` (catalogue | monitor | new | blind), ``ra_deg``,
``dec_deg`` (the running weighted-mean position once detected), ``first_detected_mjd``
(null when never detected), ``new_high_sigma`` (null unless new), ``likely_transient``,
``n_detections`` and ``n_measurements`` (the points of its light curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store.schema import new_sources, source_detections, sources, variability_stats

#: Orders of a listing: name -> ORDER BY clauses.
ORDERS = {
    "id": (sources.c.id,),
    "significance": (new_sources.c.new_high_sigma.desc().nulls_last(), sources.c.id),
    "name": (sources.c.catalog_id, sources.c.id),
}


@dataclass(frozen=True)
class SourceQuery:
    """Filters and order of a source listing (extend with new fields and conditions)."""

    kinds: tuple[str, ...] = ()
    order: str = "id"
    limit: int | None = 100
    offset: int = 0


def _conditions(q: SourceQuery) -> list:
    cond = []
    if q.kinds:
        cond.append(sources.c.kind.in_(list(q.kinds)))
    return cond


def _select():
    sd, ns, vs = source_detections, new_sources, variability_stats
    cols = [sources.c.id, sources.c.catalog_id.label("name"), sources.c.survey, sources.c.kind,
            sa.func.coalesce(sd.c.wm_ra_deg, sources.c.ra_deg).label("ra_deg"),
            sa.func.coalesce(sd.c.wm_dec_deg, sources.c.dec_deg).label("dec_deg"),
            sd.c.first_detected_mjd, ns.c.new_high_sigma, ns.c.likely_transient,
            ns.c.image_id.label("new_image_id"), ns.c.sigma_image_id,
            sa.func.coalesce(sd.c.n_detections, 0).label("n_detections"),
            sa.func.coalesce(vs.c.n, 0).label("n_measurements")]
    joined = (sources.outerjoin(sd, sd.c.source_id == sources.c.id)
              .outerjoin(ns, ns.c.source_id == sources.c.id)
              .outerjoin(vs, vs.c.source_id == sources.c.id))
    return sa.select(*cols).select_from(joined)


def source_rows(rows) -> list[dict]:
    out = []
    for r in rows:
        d = dict(r)
        d["likely_transient"] = None if d["likely_transient"] is None else bool(d["likely_transient"])
        out.append(d)
    return out


def list_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> list[dict]:
    """One page of sources matching ``query`` (see the module docstring for the fields)."""
    stmt = _select().where(*_conditions(query)).order_by(*ORDERS[query.order])
    if query.limit is not None:
        stmt = stmt.limit(int(query.limit)).offset(int(query.offset))
    return source_rows(conn.execute(stmt).mappings().all())


def count_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sources)
                            .where(*_conditions(query))).scalar())


def source_by_id(conn: Connection, source_id: int) -> dict | None:
    """One source's row (as :func:`list_sources`), or None."""
    rows = source_rows(conn.execute(_select().where(sources.c.id == int(source_id))).mappings().all())
    return rows[0] if rows else None


__all__ = ["ORDERS", "SourceQuery", "list_sources", "count_sources", "source_by_id"]
