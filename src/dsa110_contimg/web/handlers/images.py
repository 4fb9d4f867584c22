"""``/images``: the measured images one page at a time, latest observation (MJD) first
(filter by QC status), and ``/images/{id}``: everything stored about one image, its QC
checks and numbers in the units of the pages; their JSON under ``/api/images``."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.web.paging import Paging
from dsa110_contimg.web.state import site

IMAGES_PER_PAGE = 50


def images_of(request: Request) -> tuple[list[dict], Paging, str | None]:
    """The requested page of images: (rows, paging, QC filter)."""
    qc = request.query_params.get("qc") or None
    paging = Paging.of(request, IMAGES_PER_PAGE)
    with site(request).read() as conn:
        rows, total = review.images_page(conn, qc_status=qc, limit=paging.per_page, offset=paging.offset)
    return rows, paging.counted(total), qc


def image_of(request: Request) -> dict:
    """Every column of the image in the path; HTTP 404 when there is none."""
    image_id = request.path_params["image_id"]
    with site(request).read() as conn:
        image = review.image_detail(conn, image_id)
    if image is None:
        raise HTTPException(404, f"no image with id {image_id}")
    return image


def qc_metric_rows(metrics: dict | None) -> list[tuple[str, object, str]]:
    """The image's QC numbers as (name, value, unit) rows in the units of the pages:
    ``*_jyb`` values in mJy/beam (name without the suffix), ``*_arcsec`` in arcsec,
    ``*_deg`` in deg, others unitless; the per-check verdicts (``checks``) are not numbers
    and are listed apart (:func:`qc_check_rows`)."""
    rows = []
    for key, value in (metrics or {}).items():
        if key == "checks":
            continue
        for suffix, unit, scale in (("_jyb", "mJy/beam", 1e3), ("_arcsec", "arcsec", 1.0), ("_deg", "deg", 1.0)):
            if key.endswith(suffix):
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                rows.append((key[:-len(suffix)], value * scale if number else value, unit))
                break
        else:
            rows.append((key, value, ""))
    return rows


def qc_check_rows(metrics: dict | None) -> list[tuple[str, str]]:
    """(check, verdict) of every QC check the image went through."""
    return sorted(((metrics or {}).get("checks") or {}).items())


def images_page(request: Request):
    rows, paging, qc = images_of(request)
    return site(request).render(request, "images.html", rows=rows, paging=paging, qc=qc or "")


def image_page(request: Request):
    image = image_of(request)
    return site(request).render(request, "image.html", im=image, qc_rows=qc_metric_rows(image.get("qc_metrics")),
                                qc_checks=qc_check_rows(image.get("qc_metrics")))


def api_images(request: Request):
    rows, paging, _ = images_of(request)
    return JSONResponse({"images": rows, "count": len(rows), **paging.json()})


def api_image(request: Request):
    return JSONResponse(image_of(request))


ROUTES = [
    Route("/images", images_page),
    Route("/images/{image_id:int}", image_page),
    Route("/api/images", api_images),
    Route("/api/images/{image_id:int}", api_image),
]
