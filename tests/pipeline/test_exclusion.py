"""Excluding an epoch by hand: out of light curves, normalisation (as a reference epoch
too), variability and ESE, recomputed at once; including it again restores every number
bit for bit."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from dsa110_contimg.cli.main import main as cli_main
from dsa110_contimg.photometry import PhotometryConfig
from dsa110_contimg.pipeline.exclusion import ExclusionError
from dsa110_contimg.science.ese import ese_model

from rank_key_check import assert_rank_keys_true
from seasons import bright_field, run_epochs

N_EPOCHS = 20


def _snapshot(db) -> dict:
    """Every derived number of the database (timestamps left out)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row

        def table(sql):
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        vs = [c[1] for c in conn.execute("pragma table_info(variability_stats)") if c[1] != "updated_at"]
        ese = [c[1] for c in conn.execute("pragma table_info(ese_candidates)")
               if not c[1].endswith("_at")]
        return {
            "stats": table(f"select {', '.join(vs)} from variability_stats order by source_id"),
            "ese": table(f"select {', '.join(ese)} from ese_candidates order by source_id"),
            "norm": table("select id, norm_status, norm_factor, norm_factor_err, norm_scatter, "
                          "norm_n_refs, norm_used_ids from images order by id"),
            "flux": table("select image_id, source_id, norm_flux_jyb, norm_err_jyb from measurements "
                          "order by image_id, source_id"),
            "baselines": table("select source_id, baseline_jyb, baseline_rms_jyb, n_points, through_mjd,"
                               " valid from reference_baselines order by source_id"),
        }


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("exclusion")
    field = bright_field(tmp_path, seed=4)
    mjds = 60000.0 + np.arange(N_EPOCHS) * 5.0
    gains = 1.0 + np.random.default_rng(9).normal(0, 0.03, N_EPOCHS)
    target = int(np.argsort(field.flux_mjy)[len(field.flux_mjy) // 2])
    scales = np.ones((N_EPOCHS, field.flux_mjy.size))
    scales[:, target] = ese_model(mjds, 60030.0, 20.0, 0.45, 0.0)
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    manager, results = run_epochs(tmp_path, field, range(N_EPOCHS), gains, cfg, scales=scales,
                                  mjds=mjds)
    return tmp_path, manager, results, cfg


def _n_epochs(db) -> dict:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("select source_id, n from variability_stats").fetchall())


def test_exclude_and_include_round_trip_bit_for_bit(season):
    """A late epoch (after every reference's baseline window): out of every light curve
    and metric, and back with every number identical."""
    tmp_path, manager, results, cfg = season
    db = tmp_path / "p.sqlite3"
    before = _snapshot(db)
    assert before["baselines"] and before["ese"]
    n_before = _n_epochs(db)
    late = results[N_EPOCHS - 4].image_id
    out = manager.exclude_image(late, "phase calibration failed")
    assert out["changed"] and out["sources"] >= 30
    during = _snapshot(db)
    with sqlite3.connect(db) as conn:
        excluded = conn.execute("select excluded, excluded_reason from images where id = ?",
                                (late,)).fetchone()
    assert excluded == (1, "phase calibration failed")
    n_during = _n_epochs(db)
    with sqlite3.connect(db) as conn:
        assert assert_rank_keys_true(conn)         # the recompute keeps the rank keys
    assert all(n_during[s] == n_before[s] - 1 for s in n_before)    # one epoch fewer
    assert during["stats"] != before["stats"] and during["ese"] != before["ese"]
    assert manager.include_image(late)["changed"]
    after = _snapshot(db)
    for key in before:
        assert after[key] == before[key], key


def test_a_reference_epoch_leaves_the_baselines_and_comes_back(season):
    """An epoch inside the baseline windows: the baselines are recomputed without it and
    every image that used them normalised again; included again, the recomputed state is
    the same whenever it is recomputed, and within the noise of the incremental one."""
    tmp_path, manager, results, cfg = season
    db = tmp_path / "p.sqlite3"
    before = _snapshot(db)
    first = results[1].image_id
    out = manager.exclude_image(first, "RFI")
    assert out["renormalised"] and first not in out["renormalised"]
    during = _snapshot(db)
    assert during["baselines"] != before["baselines"] and during["norm"] != before["norm"]
    manager.include_image(first)
    once = _snapshot(db)
    manager.exclude_image(first, "RFI")
    manager.include_image(first)
    assert _snapshot(db) == once
    # the per-epoch common gain of a baseline is estimated from the references recomputed
    # together, which the incremental history grouped differently: equal within their scatter
    b0 = np.array([r[1] for r in before["baselines"]])
    b1 = np.array([r[1] for r in once["baselines"]])
    rms = np.array([r[2] for r in before["baselines"]])
    assert np.all(np.abs(b1 - b0) < rms)


def test_exclusion_needs_a_reason_and_an_image(season):
    tmp_path, manager, results, cfg = season
    with pytest.raises(ExclusionError, match="reason"):
        manager.exclude_image(results[2].image_id, " ")
    with pytest.raises(ExclusionError, match="no image"):
        manager.exclude_image(999999, "gone")


def test_cli_exclude_shows_the_reason_everywhere(season, capsys):
    tmp_path, manager, results, cfg = season
    db = str(tmp_path / "p.sqlite3")
    image_id = results[5].image_id
    assert cli_main(["images", "exclude", str(image_id), "--reason", "RFI storm",
                     "--products-db", db]) == 0
    assert "excluded: RFI storm" in capsys.readouterr().out
    assert cli_main(["images", "show", str(image_id), "--products-db", db]) == 0
    assert "EXCLUDED from light curves" in capsys.readouterr().out
    assert cli_main(["images", "list", "--products-db", db]) == 0
    assert "EXCLUDED: RFI storm" in capsys.readouterr().out
    cli_main(["status", "--products-db", db])
    assert f"#{image_id} " in capsys.readouterr().out.split("excluded from the light curves")[1]
    # the light-curve export marks the epoch with the reason
    from astropy.table import Table

    with sqlite3.connect(db) as conn:
        name = conn.execute("select catalog_id from sources order by id limit 1").fetchone()[0]
    out = tmp_path / "lc.csv"
    assert cli_main(["lightcurve", name, "--products-db", db, "-o", str(out)]) == 0
    table = Table.read(out, format="ascii.csv")
    marked = [str(r) for r in table["excluded_reason"].filled("")]
    assert marked.count("RFI storm") == 1 and marked.count("") == len(table) - 1
    assert cli_main(["images", "exclude", "999999", "--reason", "x", "--products-db", db]) == 1
    assert "no image" in capsys.readouterr().err
    assert cli_main(["images", "include", str(image_id), "--products-db", db]) == 0
    assert "included again" in capsys.readouterr().out
