"""From an image's blind detections to associations and new sources (docs/science.md §16-§18).

Two halves around the image's ``store`` step, both inside the image's one write
transaction:

:func:`prepare` (read connection, before any lock)
    The known sources of the field: the image's measured rows (catalogue, monitor and
    the service's own sources measured forward) at their running weighted-mean positions,
    and the service's own sources of the footprint that were not measured here. Each
    detection is associated by the de Ruiter radius (one-to-many: the smallest r; the
    losers are *duplicates*). A detection that matches nothing is checked for the
    false-positive classes (edge, blanked, artefact: recorded with the reason, no source
    made), then against the depth of the earlier images of the field: *new* or, on a
    first visit or when the earlier images were too shallow, *blind* (a non-catalogue
    source that is not new). Each new or blind source becomes a row of the image's
    measurements (survey ``dsa110``, kind ``new``/``blind``), so the ``store``,
    ``normalise`` and ``variability`` steps treat it like any other source.
:func:`recheck` (write transaction, before ``store``)
    Another worker may have created the same source between the read and the lock:
    planned sources that now match one of the field's own sources join it instead.
:func:`write` (write transaction, after ``store``)
    The detection rows (every association), the sources' weighted-mean positions and
    counts, the ``new_sources`` rows (the record an alert is made from), the image's depth
    footprint, and a backfill job for the new sources' covering images already stored.

Positions deg, errors arcsec, fluxes Jy/beam.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import structlog

from dsa110_contimg.store import detections as det_store
from dsa110_contimg.store import lightcurves as lc_store

log = structlog.get_logger("dsa110_contimg.pipeline.transients")

#: survey name of the service's own (non-catalogue) sources
OWN_SURVEY = "dsa110"
#: earlier images used for a new-source test, deepest first (bounds the reads per image)
MAX_EARLIER_IMAGES = 64


@dataclass
class DetectionPlan:
    """What :func:`prepare` decided for each detection of an image."""

    status: np.ndarray                 # DETECTION_STATES per detection
    reason: np.ndarray                 # text per detection ('' for none)
    target: np.ndarray                 # candidate index (associated/duplicate) or -1
    r: np.ndarray                      # de Ruiter radius of the association or duplicate
    n_candidates: np.ndarray
    related: np.ndarray                # candidate index of an artefact's bright source, or -1
    new_rows: np.ndarray               # measurement row of a new/blind detection's source, or -1
    cand_row: np.ndarray               # per candidate: its measurement row, or -1
    cand_id: np.ndarray                # per candidate: its sources.id, or -1 (not stored yet)
    cand_pos: dict                     # ra, dec, w_ra, w_dec, n per candidate (weights arcsec^-2)
    verdicts: dict = field(default_factory=dict)   # detection index -> new-source verdict row


def _rows_catalog_ids(measured, default_survey: str) -> tuple[np.ndarray, np.ndarray]:
    """Per measured row: its catalogue id and survey (a row without a survey, i.e. every
    catalogue row once monitor or own rows are appended, is from ``default_survey``)."""
    cat = measured.cat
    surveys = np.full(len(cat), default_survey, object)
    if "survey" in cat.colnames:
        col = cat["survey"]
        raw = np.asarray(np.ma.filled(col, None) if np.ma.is_masked(col) else col, object)
        surveys = np.where(np.equal(raw, None) | np.equal(raw, ""), surveys, raw).astype(object)
    return np.asarray(cat["source_id"]).astype(str).astype(object), surveys


def _resolved_catalogue(cat, survey: str, beam_major_arcsec: float, near_ra, near_dec):
    """``(ra, dec, major, minor, pa)`` of the measured catalogue rows the beam resolves
    (a measured deconvolved size, not an upper limit, above the compactness limit), among
    those whose ellipse of :func:`~dsa110_contimg.science.newsource.false_positive_reasons`
    can reach a position (``near_ra``, ``near_dec``, deg)."""
    from dsa110_contimg.catalogs.compactness import RESOLVED, compactness
    from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors

    def col(name, sel):
        return (np.ma.filled(np.ma.asarray(cat[name][sel], float), np.nan) if name in cat.colnames
                else np.full(sel.size, np.nan))

    near = np.zeros(0, np.int64)
    every = np.arange(len(cat))
    major = col("maj_arcsec", every)
    if np.size(near_ra) and np.isfinite(major).any():
        from scipy.spatial import cKDTree

        reach = 0.5 * (np.hypot(np.nanmax(major), beam_major_arcsec) + beam_major_arcsec)
        xyz = unit_vectors(col("ra_deg", every), col("dec_deg", every))
        ok = np.flatnonzero(np.isfinite(major) & np.isfinite(xyz).all(axis=1))
        d, _ = cKDTree(unit_vectors(np.asarray(near_ra, float), np.asarray(near_dec, float))
                       ).query(xyz[ok], distance_upper_bound=1.001 * chord_of_angle(reach / 3600.0))
        near = ok[np.isfinite(d)]
    sel = near
    if near.size:
        klass, _ = compactness(cat[near], beam_major_arcsec, survey)
        sel = near[klass == RESOLVED]
    return (col("ra_deg", sel), col("dec_deg", sel), major[sel], col("min_arcsec", sel),
            col("pa_deg", sel))


def _candidates(conn, ctx):
    """Known sources of the field: the measured rows, then own sources not measured here."""
    from dsa110_contimg.science.associate import catalogue_position_error_arcsec

    measured, cfg = ctx.measured, ctx.cfg
    cat = measured.cat
    names, surveys = _rows_catalog_ids(measured, cfg.catalog)
    ids = np.full(names.size, -1, np.int64)
    stored = {k: np.zeros(names.size, dt) for k, dt in (
        ("ra", float), ("dec", float), ("w_ra", float), ("w_dec", float), ("n", np.int64),
        ("found", bool))}
    for survey in set(surveys.tolist()):
        sel = np.flatnonzero(surveys == survey)
        got = det_store.catalogue_source_positions(conn, survey, names[sel].tolist())
        ids[sel] = got["id"]
        for k in stored:
            stored[k][sel] = got[k]
        if survey == cfg.catalog:            # the store step's prepare needs no second read
            hit = got["id"] >= 0
            ctx.catalogue_ids = dict(zip(names[sel][hit].tolist(), got["id"][hit].tolist()))
    ra = np.asarray(cat["ra_deg"], float).copy()
    dec = np.asarray(cat["dec_deg"], float).copy()
    flux = np.asarray(cat["flux_mjy"], float) if "flux_mjy" in cat.colnames else np.full(ra.size, np.nan)
    err = np.empty(ra.size)
    for survey in set(surveys.tolist()):
        sel = surveys == survey
        err[sel] = catalogue_position_error_arcsec(str(survey), flux[sel])
    w_ra, w_dec, n_det = 1.0 / err ** 2, 1.0 / err ** 2, np.zeros(ra.size, np.int64)
    at = stored["found"]
    ra[at], dec[at], n_det[at] = stored["ra"][at], stored["dec"][at], stored["n"][at]
    w_ra[at], w_dec[at] = stored["w_ra"][at], stored["w_dec"][at]
    own = det_store.own_sources_near(conn, ctx.ra_deg, ctx.dec_deg, ctx.radius_deg)
    extra = ~np.isin(own["id"], ids)
    pos = {"ra": np.r_[ra, own["ra_deg"][extra]], "dec": np.r_[dec, own["dec_deg"][extra]],
           "w_ra": np.r_[w_ra, np.where(own["w_ra"][extra] > 0, own["w_ra"][extra], 1.0)],
           "w_dec": np.r_[w_dec, np.where(own["w_dec"][extra] > 0, own["w_dec"][extra], 1.0)],
           "n": np.r_[n_det, own["n_detections"][extra]]}
    cand_row = np.r_[np.arange(names.size), np.full(int(extra.sum()), -1)]
    cand_id = np.r_[ids, own["id"][extra]]
    return cand_row, cand_id, pos


def _earlier_depths(conn, ctx, ra, dec, rules):
    """Per unmatched detection and earlier covering image: rms and status at the position.

    The earlier images are those of the field window (``ctx.window_start()``, MJD; the
    whole history when the steps read it), so what is read does not grow with the years:
    a position covered within the window is tested against the window's deepest images."""
    from dsa110_contimg.science.footprint import NoiseFootprint

    field = lc_store.images_near(conn, ctx.ra_deg, ctx.dec_deg,
                                 lc_store.neighbourhood_radius(conn, ctx.radius_deg),
                                 since_mjd=ctx.window_start())
    rows = det_store.earlier_depths(conn, field["id"].tolist(), ctx.mjd, MAX_EARLIER_IMAGES)
    rms = np.full((ra.size, len(rows)), np.nan)
    status = np.full((ra.size, len(rows)), "outside", dtype=object)
    corr = np.ones(len(rows))
    for k, row in enumerate(rows):            # one WCS transform per earlier image
        fp = NoiseFootprint.parsed(row["footprint"])
        rms[:, k], status[:, k] = fp.depth_at(ra, dec, edge_beams=rules.edge_beams,
                                              blank_beams=rules.blank_beams)
        corr[k] = fp.noise_corr_factor
    return rows, rms, status, corr


