"""Source listings and searches for ``sources list|show``, the web site's ``/sources`` and
a source page's neighbours (SQL).

:class:`SourceQuery` holds the filters and the order of a listing; :func:`search_sources`
runs it, one page at a time (``limit``/``offset``), and returns the page with the number
of matching sources (:func:`list_sources` and :func:`count_sources` are its two halves).
What a listing reads is bounded by its page or its cone, never by the size of the table:
a name is matched as a prefix through the ``catalog_id`` index, a cone (radius at most
:data:`MAX_RADIUS_DEG`) through the ``(dec_deg, ra_deg)`` index and then by the exact
separation, an order by a metric walks the index of that metric's rank key
(``store/rank_keys.py``) and sorts exactly only the page's band of keys (sources without
the metric are left out of such a ranking) and the page's rows are joined to their details only once
chosen; matches are counted up to :data:`COUNT_CAP`. Filters are added by giving :class:`SourceQuery` a field
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
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.catalogs.naming import NAME_FORMATS
from dsa110_contimg.core.geometry import angular_separation_deg
from dsa110_contimg.store.schema import (
    ese_candidates, new_sources, source_detections, sources, variability_stats,
)
from dsa110_contimg.store.bulk import CHUNK
from dsa110_contimg.store.rank_keys import KEY_COLUMNS, key_of
from dsa110_contimg.store.sky import cone_box

#: Largest search radius (deg): a cone reads every source inside it.
MAX_RADIUS_DEG = 2.0
#: Matches are counted up to this many (a count reads its rows): beyond, "more than".
COUNT_CAP = 10_000
#: Orders ranked by a metric (highest first): name -> column; sources without it left out.
METRIC_ORDERS = {"eta": variability_stats.c.eta, "v": variability_stats.c.v,
                 "flux": variability_stats.c.weighted_mean, "epochs": variability_stats.c.n}
#: Each metric order's rank key column (store/rank_keys.py), whose index drives the ranking.
METRIC_KEYS = {name: variability_stats.c[KEY_COLUMNS[col.name]] for name, col in METRIC_ORDERS.items()}
#: Orders of a listing: name -> ORDER BY clauses (``distance``: from a cone's centre).
ORDERS = {
    "id": (sources.c.id,),
    "significance": (new_sources.c.new_high_sigma.desc().nulls_last(), sources.c.id),
    "name": (sources.c.catalog_id, sources.c.id),
    **{name: (col.desc(), sources.c.id.desc()) for name, col in METRIC_ORDERS.items()},
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
        # the key bound is implied by the count (keys preserve order) and lets the key index serve
        cond += [variability_stats.c.n >= int(q.min_epochs),
                 variability_stats.c.n_key >= key_of(int(q.min_epochs))]
    if q.order in METRIC_ORDERS and not q.cone:
        # ranked by a metric: those that have it (its key is NULL exactly when it is; a cone
        # drops the others itself, so that its box, not the metric's index, drives the query)
        cond.append(METRIC_KEYS[q.order].is_not(None))
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


def _details(conn: Connection, ids: list[int]) -> dict[int, dict]:
    """The rows (:func:`source_rows`) of the sources ``ids``, by id."""
    out = {}
    for start in range(0, len(ids), CHUNK):
        for r in source_rows(conn.execute(_select().where(sources.c.id.in_(ids[start:start + CHUNK])))
                             .mappings().all()):
            out[r["id"]] = r
    return out


#: The column each order of a cone's matches is ranked by (``distance``: the separation).
_ORDER_KEYS = {"id": sources.c.id, "name": sources.c.catalog_id, "significance": new_sources.c.new_high_sigma,
               **METRIC_ORDERS}


def _cone_page(conn: Connection, query: SourceQuery, cond: list) -> SourcePage:
    """The cone's matches: every source of its box (id, position, ranking key only) kept
    within the radius and ranked, then the page's rows with their details."""
    sd = source_detections
    key = _ORDER_KEYS.get(query.order, sources.c.id).label("key")
    light = (sa.select(sources.c.id, sa.func.coalesce(sd.c.wm_ra_deg, sources.c.ra_deg),
                       sa.func.coalesce(sd.c.wm_dec_deg, sources.c.dec_deg), key)
             .select_from(sources.outerjoin(sd, sd.c.source_id == sources.c.id)
                          .outerjoin(new_sources, new_sources.c.source_id == sources.c.id)
                          .outerjoin(variability_stats, variability_stats.c.source_id == sources.c.id))
             .where(*cond))
    found = conn.execute(light).all()
    sep = 3600.0 * angular_separation_deg([r[1] for r in found], [r[2] for r in found],
                                          query.ra_deg, query.dec_deg) if found else []
    inside = [(r[0], r[3], s) for r, s in zip(found, np.atleast_1d(sep).tolist())
              if s <= 3600.0 * query.radius_deg]
    if query.order == "distance":
        inside.sort(key=lambda t: (t[2], t[0]))
    else:
        ascending = query.order in ("id", "name")
        ranked = sorted((t for t in inside if t[1] is not None),
                        key=lambda t: (t[1], t[0]) if ascending else (-t[1], -t[0]))
        inside = ranked if query.order in METRIC_ORDERS else ranked + [t for t in inside if t[1] is None]
    stop = None if query.limit is None else query.offset + int(query.limit)
    page = inside[query.offset:stop]
    rows = _details(conn, [t[0] for t in page])
    for sid, _, s in page:
        rows[sid]["separation_arcsec"] = s
    return SourcePage([rows[t[0]] for t in page], len(inside), True)


