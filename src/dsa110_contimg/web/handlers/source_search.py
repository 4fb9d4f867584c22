"""``/sources``: find any source — by name, or by position and radius (sexagesimal or
degrees, with units), ranked by η, V, flux or number of epochs, one page at a time — and
``/api/sources`` (the rows of ``contimg-photometry sources list --json``; ``total`` is
exact up to :data:`~dsa110_contimg.store.sources.COUNT_CAP`, ``total_exact`` says
whether it is). The query is :func:`dsa110_contimg.store.sources.search_sources`, the one
the CLI runs.

Query parameters: ``q`` (a name, or a position ``RA Dec``), ``radius`` (default
:data:`DEFAULT_RADIUS`, a number with ``arcsec``/``arcmin``/``deg`` or ``"``/``'``; bare
numbers are arcsec), ``sort`` (``eta``, ``v``, ``flux``, ``epochs``, ``name``, ``id``; with
a position also ``distance``, its default), ``kind``, ``min_epochs``, ``page``.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.web.paging import Paging
from dsa110_contimg.web.state import site

SOURCES_PER_PAGE = 50
DEFAULT_RADIUS = "30 arcsec"
#: Orders offered on the page (label by key); ``distance`` only with a position.
SORT_LABELS = {"eta": "η (highest first)", "v": "V (highest first)", "flux": "mean flux (highest first)",
               "epochs": "epochs (most first)", "name": "name", "id": "id", "distance": "distance"}


def query_of(request: Request, paging: Paging):
    """The :class:`~dsa110_contimg.store.sources.SourceQuery` a request asks for (HTTP 400
    with the reason when a parameter is not understood)."""
    from dsa110_contimg.catalogs.positions import parse_position, parse_radius
    from dsa110_contimg.store.schema import SOURCE_KINDS
    from dsa110_contimg.store.sources import SourceQuery

    q = request.query_params
    text = (q.get("q") or "").strip()
    fields: dict = {"limit": paging.per_page, "offset": paging.offset}
    if text:
        try:
            fields["ra_deg"], fields["dec_deg"] = parse_position(text)
        except ValueError:
            fields["name"] = text
    if "ra_deg" in fields:
        try:
            fields["radius_deg"] = parse_radius(q.get("radius") or DEFAULT_RADIUS)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
    fields["order"] = q.get("sort") or ("distance" if "ra_deg" in fields else "eta")
    kind = q.get("kind") or None
    if kind is not None and kind not in SOURCE_KINDS:
        raise HTTPException(400, f"kind must be one of {', '.join(SOURCE_KINDS)}")
    fields["kinds"] = (kind,) if kind else ()
    try:
        fields["min_epochs"] = int(q["min_epochs"]) if q.get("min_epochs") else None
        return SourceQuery(**fields)
    except ValueError as exc:
        raise HTTPException(400, str(exc).replace("invalid literal for int() with base 10",
                                                  "min_epochs must be an integer, not")) from None


def sources_of(request: Request) -> tuple[list[dict], Paging, object, bool]:
    """The requested page of sources: (rows, paging, query, whether the total is exact)."""
    from dsa110_contimg.store.sources import search_sources

    paging = Paging.of(request, SOURCES_PER_PAGE)
    query = query_of(request, paging)
    with site(request).read() as conn:
        found = search_sources(conn, query)
    return found.rows, paging.counted(found.total), query, found.exact


def sources_page(request: Request):
    from dsa110_contimg.store.schema import SOURCE_KINDS

    rows, paging, query, exact = sources_of(request)
    q = request.query_params
    form = {"q": q.get("q", ""), "radius": q.get("radius") or DEFAULT_RADIUS, "sort": q.get("sort", ""),
            "kind": q.get("kind", ""), "min_epochs": q.get("min_epochs", "")}
    return site(request).render(request, "sources.html", rows=rows, paging=paging, query=query, form=form,
                                sorts=SORT_LABELS, kinds=SOURCE_KINDS, exact=exact)


def source_by_name(request: Request):
    """``/sources/{name}``: the page of the source with that designation (one survey), else
    the search for it."""
    from starlette.datastructures import URL
    from starlette.responses import RedirectResponse

    from dsa110_contimg.store.lightcurves import find_source

    name = request.path_params["name"]
    with site(request).read() as conn:
        try:
            target = f"/sources/{find_source(conn, name)['id']}"
        except LookupError:
            target = str(URL("/sources").include_query_params(q=name))
    return RedirectResponse(target, 303)


def api_sources(request: Request):
    rows, paging, _, exact = sources_of(request)
    return JSONResponse({"sources": rows, "count": len(rows), **paging.json(), "total_exact": exact})


ROUTES = [
    Route("/sources", sources_page),
    Route("/sources/{name:str}", source_by_name),
    Route("/api/sources", api_sources),
]
