"""Step ``normalise`` through the workflow: per-epoch gains removed, too few references refused."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager

from fields import SimulatedField
from seasons import bright_field, run_epochs, stored_lightcurves

N_EPOCHS = 14


def test_normalisation_removes_per_epoch_gain_errors(tmp_path):
    field = bright_field(tmp_path)
    rng = np.random.default_rng(7)
    gains = 1.0 + rng.uniform(-0.10, 0.10, N_EPOCHS)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    manager, results = run_epochs(tmp_path, field, range(N_EPOCHS), gains, cfg)
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
    lcs = stored_lightcurves(db)
    raw_scatter, norm_scatter = [], []
    for lc in lcs.values():
        raw_scatter.append(np.std(lc[:, 1]) / np.mean(lc[:, 1]))
        norm_scatter.append(np.std(lc[:, 3]) / np.mean(lc[:, 3]))
    assert np.median(raw_scatter) > 0.04
    assert np.median(norm_scatter) < 0.015
    assert results[N_EPOCHS - 1].normalization["status"] == "ok"


def _statements(run):
    """The SQL statements (SQLite's trace) that ``run()`` sends on connections it opens."""
    import sqlalchemy as sa

    seen: list[str] = []

    def trace(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(seen.append)

    sa.event.listen(sa.engine.Engine, "connect", trace)
    try:
        out = run()
    finally:
        sa.event.remove(sa.engine.Engine, "connect", trace)
    return out, seen


def test_each_measurement_row_is_written_once_with_its_normalised_flux(tmp_path):
    """Once the reference baselines are established, an image's measurement rows are
    inserted with their normalised fluxes: no statement updates measurements, and the
    stored normalised flux is the raw one divided by the image's factor."""
    field = bright_field(tmp_path)
    gains = 1.0 + np.random.default_rng(3).uniform(-0.05, 0.05, N_EPOCHS)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    run_epochs(tmp_path, field, range(N_EPOCHS - 1), gains, cfg)
    (_, results), seen = _statements(
        lambda: run_epochs(tmp_path, field, [N_EPOCHS - 1], gains, cfg))
    norm = results[N_EPOCHS - 1].normalization
    assert norm["status"] == "ok" and not norm.get("renormalised")
    assert not [q for q in seen if q.lstrip().upper().startswith("UPDATE MEASUREMENTS")]
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        factor, = conn.execute("select norm_factor from images order by mjd desc limit 1").fetchone()
        rows = np.array(conn.execute(
            "select m.peak_jyb, m.norm_flux_jyb from measurements m join images i on "
            "i.id = m.image_id where i.mjd = (select max(mjd) from images) and m.success"
        ).fetchall(), float)
    assert rows.shape[0] > 10 and np.isfinite(rows).all()
    np.testing.assert_allclose(rows[:, 1], rows[:, 0] / factor, rtol=1e-9)


def test_two_references_are_refused_not_normalised_by_one(tmp_path):
    field = SimulatedField(tmp_path, n_sources=6, seed=3, flux_range=(2.0, 6.0))
    field.flux_mjy[:2] = 300.0            # only two sources bright enough to be references
    field.csv_path.unlink()
    field = _rewrite_catalogue(field)
    field.ingest(tmp_path / "catalogs")
    cfg = PhotometryConfig(normalize=True)
    _, results = run_epochs(tmp_path, field, range(5), np.ones(5), cfg)
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


def test_peak_fallback_stays_out_of_light_curves_and_says_why(sim_field, tmp_path):
    path = tmp_path / "mosaic.fits"
    sim_field.image(path, include_beam=False, naxis=2, extra_header={"NIMAGES": 10})
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig(catalog="nvss"))
    result = manager.measure_for_mosaic(path, create_batch_job=False)
    assert result.method == "peak"
    assert result.normalization["status"] == "failed"
    assert "method mismatch" in result.normalization["reason"]
    assert any("kept out of the light curves" in n for n in result.notes)
    with manager.products.engine.connect() as conn:
        n = conn.exec_driver_sql("select count(*) from variability_stats where sum_w > 0").scalar()
    assert n == 0


def test_first_epochs_without_references_are_normalised_once_the_field_has_them(tmp_path):
    """No catalogue reference at all (min SNR out of reach): the fallback ensemble starts
    at the 8th epoch; the 7 before it are normalised then, with no operator action, and the
    running sums count every epoch."""
    field = bright_field(tmp_path)
    rng = np.random.default_rng(5)
    n = 12
    gains = 1.0 + rng.normal(0.0, 0.04, n)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=1e6)
    run_epochs(tmp_path, field, range(n), gains, cfg)
    db = tmp_path / "p.sqlite3"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select norm_status, norm_method, norm_factor from images "
                            "order by mjd").fetchall()
        counts = [c for (c,) in conn.execute("select n from variability_stats")]
    ok = [r for r in rows if r[0] == "ok"]
    assert len(ok) >= 0.95 * n, rows
    assert all(r[1] == "ensemble" for r in ok)
    rel = np.array([r[2] for r in rows], float) / gains
    assert np.std(rel / np.median(rel)) < 0.01                  # the injected gains, early ones too
    assert max(counts) == n and np.median(counts) == n