def prepare(conn, ctx) -> None:
    """Associate the image's detections and decide the unmatched ones (module docstring)."""
    from dsa110_contimg.science.associate import associate
    from dsa110_contimg.science.newsource import (
        NewSourceRules, false_positive_reasons, new_source_significance)
    from dsa110_contimg.science.results import describe_flags

    measured, cfg = ctx.measured, ctx.cfg
    det = measured.detections
    ctx.prepared["transients"] = None
    if det is None or measured.image.beam is None:
        return
    beam = measured.image.beam
    ok = np.asarray(det["success"], bool)
    cand_row, cand_id, pos = _candidates(conn, ctx)
    era, edec = np.asarray(det["ra_err_arcsec"], float), np.asarray(det["dec_err_arcsec"], float)
    a = associate(np.where(ok, det["ra_deg"], np.nan), det["dec_deg"], era, edec,
                  pos["ra"], pos["dec"], 1 / np.sqrt(pos["w_ra"]), 1 / np.sqrt(pos["w_dec"]),
                  beam_major_arcsec=beam.major_arcsec, precut_beams=cfg.association_precut_beams,
                  r_max=cfg.association_max_r)
    n = len(det)
    plan = DetectionPlan(
        status=np.full(n, "rejected", dtype=object), reason=np.full(n, "", dtype=object),
        target=np.where(a.source >= 0, a.source, a.duplicate_of), r=np.where(
            a.source >= 0, a.r, a.duplicate_r), n_candidates=a.n_candidates,
        related=np.full(n, -1, np.int64), new_rows=np.full(n, -1, np.int64), cand_row=cand_row,
        cand_id=cand_id, cand_pos=pos)
    plan.status[a.source >= 0] = "associated"
    plan.status[a.duplicate_of >= 0] = "duplicate"
    plan.reason[a.duplicate_of >= 0] = "a closer detection took the same source"
    for i in np.flatnonzero(~ok):
        plan.reason[i] = f"no flux: {describe_flags(int(det['flags'][i])) or 'fit failed'}"
    rules = NewSourceRules.from_config(cfg)
    free = ok & (a.source < 0) & (a.duplicate_of < 0)
    fp_reason, related = false_positive_reasons(
        det["peak_jyb"], det["ra_deg"], det["dec_deg"], det["edge_distance_beams"],
        det["near_blank"], beam.major_arcsec, rules, hosts=measured.artefact_hosts,
        resolved=_resolved_catalogue(measured.cat, cfg.catalog, beam.major_arcsec,
                                     det["ra_deg"][free], det["dec_deg"][free]),
        classify=free)
    rejected = free & (fp_reason != "")
    plan.reason[rejected] = fp_reason[rejected]
    plan.related[rejected] = related[rejected]
    todo = np.flatnonzero(free & ~rejected)
    if todo.size:
        rows, rms, status, corr = _earlier_depths(conn, ctx, det["ra_deg"][todo],
                                                  det["dec_deg"][todo], rules)
        v = new_source_significance(
            det["peak_jyb"][todo], rms, status, [r["rms_min_jyb"] for r in rows],
            [r["rms_max_jyb"] for r in rows], rules, corr_factor=corr,
            snr=np.asarray(det["peak_jyb"][todo], float) / np.asarray(det["peak_err_jyb"][todo], float))
        # too faint in its own image: recorded, no source made (a real one is tested afresh
        # at its next detection, against this image's depth too)
        plan.status[todo] = np.where(v.is_new, "new_source",
                                     np.where(v.faint_here, "rejected", "blind_source"))
        plan.reason[todo] = v.reason
        for j, i in enumerate(todo):
            if v.is_new[j]:
                plan.verdicts[int(i)] = {
                    "new_high_sigma": float(v.new_high_sigma[j]),
                    "sigma_image_id": int(rows[v.new_sigma_image[j]]["image_id"]),
                    "sigma_rms_min": float(v.sigma_rms_min[j]),
                    "likely_transient": bool(v.likely_transient[j]),
                    "n_earlier_images": int(v.n_covering[j])}
        ctx.measured = _with_own_rows(measured, det, todo[~v.faint_here], v.is_new[~v.faint_here],
                                      plan)
    ctx.prepared["transients"] = plan


