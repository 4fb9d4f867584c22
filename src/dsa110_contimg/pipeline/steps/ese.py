"""Step ``ese``: ESE candidates among the image's sources (:mod:`dsa110_contimg.science.ese`).

Runs after the image's transaction committed. Prepare, on a read connection (the
template search needs no lock): :func:`ese_rows` over the running statistics the
variability step wrote and the light curves over the field's images, with the
signature of those inputs (:func:`ese_inputs_signature`). Write, in a short transaction
of its own: :func:`store_ese`, which evaluates again only if another image of the field
rewrote the inputs in between. Criteria: preset thresholds, the eta-V criterion, the
light-curve shape detector with its stages while the event happens (dip in progress,
recovering, confirmed, retired; :mod:`~dsa110_contimg.science.ese_stage`) and the
composite score. The template search of an image is bounded whatever the length of the
history (:func:`_shape_search`): the templates the new epoch can change, and for known
candidates also their stored best template's neighbourhood; the full-history search is
for re-measured images and recomputations. Candidates keep their lifecycle status
(``active`` / ``investigated`` / ``dismissed``); stage changes are appended to the stage history. In the same transaction,
new candidates, raised confidences and stage changes are recorded as alerts
(:mod:`~dsa110_contimg.pipeline.ese_alerts`). The result is the number of sources flagged.
"""

from __future__ import annotations

import json

import numpy as np

from dsa110_contimg.core.enums import confidence_level
from dsa110_contimg.pipeline.ese_alerts import record_ese_alerts
from dsa110_contimg.pipeline.steps.base import OWN_TRANSACTION, ImageContext, Step
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store.ese_stages import candidate_templates, record_stage_changes

#: Minimum epochs before the ESE shape detector is run on a light curve.
MIN_EPOCHS_SHAPE = 8
#: Minimum epochs for the threshold criteria.
MIN_EPOCHS_ESE = 5
#: The template search (~1 s per 2,000 sources) runs only where chi2_nu exceeds this, or on
#: existing candidates. A 30 % dip over 3 of 60 epochs at 2 % noise gives chi2_nu ~ 11.
SHAPE_PREFILTER_CHI2_NU = 1.5


def _shape_search(detect, mjd, flux, err, full_rows, new_mjd, near=None, summary=None):
    """ESE template search with a cost bounded as history grows.

    With a new epoch ``new_mjd`` (MJD), every source gets the incremental search
    (templates whose recovery window reaches the new epoch, see ``detect_ese_shapes``),
    because an event that became detectable earlier was searched when its last epoch
    came in. Known candidates (``full_rows``) also get their stored best template
    (``near``: ``t0`` MJD and ``duration`` days per known row, NaN when none) and its
    neighbours re-fitted on their whole light curve, so their best template follows
    the full-history search; this costs O(epochs) per candidate, not O(epochs**2).
    Without ``new_mjd`` (re-measured image, field normalised again, recomputation)
    every source gets the full-history search. With ``summary`` the light curves are the
    window of :func:`_window_start` and the epochs before it come as sums
    (:mod:`~dsa110_contimg.science.ese_window`), for the known candidates' fits.
    """
    if new_mjd is None:
        return detect(mjd, flux, err)
    if not full_rows.any():
        return detect(mjd, flux, err, new_since_mjd=float(new_mjd))
    if full_rows.all():
        return detect(mjd, flux, err, new_since_mjd=float(new_mjd), near=near, summary=summary)
    inc = ~full_rows
    part = detect(mjd[inc], flux[inc], err[inc], new_since_mjd=float(new_mjd))
    known = detect(mjd[full_rows], flux[full_rows], err[full_rows],
                   new_since_mjd=float(new_mjd), near=near,
                   summary=_take(summary, full_rows))
    out = {}
    for k, v in part.items():
        arr = np.empty(inc.size, dtype=np.asarray(v).dtype)
        arr[inc] = v
        arr[full_rows] = known[k]
        out[k] = arr
    return out


