"""The Starlette application of ``contimg-photometry serve``.

Pages (HTML, Jinja2 templates, plots as inline SVG and postage stamps as PNG, all drawn on
the server): ``/`` overview, ``/candidates`` ranked ESE candidates, ``/sources`` finding
any source, ``/sources/{id}`` one source (with its stamps, ``/sources/{id}/stamps/...``),
``/images`` and ``/images/{id}``. JSON under ``/api/`` returns the same objects as the
CLI's ``--json`` (``status``, ``ese list``, ``sources list``). Downloads:
``/sources/{id}/lightcurve.{csv,ecsv,vot,fits}`` and ``/candidates.{csv,ecsv,vot,fits}``
(the CLI's files). The handlers live in :mod:`dsa110_contimg.web.handlers`, one module per
concern, over the shared :class:`~dsa110_contimg.web.state.Site` on ``app.state.site``.

Review actions (``POST /api/candidates/{id}`` with ``{"status": ..., "note": ...}``, or the
form on a source page) need a reviewer's token of ``[web] token_file``
(:mod:`dsa110_contimg.web.auth`) and are kept in the candidate's review log.

Budget: every page reads one bounded page of rows (25 candidates with their stored sparklines,
50 measurements, 50 images or sources, at most 3,000 field sources for the η–V diagram,
8 stamps) and fits no model (the ESE template is drawn from the stored candidate). Budgets with 100,000
sources × 50 epochs: 0.5 s a page; a source page with its stamps cut from 4096² images
1 s cold and 0.2 s cached (``tests/system/test_web_scale.py`` and ``bench/web.py`` print
the figures against them).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from dsa110_contimg.web import handlers
from dsa110_contimg.web.auth import Access
from dsa110_contimg.web.stamp_cache import StampCache
from dsa110_contimg.web.state import HERE, Site, site


def _warm_up() -> None:
    """Import the heavy modules (scipy, astropy I/O) at start-up, not on the first request."""
    import astropy.io.ascii  # noqa: F401
    import astropy.io.votable  # noqa: F401
    from astropy.table import Table  # noqa: F401

    import dsa110_contimg.pipeline.export  # noqa: F401
    import dsa110_contimg.science.ese  # noqa: F401
    import dsa110_contimg.science.image  # noqa: F401


async def http_error(request: Request, exc: HTTPException):
    """An error as JSON under ``/api/``, else as a page saying why."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, exc.status_code)
    return site(request).render(request, "refused.html", exc.status_code, reason=exc.detail, title="Error")


def create_app(products_db: str, *, reviewers: dict[str, str] | None = None, stale_after_s: float = 60.0,
               stamp_cache_dir: str | Path | None = None, stamp_cache_mb: int = 256) -> Starlette:
    """The web application reading ``products_db`` (SQLite path or SQLAlchemy URL).

    ``reviewers``: ``{name: token}`` (:func:`dsa110_contimg.web.auth.read_reviewers`;
    None = read-only site); ``stale_after_s``: a daemon whose heartbeat is older is shown
    stale; ``stamp_cache_dir``: where postage-stamp cutouts are kept, at most
    ``stamp_cache_mb`` MB (None: a temporary directory removed when the app stops).
    """
    scratch = None
    if stamp_cache_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="contimg-stamps-")
        stamp_cache_dir = scratch.name
    state = Site(products_db, access=Access(reviewers), stale_after_s=stale_after_s,
                 stamps=StampCache(stamp_cache_dir, stamp_cache_mb * 1024 * 1024))
    _warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        state.close()
        if scratch is not None:
            scratch.cleanup()

    routes = [*handlers.routes(), Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.site = state
    app.state.started = time.time()
    return app