def _with_own_rows(measured, det, todo, is_new, plan):
    """The measured image with one measurement row per new/blind source (its detection's
    forced measurement), named by position (``DSA110 Jhhmmss.ss+ddmmss.s``)."""
    from dsa110_contimg.catalogs.naming import disambiguate, iau_names
    from dsa110_contimg.pipeline.measure import append_rows
    from dsa110_contimg.science.results import CORE_COLUMNS, MeasurementTable

    table, cat = measured.table, measured.cat
    start = len(table)
    cols = {}
    for name, values in table.columns.items():
        add = det[name][todo] if name in det.columns else np.full(
            todo.size, np.nan if values.dtype.kind == "f" else 0, dtype=values.dtype)
        cols[name] = np.concatenate([values, np.asarray(add, dtype=values.dtype)])
    for name in CORE_COLUMNS:
        cols.setdefault(name, det[name][todo])
    names = disambiguate(iau_names("DSA110", det["ra_deg"][todo], det["dec_deg"][todo],
                                   ra_decimals=2, dec_decimals=1))
    own = {"source_id": np.asarray(names, str), "ra_deg": det["ra_deg"][todo],
           "dec_deg": det["dec_deg"][todo], "flux_mjy": np.full(todo.size, np.nan),
           "survey": np.full(todo.size, OWN_SURVEY, object),
           "kind": np.where(is_new, "new", "blind").astype(object)}
    plan.new_rows[todo] = start + np.arange(todo.size)
    return replace(measured, table=MeasurementTable(cols, table.meta), cat=append_rows(cat, own))