def _renormalised(ctx: ImageContext) -> bool:
    """Whether this image's transaction normalised earlier images of the field again (their
    epochs changed, so the whole history is searched, not only the new epoch's templates)."""
    return bool((ctx.results.get("normalise") or {}).get("renormalised"))


def ese_inputs_signature(conn, ctx: ImageContext) -> tuple:
    """What :func:`ese_rows` depends on that another worker may change: the image's sources'
    running-statistics rows (id, n, updated_at) and which of them are candidates."""
    return (lc_store.running_stats_signature(conn, ctx.source_ids),
            frozenset(lc_store.candidate_source_ids(conn, ctx.source_ids)))


def store_ese(conn, ctx: ImageContext, cfg, evaluated: tuple, signature: tuple) -> int:
    """Write ESE rows evaluated on a read connection (``evaluated`` = :func:`ese_rows`,
    ``signature`` = :func:`ese_inputs_signature` read with them) inside the write
    transaction ``conn``; when the inputs changed meanwhile (another image of the field
    committed), evaluate again on ``conn`` first. Stage changes are appended to the
    stage history. Returns how many are flagged."""
    rows, flagged = evaluated
    if ese_inputs_signature(conn, ctx) != signature:
        ctx.reread_field(conn)
        rows, flagged = ese_rows(conn, ctx, cfg)
    write_ese_rows(conn, rows, image_id=ctx.image_id, mjd=ctx.mjd)
    return flagged


def write_ese_rows(conn, rows: list[dict], *, image_id: int | None, mjd: float | None) -> None:
    """Upsert evaluated ESE rows (:func:`ese_rows`) inside ``conn``, append their stage
    changes to the history and record their alerts; ``image_id``/``mjd`` (MJD) name the
    epoch evaluated, None when a field is recomputed outside an image."""
    stage_sigma = {int(r["source_id"]): r.pop("_stage_sigma", None) for r in rows}
    changes = lc_store.upsert_ese_candidates(conn, rows)
    record_stage_changes(conn, changes, rows, image_id=image_id, mjd=mjd,
                         significance=stage_sigma)
    record_ese_alerts(conn, image_id, rows, changes)


#: Stage of a known candidate whose live dip is no longer significant.
LOST_REASON = "the dip is no longer significant: the light curve is back at its baseline"


def _take(summary: dict | None, rows) -> dict | None:
    """The ``rows`` (mask or indices) of a summary of the epochs before the window."""
    if summary is None:
        return None
    return {k: (v if k == "until" else np.asarray(v)[rows]) for k, v in summary.items()}


def _window_start(ctx: ImageContext, field) -> float | None:
    """Start (MJD) of the window the per-image search reads: :data:`SEARCH_WINDOW_DAYS`
    before the field's latest epoch preceding this image (every template the new epoch
    can complete, or is live at, lies after it); None when the whole history is searched
    (re-measured image, field normalised again, no epoch time)."""
    from dsa110_contimg.science.ese import SEARCH_WINDOW_DAYS

    if ctx.remeasured or _renormalised(ctx) or ctx.mjd is None or not np.isfinite(ctx.mjd):
        return None
    with np.errstate(invalid="ignore"):
        before = field.mjd[field.mjd < float(ctx.mjd)]
    prev = float(before.max()) if before.size else float(ctx.mjd)
    return prev - SEARCH_WINDOW_DAYS


