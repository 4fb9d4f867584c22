"""The ESE step's search per image as the history grows: CPU time at 13, 103, 502 and 1,000 epochs.

One field of ``--sources`` (1,000) light curves observed once a day (2 % errors), of which
``--known`` (10) are ESE candidates with a 30 % dip somewhere in their history; the sources
the step searches are those it selects (``wanted``: chi2_nu above its pre-filter, or
candidates), less those that cannot reach a detection or a stage (``searched``: not
candidates, not flagged by the preset, whole-light-curve chi2 below the threshold squared,
``science/ese_window.cannot_reach``). Timed
for the newest epoch, with the step's own functions (``pipeline/steps/ese.py``), single-
threaded BLAS as in the service's workers, CPU time (``time.process_time``), best of
``--repeat``:

* ``known full``: the candidates' full-history template search (~2,700 templates at 502 d);
  the baseline the bounded search replaces;
* ``known bounded``: the candidates' bounded search (incremental templates plus their stored
  template's neighbourhood, on the whole light curve);
* ``others inc``: the incremental search of the other searched sources;
* ``known window``: the step's search now, on the last 540 days (``SEARCH_WINDOW_DAYS``)
  with the epochs before as the running sums (``science/ese_window.py``);
* ``live``, ``step fit``, ``low epochs``: the stages' live-dip search and two-level fit, and
  the threshold criterion's count of low epochs (of the preset's sources), on the whole
  light curve and (``live win``,
  ``step win``, ``low win``) on the window with the summary; ``live kept``: the live search
  on the window screened with the sums kept from the epoch before (``science/ese_live_sums.py``;
  the step now);
* ``step full`` / ``step bounded`` / ``step window``: the sum of the search parts with the
  full search on the whole light curve, the bounded candidate search on the whole light curve,
  everything on the window, and ``step kept``: the window with the kept live sums (the step
  now), each with its ratio to the 13-epoch figure of
  the same run; ``rows``: the measurement rows the step reads for the searched sources (whole
  light curve / window).

The bounded candidates' result is checked against the full search (same detections, t_min,
duration and significance where detected), and so is the window's for the candidates whose
event lies inside the window.

With ``--databases A,B,...`` (e.g. the SQLite files of ``bench/growth.py --keep``) it times the
step's evaluation itself instead (``ese_rows`` on a read connection, as the pipeline runs it after
the image's transaction) for the newest image of each database: CPU ms (best of ``--repeat``),
the measurement rows it reads (``rows read``: the light curves' points; ``db rows``: those the
row cache read from the database in the first run, cold, and in the best one) and the statements,
the ratio to the first database, and the CPU ms of the first run (``first ms``: the cache empty).

With ``--field-epochs 13,103,502`` it builds, per size, a products database of one field as
``bench/growth.py`` makes them (``--sources`` sources observed once a day, 2 % errors, 3 % of them
scattering 1.7 times their errors, ``--known`` candidates whose stored template lies inside their
light curve) and times the step's evaluation image after image, as a worker runs it: for each of
the last ``--repeat`` epochs the running statistics are written (untimed) and ``ese_rows`` is
timed, the process's row cache and live sums kept from the epoch before; printed: CPU ms of each
of the step's :data:`PARTS` (median over the epochs), the total and its ratio to the first size.

Usage: .venv/bin/python bench/ese_step.py [--epochs 13,103,502,1000] [--sources 1000] [--known 10]
       .venv/bin/python bench/ese_step.py --databases small.sqlite3,large.sqlite3
       .venv/bin/python bench/ese_step.py --field-epochs 13,103,502 [--root /tmp/ese_step]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import workerenv  # noqa: E402,F401  (before numpy: the workers' one thread per library)

import numpy as np  # noqa: E402

from dsa110_contimg.pipeline.steps import ese as step  # noqa: E402
from dsa110_contimg.science import ese  # noqa: E402
from dsa110_contimg.science.ese_live_sums import LiveScreen, LiveSums  # noqa: E402
from dsa110_contimg.science.ese_stage import live_dip_search, step_fit  # noqa: E402
from dsa110_contimg.science.ese_window import (  # noqa: E402
    cannot_reach, reaches_before, summary_before, window_sums,
)
from dsa110_contimg.science.variability import RunningStats  # noqa: E402


def _cpu(fn, repeat):
    """Best CPU time (s) of ``repeat`` calls of ``fn`` and its last result."""
    best, out = np.inf, None
    for _ in range(repeat):
        c = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c)
    return best, out


def field(n_epochs, n_sources, n_known, rng):
    """Times (MJD), flux, error of a field; the first ``n_known`` have an ESE dip."""
    mjd = 60000.0 + np.arange(n_epochs) + rng.uniform(-0.05, 0.05, n_epochs)
    err = np.full((n_sources, n_epochs), 0.02)
    flux = 1.0 + err * rng.standard_normal(err.shape)
    span = max(n_epochs, 60)
    for i in range(n_known):
        flux[i] *= ese.ese_model(mjd, mjd[0] + (0.2 + 0.06 * i) * span, 30.0 + 5 * i, 0.3)
    return np.broadcast_to(mjd, flux.shape), flux, err


def one_size(n_epochs, args, rng) -> dict:
    """Timings (s) of the step's search parts at ``n_epochs`` epochs."""
    t, f, e = field(n_epochs, args.sources, args.known, rng)
    running = RunningStats.from_lightcurves(f, e, t)
    metrics = running.metrics()
    known = np.arange(f.shape[0]) < args.known
    wanted = (metrics["chi2_nu"] > step.SHAPE_PREFILTER_CHI2_NU) | known
    preset = step._threshold_criteria(metrics, "moderate")[0]
    sel = wanted & ~(~known & ~preset & cannot_reach(running.to_dict()))
    t, f, e, kn, preset = t[sel], f[sel], e[sel], known[sel], preset[sel]
    # the candidates' stored templates: their full search one epoch earlier
    prev = ese.detect_ese_shapes(t[kn][:, :-1], f[kn][:, :-1], e[kn][:, :-1])
    near = {"t0": prev["t_min_mjd"], "duration": prev["duration_days"]}
    new = float(t[0, -1])
    r = args.repeat
    out = {"searched": int(sel.sum()), "wanted": int(wanted.sum())}
    out["known full"], full = _cpu(lambda: ese.detect_ese_shapes(t[kn], f[kn], e[kn]), r)
    out["known bounded"], got = _cpu(lambda: ese.detect_ese_shapes(
        t[kn], f[kn], e[kn], new_since_mjd=new, near=near), r)
    det = full["detected"]
    assert np.array_equal(det, got["detected"])
    assert np.allclose(got["significance"][det], full["significance"][det], rtol=1e-9)
    assert np.array_equal(got["t_min_mjd"][det], full["t_min_mjd"][det])
    out["others inc"], _ = _cpu(lambda: ese.detect_ese_shapes(
        t[~kn], f[~kn], e[~kn], new_since_mjd=new), r) if (~kn).any() else (0.0, None)
    out["live"], _ = _cpu(lambda: live_dip_search(t, f, e), r)
    out["step fit"], _ = _cpu(lambda: step_fit(t, f, e), r)
    out["low epochs"], _ = _cpu(lambda: step._low_epochs(f[preset], e[preset]), r)
    rest = out["others inc"] + out["live"] + out["step fit"] + out["low epochs"]
    out["step full"] = out["known full"] + rest
    out["step bounded"] = out["known bounded"] + rest
    _window_parts(out, t, f, e, kn, near, full, args.repeat, preset)
    return out


