"""``/new-sources``: sources in no catalogue that passed the new-source test, ranked by
significance (``new_high_sigma``), each with its light curve (forwards and backfilled),
and their JSON (``/api/new-sources``: the objects of ``sources list --new --json``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.store.sources import SourceQuery, search_sources
from dsa110_contimg.web import svg
from dsa110_contimg.web.paging import Paging
from dsa110_contimg.web.state import site

NEW_SOURCES_PER_PAGE = 25


def new_sources_of(request: Request) -> tuple[list[dict], Paging]:
    """The requested page of new sources, most significant first."""
    paging = Paging.of(request, NEW_SOURCES_PER_PAGE)
    query = SourceQuery(kinds=("new",), order="significance", limit=paging.per_page,
                        offset=paging.offset)
    with site(request).read() as conn:
        page = search_sources(conn, query)
    return page.rows, paging.counted(page.total)


def new_sources_page(request: Request):
    rows, paging = new_sources_of(request)
    with site(request).read() as conn:
        series = review.thumbnail_series(conn, [{"source_id": r["id"], "ra_deg": r["ra_deg"],
                                                 "dec_deg": r["dec_deg"]} for r in rows])
    thumbs = [svg.thumbnail_svg(*series[r["id"]], label=f"light curve of {r['name']}") for r in rows]
    return site(request).render(request, "new_sources.html", rows=list(zip(rows, thumbs)),
                                paging=paging)


def api_new_sources(request: Request):
    rows, paging = new_sources_of(request)
    return JSONResponse({"sources": rows, "count": len(rows), **paging.json()})


ROUTES = [
    Route("/new-sources", new_sources_page),
    Route("/api/new-sources", api_new_sources),
]