def _read_lightcurves(conn, ctx: ImageContext, cfg, rows: np.ndarray, stored: dict):
    """Light curves of the sources ``rows`` (indices into the image's sources) for the
    search: the window of :func:`_window_start` and the epochs before it as sums of the
    running statistics ``stored`` (:func:`~dsa110_contimg.science.ese_window.summary_before`),
    or the whole history; the measurement rows through the process's row cache
    (:mod:`~dsa110_contimg.store.row_cache`: only the rows of new or changed images, and of
    sources not read before, are read). Returns (flux, err, mjd, summary, screen); summary
    None when no source has epochs before the window (or the whole history was read);
    screen the :class:`~dsa110_contimg.science.ese_live_sums.LiveScreen` of these light
    curves (their epochs and each one's rows' version), None when the row cache does not
    hold them."""
    from dsa110_contimg.science.ese_live_sums import SUMS, LiveScreen
    from dsa110_contimg.science.ese_window import summary_before, window_sums
    from dsa110_contimg.store.row_cache import CACHE

    field = ctx.field_images(conn)
    use = field.norm_status == "ok" if cfg.normalize else np.ones(field.ids.size, bool)
    until = _window_start(ctx, field)
    if until is not None:
        with np.errstate(invalid="ignore"):
            use = use & (field.mjd >= until)
    ids = ctx.source_ids[rows]
    flux, err, mjd, _ = lc_store.load_lightcurves(conn, ids, field.ids[use],
                                                  normalized=cfg.normalize, epochs=field.mjd[use],
                                                  cached=True)
    tokens = CACHE.tokens(conn, field.ids[use], normalized=cfg.normalize)
    screen = None if tokens is None or not SUMS.enabled else LiveScreen(
        SUMS, (str(conn.engine.url), bool(cfg.normalize)), ids, (field.mjd[use], tokens),
        -np.inf if until is None else until)
    if until is None:
        return flux, err, mjd, None, screen
    totals = {k: np.asarray(stored[k])[rows] for k in ("n", "sum_w", "sum_wf", "sum_wf2",
                                                       "first_mjd")}
    return flux, err, mjd, summary_before(totals, window_sums(flux, err, mjd), until), screen


def _searches(flux, summary, deep) -> bool:
    """Whether the template search runs on light curves read (``flux``, NaN padded, and
    their ``summary``) of which the ``deep`` rows are searched."""
    return bool(flux.shape[1]) and bool(deep.any()) and \
        (summary is not None or flux.shape[1] >= MIN_EPOCHS_SHAPE)


def _read_searched(conn, ctx: ImageContext, cfg, stored: dict, worth: np.ndarray,
                   by_preset: np.ndarray, is_known: np.ndarray):
    """The sources whose light curves the search reads (indices into the image's sources)
    and those light curves (``(flux, err, mjd, summary)`` of :func:`_read_lightcurves`;
    None when nothing is read).

    Wanted: at least :data:`MIN_EPOCHS_SHAPE` epochs and ``worth`` a search, or the
    ``by_preset`` criterion. Not read among them (``quiet``): sources that are neither
    known candidates (``is_known``) nor ``by_preset`` and that cannot reach a detection or
    a stage (:func:`~dsa110_contimg.science.ese_window.cannot_reach`): their row is never
    written. When leaving them out would change whether the search runs at all, or
    whether epochs before the window enter it, while some row is written whatever is
    found (a known candidate or a ``by_preset`` source), they are read as well: every
    written row is what reading them gives."""
    from dsa110_contimg.science.ese_window import cannot_reach

    n = np.asarray(stored["n"], float)
    wanted = ((n >= MIN_EPOCHS_SHAPE) & worth) | by_preset
    quiet = wanted & ~is_known & ~by_preset & cannot_reach(stored)
    read = np.flatnonzero(wanted & ~quiet)
    got = _read_lightcurves(conn, ctx, cfg, read, stored) if read.size else None
    if not quiet.any() or not (is_known.any() or by_preset.any()):
        return read, got
    deep = (n[read] >= MIN_EPOCHS_SHAPE) & worth[read]
    if got is not None and _searches(got[0], got[3], deep) and (
            got[3] is not None or not _before_window(ctx, conn, stored, quiet)):
        return read, got
    read = np.flatnonzero(wanted)
    return read, _read_lightcurves(conn, ctx, cfg, read, stored)


def _before_window(ctx: ImageContext, conn, stored: dict, rows: np.ndarray) -> bool:
    """Whether any of the sources ``rows`` (mask) has epochs (first epoch, MJD, of the
    running statistics ``stored``) before the window of :func:`_window_start`."""
    until = _window_start(ctx, ctx.field_images(conn))
    if until is None:
        return False
    with np.errstate(invalid="ignore"):
        return bool((np.asarray(stored["first_mjd"], float)[rows] < until).any())