def _window_parts(out, t, f, e, kn, near, full, r, preset):
    """The step's parts on the window of the last ``SEARCH_WINDOW_DAYS`` with the epochs
    before as running sums (what the step runs now), into ``out``."""
    new = float(t[0, -1])
    until = float(t[0, -2]) - ese.SEARCH_WINDOW_DAYS
    win = t[0] >= until
    tw, fw, ew = t[:, win], f[:, win], e[:, win]
    stats = RunningStats.from_lightcurves(f, e, t).to_dict()
    summ = summary_before(stats, window_sums(fw, ew, tw), until)
    out["rows"] = (t.size, tw.size)
    sk = None if summ is None else {k: (v if k == "until" else v[kn]) for k, v in summ.items()}
    frozen = reaches_before(near["t0"], near["duration"], until) if summ is not None \
        else np.zeros(kn.sum(), bool)
    near_w = {k: np.where(frozen, np.nan, v) for k, v in near.items()}
    out["known window"], got = _cpu(lambda: ese.detect_ese_shapes(
        tw[kn], fw[kn], ew[kn], new_since_mjd=new, near=near_w, summary=sk), r)
    inside = full["detected"] & ~frozen
    assert np.array_equal(got["detected"][inside], full["detected"][inside])
    assert np.allclose(got["significance"][inside], full["significance"][inside], rtol=1e-9)
    assert np.array_equal(got["t_min_mjd"][inside], full["t_min_mjd"][inside])
    out["live win"], _ = _cpu(lambda: live_dip_search(tw, fw, ew, summary=summ), r)
    out["live kept"] = _kept_live(t, f, e, r)
    out["step win"], _ = _cpu(lambda: step_fit(tw, fw, ew, summary=summ), r)
    out["low win"], _ = _cpu(lambda: step._low_epochs(fw[preset], ew[preset]), r)
    out["step window"] = out["known window"] + out["others inc"] + out["live win"] + \
        out["step win"] + out["low win"]
    out["step kept"] = out["step window"] - out["live win"] + out["live kept"]


