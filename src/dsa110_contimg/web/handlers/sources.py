"""``/sources/{id}``: one source — its position (sexagesimal and degrees) with links out,
postage stamps of it in its epochs (:mod:`dsa110_contimg.web.stamps`), its light curve
with the catalogue flux and the ESE template the pipeline fitted (drawn from the stored
candidate, never fitted here), the neighbours that could blend with it, the η–V diagram
of its field, its measurements one page at a time — and ``/api/sources/{id}``
(catalogue row, variability metrics, candidate and the whole light curve)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.store import review, review_log
from dsa110_contimg.store.values import clean, column_values
from dsa110_contimg.web import svg
from dsa110_contimg.web.links import links_out
from dsa110_contimg.web.stamps import HALF_WIDTH_BEAMS, render_png, strip
from dsa110_contimg.web.paging import Paging
from dsa110_contimg.web.state import site

MEASUREMENTS_PER_PAGE = 50
#: Neighbours listed: sources within this many beam FWHM (at most NEIGHBOURS_LIMIT).
NEIGHBOUR_BEAMS = 3.0
NEIGHBOURS_LIMIT = 20
#: Beam FWHM (arcsec) assumed when no image of the source records one.
DEFAULT_BEAM_ARCSEC = 15.0
#: Most field sources drawn on the η–V diagram.
ETA_V_LIMIT = 3000
#: Columns of the measurements table (Jy/beam, MJD; shown in mJy/beam).
TABLE_COLUMNS = ("mjd", "peak_jyb", "peak_err_jyb", "norm_flux_jyb", "norm_err_jyb", "snr", "success",
                 "qc_status", "norm_status", "image_id", "used_as_reference")


def source_of(request: Request, image_columns: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(summary, light curve) of the source in the path; HTTP 404 when there is none.
    ``summary`` as :func:`dsa110_contimg.store.review.source_summary`, the light curve as
    :func:`dsa110_contimg.store.lightcurves.source_lightcurve` (Jy/beam, MJD; with its
    ``image_columns``)."""
    from dsa110_contimg.store.lightcurves import source_lightcurve

    source_id = request.path_params["source_id"]
    with site(request).read() as conn:
        summary = review.source_summary(conn, source_id)
        if summary is None:
            raise HTTPException(404, f"no source with id {source_id}")
        return summary, source_lightcurve(conn, summary["source"], image_columns=image_columns)


def field_eta_v(conn, summary: dict) -> tuple[dict, tuple[float, float] | None]:
    """η and V of at most :data:`ETA_V_LIMIT` sources around the source (the source itself
    always among them) and the field's η and V thresholds (None when too few sources for
    the population's Gaussian fit)."""
    from dsa110_contimg.science.ese import eta_v_thresholds
    from dsa110_contimg.store.lightcurves import neighbourhood_radius

    src, var = summary["source"], summary["variability"]
    radius = max(neighbourhood_radius(conn, 0.0) - 0.01, 0.1)
    ev = review.field_eta_v(conn, src["ra_deg"], src["dec_deg"], radius, limit=ETA_V_LIMIT)
    if var and var.get("eta") and var.get("v") and src["id"] not in set(ev["source_id"].tolist()):
        ev = {"source_id": np.append(ev["source_id"], src["id"]), "eta": np.append(ev["eta"], var["eta"]),
              "v": np.append(ev["v"], var["v"])}
    try:
        t = eta_v_thresholds(ev["eta"], ev["v"])
    except Exception:  # noqa: BLE001 - too few sources for a population fit: no lines
        return ev, None
    return ev, (t.eta_threshold, t.v_threshold)


def measurement_rows(lc: dict, paging: Paging) -> list[dict]:
    """This page's rows of the measurements table."""
    return [{k: lc[k][i] for k in TABLE_COLUMNS} for i in paging.window(int(lc["mjd"].size))]