def _refs(db, image_id):
    with sqlite3.connect(db) as conn:
        return {sid: (role, ratio, reason) for sid, role, ratio, reason in conn.execute(
            "select source_id, role, ratio, reason from reference_choices where image_id = ?",
            (image_id,))}


def test_provenance_says_which_references_were_used_and_which_clipped(tmp_path):
    """Six references 30 % brighter on the last image are clipped there, each with its
    ratio; the others are used, with theirs; so many clipped flags the factor as disagreeing
    (stored reason, shown by ``images list``) with its error widened."""
    from dsa110_contimg.cli.images import _summary_line
    from dsa110_contimg.store.images import list_images

    field = bright_field(tmp_path)
    n = 12
    gains = 1.0 + np.random.default_rng(3).normal(0.0, 0.03, n)
    six = np.argsort(-field.flux_mjy)[:6]
    bright = int(six[0])
    scales = np.ones((n, field.flux_mjy.size))
    scales[n - 1, six] = 1.3
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    manager, results = run_epochs(tmp_path, field, range(n), gains, cfg, scales=scales)
    db = tmp_path / "p.sqlite3"
    last = results[n - 1]
    refs = _refs(db, last.image_id)
    with sqlite3.connect(db) as conn:
        sid = conn.execute("select id from sources where catalog_id = ?",
                           (str(field.names[bright]),)).fetchone()[0]
        factor, n_used = conn.execute("select norm_factor, norm_n_refs from images where id = ?",
                                      (last.image_id,)).fetchone()
    role, ratio, reason = refs[sid]
    assert role == "clipped" and ratio == pytest.approx(1.3 * factor, rel=0.03)
    assert reason.startswith("clipped: ratio ")
    used = [v for v in refs.values() if v[0] == "used"]
    assert len(used) == n_used >= 3
    assert all(abs(r / factor - 1) < 0.05 and why.startswith("used: ratio ") for _, r, why in used)
    assert sum(v[0] == "clipped" for v in refs.values()) == 6
    with manager.products.engine.connect() as conn:
        row = [r for r in list_images(conn) if r["id"] == last.image_id][0]
        before = [r for r in list_images(conn) if r["id"] == results[n - 2].image_id][0]
    assert row["norm_status"] == "ok" and row["norm_reason"].startswith(
        "references disagree: 6 of 20 reference ratios clipped")
    assert row["norm_factor_err"] > 3 * before["norm_factor_err"]
    assert "references disagree" in _summary_line(row)


def test_an_ese_candidate_stops_being_a_reference_and_its_images_are_normalised_again(tmp_path):
    field = bright_field(tmp_path)
    n = 8
    gains = 1.0 + np.random.default_rng(4).normal(0.0, 0.03, n)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    manager, results = run_epochs(tmp_path, field, range(n - 1), gains, cfg)
    db = tmp_path / "p.sqlite3"
    first = results[0].image_id
    used = [s for s, v in _refs(db, first).items() if v[0] == "used"]
    victim = used[0]
    with sqlite3.connect(db) as conn:
        conn.execute("insert into ese_candidates (source_id, status, flagged_by, criteria, score, "
                     "confidence, first_flagged_at, updated_at) values "
                     "(?, 'active', 'auto', '[\"shape\"]', 8.0, 'high', 0, 0)", (victim,))
    run_epochs(tmp_path, field, [n - 1], gains, cfg)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select id, norm_status, norm_ref_ids from images").fetchall()
    assert all(st == "ok" and victim not in json.loads(refs) for _, st, refs in rows), rows
    role, _, reason = _refs(db, first)[victim]
    assert role == "rejected" and "ESE candidate" in reason