def _keep_frozen(found: dict, stored: list, frozen: np.ndarray) -> None:
    """Known candidates whose stored event lies before the window (``frozen``; ``stored``
    their :func:`~dsa110_contimg.store.ese_stages.candidate_templates` rows) keep their
    stored confirmed template, in place in ``found``, unless the search found a more
    significant detection: the epochs since only refine its baseline."""
    column = {c: np.array([_num(p[c]) for p in stored], float)
              for c in ("shape_significance", "depth", "duration_days", "t_min_mjd",
                        "caustic_amp", "baseline_jyb")}
    sig = column["shape_significance"]
    confirmed = np.array([p["stage"] == "confirmed" for p in stored], bool)
    with np.errstate(invalid="ignore"):
        keep = frozen & confirmed & np.isfinite(sig) & \
            ~(found["detected"] & (found["significance"] >= sig))
    found["detected"][keep], found["significance"][keep] = True, sig[keep]
    for k, c in (("depth", "depth"), ("duration_days", "duration_days"),
                 ("t_min_mjd", "t_min_mjd"), ("caustic_amp", "caustic_amp"),
                 ("baseline", "baseline_jyb")):
        found[k][keep] = column[c][keep]
    found["template"][keep] = np.array([p["template"] or "" for p in stored], object)[keep]
    found["chi2_improvement"][keep], found["chi2_nu_fit"][keep] = np.nan, np.nan


def _stages(found: dict, mjd, flux, err, previous: list, summary=None, screen=None) -> dict:
    """Stages of the searched light curves (``found``: their confirmed-search result;
    ``previous``: each one's stored stage, None for sources that are not candidates;
    ``summary``: the epochs before the light curves' window, as sums, or None; ``screen``:
    the kept sums of their live templates, :mod:`~dsa110_contimg.science.ese_live_sums`).

    Only known candidates may be retired: a candidate whose live stage (dip in progress,
    recovering) lapses is retired with :data:`LOST_REASON`; a source that is not a
    candidate gets no ``retired`` stage."""
    from dsa110_contimg.science.ese_stage import ese_stages

    st = ese_stages(mjd, flux, err, confirmed=found, summary=summary, screen=screen)
    stage, reason = st["stage"].copy(), st["reason"].copy()
    prev = np.array([p or "" for p in previous], dtype=object)
    known = np.array([p is not None for p in previous], bool)
    stage[(stage == "retired") & ~known] = ""
    lapsed = (stage == "") & np.isin(prev, ("dip_in_progress", "recovering"))
    stage[lapsed] = "retired"
    reason[lapsed] = LOST_REASON
    retired_before = (stage == "") & (prev == "retired")
    stage[retired_before] = "retired"                       # stays retired with its reason
    reason[retired_before] = None
    return {"stage": stage, "reason": reason, "significance": st["significance"],
            "depth": st["depth"], "onset_mjd": st["onset_mjd"]}


