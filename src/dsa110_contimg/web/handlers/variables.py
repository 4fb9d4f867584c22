"""``/variables``: the variable sources of each field (the eta-V selection and the
two-epoch criterion, :mod:`dsa110_contimg.store.variables`) beside each field's eta-V
diagram with the selection drawn; ``/api/variables``: the objects of
``sources list --variable --json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.science.variables import select_variables
from dsa110_contimg.store.variables import field_statistics, fields, selection_options
from dsa110_contimg.web import svg
from dsa110_contimg.web.state import site

#: Fields drawn on one page (most images first).
MAX_FIELDS = 20


def variables_of(request: Request) -> list[dict]:
    """Per field: its name, its variables (rows as ``sources list --variable --json``) and
    its eta-V diagram with the thresholds."""
    from dsa110_contimg.store.variables import field_variables

    cfg = getattr(site(request), "photometry", None)
    out = []
    with site(request).read() as conn:
        rows = field_variables(conn, cfg, max_fields=MAX_FIELDS)
        for fld in fields(conn, MAX_FIELDS):
            st = field_statistics(conn, fld)
            if not st["source_id"].size:
                continue
            sel = select_variables(st["eta"], st["v"], st["vs_max"], st["m_at_vs_max"], st["n"],
                                   **selection_options(cfg))
            th = sel.thresholds
            plot = svg.eta_v_svg(st["eta"], st["v"], source_ids=st["source_id"],
                                 thresholds=None if th is None else (th.eta_threshold, th.v_threshold),
                                 selected=sel.variable)
            out.append({"field": fld, "plot": plot, "n_sources": int(st["source_id"].size),
                        "rows": [r for r in rows if r["field"] == fld.name]})
    return out


def variables_page(request: Request):
    return site(request).render(request, "variables.html", fields=variables_of(request))


def api_variables(request: Request):
    from dsa110_contimg.store.variables import field_variables

    cfg = getattr(site(request), "photometry", None)
    with site(request).read() as conn:
        rows = field_variables(conn, cfg, max_fields=MAX_FIELDS)
    return JSONResponse({"variables": rows, "count": len(rows)})


ROUTES = [
    Route("/variables", variables_page),
    Route("/api/variables", api_variables),
]
