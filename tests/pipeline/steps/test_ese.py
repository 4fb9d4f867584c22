"""Step ``ese``: an injected ESE becomes a candidate, the CLI lists and exports it, a flare
does not outrank it; evaluation on a read connection, written only if its inputs held."""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager

import numpy as np
import pytest

from dsa110_contimg.cli.main import main as cli_main
from dsa110_contimg.photometry import PhotometryConfig
from dsa110_contimg.science.ese import ese_model

from dsa110_contimg.pipeline.steps.base import ImageContext
from dsa110_contimg.store import bulk, open_products_db
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.schema import METRIC_COLUMNS, RUNNING_SUM_COLUMNS

from seasons import bright_field, run_epochs, stored_lightcurves


#: The shape-search spies of the module's fixtures, by fixture name.
SPIES: dict = {}


class BoundedVsFull:
    """Spy on the step's shape search: every bounded search (a new epoch, known candidates
    among the searched) is compared with the full-history search of the same light
    curves, with the stages each gives."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def __call__(self, detect, mjd, flux, err, full_rows, new_mjd, near=None, summary=None):
        from dsa110_contimg.science.ese_stage import ese_stages

        got = self.real(detect, mjd, flux, err, full_rows, new_mjd, near, summary)
        assert summary is None          # a history shorter than the window is read whole
        if new_mjd is not None and full_rows.any():
            full = detect(mjd, flux, err)
            stages = [ese_stages(mjd, flux, err, confirmed=r)["stage"] for r in (got, full)]
            self.calls.append((full_rows.copy(), got, full, *stages))
        return got


@pytest.fixture(scope="module")
def ese_run(tmp_path_factory):
    """30 epochs over 150 days, 4 % gain jitter, one source with a 45 % ESE dip; the
    step's shape searches are compared with the full-history search (``BoundedVsFull``)."""
    from dsa110_contimg.pipeline.steps import ese as ese_step

    tmp_path = tmp_path_factory.mktemp("ese")
    field = bright_field(tmp_path, seed=4)
    n_epochs = 30
    mjds = 60000.0 + np.sort(np.random.default_rng(5).uniform(0, 150, n_epochs))
    rng = np.random.default_rng(9)
    gains = 1.0 + rng.normal(0, 0.04, n_epochs)
    target = int(np.argsort(field.flux_mjy)[len(field.flux_mjy) // 2])   # a mid-brightness source
    scales = np.ones((n_epochs, field.flux_mjy.size))
    scales[:, target] = ese_model(mjds, 60075.0, 40.0, 0.45, 0.0)
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    spy = BoundedVsFull(ese_step._shape_search)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ese_step, "_shape_search", spy)
        run_epochs(tmp_path, field, range(n_epochs), gains, cfg, scales=scales, mjds=mjds)
    SPIES["ese_run"] = spy
    return tmp_path, field, target


def test_known_candidates_bounded_search_follows_the_full_history_search(ese_run):
    """Epoch after epoch, a known candidate searched over the new epoch's templates and its
    stored template's neighbourhood (O(epochs)) gets the full-history search's detection,
    stage, template (t_min, duration) and significance; sub-threshold best templates may
    differ, never above the full search's (the bounded templates are a subset, fitted alike)."""
    calls = SPIES["ese_run"].calls
    assert len(calls) >= 10
    confirmed_seen = 0
    for known, got, full, st_got, st_full in calls:
        assert np.array_equal(got["detected"], full["detected"])
        assert np.array_equal(st_got, st_full)
        det = full["detected"]
        confirmed_seen += int((det & known).sum())
        np.testing.assert_allclose(got["significance"][det], full["significance"][det], rtol=1e-9)
        np.testing.assert_array_equal(got["t_min_mjd"][det], full["t_min_mjd"][det])
        np.testing.assert_array_equal(got["duration_days"][det], full["duration_days"][det])
        assert np.all(got["significance"] <= full["significance"] + 1e-9)
    assert confirmed_seen >= 3          # the injected ESE, confirmed while a known candidate


def test_injected_ese_becomes_a_candidate(ese_run):
    tmp_path, field, target = ese_run
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        rows = conn.execute("select s.catalog_id, c.status, c.criteria, c.score, c.depth, c.t_min_mjd "
                            "from ese_candidates c join sources s on s.id = c.source_id").fetchall()
    flagged = {r[0]: r for r in rows if json.loads(r[2])}
    assert field.names[target] in flagged, rows
    cid, status, criteria, score, depth, tmin = flagged[field.names[target]]
    assert status == "active" and "shape" in json.loads(criteria)
    assert 0.3 < depth < 0.6 and abs(tmin - 60075.0) < 15
    assert len(flagged) <= 2            # at most one false positive among 29 steady sources
    # the stored template is the whole fit: drawn from the row, it follows the dip in the data
    from dsa110_contimg.pipeline.plotting import stored_ese_fit

    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("select c.* from ese_candidates c join sources s on s.id = c.source_id "
                                "where s.catalog_id = ?", (cid,)).fetchone())
    row["criteria"] = json.loads(row["criteria"])
    assert row["baseline_jyb"] == pytest.approx(field.flux_mjy[target] / 1e3, rel=0.1)
    mjd, _, _, norm, err = stored_lightcurves(tmp_path / "p.sqlite3")[cid].T
    ok = np.isfinite(norm)
    pull = (norm[ok] - stored_ese_fit(row).model(mjd[ok])) / err[ok]
    steady = (norm[ok] - np.median(norm[ok])) / err[ok]
    assert np.sqrt(np.mean(pull ** 2)) < 3.0 < np.sqrt(np.mean(steady ** 2))
    # the sparkline stored for the candidates page: its 30 normalised epochs (fewer than the
    # 60 points a sparkline keeps), as the last image's evaluation read them
    from dsa110_contimg.science.sparkline import decode

    s_mjd, s_flux = decode(row["sparkline"])
    order = np.argsort(mjd[ok])
    np.testing.assert_allclose(s_mjd, mjd[ok][order], rtol=0, atol=1e-4)
    np.testing.assert_allclose(s_flux, norm[ok][order], rtol=1e-5)
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        verdicts = dict(conn.execute("select s.catalog_id, b.valid from reference_baselines b "
                                     "join sources s on s.id = b.source_id").fetchall())
        used = [json.loads(u) for (u,) in conn.execute(
            "select norm_used_ids from images where mjd between 60060 and 60090")]
        target_id = conn.execute("select id from sources where catalog_id = ?",
                                 (field.names[target],)).fetchone()[0]
    # the ESE source stopped being a reference during its dip; steady ones mostly stay
    assert all(target_id not in u for u in used)
    assert sum(verdicts.values()) >= 0.8 * (len(verdicts) - 1)