def _window(t, f, e, k):
    """The window light curves, summary and epochs ``(MJD, token)`` the step reads when the
    ``k``-th epoch (from 1) is the newest, and the window's start (MJD)."""
    until = float(t[0, k - 2]) - ese.SEARCH_WINDOW_DAYS
    win = t[0, :k] >= until
    tw, fw, ew = t[:, :k][:, win], f[:, :k][:, win], e[:, :k][:, win]
    stats = RunningStats.from_lightcurves(f[:, :k], e[:, :k], t[:, :k]).to_dict()
    tokens = np.flatnonzero(win).astype(np.int64)
    return tw, fw, ew, summary_before(stats, window_sums(fw, ew, tw), until), \
        (tw[0], tokens), until


def _kept_live(t, f, e, r):
    """CPU s (best of ``r``) of the live search of the newest epoch screened with the sums
    kept from the epoch before (``science/ese_live_sums.py``; primed untimed each time)."""
    n = t.shape[1]
    prev, new = _window(t, f, e, n - 1), _window(t, f, e, n)
    ids = np.arange(t.shape[0])
    best = np.inf
    for _ in range(r):
        cache = LiveSums()
        for (tw, fw, ew, summ, epochs, until), timed in ((prev, False), (new, True)):
            screen = LiveScreen(cache, "bench", ids, epochs, until)
            c = time.process_time()
            got = live_dip_search(tw, fw, ew, summary=summ, screen=screen)
            if timed:
                best = min(best, time.process_time() - c)
    full = live_dip_search(*new[:3], summary=new[3])
    assert np.array_equal(got["detected"], full["detected"])
    return best


#: The ESE step's parts timed with ``--databases`` (label: module attribute the step calls).
PARTS = {"stats": "load_running_stats", "cands": "candidate_templates",
         "thresh": "_threshold_criteria", "read": "_read_lightcurves", "low": "_low_epochs",
         "search": "_shape_search", "stages": "_stages", "spark": "_sparklines"}