def recheck(conn, ctx) -> None:
    """Join planned new/blind sources to own sources created since :func:`prepare`."""
    from dsa110_contimg.science.associate import associate

    plan = ctx.prepared.get("transients")
    if plan is None or not (plan.new_rows >= 0).any():
        return
    own = det_store.own_sources_near(conn, ctx.ra_deg, ctx.dec_deg, ctx.radius_deg)
    fresh = ~np.isin(own["id"], plan.cand_id)
    if not fresh.any():
        return
    det = ctx.measured.detections
    todo = np.flatnonzero(plan.new_rows >= 0)
    w_ra, w_dec = own["w_ra"][fresh], own["w_dec"][fresh]
    a = associate(det["ra_deg"][todo], det["dec_deg"][todo], det["ra_err_arcsec"][todo],
                  det["dec_err_arcsec"][todo], own["ra_deg"][fresh], own["dec_deg"][fresh],
                  1 / np.sqrt(np.where(w_ra > 0, w_ra, 1.0)),
                  1 / np.sqrt(np.where(w_dec > 0, w_dec, 1.0)),
                  beam_major_arcsec=ctx.measured.image.beam.major_arcsec,
                  precut_beams=ctx.cfg.association_precut_beams, r_max=ctx.cfg.association_max_r)
    cat = ctx.measured.cat
    for j in np.flatnonzero(a.source >= 0):
        i, k = todo[j], np.flatnonzero(fresh)[a.source[j]]
        row = plan.new_rows[i]
        cat["source_id"][row] = own["catalog_id"][k]
        cat["kind"][row] = own["kind"][k]
        plan.status[i] = "associated"
        plan.reason[i] = "joined a source another worker had just created"
        plan.r[i] = a.r[j]
        plan.verdicts.pop(int(i), None)