def neighbours(conn, src: dict, lc: dict) -> tuple[list[dict], float | None, float]:
    """(sources within :data:`NEIGHBOUR_BEAMS` beams, the beam FWHM in arcsec or None, the
    search radius in arcsec): what could blend with the source in the images. The beam is
    the median restoring-beam major axis of the light curve's images (``lc`` read with
    ``image_columns=("beam_major_arcsec",)``)."""
    from dsa110_contimg.store.sources import sources_near

    beams = lc["beam_major_arcsec"][np.isfinite(lc["beam_major_arcsec"])]
    beam = float(np.median(beams)) if beams.size else None
    radius_arcsec = NEIGHBOUR_BEAMS * (beam or DEFAULT_BEAM_ARCSEC)
    rows = sources_near(conn, src["ra_deg"], src["dec_deg"], radius_arcsec / 3600.0, exclude_id=src["id"],
                        limit=NEIGHBOURS_LIMIT)
    return rows, beam, radius_arcsec


def source_page(request: Request):
    from dsa110_contimg.pipeline.plotting import stored_ese_fit
    from dsa110_contimg.store.ese_stages import stage_history
    from dsa110_contimg.store.lightcurves import load_baselines

    summary, lc = source_of(request, image_columns=("beam_major_arcsec",))
    src, cand = summary["source"], summary["candidate"]
    paging = Paging.of(request, MEASUREMENTS_PER_PAGE).counted(int(lc["mjd"].size))
    with site(request).read() as conn:
        baseline = load_baselines(conn, [src["id"]]).get(src["id"])
        ev, thresholds = field_eta_v(conn, summary)
        near, beam, near_radius = neighbours(conn, src, lc)
        history = review_log.history(conn, cand["id"]) if cand else []
        stages = stage_history(conn, cand["id"]) if cand else []
    fit = stored_ese_fit(cand)
    stamp_beam = beam or DEFAULT_BEAM_ARCSEC
    stamps, (low, high) = strip(site(request).stamps, lc, src, cand, stamp_beam)
    # the stamps travel inside the page (a few kB each): no request per stamp
    inline = {st.image_id: "data:image/png;base64," + base64.b64encode(render_png(st.cutout, low, high)).decode()
              for st in stamps if st.cutout is not None}
    reference = baseline["baseline_jyb"] if baseline and baseline["valid"] else None
    plot = svg.lightcurve_svg(lc, fit=fit, title=f"light curve of {src['catalog_id']}", reference_jyb=reference,
                              catalog_mjy=src.get("catalog_flux_mjy"),
                              catalog_label=f"catalogue flux ({str(src['survey']).upper()})")
    return site(request).render(
        request, "source.html", s=summary, src=src, var=summary["variability"], cand=cand, fit=fit,
        plot=plot, baseline=baseline, n_field=int(ev["eta"].size),
        etav=svg.eta_v_svg(ev["eta"], ev["v"], highlight=src["id"], source_ids=ev["source_id"],
                           thresholds=thresholds),
        table=measurement_rows(lc, paging), paging=paging, n=paging.total,
        n_qc_failed=int(np.sum(lc["qc_status"] == "failed")), neighbours=near, beam_arcsec=beam,
        neighbour_radius_arcsec=near_radius, history=history, stages=stages,
        links=links_out(src["ra_deg"], src["dec_deg"], max(near_radius, 30.0)), stamps=stamps, stamp_png=inline,
        stamp_query=urlencode({"w": f"{HALF_WIDTH_BEAMS * stamp_beam:.3f}", "lo": f"{low:.6g}",
                               "hi": f"{high:.6g}"}),
        stamp_low=low, stamp_high=high, stamp_half_width_arcsec=HALF_WIDTH_BEAMS * stamp_beam)


def api_source(request: Request):
    summary, lc = source_of(request)
    series = {k: column_values(v) for k, v in lc.items()}
    return JSONResponse({**clean(summary), "lightcurve": series})


ROUTES = [
    Route("/sources/{source_id:int}", source_page),
    Route("/api/sources/{source_id:int}", api_source),
]