def _low_epochs(flux, err, min_sigma: float = 3.0) -> np.ndarray:
    """Epochs at least ``min_sigma`` below the median, per light curve, in units of the
    larger of the epoch's error and the light curve's robust scatter (1.4826 MAD): a
    threshold candidate needs two (a one-epoch flare or outlier is a variable, not an
    ESE)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        f = np.where(ok, flux, np.nan)
        n = ok.sum(axis=1)
        med = _row_median(f, n)
        mad = 1.4826 * _row_median(np.abs(f - med[:, None]), n)
        scale = np.fmax(np.where(ok, err, np.nan), mad[:, None])
        return (ok & (f < med[:, None] - min_sigma * scale)).sum(axis=1)


def _row_median(x, n) -> np.ndarray:
    """The median of the ``n`` finite values of each row of ``x`` (the others NaN), NaN for a
    row with none: the value :func:`numpy.nanmedian` gives (the middle value, or the mean of
    the two middle ones), from one sort of the rows."""
    s = np.sort(x, axis=1)                                      # NaN last
    rows = np.arange(x.shape[0])
    lo = s[rows, np.maximum((n - 1) // 2, 0)] if x.shape[1] else np.full(x.shape[0], np.nan)
    hi = s[rows, np.minimum(n // 2, max(x.shape[1] - 1, 0))] if x.shape[1] else lo
    return np.where(n > 0, (lo + hi) / 2.0, np.nan)


def _threshold_criteria(metrics: dict, preset: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``preset`` and ``eta_v`` criteria of the sources (bool arrays).

    ``eta_v`` is fitted on the population with at least :data:`MIN_EPOCHS_ESE` epochs and
    finite positive eta and V, and only when it holds at least 20 sources.
    """
    from dsa110_contimg.science.ese import PRESETS, classify, eta_v_candidates

    n = metrics["n"]
    by_preset = classify(metrics, preset, min_n=MIN_EPOCHS_ESE)
    eta_v = np.zeros(n.size, bool)
    pop = (n >= MIN_EPOCHS_ESE) & np.isfinite(metrics["eta"]) & (metrics["eta"] > 0) & \
        np.isfinite(metrics["v"]) & (metrics["v"] > 0)
    if pop.sum() >= 20:
        eta_v[pop] = eta_v_candidates(metrics["eta"][pop], metrics["v"][pop],
                                      n_sigma=PRESETS[preset].sigma_deviation / 2.0)
    return by_preset, eta_v


def _shape_criteria(conn, ctx: ImageContext, cfg, metrics: dict, stored: dict,
                    by_preset: np.ndarray, prev: dict) -> tuple[dict, dict]:
    """Shape search and stages of the sources worth it (reads their light curves: with a
    new epoch the window of :func:`_window_start`, the epochs before it as sums of the
    running statistics ``stored``; else the whole history).

    Searched: sources with at least :data:`MIN_EPOCHS_SHAPE` epochs and chi2_nu above
    :data:`SHAPE_PREFILTER_CHI2_NU`, or already candidates (``prev``: source id ->
    stored stage and best template, :func:`~dsa110_contimg.store.ese_stages.candidate_templates`).
    The light curves of those and of the ``by_preset`` sources are read, less those
    that can matter to no row (:func:`_read_searched`), and ``by_preset`` is cleared in
    place for the light curves with fewer than two low epochs (:func:`_low_epochs`, over
    the epochs read). Known candidates whose stored
    template reaches before the window keep it when confirmed (:func:`_keep_frozen`).

    Returns
    -------
    shape : dict of arrays, one element per source
        :func:`~dsa110_contimg.science.ese.detect_ese_shapes` output (NaN / None where not
        searched; only ``detected`` when nothing was searched); ``depth`` (fractional) is
        the live stage's depth for a dip in progress or recovering.
    stage : dict of arrays
        ``stage`` ('' when none), ``reason`` and ``significance`` (sigma); ``lightcurves``:
        ``(rows, mjd, flux)``, the indices of the sources whose light curves were read and
        those (MJD, Jy/beam; NaN padded), for their sparklines.
    """
    from dsa110_contimg.science.ese import detect_ese_shapes

    n = metrics["n"]
    shape = {"detected": np.zeros(n.size, bool)}
    stage = {"stage": np.full(n.size, "", dtype=object), "reason": np.full(n.size, None, object),
             "significance": np.full(n.size, np.nan), "lightcurves": None}
    known = set(prev)
    known_src = np.isin(ctx.source_ids, list(known))
    with np.errstate(invalid="ignore"):
        worth = (metrics["chi2_nu"] > SHAPE_PREFILTER_CHI2_NU) | known_src
    read, got = _read_searched(conn, ctx, cfg, stored, worth, by_preset, known_src)
    if not read.size:
        return shape, stage
    flux, err, mjd, summary, screen = got
    pre = np.flatnonzero(by_preset[read])
    if pre.size:
        by_preset[read[pre]] = _low_epochs(flux[pre], err[pre]) >= 2
    stage["lightcurves"] = (read, mjd, flux)
    deep = (n[read] >= MIN_EPOCHS_SHAPE) & worth[read]
    if not _searches(flux, summary, deep):
        return shape, stage
    rows_d = read[deep]
    summary = _take(summary, deep)
    is_known = np.isin(ctx.source_ids[rows_d], list(known))
    templates = [prev[int(s)] for s in ctx.source_ids[rows_d][is_known]]
    near = {"t0": np.array([_num(p["t_min_mjd"]) for p in templates], float),
            "duration": np.array([_num(p["duration_days"]) for p in templates], float)}
    frozen = np.zeros(len(templates), bool)
    if summary is not None:
        from dsa110_contimg.science.ese_window import reaches_before

        frozen = reaches_before(near["t0"], near["duration"], summary["until"])
        near = {k: np.where(frozen, np.nan, v) for k, v in near.items()}
    found = _shape_search(detect_ese_shapes, mjd[deep], flux[deep], err[deep], is_known,
                          None if ctx.remeasured or _renormalised(ctx) else ctx.mjd, near,
                          summary)
    if frozen.any():
        at = np.flatnonzero(is_known)
        sub = {k: v[at] for k, v in found.items()}
        _keep_frozen(sub, templates, frozen)
        for k, v in sub.items():
            found[k][at] = v
    shape = {k: np.full(n.size, np.nan if np.asarray(v).dtype.kind == "f" else None,
                        dtype=np.asarray(v).dtype if np.asarray(v).dtype.kind == "f" else object)
             for k, v in found.items()}
    for k, v in found.items():
        shape[k][rows_d] = v
    shape["detected"] = np.asarray(shape["detected"] == True)  # noqa: E712 (object array)
    got = _stages(found, mjd[deep], flux[deep], err[deep],
                  [(prev.get(int(s)) or {}).get("stage") for s in ctx.source_ids[rows_d]],
                  summary, None if screen is None else screen.subset(deep))
    for k in ("stage", "reason", "significance"):
        stage[k][rows_d] = got[k]
    live = np.isin(got["stage"], ("dip_in_progress", "recovering"))
    shape["depth"][rows_d] = np.where(live, got["depth"], shape["depth"][rows_d])
    return shape, stage


