"""What every handler shares, kept on ``request.app.state.site``: the products database
(a read-only engine, and a writing one opened on the first review), who may review, the
postage-stamp cache, the templates, and how a page is rendered."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.web import formatting
from dsa110_contimg.web.auth import Access
from dsa110_contimg.web.stamp_cache import StampCache

HERE = Path(__file__).resolve().parent
#: Idle read connections the site keeps open (SQLite): a request reuses one and the pages
#: its page cache holds (up to 64 MiB each) instead of opening the file and reading them again.
READ_CONNECTIONS_KEPT = 4
#: Review actions offered on the pages.
REVIEW_ACTIONS = ("investigating", "dismissed", "reactivated")


class Site:
    """The shared state of one running site (one per application)."""

    def __init__(self, products_db: str, *, access: Access, stamps: StampCache, stale_after_s: float = 60.0):
        self.products_db = str(products_db)
        self.db = open_products_db(self.products_db, read_only=True,
                                   keep_connections=READ_CONNECTIONS_KEPT)
        self._write_db = None
        self.access = access
        self.stamps = stamps
        self.stale_after_s = stale_after_s
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        formatting.register(self.templates.env)
        self.templates.env.globals.update(review_states=REVIEW_ACTIONS)

    def read(self):
        """A read connection (``with site.read() as conn``)."""
        return self.db.engine.connect()

    def write(self):
        """A write transaction (``with site.write() as conn``), committed on leaving."""
        if self._write_db is None:
            self._write_db = open_products_db(self.products_db, migrate=False)
        return self._write_db.engine.begin()

    def close(self) -> None:
        self.db.dispose()
        if self._write_db is not None:
            self._write_db.dispose()

    def render(self, request: Request, name: str, status_code: int = 200, **ctx) -> Response:
        """Template ``name`` with ``ctx`` plus what the page frame shows (who signed in,
        the ``?msg=`` message)."""
        ctx.setdefault("read_only", self.access.read_only)
        ctx.setdefault("reviewer", self.access.signed_in(request))
        ctx.setdefault("message", request.query_params.get("msg"))
        return self.templates.TemplateResponse(request, name, ctx, status_code=status_code)


def site(request: Request) -> Site:
    """The site state of the application serving ``request``."""
    return request.app.state.site
