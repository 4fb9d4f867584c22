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
