"""``/images``: the measured images one page at a time (filter by QC status) and
``/images/{id}``: everything stored about one image; their JSON under ``/api/images``."""

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


def images_page(request: Request):
    rows, paging, qc = images_of(request)
    return site(request).render(request, "images.html", rows=rows, paging=paging, qc=qc or "")


def image_page(request: Request):
    return site(request).render(request, "image.html", im=image_of(request))


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
