"""Postage stamps of a source (:mod:`dsa110_contimg.web.stamps`): ``/sources/{id}/stamps/
{image_id}.png`` (one epoch on a given colour scale) and ``.fits`` (the cutout with its
WCS, to download). Query parameters: ``w`` the cutout's half width (arcsec, at most
:data:`MAX_HALF_WIDTH_ARCSEC`), ``lo`` and ``hi`` the colour scale (Jy/beam; the stamp's
own when absent)."""

from __future__ import annotations

import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.web.handlers.exports import download
from dsa110_contimg.web.state import site

#: Largest cutout half width served (arcsec): bounds what one request reads.
MAX_HALF_WIDTH_ARCSEC = 1800.0
#: Browsers may keep a stamp this long (s); a changed image gets a new cache key, not a new URL.
MAX_AGE_S = 600


def _number(request: Request, name: str, default=None) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise HTTPException(400, f"{name} must be finite")
    return value


def cutout_of(request: Request):
    """(source row, image id, cutout) of the request; HTTP 404 when the source or the image does
    not exist or the image cannot be read (the reason as the detail)."""
    from dsa110_contimg.web.stamps import load_stamp

    s = site(request)
    half = _number(request, "w", 60.0)
    if not 0.0 < half <= MAX_HALF_WIDTH_ARCSEC:
        raise HTTPException(400, f"w must be > 0 and at most {MAX_HALF_WIDTH_ARCSEC:g} arcsec")
    image_id = request.path_params["image_id"]
    with s.read() as conn:
        src = review.source_row(conn, request.path_params["source_id"])
        path = review.image_path(conn, image_id)
    if src is None or path is None:
        raise HTTPException(404, "no such source or image")
    cutout, reason = load_stamp(s.stamps, path, src["ra_deg"], src["dec_deg"], half / 3600.0)
    if cutout is None:
        raise HTTPException(404, reason)
    return src, image_id, cutout


def stamp_png(request: Request):
    from dsa110_contimg.web.stamps import common_scale, render_png

    _, _, cutout = cutout_of(request)
    low, high = common_scale([cutout])
    low, high = _number(request, "lo", low), _number(request, "hi", high)
    if not high > low:
        raise HTTPException(400, "hi must be above lo")
    return Response(render_png(cutout, low, high), media_type="image/png",
                    headers={"Cache-Control": f"max-age={MAX_AGE_S}"})


def stamp_fits(request: Request):
    from dsa110_contimg.science.cutout import fits_bytes

    src, image_id, cutout = cutout_of(request)
    return download(fits_bytes(cutout), "fits", f"{src['catalog_id']}_image{image_id}")


ROUTES = [
    Route("/sources/{source_id:int}/stamps/{image_id:int}.png", stamp_png),
    Route("/sources/{source_id:int}/stamps/{image_id:int}.fits", stamp_fits),
]