def _timed_parts(spent: dict):
    """Wrap the step's parts (:data:`PARTS`) to add their CPU time (s) into ``spent``;
    returns the undo callable."""
    from dsa110_contimg.store import lightcurves as lc

    undo = []
    for label, name in PARTS.items():
        mod = lc if name == "load_running_stats" else step
        real = getattr(mod, name)

        def timed(*a, _real=real, _label=label, **kw):
            c = time.process_time()
            try:
                return _real(*a, **kw)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.process_time() - c

        setattr(mod, name, timed)
        undo.append((mod, name, real))
    return lambda: [setattr(m, n, r) for m, n, r in undo]


def on_database(path: str, repeat: int) -> dict:
    """CPU s (best of ``repeat``), measurement rows and statements read by the ESE step's
    evaluation of the newest image of the products database ``path``, its field's epochs,
    and the CPU s of each of the step's :data:`PARTS` in the best run."""
    from dsa110_contimg.photometry import PhotometryConfig
    from dsa110_contimg.pipeline.steps.base import ImageContext
    from dsa110_contimg.store import lightcurves as lc
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store.engine import read_connection

    db = open_products_db(path)
    cfg = PhotometryConfig(normalize=True, detect_ese=True)
    read = {"rows": 0, "statements": 0}
    real = lc.load_lightcurves

    def counted(*a, **kw):
        out = real(*a, **kw)
        read["rows"] += int(np.isfinite(out[2]).sum())
        return out

    def statement(sql):
        read["statements"] += "FROM measurements" in sql

    from dsa110_contimg.store.row_cache import CACHE

    CACHE.clear()
    cache_rows = CACHE.read_rows
    best, parts, spent, first, first_rows = np.inf, {}, {}, None, 0
    with read_connection(db.engine) as conn:
        # the store reads through DB-API cursors: SQLite's trace callback sees every statement
        trace = getattr(conn.connection.dbapi_connection, "set_trace_callback", lambda fn: None)
        img, mjd, ra, dec, rad = conn.exec_driver_sql(
            "SELECT id, mjd, ra_center_deg, dec_center_deg, radius_deg FROM images "
            "WHERE mjd IS NOT NULL ORDER BY mjd DESC, id DESC LIMIT 1").one()
        sid = np.array([r[0] for r in conn.exec_driver_sql(
            "SELECT source_id FROM measurements WHERE image_id = ? ORDER BY source_id", (img,))],
            np.int64)
        lc.load_lightcurves = counted
        undo = _timed_parts(spent)
        try:
            for _ in range(repeat):
                ctx = ImageContext(image_id=img, path="", mjd=mjd, ra_deg=ra, dec_deg=dec,
                                   radius_deg=rad, kind="image", remeasured=False,
                                   source_ids=sid, cfg=cfg)
                epochs = ctx.field_images(conn).ids.size   # read by the earlier steps
                read.update(rows=0, statements=0)
                spent.clear()
                trace(statement)
                c = time.process_time()
                step.ese_rows(conn, ctx, cfg)
                cpu = time.process_time() - c
                trace(None)
                if first is None:
                    first, first_rows = cpu, read["rows"]
                    cache_first = CACHE.read_rows - cache_rows
                if cpu < best:
                    best, parts = cpu, dict(spent)
                    cache_best = CACHE.read_rows - cache_rows
                cache_rows = CACHE.read_rows
        finally:
            lc.load_lightcurves = real
            undo()
    db.dispose()
    return {"cpu": best, "epochs": epochs, "parts": parts, "first": first,
            "db rows": (cache_first, cache_best), **read}


def main_databases(paths: list[str], repeat: int) -> None:
    res = {p: on_database(p, repeat) for p in paths}
    print(f"ESE step evaluation (ese_rows) of the newest image, CPU ms (best of {repeat}; its "
          f"parts in that run); window {ese.SEARCH_WINDOW_DAYS:.0f} d:")
    print(f"{'database':<40}{'epochs':>8}{'rows read':>11}{'db rows':>15}{'statements':>12}"
          + "".join(f"{k:>8}" for k in PARTS) + f"{'CPU ms':>9}{'x':>8}{'first ms':>10}")
    base = res[paths[0]]["cpu"]
    for p, x in res.items():
        db_rows = "{}/{}".format(*x["db rows"])
        print(f"{p[-40:]:<40}{x['epochs']:>8}{x['rows']:>11}{db_rows:>15}{x['statements']:>12}"
              + "".join(f"{1e3 * x['parts'].get(k, 0.0):>8.1f}" for k in PARTS)
              + f"{1e3 * x['cpu']:>9.1f}{x['cpu'] / base:>7.2f}x{1e3 * x['first']:>10.1f}")