def write(conn, ctx) -> dict:
    """Store detections, positions, new sources, the image depth and the backfill job."""
    plan = ctx.prepared.get("transients")
    measured = ctx.measured
    if plan is None:
        return {"detections": 0, "new": 0}
    det = measured.detections
    cand_sid = np.where(plan.cand_row >= 0, ctx.source_ids[np.maximum(plan.cand_row, 0)],
                        plan.cand_id)
    own_sid = np.where(plan.new_rows >= 0, ctx.source_ids[np.maximum(plan.new_rows, 0)], -1)
    source_id = np.where(np.isin(plan.status, ["associated"]) & (plan.target >= 0),
                         cand_sid[np.maximum(plan.target, 0)], own_sid)
    source_id = np.where(plan.status == "duplicate", -1, source_id)
    related = np.where(plan.status == "duplicate", cand_sid[np.maximum(plan.target, 0)], -1)
    related = np.where(plan.related >= 0, _detection_source(plan, source_id, plan.related), related)
    _store_detection_rows(conn, ctx, det, plan, source_id, related)
    _update_positions(conn, ctx, det, plan, source_id)
    new_ids = _record_new(conn, ctx, det, plan, source_id)
    if measured.footprint is not None:
        from dsa110_contimg.science.footprint import NoiseFootprint

        rms_min, rms_max = NoiseFootprint.extremes_of(measured.footprint)
        det_store.store_image_depth(conn, ctx.image_id, measured.footprint, rms_min, rms_max,
                                    len(det))
    counts = {s: int(np.sum(plan.status == s)) for s in
              ("associated", "duplicate", "new_source", "blind_source", "rejected")}
    if new_ids:
        ctx.notes.append(f"{len(new_ids)} new source(s) found by blind detection")
        log.info("new_sources", image_id=ctx.image_id, source_ids=new_ids)
        if ctx.cfg.backfill_new_sources and not ctx.remeasured:
            _queue_backfill(conn, ctx, det, plan, source_id, new_ids)
    return {"detections": len(det), "new": len(new_ids), "new_source_ids": new_ids, **counts}


def _queue_backfill(conn, ctx, det, plan, source_id, new_ids) -> None:
    """A backfill job for the new sources' covering images already stored (same transaction)."""
    from dsa110_contimg.pipeline.backfill import queue_backfill

    rows = [{"id": int(source_id[i]), "ra_deg": float(det["ra_deg"][i]),
             "dec_deg": float(det["dec_deg"][i])} for i in plan.verdicts if source_id[i] in new_ids]
    # every stored image: the earlier ones, and later ones stored first (another worker's,
    # measured before the source existed); images still in flight measure it at their store
    job = queue_backfill(conn, rows, ctx.cfg, exclude=(int(ctx.image_id),))
    if job is not None:
        det_store.set_backfill_job(conn, [r["id"] for r in rows], job)
        ctx.notes.append(f"backfill job {job} queued for the new sources' covering images already stored")


def _detection_source(plan, source_id, related_det):
    """For artefacts: the source fed by the bright detection (or -1)."""
    return np.where(related_det >= 0, source_id[np.maximum(related_det, 0)], -1)


def _store_detection_rows(conn, ctx, det, plan, source_id, related) -> None:
    from dsa110_contimg.store.bulk import nullable

    def ints(a):
        """Ids as Python ints, negative ones as None (SQL NULL)."""
        a = np.asarray(a, np.int64)
        out = a.astype(object)
        out[a < 0] = None
        return out.tolist()

    n = len(det)
    cols = {c: nullable(det[c]) for c in ("ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec",
                                          "x_pix", "y_pix", "peak_jyb", "peak_err_jyb",
                                          "local_rms_jyb", "snr")}
    cols.update(source_id=ints(source_id), related_source_id=ints(related),
                mjd=[ctx.mjd] * n, island_id=np.asarray(det["island_id"], int).tolist(),
                n_components=np.asarray(det["n_components"], int).tolist(),
                flags=np.asarray(det["flags"], int).tolist(), status=plan.status.tolist(),
                de_ruiter_r=nullable(plan.r), n_candidates=np.asarray(plan.n_candidates,
                                                                       int).tolist(),
                reason=[r or None for r in plan.reason.tolist()])
    det_store.replace_detections(conn, ctx.image_id, cols)


def _update_positions(conn, ctx, det, plan, source_id) -> None:
    """Fold each feeding detection (its stored row has a ``source_id``) into its source's
    weighted-mean position, in the database."""
    feed = source_id[source_id >= 0]
    if ctx.remeasured or feed.size == 0:
        return                                # a re-measured image does not count twice
    import time

    det_store.accumulate_detection_positions(conn, ctx.image_id, time.time(),
                                             repeats=np.unique(feed).size < feed.size)


def _record_new(conn, ctx, det, plan, source_id) -> list[int]:
    rows = []
    for i, verdict in plan.verdicts.items():
        if plan.status[i] != "new_source" or source_id[i] < 0:
            continue
        rows.append({"source_id": int(source_id[i]), "image_id": int(ctx.image_id),
                     "mjd": ctx.mjd, "peak_jyb": float(det["peak_jyb"][i]),
                     "peak_err_jyb": float(det["peak_err_jyb"][i]), **verdict})
    det_store.record_new_sources(conn, rows)
    return [r["source_id"] for r in rows]


__all__ = ["OWN_SURVEY", "DetectionPlan", "prepare", "recheck", "write"]