def _num(x) -> float:
    """A stored number as float, NaN for None."""
    return np.nan if x is None else float(x)


def _candidate_row(i: int, ctx: ImageContext, preset: str, metrics: dict, criteria: list,
                   score: float, conf: str, shape: dict, stage: dict, has_stage: bool) -> dict:
    """The candidate row of source ``i`` (score 0-10, fluxes in Jy/beam, times in MJD, days)."""
    row = {"source_id": int(ctx.source_ids[i]), "criteria": json.dumps(criteria),
           "preset": preset, "score": float(np.nan_to_num(score)),
           "confidence": str(conf), "sigma_deviation": metrics["sigma_deviation"][i],
           "chi2_nu": metrics["chi2_nu"][i], "eta": metrics["eta"][i], "v": metrics["v"][i],
           "n_epochs": int(metrics["n"][i])}
    if "significance" in shape:
        row.update(shape_significance=shape["significance"][i], depth=shape["depth"][i],
                   duration_days=shape["duration_days"][i], t_min_mjd=shape["t_min_mjd"][i],
                   template=shape["template"][i], baseline_jyb=shape["baseline"][i],
                   caustic_amp=shape["caustic_amp"][i])
        if has_stage and stage["stage"][i] != "confirmed":
            row["shape_significance"] = stage["significance"][i]
        row.update(stage=stage["stage"][i] or None, stage_reason=stage["reason"][i] or None,
                   _stage_sigma=float(stage["significance"][i]))
    return row