def test_a_staged_epoch_joins_light_curves_as_the_stored_one_would(tmp_path):
    """The baselines of an image whose rows are still staged see its raw fluxes laid out
    exactly as a read of the stored rows returns them (MJD order, epochs without MJD last,
    failed and absent measurements left out, ties after the earlier images)."""
    from dsa110_contimg.pipeline.steps.normalise import _with_epoch
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import products as ps

    rng = np.random.default_rng(5)
    n, epochs = 40, [60003.0, None, 60001.0, 60002.0, 60001.0]
    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        sid = ps.upsert_sources(conn, "nvss", [f"NVSS J{i:06d}" for i in range(n)],
                                np.linspace(10, 11, n), np.full(n, 30.0), np.full(n, 5.0))
        image_ids, success = [], []
        for k, mjd in enumerate(epochs):
            cols = {c: rng.uniform(1, 2, n) for c in ps.MEASUREMENT_COLUMNS}
            cols.update(dof=np.full(n, 10), cluster_id=np.full(n, -1),
                        flags=np.zeros(n, np.int64), success=rng.random(n) > 0.3)
            cols["peak_jyb"][rng.random(n) < 0.1] = np.nan
            keep = rng.random(n) > 0.2                   # sources not measured on this image
            image_ids.append(ps.store_image_row(conn, {
                "path": f"/e{k}.fits", "content_id": str(k), "kind": "image", "method": "forced",
                "catalog": "nvss", "mjd": mjd}, int(keep.sum())))
            ps.insert_measurements(conn, image_ids[-1], sid[keep], {c: v[keep] for c, v in cols.items()})
            success.append((keep, cols))
    for last in range(len(epochs)):
        ids = image_ids[:last + 1]
        with db.engine.connect() as conn:
            want, _, want_mjd, _ = lc_store.load_lightcurves(conn, sid, ids, normalized=False)
            f, _, t, img = lc_store.load_lightcurves(conn, sid, ids[:-1], normalized=False)
        keep, cols = success[last]
        got, got_mjd = _with_epoch(f, t, img >= 0, np.where(keep, cols["peak_jyb"], np.nan),
                                   np.nan if epochs[last] is None else epochs[last],
                                   keep & cols["success"])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_mjd, want_mjd)
    db.dispose()


def test_normalised_fluxes_given_in_another_order_than_the_staged_rows_are_stored(tmp_path):
    """A correction whose fluxes are listed in another source order than the image's staged
    rows still reaches every row: the rows are stored, then updated."""
    from dsa110_contimg.pipeline.steps.base import ImageContext
    from dsa110_contimg.pipeline.steps.normalise import _store_normalisation
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import products as ps

    n = 30
    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        sid = ps.upsert_sources(conn, "nvss", [f"NVSS J{i:06d}" for i in range(n)],
                                np.linspace(10, 11, n), np.full(n, 30.0), np.full(n, 5.0))
        cols = {c: np.linspace(1, 2, n) for c in ps.MEASUREMENT_COLUMNS}
        cols.update(dof=np.full(n, 10), cluster_id=np.full(n, -1), flags=np.zeros(n, np.int64),
                    success=np.ones(n, bool))
        image_id = ps.store_image_row(conn, {"path": "/a.fits", "content_id": "a", "kind": "image",
                                             "method": "forced", "catalog": "nvss",
                                             "mjd": 60000.0}, n)
        ctx = ImageContext(image_id=image_id, path="/a.fits", mjd=60000.0, ra_deg=10.0,
                           dec_deg=30.0, radius_deg=1.0, kind="image", remeasured=False,
                           source_ids=np.asarray(sid))
        ctx.stage_measurements(cols)
        order = np.arange(n)[::-1]
        norm = np.arange(n, dtype=float) + 1.0
        _store_normalisation(conn, ctx, image_id, status="ok", factor=1.0, norm_flux=norm[order],
                             norm_err=norm[order] / 10, source_ids=np.asarray(sid)[order])
        assert not ctx.measurements_staged
    with db.engine.connect() as conn:
        flux, err, _, _ = lc_store.load_lightcurves(conn, sid, [image_id], normalized=True)
    np.testing.assert_allclose(flux[:, 0], norm)
    np.testing.assert_allclose(err[:, 0], norm / 10)
    db.dispose()
