"""Downloads, written by the export path of the CLI (:mod:`dsa110_contimg.pipeline.export`):
``/sources/{id}/lightcurve.{csv,ecsv,vot,fits}`` (the files of ``lightcurve -o``) and
``/candidates.{csv,ecsv,vot,fits}`` (the candidate list with each candidate's review
state, the same filters as ``/candidates``; the files of ``ese list -o``)."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dsa110_contimg.web.handlers.candidates import candidate_filters
from dsa110_contimg.web.handlers.sources import source_of
from dsa110_contimg.web.state import site

#: Download formats: file suffix -> media type.
MEDIA_TYPES = {"csv": "text/csv", "ecsv": "text/plain", "vot": "application/x-votable+xml",
               "fits": "application/fits"}
#: Most candidates in one list download.
CANDIDATES_EXPORT_LIMIT = 100_000


def download(body: bytes, fmt: str, stem: str) -> Response:
    """``body`` as an attachment named ``stem.fmt`` (characters outside [A-Za-z0-9+-.] as ``_``)."""
    name = re.sub(r"[^A-Za-z0-9+\-.]", "_", stem)
    return Response(body, media_type=MEDIA_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def lightcurve_file(request: Request):
    from dsa110_contimg.pipeline.export import format_for, lightcurve_table, table_bytes

    fmt = _format(request)
    summary, lc = source_of(request)
    table = lightcurve_table(summary["source"], lc, pair_metrics=fmt != "csv")   # CSV: no metadata
    body = table_bytes(table, format_for(fmt))
    return download(body, fmt, summary["source"]["catalog_id"])


def _format(request: Request) -> str:
    fmt = request.path_params["fmt"]
    if fmt not in MEDIA_TYPES:
        raise HTTPException(404, f"download formats: {', '.join(MEDIA_TYPES)}")
    return fmt


def candidates_file(request: Request):
    from dsa110_contimg.pipeline.export import candidates_table, format_for, table_bytes
    from dsa110_contimg.store import review, review_log

    fmt = _format(request)
    with site(request).read() as conn:
        rows, _ = review.candidates_page(conn, **candidate_filters(request), limit=CANDIDATES_EXPORT_LIMIT)
        reviews = review_log.latest(conn, [r["id"] for r in rows])
    return download(table_bytes(candidates_table(rows, reviews), format_for(fmt)), fmt, "ese_candidates")


ROUTES = [
    Route("/sources/{source_id:int}/lightcurve.{fmt}", lightcurve_file),
    Route("/candidates.{fmt}", candidates_file),
]