def ese_rows(conn, ctx: ImageContext, cfg,
             signature: tuple | None = None) -> tuple[list[dict], int]:
    """ESE candidate rows of the image's sources (reads only); returns (rows, n flagged).

    ``signature`` (:func:`ese_inputs_signature`, read on ``conn``) lets the running
    statistics this image's transaction wrote (``ctx.written_stats``) stand in for a
    read when nothing rewrote them since.

    Criteria (any of the first two makes a candidate; all are recorded):

    * ``preset``: sigma-deviation, chi2_nu AND eta above the preset's thresholds, with
      at least two epochs 3 sigma below the median (a one-epoch flare is not an ESE);
    * ``shape``: the light curve has an ESE stage (:mod:`~dsa110_contimg.science.ese_stage`):
      a dip in progress, recovering or confirmed (the matched-filter search with the
      recovery rule);
    * ``eta_v``: log eta AND log V above the fitted Gaussian thresholds of the
      image's population (Rowlinson et al. 2019) -- recorded as support only,
      never enough on its own.

    The score is the composite 0-10 score of sigma-dev / chi2_nu / eta, raised
    to the stage's significance (capped at 10) when the light curve has a stage.
    Existing candidates are refreshed; their lifecycle status is kept, and their
    stage may become ``retired`` (see :func:`_stages`).
    """
    from dsa110_contimg.science.ese import composite_score
    from dsa110_contimg.science.variability import RunningStats

    if signature is not None and ctx.written_stats is not None \
            and signature[0] == ctx.written_stats[0]:
        stored = ctx.written_stats[1]
    else:
        stored, _, _ = lc_store.load_running_stats(conn, ctx.source_ids)
    metrics = RunningStats.from_dict(stored).metrics()
    by_preset, eta_v = _threshold_criteria(metrics, cfg.ese_preset)
    prev = candidate_templates(conn, ctx.source_ids)
    shape, stage = _shape_criteria(conn, ctx, cfg, metrics, stored, by_preset, prev)
    has_stage = np.isin(stage["stage"], ("dip_in_progress", "recovering", "confirmed"))
    flagged = by_preset | shape["detected"] | has_stage
    score, conf = composite_score(metrics["sigma_deviation"], metrics["chi2_nu"], metrics["eta"])
    sig = np.where(has_stage, stage["significance"], np.nan)
    score = np.where(has_stage, np.fmax(score, np.minimum(sig, 10.0)), score)
    score = np.nan_to_num(score)  # a candidate without computable metrics is stored at score 0
    conf = confidence_level(score)
    rows = []
    written = np.flatnonzero(flagged | np.isin(ctx.source_ids, list(prev)))
    spark = _sparklines(stage["lightcurves"], written)
    for i in written:
        criteria = [name for name, hit in (("preset", by_preset[i]),
                                           ("shape", shape["detected"][i] or has_stage[i]),
                                           ("eta_v", eta_v[i])) if hit]
        row = _candidate_row(i, ctx, cfg.ese_preset, metrics, criteria, score[i], conf[i],
                             shape, stage, has_stage[i])
        if int(i) in spark:
            row["sparkline"] = spark[int(i)]
        rows.append(row)
    return rows, int(flagged.sum())


def _sparklines(lightcurves, written: np.ndarray) -> dict[int, str]:
    """The stored sparklines (:func:`dsa110_contimg.science.sparkline.encode_all`) of the
    written rows whose light curves were read (``lightcurves``: ``(rows, mjd, flux)`` of
    :func:`_shape_criteria`, or None): source index -> JSON. The others keep the one stored."""
    from dsa110_contimg.science import sparkline

    if lightcurves is None:
        return {}
    read, mjd, flux = lightcurves
    pick = np.flatnonzero(np.isin(read, written))
    if not pick.size:
        return {}
    encoded = sparkline.encode_all(mjd[pick], flux[pick])
    return {int(read[p]): e for p, e in zip(pick, encoded) if e is not None}


def prepare(conn, ctx: ImageContext) -> None:
    signature = ese_inputs_signature(conn, ctx)
    ctx.prepared["ese"] = (ese_rows(conn, ctx, ctx.cfg, signature), signature)


def write(conn, ctx: ImageContext) -> int:
    evaluated, signature = ctx.prepared["ese"]
    return store_ese(conn, ctx, ctx.cfg, evaluated, signature)


STEP = Step("ese", write, prepare, transaction=OWN_TRANSACTION,
            enabled=lambda cfg: bool(cfg.detect_ese))