class SourcePage(NamedTuple):
    """One page of a search: its ``rows``, how many match (``total``) and whether that is
    exact (``False``: more than :data:`COUNT_CAP` match; ``total`` is then the cap)."""

    rows: list[dict]
    total: int
    exact: bool


def _only_metrics(query: SourceQuery) -> bool:
    """Whether every filter and the order are on ``variability_stats`` alone."""
    return not (query.kinds or query.name or query.cone) and query.order in METRIC_ORDERS


def _ranked_from(query: SourceQuery):
    """The rows a listing ranks: ``variability_stats`` alone when every filter and the order
    are on it, else the sources joined to their new-source and statistics rows."""
    if _only_metrics(query):
        return variability_stats, variability_stats.c.source_id
    return (sources.outerjoin(new_sources, new_sources.c.source_id == sources.c.id)
            .outerjoin(variability_stats, variability_stats.c.source_id == sources.c.id)), sources.c.id


def _ranked_ids(conn: Connection, query: SourceQuery, cond: list) -> list[int]:
    """The ids of the page, in order. A ranking by a metric without other filters reads the
    page's band of rank keys from the key's index (the keys at ranks ``offset`` and
    ``offset + limit - 1``, and how many rows rank above the band), then sorts exactly by
    (metric, id) only the rows of that band: the same page as a sort of every row, read in
    proportion to the page. With other filters the filters' rows are ranked as they are read."""
    table, ident = _ranked_from(query)
    order = ((METRIC_ORDERS[query.order].desc(), ident.desc()) if query.order in METRIC_ORDERS
             else ORDERS[query.order])
    if not _only_metrics(query) or query.limit is None:
        stmt = sa.select(ident).select_from(table).where(*cond).order_by(*order)
        if query.limit is not None:
            stmt = stmt.limit(int(query.limit)).offset(int(query.offset))
        return [r[0] for r in conn.execute(stmt)]
    limit, offset = int(query.limit), int(query.offset)
    if limit <= 0:
        return []
    key = METRIC_KEYS[query.order]
    band = [r[0] for r in conn.execute(sa.select(key).select_from(table).where(*cond)
                                       .order_by(key.desc()).limit(limit).offset(offset))]
    if not band:
        return []
    top, bottom = band[0], band[-1]
    above = 0 if offset == 0 else int(conn.execute(sa.select(sa.func.count()).select_from(
        sa.select(ident).select_from(table).where(*cond, key > top).subquery())).scalar())
    stmt = (sa.select(ident).select_from(table).where(*cond, key.between(bottom, top))
            .order_by(*order).limit(limit).offset(offset - above))
    return [r[0] for r in conn.execute(stmt)]


def _count(conn: Connection, query: SourceQuery, cond: list) -> tuple[int, bool]:
    """(matches, exact): counted up to :data:`COUNT_CAP` + 1 rows, never the whole table."""
    if _only_metrics(query):
        inner = sa.select(variability_stats.c.source_id).where(*cond)
    else:
        inner = sa.select(sources.c.id).select_from(
            sources.outerjoin(variability_stats, variability_stats.c.source_id == sources.c.id)).where(*cond)
    n = int(conn.execute(sa.select(sa.func.count()).select_from(inner.limit(COUNT_CAP + 1).subquery())).scalar())
    return min(n, COUNT_CAP), n <= COUNT_CAP


def search_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> SourcePage:
    """One page of sources matching ``query`` and how many match (see :class:`SourcePage`)."""
    cond = _conditions(query, conn)
    if query.cone:
        return _cone_page(conn, query, cond)
    ids = _ranked_ids(conn, query, cond)
    rows = _details(conn, ids)
    return SourcePage([rows[i] for i in ids], *_count(conn, query, cond))


def list_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> list[dict]:
    """One page of sources matching ``query`` (see the module docstring for the fields)."""
    return search_sources(conn, query).rows


def count_sources(conn: Connection, query: SourceQuery = SourceQuery()) -> int:
    """How many sources match ``query`` (at most :data:`COUNT_CAP`)."""
    return search_sources(conn, SourceQuery(**{**query.__dict__, "limit": 0, "offset": 0})).total


def sources_near(conn: Connection, ra_deg: float, dec_deg: float, radius_deg: float, *,
                 exclude_id: int | None = None, limit: int = 20) -> list[dict]:
    """The sources within ``radius_deg`` of a position, nearest first (at most ``limit``,
    ``exclude_id`` left out), as the rows of :func:`search_sources`."""
    rows = search_sources(conn, SourceQuery(ra_deg=ra_deg, dec_deg=dec_deg, order="distance",
                                            radius_deg=min(radius_deg, MAX_RADIUS_DEG), limit=limit + 1)).rows
    return [r for r in rows if r["id"] != exclude_id][:limit]


def source_by_id(conn: Connection, source_id: int) -> dict | None:
    """One source's row (as :func:`list_sources`), or None."""
    rows = source_rows(conn.execute(_select().where(sources.c.id == int(source_id))).mappings().all())
    return rows[0] if rows else None


__all__ = ["COUNT_CAP", "MAX_RADIUS_DEG", "METRIC_ORDERS", "ORDERS", "SourcePage", "SourceQuery",
           "count_sources", "list_sources", "search_sources", "source_by_id", "sources_near"]