def field_database(path, n_epochs: int, n_src: int, n_known: int, seed: int = 1):
    """A products database of one field of ``n_src`` sources over ``n_epochs`` daily normalised
    epochs (3 % of the sources scatter 1.7 times their 2 % errors; the first ``n_known`` are
    candidates with a stored 30-d template inside their light curve). Returns (database,
    source ids, epochs MJD)."""
    from dsa110_contimg.store import lightcurves as lc
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store.products import upsert_sources
    from dsa110_contimg.store.schema import images, measurements

    rng = np.random.default_rng(seed)
    mjd = 60000.0 + np.arange(n_epochs) + rng.uniform(-0.05, 0.05, n_epochs)
    scatter = np.where(np.arange(n_src) % 33 == 32, 1.7, 1.0)
    flux = 1.0 + 0.02 * scatter[:, None] * rng.standard_normal((n_src, n_epochs))
    db = open_products_db(path)
    with db.engine.begin() as conn:
        sid = upsert_sources(conn, "nvss", [f"NVSS J{i:06d}" for i in range(n_src)],
                             np.linspace(10, 11, n_src), np.full(n_src, 30.0))
        conn.execute(images.insert(), [
            {"id": k + 1, "path": f"/im{k}.fits", "content_id": f"c{k}", "kind": "image",
             "mjd": float(t), "ra_center_deg": 10.5, "dec_center_deg": 30.0, "radius_deg": 1.0,
             "method": "peak", "catalog": "nvss", "measured_at": float(k), "qc_status": "passed",
             "norm_status": "ok", "norm_factor": 1.0} for k, t in enumerate(mjd)])
        for k in range(n_epochs):
            conn.execute(measurements.insert(), [
                {"image_id": k + 1, "source_id": int(s), "mjd": float(mjd[k]), "ra_deg": 10.5,
                 "dec_deg": 30.0, "peak_jyb": float(flux[i, k]), "peak_err_jyb": 0.02,
                 "success": True, "norm_flux_jyb": float(flux[i, k]), "norm_err_jyb": 0.02}
                for i, s in enumerate(sid)])
        lc.upsert_ese_candidates(conn, [{
            "source_id": int(sid[i]), "criteria": "[\"shape\"]", "preset": "moderate",
            "score": 5.0, "confidence": "medium", "n_epochs": n_epochs,
            "t_min_mjd": float(mjd[0] + (i + 1) * n_epochs / (n_known + 2)),
            "duration_days": 30.0} for i in range(n_known)])
    return db, sid, mjd


