"""``/``: the service overview (daemon, jobs, QC, throughput, nodes, top candidates) and
``/api/status`` (the object of ``contimg-photometry status --json``)."""

from __future__ import annotations

import datetime as _dt

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.web import svg
from dsa110_contimg.web.state import site

#: Candidates listed on the overview.
TOP_CANDIDATES = 5


def service_status(request: Request) -> dict:
    from dsa110_contimg.service.status import collect_status

    return collect_status(site(request).db, stale_after_s=site(request).stale_after_s)


def overview_page(request: Request):
    s = site(request)
    status = service_status(request)
    with s.read() as conn:
        hours = review.throughput(conn)
        top, _ = review.candidates_page(conn, limit=TOP_CANDIDATES)
        nodes = review.nodes(conn, stale_after_s=s.stale_after_s)
    labels = [_dt.datetime.fromtimestamp(h["hour_start"], _dt.timezone.utc).strftime("%H:%M") for h in hours]
    chart = svg.bar_svg([h["done"] for h in hours], labels, title="jobs done per hour, last 24 h",
                        ylabel="jobs / hour")
    return s.render(request, "overview.html", st=status, chart=chart, top=top, nodes=nodes,
                    done_day=sum(h["done"] for h in hours))


def api_status(request: Request):
    return JSONResponse(service_status(request))


ROUTES = [
    Route("/", overview_page),
    Route("/api/status", api_status),
]
