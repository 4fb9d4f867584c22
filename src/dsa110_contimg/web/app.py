"""The Starlette application of ``contimg-photometry serve``.

Pages (HTML, Jinja2 templates, plots as inline SVG drawn on the server):
``/`` overview, ``/candidates`` ranked ESE candidates, ``/sources/{id}`` one source,
``/images`` and ``/images/{id}``. JSON under ``/api/`` returns the same objects as the
CLI's ``--json`` (``status``, ``ese list``). Light-curve exports:
``/sources/{id}/lightcurve.{csv,ecsv,vot}``.

Review actions (``POST /api/candidates/{id}`` with ``{"status": ..., "note": ...}``, or the
form on a source page) need the token read from ``[web] token_file``: the API takes
``Authorization: Bearer <token>``; the pages take the token once (``POST /login``) and keep a
session cookie holding an HMAC of it (never the token). Without a configured token the site
is read-only (403); without a valid token a write gets 401 (none given) or 403 (wrong) and
changes nothing.

Budget: every page reads one bounded page of rows (25 candidates with their thumbnails,
50 measurements, 50 images, at most 3,000 field sources for the η–V diagram); with
100,000 sources × 50 epochs a page answers in under 0.5 s (``tests/test_web_scale.py``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import io
import json
import logging
import math
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dsa110_contimg.core.paths import printable
from dsa110_contimg.store import review
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.web import svg

HERE = Path(__file__).resolve().parent
COOKIE = "contimg_review"
CANDIDATES_PER_PAGE = 25
MEASUREMENTS_PER_PAGE = 50
IMAGES_PER_PAGE = 50
ETA_V_LIMIT = 3000
log = logging.getLogger("dsa110_contimg.web")


def read_token(path: str | Path | None) -> str | None:
    """The review token in ``path`` (first line, stripped); None when no file is configured.

    Raises ConfigError when the file is configured but unreadable or empty.
    """
    from dsa110_contimg.core.errors import ConfigError

    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise ConfigError("web.token_file", str(path), f"a readable file ({exc.strerror or exc})") from None
    if not token or len(token[0].strip()) < 8:
        raise ConfigError("web.token_file", str(path), "a file whose first line is a token of >= 8 characters")
    return token[0].strip()


def _fmt(v, spec=".2f", none="–"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _age(seconds):
    if seconds is None:
        return "–"
    s = float(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit}"
    return f"{s:.0f} s"


def _utc(ts):
    if ts is None:
        return "–"
    return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class WebApp:
    """State shared by the handlers: the database engines, the token, the templates."""

    def __init__(self, products_db: str, *, token: str | None = None, stale_after_s: float = 60.0):
        self.products_db = str(products_db)
        self.db = open_products_db(self.products_db, read_only=True)
        self._write_db = None
        self.token = token
        self.stale_after_s = stale_after_s
        self.session_value = (hmac.new(token.encode(), b"contimg-web-session", hashlib.sha256).hexdigest()
                              if token else None)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        # paths are stored losslessly (``fsb64:`` for names that are not UTF-8); shown readably
        env.filters.update(fmt=_fmt, age=_age, utc=_utc, printable=printable)
        env.globals.update(review_states=("investigating", "dismissed", "reactivated"))

    # -- helpers ---------------------------------------------------------------
    def close(self) -> None:
        self.db.dispose()
        if self._write_db is not None:
            self._write_db.dispose()

    def conn(self):
        return self.db.engine.connect()

    def write_db(self):
        if self._write_db is None:
            self._write_db = open_products_db(self.products_db, migrate=False)
        return self._write_db

    def render(self, request: Request, name: str, status_code: int = 200, **ctx) -> Response:
        ctx.setdefault("read_only", self.token is None)
        ctx.setdefault("logged_in", self.session_ok(request))
        ctx.setdefault("message", request.query_params.get("msg"))
        return self.templates.TemplateResponse(request, name, ctx, status_code=status_code)

    def session_ok(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        return bool(self.session_value and cookie
                    and hmac.compare_digest(cookie.encode(), self.session_value.encode()))

    def bearer_check(self, request: Request) -> tuple[int, str] | None:
        """None when the request may write, else (HTTP status, reason)."""
        if self.token is None:
            return 403, "the site is read-only: no [web] token_file is configured"
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return 401, "a review needs 'Authorization: Bearer <token>'"
        if not hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return 403, "invalid token"
        return None

    def apply_review(self, candidate_id: int, action: str, note: str | None) -> dict:
        """Store a review action; raises HTTPException 400/404."""
        from dsa110_contimg.store.lightcurves import set_candidate_status

        state = review.REVIEW_ACTIONS.get(str(action))
        if state is None:
            raise HTTPException(400, "status must be one of investigating, dismissed, reactivated")
        if note is not None and (not isinstance(note, str) or len(note) > 4000):
            raise HTTPException(400, "note must be a string of at most 4000 characters")
        with self.write_db().engine.begin() as conn:
            if not set_candidate_status(conn, candidate_id, state, note or None):
                raise HTTPException(404, f"no ESE candidate with id {candidate_id}")
        log.info("candidate %d set to %s", candidate_id, state)
        with self.conn() as conn:
            return review.candidate(conn, candidate_id)

    # -- data ------------------------------------------------------------------
    def status(self) -> dict:
        from dsa110_contimg.service.status import collect_status

        return collect_status(self.db, stale_after_s=self.stale_after_s)

    def candidates(self, request: Request):
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in review.ESE_STATES:
            raise HTTPException(400, f"status must be one of {', '.join(review.ESE_STATES)}")
        try:
            min_score = float(q["min_score"]) if q.get("min_score") else None
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            raise HTTPException(400, "min_score must be a number and page an integer") from None
        include_all = q.get("all") in ("1", "true", "yes")
        with self.conn() as conn:
            rows, total = review.candidates_page(conn, status=status, min_score=min_score,
                                                 include_all=include_all, limit=CANDIDATES_PER_PAGE,
                                                 offset=(page - 1) * CANDIDATES_PER_PAGE)
        filters = {"status": status or "", "min_score": q.get("min_score", ""), "all": "1" if include_all else ""}
        return rows, total, page, filters

    def source(self, source_id: int) -> tuple[dict, dict]:
        from dsa110_contimg.store.lightcurves import source_lightcurve

        with self.conn() as conn:
            summary = review.source_summary(conn, source_id)
            if summary is None:
                raise HTTPException(404, f"no source with id {source_id}")
            lc = source_lightcurve(conn, summary["source"])
        return summary, lc


def _lc_json(lc: dict) -> dict:
    return review.clean({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in lc.items()})


def _fit(lc):
    from dsa110_contimg.science.ese import fit_ese

    norm = lc["success"] & np.isfinite(lc["norm_flux_jyb"]) & (lc["qc_status"] != "failed")
    if norm.sum() < 8:
        return None
    fit = fit_ese(lc["mjd"][norm], lc["norm_flux_jyb"][norm], lc["norm_err_jyb"][norm])
    return fit if fit.detected else None


def _warm_up() -> None:
    """Import the heavy modules (scipy, astropy I/O) at start-up, not on the first request."""
    import astropy.io.ascii  # noqa: F401
    import astropy.io.votable  # noqa: F401
    from astropy.table import Table  # noqa: F401

    import dsa110_contimg.pipeline.export  # noqa: F401
    import dsa110_contimg.science.ese  # noqa: F401


def create_app(products_db: str, *, token: str | None = None, stale_after_s: float = 60.0) -> Starlette:
    """The web application reading ``products_db`` (SQLite path or SQLAlchemy URL).

    ``token``: the review token (None = read-only site).
    """
    web = WebApp(products_db, token=token, stale_after_s=stale_after_s)
    _warm_up()

    # -- pages -----------------------------------------------------------------
    def overview(request: Request):
        st = web.status()
        with web.conn() as conn:
            hours = review.throughput(conn)
            top, _ = review.candidates_page(conn, limit=5)
            nodes = review.nodes(conn, stale_after_s=web.stale_after_s)
        labels = [_dt.datetime.fromtimestamp(h["hour_start"], _dt.timezone.utc).strftime("%H:%M") for h in hours]
        chart = svg.bar_svg([h["done"] for h in hours], labels, title="jobs done per hour, last 24 h",
                            ylabel="jobs / hour")
        return web.render(request, "overview.html", st=st, chart=chart, top=top, nodes=nodes,
                          done_day=sum(h["done"] for h in hours))

    def candidates_page(request: Request):
        rows, total, page, filters = web.candidates(request)
        with web.conn() as conn:
            series = review.thumbnail_series(conn, rows)
        thumbs = [svg.thumbnail_svg(*series[r["source_id"]], label=f"light curve of {r['catalog_id']}")
                  for r in rows]
        pages = max(1, math.ceil(total / CANDIDATES_PER_PAGE))
        qs = lambda p: urlencode({**{k: v for k, v in filters.items() if v}, "page": p})  # noqa: E731
        return web.render(request, "candidates.html", rows=list(zip(rows, thumbs)), total=total, page=page,
                          pages=pages, filters=filters, qs=qs, states=review.ESE_STATES,
                          offset=(page - 1) * CANDIDATES_PER_PAGE)

    def source_page(request: Request):
        sid = request.path_params["source_id"]
        summary, lc = web.source(sid)
        fit = _fit(lc) if lc["mjd"].size else None
        src = summary["source"]
        with web.conn() as conn:
            from dsa110_contimg.store.lightcurves import neighbourhood_radius

            from dsa110_contimg.store.lightcurves import load_baselines

            radius = max(neighbourhood_radius(conn, 0.0) - 0.01, 0.1)
            base = load_baselines(conn, [sid]).get(sid)
            ev = review.field_eta_v(conn, src["ra_deg"], src["dec_deg"], radius, limit=ETA_V_LIMIT)
        var = summary["variability"]
        if var and sid not in set(ev["source_id"].tolist()) and var.get("eta") and var.get("v"):
            ev = {"source_id": np.append(ev["source_id"], sid), "eta": np.append(ev["eta"], var["eta"]),
                  "v": np.append(ev["v"], var["v"])}
        thresholds = None
        try:
            from dsa110_contimg.science.ese import eta_v_thresholds

            t = eta_v_thresholds(ev["eta"], ev["v"])
            thresholds = (t.eta_threshold, t.v_threshold)
        except Exception:  # noqa: BLE001 - too few sources for a population fit: no lines
            pass
        try:
            page = max(1, int(request.query_params.get("page", 1)))
        except ValueError:
            raise HTTPException(400, "page must be an integer") from None
        n = int(lc["mjd"].size)
        pages = max(1, math.ceil(n / MEASUREMENTS_PER_PAGE))
        lo = (page - 1) * MEASUREMENTS_PER_PAGE
        table = [{k: lc[k][i] for k in ("mjd", "peak_jyb", "peak_err_jyb", "norm_flux_jyb", "norm_err_jyb",
                                        "snr", "success", "qc_status", "norm_status", "image_id",
                                        "used_as_reference")}
                 for i in range(lo, min(n, lo + MEASUREMENTS_PER_PAGE))]
        return web.render(
            request, "source.html", s=summary, src=src, var=var, cand=summary["candidate"],
            plot=svg.lightcurve_svg(lc, fit=fit, title=f"light curve of {src['catalog_id']}",
                                    reference_jyb=base["baseline_jyb"] if base and base["valid"] else None),
            baseline=base,
            etav=svg.eta_v_svg(ev["eta"], ev["v"], highlight=sid, source_ids=ev["source_id"],
                               thresholds=thresholds),
            n_field=int(ev["eta"].size), fit=fit, table=table, page=page, pages=pages, n=n,
            n_qc_failed=int(np.sum(lc["qc_status"] == "failed")))

    def export(request: Request):
        from dsa110_contimg.pipeline.export import lightcurve_table

        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "ecsv", "vot"):
            raise HTTPException(404, "export formats: csv, ecsv, vot")
        summary, lc = web.source(request.path_params["source_id"])
        table = lightcurve_table(summary["source"], lc)
        name = summary["source"]["catalog_id"].replace(" ", "_").replace("/", "_")
        if fmt == "vot":
            import warnings

            buf = io.BytesIO()
            for k in table.colnames:
                if table[k].dtype.kind == "O":
                    table[k] = table[k].astype(str)
            table.meta = {k: str(v) for k, v in table.meta.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table.write(buf, format="votable")
            body, media = buf.getvalue(), "application/x-votable+xml"
        else:
            buf = io.StringIO()
            table.write(buf, format="ascii.csv" if fmt == "csv" else "ascii.ecsv")
            body, media = buf.getvalue(), "text/csv" if fmt == "csv" else "text/plain"
        return Response(body, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})

    def images_page(request: Request):
        q = request.query_params
        try:
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            raise HTTPException(400, "page must be an integer") from None
        qc = q.get("qc") or None
        with web.conn() as conn:
            rows, total = review.images_page(conn, qc_status=qc, limit=IMAGES_PER_PAGE,
                                             offset=(page - 1) * IMAGES_PER_PAGE)
        return web.render(request, "images.html", rows=rows, total=total, page=page, qc=qc or "",
                          pages=max(1, math.ceil(total / IMAGES_PER_PAGE)))

    def image_page(request: Request):
        with web.conn() as conn:
            im = review.image_detail(conn, request.path_params["image_id"])
        if im is None:
            raise HTTPException(404, f"no image with id {request.path_params['image_id']}")
        return web.render(request, "image.html", im=im)

    async def login(request: Request):
        form = await request.form()
        nxt = str(form.get("next") or "/")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        if web.token is None:
            return web.render(request, "refused.html", 403, reason="the site is read-only: no token is configured")
        given = str(form.get("token") or "")
        if not hmac.compare_digest(given.encode(), web.token.encode()):
            return web.render(request, "refused.html", 403, reason="invalid token", back=nxt)
        resp = RedirectResponse(nxt + ("&" if "?" in nxt else "?") + "msg=token+accepted", 303)
        resp.set_cookie(COOKIE, web.session_value, httponly=True, samesite="strict", max_age=12 * 3600)
        return resp

    def logout(request: Request):
        resp = RedirectResponse("/", 303)
        resp.delete_cookie(COOKIE)
        return resp

    async def review_form(request: Request):
        cid = request.path_params["candidate_id"]
        form = await request.form()
        nxt = str(form.get("next") or "/candidates")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/candidates"
        if web.token is None:
            return web.render(request, "refused.html", 403, back=nxt,
                              reason="the site is read-only: no [web] token_file is configured")
        if not web.session_ok(request):
            return web.render(request, "refused.html", 401, back=nxt,
                              reason="reviewing needs the token: enter it first")
        cand = await run_in_threadpool(web.apply_review, cid, str(form.get("status", "")),
                                       str(form.get("note") or "") or None)
        sep = "&" if "?" in nxt else "?"
        return RedirectResponse(f"{nxt}{sep}msg=candidate+{cid}+is+now+{cand['status']}", 303)

    # -- JSON API ----------------------------------------------------------------
    def api_status(request: Request):
        return JSONResponse(web.status())

    def api_candidates(request: Request):
        rows, total, page, _ = web.candidates(request)
        return JSONResponse({"candidates": rows, "count": len(rows), "total": total, "page": page,
                             "per_page": CANDIDATES_PER_PAGE})

    async def api_candidate(request: Request):
        cid = request.path_params["candidate_id"]
        if request.method == "GET":
            with web.conn() as conn:
                cand = review.candidate(conn, cid)
            if cand is None:
                raise HTTPException(404, f"no ESE candidate with id {cid}")
            return JSONResponse(cand)
        refused = web.bearer_check(request)
        if refused is not None:
            headers = {"WWW-Authenticate": "Bearer"} if refused[0] == 401 else None
            return JSONResponse({"error": refused[1]}, refused[0], headers=headers)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(400, "the body must be JSON: {\"status\": ..., \"note\": ...}") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        cand = await run_in_threadpool(web.apply_review, cid, body.get("status"), body.get("note"))
        return JSONResponse(cand)

    def api_source(request: Request):
        summary, lc = web.source(request.path_params["source_id"])
        return JSONResponse({**summary, "lightcurve": _lc_json(lc)})

    def api_images(request: Request):
        try:
            page = max(1, int(request.query_params.get("page", 1)))
        except ValueError:
            raise HTTPException(400, "page must be an integer") from None
        with web.conn() as conn:
            rows, total = review.images_page(conn, qc_status=request.query_params.get("qc") or None,
                                             limit=IMAGES_PER_PAGE, offset=(page - 1) * IMAGES_PER_PAGE)
        return JSONResponse({"images": rows, "count": len(rows), "total": total, "page": page})

    def api_image(request: Request):
        with web.conn() as conn:
            im = review.image_detail(conn, request.path_params["image_id"])
        if im is None:
            raise HTTPException(404, f"no image with id {request.path_params['image_id']}")
        return JSONResponse(im)

    async def http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, exc.status_code)
        return web.render(request, "refused.html", exc.status_code, reason=exc.detail, title="Error")

    routes = [
        Route("/", overview),
        Route("/candidates", candidates_page),
        Route("/candidates/{candidate_id:int}/review", review_form, methods=["POST"]),
        Route("/sources/{source_id:int}", source_page),
        Route("/sources/{source_id:int}/lightcurve.{fmt}", export),
        Route("/images", images_page),
        Route("/images/{image_id:int}", image_page),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/status", api_status),
        Route("/api/candidates", api_candidates),
        Route("/api/candidates/{candidate_id:int}", api_candidate, methods=["GET", "POST"]),
        Route("/api/sources/{source_id:int}", api_source),
        Route("/api/images", api_images),
        Route("/api/images/{image_id:int}", api_image),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        web.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.web = web
    app.state.started = time.time()
    return app