def test_cli_ese_list_and_lifecycle(ese_run, capsys):
    tmp_path, field, target = ese_run
    db = str(tmp_path / "p.sqlite3")
    assert cli_main(["ese", "list", "--products-db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ids = {c["catalog_id"]: c for c in doc["candidates"]}
    cand = ids[field.names[target]]
    assert cand["status"] == "active" and 0 <= cand["score"] <= 10
    assert cli_main(["ese", "investigate", str(cand["id"]), "--products-db", db, "--note", "look"]) == 0
    capsys.readouterr()
    assert cli_main(["ese", "list", "--products-db", db, "--status", "investigated"]) == 0
    out = capsys.readouterr().out
    assert field.names[target] in out and "investigated" in out
    assert cli_main(["ese", "list", "--products-db", db, "--status", "active", "--min-score", "11"]) == 0
    assert "no ESE candidates" in capsys.readouterr().out
    assert cli_main(["ese", "dismiss", "999999", "--products-db", db]) == 1
    assert cli_main(["ese", "reactivate", str(cand["id"]), "--products-db", db]) == 0


def test_cli_lightcurve_plot_and_export(ese_run, capsys):
    tmp_path, field, target = ese_run
    db = str(tmp_path / "p.sqlite3")
    png = tmp_path / "lc.png"
    assert cli_main(["lightcurve", field.names[target], "--products-db", db, "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from astropy.table import Table

    import astropy.units as u

    for fmt, suffix in (("csv", ".csv"), ("ecsv", ".ecsv"), ("vot", ".vot"), (None, ".fits")):
        out = tmp_path / f"lc{suffix}"
        assert cli_main(["lightcurve", field.names[target], "--products-db", db, "-o", str(out)]
                        + (["--format", fmt] if fmt else [])) == 0
        t = Table.read(out)
        assert len(t) == 30 and np.all(np.diff(np.asarray(t["mjd"])) > 0)
        norm = np.ma.filled(np.ma.asarray(t["norm_flux_jyb"], dtype=float), np.nan)
        assert np.nanmin(norm) < 0.7 * np.nanmedian(norm)   # the dip
        if fmt == "ecsv":                                   # ECSV keeps the metadata
            from dsa110_contimg.science.variability import all_pairs_metrics

            ok = np.isfinite(norm)
            ref = all_pairs_metrics(norm[ok], np.asarray(t["norm_err_jyb"], float)[ok],
                                    np.asarray(t["mjd"], float)[ok])
            assert t.meta["metrics_flux"] == "norm_flux_jyb"
            assert t.meta["vs_max_all"] == pytest.approx(ref["vs_max_all"])
            assert t.meta["vs_max_all"] >= t.meta["vs_max"] > 4.3
            assert abs(t.meta["m_significant"]) > 0.3         # the 45 % dip against the baseline
        # units, the source name and the survey travel with every export
        if fmt == "csv":   # no metadata block: constant columns; units in the column names
            assert set(t["source"]) == {field.names[target]} and set(t["survey"]) == {"nvss"}
        else:
            meta = {k.lower(): v for k, v in t.meta.items()}
            if fmt == "vot":   # VOTable: PARAMs (astropy's reader keeps only name/description)
                from astropy.io.votable import parse_single_table

                meta = {p.name: p.value for p in parse_single_table(out).params}
                assert field.names[target] in t.meta["description"]
            assert meta["source"] == field.names[target] and meta["survey"] == "nvss", t.meta
            assert t["peak_jyb"].unit == u.Jy / u.beam and t["mjd"].unit == u.d
    # readable table: mJy/beam with 3 decimals, not Jy with 17 digits
    capsys.readouterr()
    assert cli_main(["lightcurve", field.names[target], "--products-db", db]) == 0
    text = capsys.readouterr().out
    assert "peak_mjyb" in text and field.names[target] in text
    row = text.splitlines()[4].split()
    assert len(row[1].split(".")[1]) == 3, row
    capsys.readouterr()
    assert cli_main(["lightcurve", "NVSS J000000+000000", "--products-db", db]) == 1
    assert "no source" in capsys.readouterr().err


def test_single_epoch_flare_is_no_candidate_and_the_ese_is_staged_while_it_happens(tmp_path, capsys):
    """A daily season of 104 epochs: one source flares (x2) on a single early epoch,
    another has a 40-d, 45 % ESE that recovers inside the season. The flare passes
    the threshold preset (sigma-dev = sqrt(n - 1) > 10: composite score 10) but is a
    variable, not an ESE: it is never listed. The ESE is flagged while its dip is in
    progress (before its minimum), then confirmed once its recovery has been watched;
    each stage change is in the history and the two entries alerted; it ranks first."""
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.review import candidates_page

    field = bright_field(tmp_path, seed=7)
    n = 104
    mjds = 60000.0 + np.arange(n, dtype=float)
    order = np.argsort(field.flux_mjy)
    ese_src, flare_src = int(order[15]), int(order[16])
    scales = np.ones((n, field.flux_mjy.size))
    scales[:, ese_src] = ese_model(mjds, 60040.0, 40.0, 0.45, 0.0)
    scales[8, flare_src] = 2.0
    gains = 1.0 + np.random.default_rng(3).normal(0, 0.04, n)
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    run_epochs(tmp_path, field, range(n), gains, cfg, scales=scales, mjds=mjds)

    capsys.readouterr()
    assert cli_main(["ese", "list", "--products-db", str(tmp_path / "p.sqlite3"), "--json"]) == 0
    cands = json.loads(capsys.readouterr().out)["candidates"]
    by = {c["catalog_id"]: c for c in cands}
    assert field.names[flare_src] not in by, by.get(field.names[flare_src])
    ese = by[field.names[ese_src]]
    assert ese["stage"] == "confirmed" and "shape" in ese["criteria"]
    assert cands[0]["catalog_id"] == field.names[ese_src], [(c["catalog_id"], c["score"]) for c in cands]
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        history = conn.execute("select previous_stage, stage, mjd, significance from ese_stage_history "
                               "where candidate_id = ? order by id", (ese["id"],)).fetchall()
        alerts = conn.execute("select event, dedupe_key, significance from alerts "
                              "where source_id = ? order by id", (ese["source_id"],)).fetchall()
    assert history[0][:2] == (None, "dip_in_progress") and history[0][2] <= 60040.0, history
    assert history[-1][1] == "confirmed", history
    stage_alerts = [a for a in alerts if a[0] == "ese_stage"]
    assert [a[1].split(":")[2].split("-image-")[0] for a in stage_alerts] == \
        ["stage-dip_in_progress", "stage-confirmed"], alerts
    assert all(a[2] >= 6.0 for a in stage_alerts)
    assert cli_main(["ese", "show", str(ese["id"]), "--products-db", str(tmp_path / "p.sqlite3")]) == 0
    out = capsys.readouterr().out
    assert "stage: confirmed" in out and "- -> dip_in_progress" in out and "-> confirmed" in out
    store = open_products_db(tmp_path / "p.sqlite3")
    with store.engine.connect() as conn:
        rows, _ = candidates_page(conn)
    store.dispose()
    assert rows[0]["catalog_id"] == field.names[ese_src]


# -- evaluated outside the write transaction, written inside it ------------------------
def _sources(conn, n):
    ids = [f"NVSS J{i:06d}" for i in range(n)]
    return ps.upsert_sources(conn, "nvss", ids, np.linspace(10, 11, n), np.full(n, 30.0),
                             np.full(n, 5.0), np.arange(n) % 2 == 0)


def test_ese_rows_are_reused_unless_their_inputs_changed(tmp_path, monkeypatch):
    from dsa110_contimg.pipeline.steps import ese as lc
    from dsa110_contimg.store.engine import read_connection

    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        sid = _sources(conn, 50)
        stats = {c: np.ones(50) for c in RUNNING_SUM_COLUMNS}
        stats["n"] = np.full(50, 6)
        lc_store.save_running_stats(conn, sid, stats, {c: np.ones(50) for c in METRIC_COLUMNS},
                                    "normalized")
    ctx = ImageContext(image_id=1, path="/x.fits", mjd=60000.0, ra_deg=10.0, dec_deg=30.0,
                          radius_deg=1.0, kind="image", remeasured=False, source_ids=sid)
    row = {"source_id": int(sid[3]), "criteria": "[\"preset\"]", "preset": "moderate",
           "score": 5.0, "confidence": "medium", "n_epochs": 6}
    calls = []

    def fresh(conn, ctx_, cfg):
        calls.append(cfg)
        return [dict(row, score=9.0)], 1

    monkeypatch.setattr(lc, "ese_rows", fresh)
    with read_connection(db.engine) as conn:
        sig = lc.ese_inputs_signature(conn, ctx)
    # unchanged inputs: the rows evaluated outside the transaction are written as they are
    with db.engine.begin() as conn:
        assert lc.store_ese(conn, ctx, None, ([dict(row)], 1), sig) == 1
    assert calls == []
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("select score from ese_candidates").scalar() == 5.0
    # another image rewrote a source's statistics in between: evaluated again, inside
    with db.engine.begin() as conn:
        lc_store.save_running_stats(conn, sid[:1], {k: v[:1] for k, v in stats.items()},
                                    {c: np.ones(1) for c in METRIC_COLUMNS}, "normalized")
    with db.engine.begin() as conn:
        assert lc.store_ese(conn, ctx, "cfg", ([dict(row)], 1), sig) == 1
    assert calls == ["cfg"]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("select score from ese_candidates").scalar() == 9.0
    db.dispose()


def test_ese_evaluation_reads_go_through_while_another_worker_holds_the_write_lock(tmp_path):
    from dsa110_contimg.pipeline.steps import ese as lc
    from dsa110_contimg.store.engine import make_engine, read_connection

    path = tmp_path / "p.sqlite3"
    db = open_products_db(path)
    with db.engine.begin() as conn:
        sid = _sources(conn, 30)
    db.dispose()
    ctx = ImageContext(image_id=1, path="/x.fits", mjd=60000.0, ra_deg=10.0, dec_deg=30.0,
                          radius_deg=1.0, kind="image", remeasured=False, source_ids=sid)
    holder = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        engine = make_engine(path, busy_timeout_ms=200)
        with read_connection(engine) as conn:
            sig = lc.ese_inputs_signature(conn, ctx)
            assert bulk.fetch_in(conn, "SELECT count(*) FROM sources WHERE id IN ({in})",
                                 sid.tolist()) == [(30,)]
        assert sig[1] == frozenset()
        with pytest.raises(Exception, match="locked"):
            with engine.begin() as conn:
                lc.store_ese(conn, ctx, None, ([], 0), sig)
        engine.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_ese_rows_use_the_written_stats_only_while_nothing_rewrote_them(tmp_path, monkeypatch):
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.steps import ese as lc
    from dsa110_contimg.store.engine import read_connection

    db = open_products_db(tmp_path / "p.sqlite3")
    stats = {c: np.ones(50) for c in RUNNING_SUM_COLUMNS}
    stats["n"] = np.full(50, 6)
    with db.engine.begin() as conn:
        sid = _sources(conn, 50)
        lc_store.save_running_stats(conn, sid, stats, {c: np.ones(50) for c in METRIC_COLUMNS},
                                    "normalized")
        written = (lc_store.running_stats_signature(conn, sid), lc_store.as_stored(stats))
    ctx = ImageContext(image_id=1, path="/x.fits", mjd=60000.0, ra_deg=10.0, dec_deg=30.0,
                          radius_deg=1.0, kind="image", remeasured=False, source_ids=sid,
                          written_stats=written)
    reads = []
    real = lc_store.load_running_stats
    monkeypatch.setattr(lc_store, "load_running_stats", lambda *a: reads.append(1) or real(*a))
    cfg = PhotometryConfig()
    with read_connection(db.engine) as conn:
        lc.ese_rows(conn, ctx, cfg, lc.ese_inputs_signature(conn, ctx))
    assert reads == []                              # the signature matches: no read
    with db.engine.begin() as conn:                 # another image rewrote one source
        lc_store.save_running_stats(conn, sid[:1], {k: v[:1] for k, v in stats.items()},
                                    {c: np.ones(1) for c in METRIC_COLUMNS}, "normalized")
    with read_connection(db.engine) as conn:
        lc.ese_rows(conn, ctx, cfg, lc.ese_inputs_signature(conn, ctx))
        lc.ese_rows(conn, ctx, cfg)                 # no signature: always read
    assert reads == [1, 1]
    db.dispose()


def test_one_significance_called_sigma_everywhere(ese_run, capsys, monkeypatch):
    """`ese list`, `ese list --json`, the demo's line and the light-curve plot quote the
    same detection significance (the template fit's) for one candidate, as `sigma`."""
    from dsa110_contimg.cli.demo_run import _sigma_text
    from dsa110_contimg.pipeline import plotting

    tmp_path, field, target = ese_run
    db = str(tmp_path / "p.sqlite3")
    name = str(field.names[target])
    assert cli_main(["ese", "list", "--products-db", db, "--json"]) == 0
    cand = {c["catalog_id"]: c for c in json.loads(capsys.readouterr().out)["candidates"]}[name]
    assert "shape_significance" not in cand and "sigma_deviation" not in cand
    sigma = cand["sigma"]
    assert sigma > 5 and cand["max_deviation"] != sigma
    text = f"{sigma:.1f}"
    assert cli_main(["ese", "list", "--products-db", db]) == 0
    head, *lines = capsys.readouterr().out.splitlines()
    (line,) = [x for x in lines if name in x]
    col = head.index(" sigma")
    assert "sig-dev" not in head and line[col:col + 6].strip() == text
    pdb = open_products_db(db)
    with pdb.engine.connect() as conn:
        row = [r for r in lc_store.list_candidates(conn) if r["catalog_id"] == name][0]
    pdb.dispose()
    assert _sigma_text(row) == text                      # what the demo prints
    seen = {}
    real = plotting.plot_lightcurve

    def spy(lc, path, **kw):
        seen.update(kw)
        return real(lc, path, **kw)

    monkeypatch.setattr(plotting, "plot_lightcurve", spy)
    assert cli_main(["lightcurve", name, "--products-db", db, "-o", str(tmp_path / "s.png")]) == 0
    assert seen["title"].endswith(f"sigma {text}")
    assert f"sigma {text}," in plotting.ese_label(seen["ese_fit"], seen["candidate"])


# -- a long history: the per-image search reads a fixed window -----------------------------
def _long_field(path, n_epochs, n_sources=12):
    """A products database of ``n_epochs`` daily, normalised epochs of one field: source 0
    has a 30 % ESE of 60 d ending 100 d before the last epoch (inside the window), source 1
    one of 60 d around day 150 (long before it); the others are steady (2 % errors).
    Returns (database, source ids, epochs MJD, flux, err)."""
    import sqlalchemy as sa

    from dsa110_contimg.store.schema import images, measurements

    rng = np.random.default_rng(n_epochs)
    mjd = 60000.0 + np.arange(n_epochs) + rng.uniform(-0.05, 0.05, n_epochs)
    err = np.full((n_sources, n_epochs), 0.02)
    flux = 1.0 + err * rng.standard_normal(err.shape)
    flux[0] *= ese_model(mjd, mjd[-1] - 130.0, 60.0, 0.3)
    flux[1] *= ese_model(mjd, 60150.0, 60.0, 0.3)
    db = open_products_db(path)
    with db.engine.begin() as conn:
        sid = _sources(conn, n_sources)
        conn.execute(images.insert(), [
            {"id": k + 1, "path": f"/im{k}.fits", "content_id": f"c{k}", "kind": "image",
             "mjd": float(t), "ra_center_deg": 10.5, "dec_center_deg": 30.0, "radius_deg": 1.0,
             "method": "peak", "catalog": "nvss", "measured_at": float(k), "qc_status": "passed",
             "norm_status": "ok", "norm_factor": 1.0} for k, t in enumerate(mjd)])
        conn.execute(measurements.insert(), [
            {"image_id": k + 1, "source_id": int(s), "mjd": float(mjd[k]), "ra_deg": 10.5,
             "dec_deg": 30.0, "peak_jyb": float(flux[i, k]), "peak_err_jyb": 0.02,
             "success": True, "norm_flux_jyb": float(flux[i, k]), "norm_err_jyb": 0.02}
            for k in range(n_epochs) for i, s in enumerate(sid)])
        assert conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar() \
            == n_epochs * n_sources
    return db, sid, mjd, flux, err


def _evaluate(db, sid, mjd, n, *, full: bool, write: bool = False):
    """ESE rows of the field observed up to epoch ``n`` (its running statistics stored
    first), with the per-image window search or the full search; the measurement rows and
    statements the evaluation read."""
    from dsa110_contimg.pipeline.steps import ese as step
    from dsa110_contimg.science.variability import RunningStats

    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE images SET qc_status = CASE WHEN id <= {n} THEN 'passed' "
                             "ELSE 'failed' END")
        f, e, t, _ = lc_store.load_lightcurves(conn, sid, list(range(1, n + 1)), normalized=True)
        stats = RunningStats.from_lightcurves(f, e, t)
        lc_store.save_running_stats(conn, sid, stats.to_dict(), stats.metrics(), "normalized")
    read = {"rows": 0, "sources": 0, "statements": 0}
    real = lc_store.load_lightcurves

    def counted(*a, **kw):
        out = real(*a, **kw)
        read["rows"] += int(np.isfinite(out[2]).sum())
        read["sources"] += out[0].shape[0]
        return out

    def statement(sql):
        read["statements"] += "FROM measurements" in sql

    ctx = ImageContext(image_id=n, path=f"/im{n - 1}.fits", mjd=float(mjd[n - 1]), ra_deg=10.5,
                       dec_deg=30.0, radius_deg=1.0, kind="image", remeasured=full,
                       source_ids=sid)
    cfg = PhotometryConfig(normalize=True, detect_ese=True)
    with pytest.MonkeyPatch.context() as mp, db.engine.begin() as conn:
        mp.setattr(lc_store, "load_lightcurves", counted)
        raw = conn.connection.dbapi_connection          # the store reads through DB-API cursors
        raw.set_trace_callback(statement)
        try:
            rows, _ = step.ese_rows(conn, ctx, cfg)
        finally:
            raw.set_trace_callback(None)
        if write:
            step.write_ese_rows(conn, [dict(r) for r in rows], image_id=n, mjd=ctx.mjd)
    return {int(r["source_id"]): r for r in rows}, read


@pytest.mark.parametrize("n_epochs", [1000])
def test_long_history_reads_a_fixed_window_and_finds_the_event_inside_it(tmp_path, n_epochs):
    """1,000 daily epochs: the per-image search reads the last 540 days (the longest
    template with its recovery windows) plus the running statistics, so the measurement
    rows and statements it reads are those of a 600-epoch history; the candidate whose
    event lies inside the window gets the full search's stage, template and significance,
    and the one whose event lies before it stays confirmed with its stored template."""
    from dsa110_contimg.science.ese import SEARCH_WINDOW_DAYS

    per_size = {}
    for n in (600, n_epochs):
        db, sid, mjd, _, _ = _long_field(tmp_path / f"p{n}.sqlite3", n)
        # the candidates as the full search stored them one epoch earlier
        _evaluate(db, sid, mjd, n - 1, full=True, write=True)
        win, read = _evaluate(db, sid, mjd, n, full=False)
        full, read_full = _evaluate(db, sid, mjd, n, full=True)
        db.dispose()
        per_size[n] = (read, read_full)
        inside, before = int(sid[0]), int(sid[1])
        assert win[inside]["stage"] == full[inside]["stage"] == "confirmed"
        for k in ("t_min_mjd", "duration_days", "template"):
            assert win[inside][k] == full[inside][k]
        np.testing.assert_allclose(win[inside]["shape_significance"],
                                   full[inside]["shape_significance"], rtol=1e-9)
        assert full[before]["stage"] == win[before]["stage"] == "confirmed"
        assert win[before]["t_min_mjd"] == full[before]["t_min_mjd"]
        np.testing.assert_allclose(win[before]["shape_significance"],
                                   full[before]["shape_significance"], rtol=0.01)
        assert set(win) == set(full)                     # no steady source became a candidate
        assert read["rows"] <= read["sources"] * (SEARCH_WINDOW_DAYS + 2)
        assert read_full["rows"] == read_full["sources"] * n
    (small, _), (large, large_full) = per_size[600], per_size[n_epochs]
    assert large["sources"] == small["sources"] >= 2
    # the window, whatever the history (to the one epoch the jittered times may add)
    assert abs(large["rows"] - small["rows"]) <= large["sources"]
    assert large["statements"] == small["statements"] >= 1
    assert large_full["rows"] > 1.6 * large["rows"]


class _SyntheticField:
    """A field of ``n_src`` sources observed once a day for ``n_epochs`` days (2 % errors),
    served to the ESE step from memory: the step's light-curve reads (counted, in rows)
    and running statistics come from these arrays, the candidates from the database.
    Source 0 is a known candidate with a 30 % dip of 40 d ending 100 d before the last
    epoch; the others are steady."""

    def __init__(self, tmp_path, n_epochs, n_src=120, seed=2):
        from dsa110_contimg.pipeline.steps.base import FieldImages
        from dsa110_contimg.science.variability import RunningStats

        rng = np.random.default_rng(seed)
        self.t = 60000.0 + np.arange(float(n_epochs))
        self.e = np.full((n_src, n_epochs), 0.02)
        self.f = 1.0 + self.e * rng.standard_normal(self.e.shape)
        self.f[0] *= ese_model(self.t, self.t[-1] - 120.0, 40.0, 0.3)
        self.db = open_products_db(tmp_path / f"p{n_epochs}.sqlite3")
        with self.db.engine.begin() as conn:
            self.sid = _sources(conn, n_src)
            lc_store.upsert_ese_candidates(conn, [{
                "source_id": int(self.sid[0]), "criteria": "[\"shape\"]", "preset": "moderate",
                "score": 5.0, "confidence": "medium", "n_epochs": n_epochs,
                "t_min_mjd": float(self.t[-1] - 120.0), "duration_days": 40.0}])
        self.stats = RunningStats.from_lightcurves(self.f, self.e, np.broadcast_to(
            self.t, self.f.shape)).to_dict()
        ids = np.arange(1, n_epochs + 1, dtype=np.int64)
        self.field = FieldImages({"id": ids, "mjd": self.t,
                                  "norm_status": np.full(n_epochs, "ok", object),
                                  "norm_ref_ids": np.full(n_epochs, None, object)})
        self.rows_read = 0

    def load_lightcurves(self, conn, source_ids, image_ids, *, normalized, epochs=None,
                         successful_only=True, cached=False):
        rows = np.searchsorted(self.sid, np.asarray(source_ids, np.int64))
        cols = np.asarray(image_ids, np.int64) - 1
        self.rows_read += rows.size * cols.size
        shape = (rows.size, cols.size)
        return (self.f[np.ix_(rows, cols)], self.e[np.ix_(rows, cols)],
                np.broadcast_to(self.t[cols], shape).copy(), np.broadcast_to(cols + 1, shape))

    def evaluate(self, monkeypatch, prune=True):
        """The step's rows for the last epoch, and the light-curve rows it read."""
        from dsa110_contimg.pipeline.steps import ese as ese_step
        from dsa110_contimg.science import ese_window
        from dsa110_contimg.store.engine import read_connection

        monkeypatch.setattr(lc_store, "load_running_stats",
                            lambda conn, ids: (self.stats, np.ones(len(ids), bool), None))
        monkeypatch.setattr(lc_store, "load_lightcurves", self.load_lightcurves)
        real = ese_window.cannot_reach
        monkeypatch.setattr(ese_window, "cannot_reach",
                            real if prune else lambda s: np.zeros(np.size(s["n"]), bool))
        ctx = ImageContext(image_id=int(self.field.ids[-1]), path="/x.fits",
                           mjd=float(self.t[-1]), ra_deg=10.0, dec_deg=30.0, radius_deg=1.0,
                           kind="image", remeasured=False, source_ids=self.sid)
        ctx._field = self.field
        self.rows_read = 0
        with read_connection(self.db.engine) as conn:
            rows, flagged = ese_step.ese_rows(conn, ctx, PhotometryConfig(normalize=True,
                                                                          detect_ese=True))
        return rows, flagged, self.rows_read


@pytest.mark.parametrize("n_epochs", [13, 502, 1000])
def test_ese_step_reads_only_light_curves_that_can_matter(tmp_path, monkeypatch, n_epochs):
    """Sources that are not candidates and whose whole-light-curve chi2 about the mean is
    below the detection threshold squared are not read (science.ese_window.cannot_reach);
    the rows written are those of reading every searched source. The known candidate is
    read over the 540-d window: the rows read stop growing past it."""
    field = _SyntheticField(tmp_path, n_epochs)
    rows, flagged, read = field.evaluate(monkeypatch)
    rows_all, flagged_all, read_all = field.evaluate(monkeypatch, prune=False)
    assert flagged == flagged_all and len(rows) == len(rows_all) >= 1
    for a, b in zip(rows, rows_all):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_equal(a[k], b[k], err_msg=k)
    assert rows[0]["source_id"] == int(field.sid[0])
    window = int(np.sum(field.t >= field.t[-2] - 540.0))
    assert read == window                               # the known candidate only
    if n_epochs == 13:                                  # steady sources above chi2_nu 1.5
        assert read_all >= 5 * read
    assert read <= 542                                  # 540 d back from the previous epoch
    field.db.dispose()


def _same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for s in a:
        assert a[s].keys() == b[s].keys()
        for k in a[s]:
            np.testing.assert_equal(a[s][k], b[s][k], err_msg=f"source {s} {k}")


def test_the_row_cache_gives_a_fresh_reads_rows_after_earlier_epochs_are_normalised_again(
        tmp_path):
    """The step's window rows come through the process's row cache: after earlier epochs are
    normalised again (their rows_version bumped), its rows are those of an uncached run."""
    from dsa110_contimg.store.row_cache import CACHE

    n = 80
    db, sid, mjd, flux, _ = _long_field(tmp_path / "p.sqlite3", n)
    first, _ = _evaluate(db, sid, mjd, n, full=False)
    with db.engine.connect() as conn:      # every source's rows cached, as earlier images did
        lc_store.load_lightcurves(conn, sid, list(range(1, n + 1)), normalized=True, cached=True)
    with db.engine.begin() as conn:        # a 17 % dip over 20 epochs, for every source
        for k in range(40, 60):
            f = flux[:, k] / 1.2
            lc_store.set_normalisation(conn, k + 1, status="ok", factor=1.2, factor_err=0.01,
                                       norm_flux=f, norm_err=np.full(f.size, 0.02),
                                       source_ids=sid)
    cached, _ = _evaluate(db, sid, mjd, n, full=False)
    with _switched_off(CACHE):
        fresh, _ = _evaluate(db, sid, mjd, n, full=False)
    _same_rows(cached, fresh)
    assert set(fresh) > set(first)         # the deeper light curves made new candidates


@contextmanager
def _switched_off(cache):
    """``cache.enabled`` False inside the block (a per-process cache of the ESE step)."""
    cache.enabled = False
    try:
        yield
    finally:
        cache.enabled = True


def _close_rows(a: dict, b: dict) -> None:
    """The same ESE rows, numbers to 1e-9 (relative)."""
    assert a.keys() == b.keys()
    for s in a:
        assert a[s].keys() == b[s].keys()
        for k in a[s]:
            x, y = a[s][k], b[s][k]
            if isinstance(x, float) or isinstance(y, float):
                np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float),
                                           rtol=1e-9, err_msg=f"source {s} {k}")
            else:
                assert x == y, f"source {s} {k}"


def test_the_kept_live_sums_give_the_rows_of_the_full_live_search(tmp_path):
    """Image after image the step screens its live search with sums kept from the earlier
    images (:mod:`~dsa110_contimg.science.ese_live_sums`): its rows are those of the full live
    search (sums off) while source 0's dip is in progress, recovering and confirmed, after
    earlier epochs are normalised again (rows_version bumped: the sums are taken again), with
    an earlier epoch excluded, and in a new process (cold sums)."""
    from dsa110_contimg.science.ese_live_sums import SUMS

    n = 200
    db, sid, mjd, flux, _ = _long_field(tmp_path / "p.sqlite3", n)
    SUMS.clear()

    def both(k):
        kept, _ = _evaluate(db, sid, mjd, k, full=False)
        with _switched_off(SUMS):
            full, _ = _evaluate(db, sid, mjd, k, full=False)
        _close_rows(kept, full)
        return kept

    stages = set()
    for k in range(45, 131, 5):
        stages.add((both(k).get(int(sid[0])) or {}).get("stage"))
    assert {"dip_in_progress", "recovering", "confirmed"} <= stages
    assert SUMS.updated_cells > 0
    with db.engine.begin() as conn:         # epochs of the dip normalised again, 20 % lower
        for k in range(85, 95):
            f = flux[:, k] / 1.2
            lc_store.set_normalisation(conn, k + 1, status="ok", factor=1.2, factor_err=0.01,
                                       norm_flux=f, norm_err=np.full(f.size, 0.02),
                                       source_ids=sid)
    both(131)
    with db.engine.begin() as conn:         # an earlier epoch out of the light curves
        conn.exec_driver_sql("UPDATE images SET norm_status = 'failed' WHERE id = 100")
    both(132)
    SUMS.clear()                            # a new process
    both(133)
    db.dispose()
