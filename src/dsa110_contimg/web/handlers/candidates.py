"""``/candidates``: the ranked ESE candidates (filters, one page with thumbnail light
curves: the sparklines the ESE step stored with each candidate, so a page reads its 25
candidate rows and no measurement) and their JSON (``/api/candidates``,
``/api/candidates/{id}``: the objects of ``contimg-photometry ese list --json``, one
candidate with its review history)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.web import svg
from dsa110_contimg.web.paging import Paging
from dsa110_contimg.web.state import site

CANDIDATES_PER_PAGE = 25


def candidate_filters(request: Request) -> dict:
    """``status``, ``min_score`` and ``include_all`` from the query (HTTP 400 when invalid)."""
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in review.ESE_STATES:
        raise HTTPException(400, f"status must be one of {', '.join(review.ESE_STATES)}")
    try:
        min_score = float(q["min_score"]) if q.get("min_score") else None
    except ValueError:
        raise HTTPException(400, "min_score must be a number") from None
    return {"status": status, "min_score": min_score, "include_all": q.get("all") in ("1", "true", "yes")}


def candidates_of(request: Request, *, sparklines: bool = False) -> tuple[list[dict], Paging, dict]:
    """The requested page of candidates: (rows, paging, filters); with ``sparklines``, each
    row's stored sparkline under ``sparkline`` (see :func:`review.candidates_page`)."""
    filters = candidate_filters(request)
    paging = Paging.of(request, CANDIDATES_PER_PAGE)
    with site(request).read() as conn:
        rows, total = review.candidates_page(conn, **filters, limit=paging.per_page, offset=paging.offset,
                                             sparklines=sparklines)
    return rows, paging.counted(total), filters


def candidates_page(request: Request):
    rows, paging, filters = candidates_of(request, sparklines=True)
    # a candidate without a stored sparkline (evaluated before sparklines were stored, or
    # never with its light curve read: fewer than 8 epochs) is drawn from its measurements
    missing = [r for r in rows if r["sparkline"] is None]
    if missing:
        with site(request).read() as conn:
            series = review.thumbnail_series(conn, missing)
        for r in missing:
            r["sparkline"] = series[r["source_id"]]
    thumbs = [svg.thumbnail_svg(*r.pop("sparkline"), label=f"light curve of {r['catalog_id']}")
              for r in rows]
    return site(request).render(request, "candidates.html", rows=list(zip(rows, thumbs)), paging=paging,
                                filters=filters, states=review.ESE_STATES)


def api_candidates(request: Request):
    rows, paging, _ = candidates_of(request)
    return JSONResponse({"candidates": rows, "count": len(rows), **paging.json()})


def api_candidate(request: Request):
    from dsa110_contimg.web.handlers.review import candidate_with_history

    cid = request.path_params["candidate_id"]
    with site(request).read() as conn:
        cand = candidate_with_history(conn, cid)
    if cand is None:
        raise HTTPException(404, f"no ESE candidate with id {cid}")
    return JSONResponse(cand)


ROUTES = [
    Route("/candidates", candidates_page),
    Route("/api/candidates", api_candidates),
    Route("/api/candidates/{candidate_id:int}", api_candidate, methods=["GET"]),
]
