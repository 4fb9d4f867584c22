"""Light curves through the workflow: normalisation, running statistics and ESE candidates.

Each test measures many simulated epochs of one field with per-epoch gain errors and
checks what ends in the products database.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from dsa110_contimg.cli.main import main as cli_main
from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
from dsa110_contimg.science.ese import ese_model
from dsa110_contimg.science.variability import lightcurve_metrics

from fields import SimulatedField

N_EPOCHS = 14


def _field(tmp_path, seed=0):
    field = SimulatedField(tmp_path, n_sources=30, seed=seed, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    return field


def _run_epochs(tmp_path, field, order, gains, cfg, scales=None, mjds=None, db_name="p.sqlite3"):
    manager = PhotometryManager(tmp_path / db_name, default_config=cfg, catalog_dir=tmp_path / "catalogs")
    mjds = np.arange(len(gains)) * 3.0 + 60000.0 if mjds is None else mjds
    results = {}
    for k in order:
        path = tmp_path / f"epoch{k:03d}.fits"
        if not path.exists():
            field.image(path, mjd=float(mjds[k]), gain=gains[k], seed=100 + k,
                        scale=None if scales is None else scales[k])
        results[k] = manager.measure_for_fits(path, create_batch_job=False)
    return manager, results


def _lightcurves(db):
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select s.catalog_id, m.mjd, m.peak_jyb, m.peak_err_jyb, m.norm_flux_jyb, m.norm_err_jyb "
            "from measurements m join sources s on s.id = m.source_id order by s.catalog_id, m.mjd").fetchall()
    out = {}
    for cid, mjd, f, e, fn, en in rows:
        out.setdefault(cid, []).append((mjd, f, e, fn, en))
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def test_normalisation_removes_per_epoch_gain_errors(tmp_path):
    field = _field(tmp_path)
    rng = np.random.default_rng(7)
    gains = 1.0 + rng.uniform(-0.10, 0.10, N_EPOCHS)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    manager, results = _run_epochs(tmp_path, field, range(N_EPOCHS), gains, cfg)
    db = tmp_path / "p.sqlite3"
    with sqlite3.connect(db) as conn:
        status = conn.execute("select norm_status, count(*) from images group by norm_status").fetchall()
        factors = np.array(conn.execute("select norm_factor from images order by mjd").fetchall(), float)[:, 0]
    # the first two epochs could not be normalised when they arrived; they were once the
    # reference baselines existed
    assert status == [("ok", N_EPOCHS)]
    # the correction tracks the injected gain up to a common scale (baseline = median epoch)
    rel = factors / gains
    assert np.std(rel / np.median(rel)) < 0.01
    lcs = _lightcurves(db)
    raw_scatter, norm_scatter = [], []
    for lc in lcs.values():
        raw_scatter.append(np.std(lc[:, 1]) / np.mean(lc[:, 1]))
        norm_scatter.append(np.std(lc[:, 3]) / np.mean(lc[:, 3]))
    assert np.median(raw_scatter) > 0.04
    assert np.median(norm_scatter) < 0.015
    assert results[N_EPOCHS - 1].normalization["status"] == "ok"


def test_two_references_are_refused_not_normalised_by_one(tmp_path):
    field = SimulatedField(tmp_path, n_sources=6, seed=3, flux_range=(2.0, 6.0))
    field.flux_mjy[:2] = 300.0            # only two sources bright enough to be references
    field.csv_path.unlink()
    field = _rewrite_catalogue(field)
    field.ingest(tmp_path / "catalogs")
    cfg = PhotometryConfig(normalize=True)
    _, results = _run_epochs(tmp_path, field, range(5), np.ones(5), cfg)
    last = results[4]
    assert last.normalization["status"] == "failed"
    assert "at least 3" in last.normalization["reason"]
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        assert conn.execute("select count(*) from measurements where norm_flux_jyb is not null").fetchone()[0] == 0
        assert conn.execute("select count(*) from variability_stats where n > 0").fetchone()[0] == 0


def _rewrite_catalogue(field):
    from astropy.table import Table

    Table({"_RAJ2000": field.ra_deg, "_DEJ2000": field.dec_deg, "NVSS": [n[5:] for n in field.names],
           "S1.4": field.flux_mjy, "e_S1.4": np.full(field.flux_mjy.size, 0.5)}).write(field.csv_path)
    return field


def test_running_statistics_equal_full_recompute_in_any_arrival_order(tmp_path):
    field = _field(tmp_path, seed=2)
    rng = np.random.default_rng(11)
    gains = 1.0 + rng.uniform(-0.05, 0.05, N_EPOCHS)
    # Reference stability verdicts depend on what had arrived when (by design); switch the
    # check off so that the normalisation itself can be compared across arrival orders.
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0, norm_stability_chi2=1e9)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub, order in (("a", list(range(N_EPOCHS))), ("b", list(rng.permutation(N_EPOCHS)))):
        d = tmp_path / sub
        d.joinpath("catalogs").symlink_to(tmp_path / "catalogs")
        _run_epochs(d, field, order, gains, cfg)
    stats = {}
    for sub in ("a", "b"):
        with sqlite3.connect(tmp_path / sub / "p.sqlite3") as conn:
            stats[sub] = {r[0]: r[1:] for r in conn.execute(
                "select s.catalog_id, v.n, v.mean, v.eta, v.v, v.chi2_nu, v.sigma_deviation, v.vs_max "
                "from variability_stats v join sources s on s.id = v.source_id")}
    assert stats["a"].keys() == stats["b"].keys() == set(field.names)
    for cid in stats["a"]:
        np.testing.assert_allclose(stats["a"][cid], stats["b"][cid], rtol=1e-7, atol=1e-12)
    # and both equal the one-shot metrics of the stored normalised light curves
    lcs = _lightcurves(tmp_path / "a" / "p.sqlite3")
    for cid, lc in lcs.items():
        ref = lightcurve_metrics(lc[:, 3], lc[:, 4])
        got = stats["a"][cid]
        np.testing.assert_allclose(got[:7], [ref["n"], ref["mean"], ref["eta"], ref["v"], ref["chi2_nu"],
                                             ref["sigma_deviation"], ref["vs_max"]], rtol=1e-6)


@pytest.fixture(scope="module")
def ese_run(tmp_path_factory):
    """30 epochs over 150 days, 4 % gain jitter, one source with a 45 % ESE dip."""
    tmp_path = tmp_path_factory.mktemp("ese")
    field = _field(tmp_path, seed=4)
    n_epochs = 30
    mjds = 60000.0 + np.sort(np.random.default_rng(5).uniform(0, 150, n_epochs))
    rng = np.random.default_rng(9)
    gains = 1.0 + rng.normal(0, 0.04, n_epochs)
    target = int(np.argsort(field.flux_mjy)[len(field.flux_mjy) // 2])   # a mid-brightness source
    scales = np.ones((n_epochs, field.flux_mjy.size))
    scales[:, target] = ese_model(mjds, 60075.0, 40.0, 0.45, 0.0)
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    _run_epochs(tmp_path, field, range(n_epochs), gains, cfg, scales=scales, mjds=mjds)
    return tmp_path, field, target


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
    mjd, _, _, norm, err = _lightcurves(tmp_path / "p.sqlite3")[cid].T
    ok = np.isfinite(norm)
    pull = (norm[ok] - stored_ese_fit(row).model(mjd[ok])) / err[ok]
    steady = (norm[ok] - np.median(norm[ok])) / err[ok]
    assert np.sqrt(np.mean(pull ** 2)) < 3.0 < np.sqrt(np.mean(steady ** 2))
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


def test_single_epoch_flare_does_not_outrank_a_recovered_ese(tmp_path, capsys):
    """A daily season of 104 epochs: one source flares (x2) on a single early epoch,
    another has a 40-d, 45 % ESE that recovers inside the season. The flare passes
    the threshold preset (sigma-dev = sqrt(n - 1) > 10: composite score 10) and is
    flagged on its 14th epoch; the ESE is flagged by the dip-and-recovery shape
    search only once its recovery has been watched (score 10 too). The ESE must
    rank first in ``ese list`` and on the web page's ordering, not the older flare."""
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.review import candidates_page

    field = _field(tmp_path, seed=7)
    n = 104
    mjds = 60000.0 + np.arange(n, dtype=float)
    order = np.argsort(field.flux_mjy)
    ese_src, flare_src = int(order[15]), int(order[16])
    scales = np.ones((n, field.flux_mjy.size))
    scales[:, ese_src] = ese_model(mjds, 60040.0, 40.0, 0.45, 0.0)
    scales[8, flare_src] = 2.0
    gains = 1.0 + np.random.default_rng(3).normal(0, 0.04, n)
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    _run_epochs(tmp_path, field, range(n), gains, cfg, scales=scales, mjds=mjds)

    capsys.readouterr()
    assert cli_main(["ese", "list", "--products-db", str(tmp_path / "p.sqlite3"), "--json"]) == 0
    cands = json.loads(capsys.readouterr().out)["candidates"]
    by = {c["catalog_id"]: c for c in cands}
    ese, flare = by[field.names[ese_src]], by[field.names[flare_src]]
    # the premise: the flare is the older candidate, flagged by the preset only, and its
    # composite score is as high as the ESE's -- by score (then age) it would come first
    assert flare["id"] < ese["id"] and flare["score"] >= ese["score"]
    assert "shape" not in flare["criteria"] and "shape" in ese["criteria"]
    assert cands[0]["catalog_id"] == field.names[ese_src], [(c["catalog_id"], c["score"]) for c in cands]
    store = open_products_db(tmp_path / "p.sqlite3")
    with store.engine.connect() as conn:
        rows, _ = candidates_page(conn)
    store.dispose()
    assert rows[0]["catalog_id"] == field.names[ese_src]
