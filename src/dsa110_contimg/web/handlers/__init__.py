"""The site's request handlers, one module per concern, each a list ``ROUTES`` of
module-level handlers that read the shared state from ``request.app.state.site``
(:class:`dsa110_contimg.web.state.Site`).

A new page is a new module here with its ``ROUTES``, listed in :data:`MODULES`.
"""

from __future__ import annotations

import importlib

#: Handler modules, in the order their routes are matched.
MODULES = ("overview", "candidates", "new_sources", "review", "sources", "stamps", "source_search",
           "exports", "images", "session", "variables")


def routes() -> list:
    """Every handler module's routes."""
    return [route for name in MODULES
            for route in importlib.import_module(f"{__name__}.{name}").ROUTES]