def on_field(n_epochs: int, args) -> dict:
    """CPU s of the step's evaluation of each of the last ``args.repeat`` epochs of a
    :func:`field_database` (image after image, caches kept), and of its :data:`PARTS`."""
    from dsa110_contimg.photometry import PhotometryConfig
    from dsa110_contimg.pipeline.steps.base import ImageContext
    from dsa110_contimg.science.variability import RunningStats
    from dsa110_contimg.store import lightcurves as lc
    from dsa110_contimg.store.engine import read_connection

    args.root.mkdir(parents=True, exist_ok=True)
    path = args.root / f"field-{n_epochs}.sqlite3"
    path.unlink(missing_ok=True)
    total = n_epochs + args.repeat
    db, sid, mjd = field_database(path, total, args.sources, args.known, args.seed)
    cfg = PhotometryConfig(normalize=True, detect_ese=True)
    cpu, parts = [], []
    for n in range(n_epochs - 1, total + 1):
        with db.engine.begin() as conn:           # the variability step's running statistics
            conn.exec_driver_sql(f"UPDATE images SET qc_status = CASE WHEN id <= {n} "
                                 "THEN 'passed' ELSE 'failed' END")
            f, e, t, _ = lc.load_lightcurves(conn, sid, list(range(1, n + 1)), normalized=True)
            st = RunningStats.from_lightcurves(f, e, t)
            lc.save_running_stats(conn, sid, st.to_dict(), st.metrics(), "normalized")
        ctx = ImageContext(image_id=n, path=f"/im{n - 1}.fits", mjd=float(mjd[n - 1]),
                           ra_deg=10.5, dec_deg=30.0, radius_deg=1.0, kind="image",
                           remeasured=False, source_ids=sid, cfg=cfg)
        spent = {}
        undo = _timed_parts(spent)
        try:
            with read_connection(db.engine) as conn:
                ctx.field_images(conn)                # read by the earlier steps
                c = time.process_time()
                step.ese_rows(conn, ctx, cfg)
                used = time.process_time() - c
        finally:
            undo()
        if n > n_epochs - 1:                          # the first primes the caches
            cpu.append(used)
            parts.append(spent)
    db.dispose()
    path.unlink(missing_ok=True)
    return {"cpu": float(np.median(cpu)),
            "parts": {k: float(np.median([p.get(k, 0.0) for p in parts])) for k in PARTS}}


def main_field(args) -> None:
    sizes = [int(x) for x in args.field_epochs.split(",")]
    res = {n: on_field(n, args) for n in sizes}
    print(f"ESE step evaluation (ese_rows) image after image on one field of {args.sources} "
          f"sources ({args.known} candidates), CPU ms (median of {args.repeat} epochs; parts "
          f"likewise):")
    print(f"{'epochs':>7}" + "".join(f"{k:>8}" for k in PARTS) + f"{'CPU ms':>9}{'x':>8}")
    base = res[sizes[0]]["cpu"]
    for n, x in res.items():
        print(f"{n:>7}" + "".join(f"{1e3 * x['parts'][k]:>8.1f}" for k in PARTS)
              + f"{1e3 * x['cpu']:>9.1f}{x['cpu'] / base:>7.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", default="13,103,502,1000")
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--known", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--databases", default="",
                    help="comma-separated products databases: time the step on each instead")
    ap.add_argument("--field-epochs", default="",
                    help="comma-separated epochs: time the step image after image on one field "
                         "of each length instead")
    ap.add_argument("--root", type=Path, default=Path("/tmp/ese_step"))
    args = ap.parse_args()
    if args.field_epochs:
        main_field(args)
        return
    if args.databases:
        main_databases(args.databases.split(","), args.repeat)
        return
    rng = np.random.default_rng(args.seed)
    sizes = [int(x) for x in args.epochs.split(",")]
    res = {n: one_size(n, args, rng) for n in sizes}
    cols = ["known full", "known bounded", "known window", "others inc", "live", "live win",
            "live kept", "step fit", "step win", "low epochs", "low win"]
    totals = ["step full", "step bounded", "step window", "step kept"]
    print(f"ESE step search per image, CPU ms (best of {args.repeat}), {args.sources} sources, "
          f"{args.known} candidates; window {ese.SEARCH_WINDOW_DAYS:.0f} d:")
    print(f"{'epochs':>7}{'wanted':>8}{'searched':>9}{'rows':>7}{'rows win':>9}"
          + "".join(f"{c:>14}" for c in cols + totals)
          + "".join(f"{c.split()[1] + ' x':>11}" for c in totals))
    base = res[sizes[0]]
    for n in sizes:
        x = res[n]
        print(f"{n:>7}{x['wanted']:>8}{x['searched']:>9}{x['rows'][0]:>7}{x['rows'][1]:>9}"
              + "".join(f"{1e3 * x[c]:>14.1f}" for c in cols + totals)
              + "".join(f"{x[c] / base[c]:>10.2f}x" for c in totals))


if __name__ == "__main__":
    main()
