"""Downloads: ``/sources/{id}/lightcurve.{csv,ecsv,vot,fits}``, written by the export
path the CLI's ``lightcurve -o`` uses (:mod:`dsa110_contimg.pipeline.export`)."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dsa110_contimg.web.handlers.sources import source_of

#: Download formats: file suffix -> media type.
MEDIA_TYPES = {"csv": "text/csv", "ecsv": "text/plain", "vot": "application/x-votable+xml",
               "fits": "application/fits"}


def download(body: bytes, fmt: str, stem: str) -> Response:
    """``body`` as an attachment named ``stem.fmt`` (characters outside [A-Za-z0-9+-.] as ``_``)."""
    name = re.sub(r"[^A-Za-z0-9+\-.]", "_", stem)
    return Response(body, media_type=MEDIA_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def lightcurve_file(request: Request):
    from dsa110_contimg.pipeline.export import format_for, lightcurve_table, table_bytes

    fmt = request.path_params["fmt"]
    if fmt not in MEDIA_TYPES:
        raise HTTPException(404, f"export formats: {', '.join(MEDIA_TYPES)}")
    summary, lc = source_of(request)
    body = table_bytes(lightcurve_table(summary["source"], lc), format_for(fmt))
    return download(body, fmt, summary["source"]["catalog_id"])


ROUTES = [
    Route("/sources/{source_id:int}/lightcurve.{fmt}", lightcurve_file),
]
