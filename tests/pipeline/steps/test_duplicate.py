"""Step ``duplicate``: the same data under another name is recorded as a duplicate of the
stored image and adds no epoch; a changed file at the same path replaces its epoch."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np

from dsa110_contimg.cli.main import main as cli_main
from dsa110_contimg.photometry import PhotometryConfig

from seasons import bright_field, run_epochs


def _counts(db):
    with sqlite3.connect(db) as conn:
        return (conn.execute("select count(*) from measurements").fetchone()[0],
                sorted({r[0] for r in conn.execute("select n from variability_stats")}))


def test_a_copy_is_a_duplicate_and_a_rewrite_replaces(tmp_path, capsys):
    field = bright_field(tmp_path, seed=3, n_sources=12)
    cfg = PhotometryConfig(normalize=True, norm_min_snr=30.0)
    manager, results = run_epochs(tmp_path, field, range(5), np.ones(5), cfg)
    db = tmp_path / "p.sqlite3"
    before = _counts(db)
    assert before == (5 * 12, [5])
    copy = tmp_path / "rerun_epoch002.fits"
    shutil.copy(tmp_path / "epoch002.fits", copy)            # a new name and a new mtime
    res = manager.measure_for_fits(copy, create_batch_job=False)
    assert res.duplicate_of == results[2].image_id and res.results is None
    assert _counts(db) == before
    with sqlite3.connect(db) as conn:
        row = conn.execute("select duplicate_of, n_sources, norm_status from images where id = ?",
                           (res.image_id,)).fetchone()
    assert row == (results[2].image_id, 0, "not_requested")
    assert cli_main(["images", "show", str(res.image_id), "--products-db", str(db)]) == 0
    assert f"DUPLICATE of image #{results[2].image_id}" in capsys.readouterr().out
    cli_main(["status", "--products-db", str(db)])     # no daemon ran: its exit code says so
    assert "1 image(s) duplicate of another image" in capsys.readouterr().out
    # measured again: still a duplicate, still no epoch
    assert manager.measure_for_fits(copy, create_batch_job=False).duplicate_of == results[2].image_id
    assert _counts(db) == before
    # the same path rewritten with other data: its epoch is replaced, not added
    field.image(tmp_path / "epoch003.fits", mjd=60009.0, gain=1.0, seed=555)
    again = manager.measure_for_fits(tmp_path / "epoch003.fits", create_batch_job=False)
    assert again.image_id == results[3].image_id and again.duplicate_of is None
    assert _counts(db) == before
    # a copy overwriting a path that held an epoch: that epoch leaves the light curves
    shutil.copy(tmp_path / "epoch001.fits", tmp_path / "epoch004.fits")
    dup = manager.measure_for_fits(tmp_path / "epoch004.fits", create_batch_job=False)
    assert dup.image_id == results[4].image_id and dup.duplicate_of == results[1].image_id
    assert _counts(db) == (4 * 12, [4])


def test_a_copy_is_not_measured_again(tmp_path, monkeypatch):
    from dsa110_contimg.pipeline import manager as manager_module

    field = bright_field(tmp_path, seed=5, n_sources=8)
    manager, results = run_epochs(tmp_path, field, range(2), np.ones(2),
                                  PhotometryConfig(normalize=False))
    shutil.copy(tmp_path / "epoch001.fits", tmp_path / "copy.fits")
    # measured before another worker's copy was stored: the step records it under the lock
    from dsa110_contimg.pipeline import runner

    shutil.copy(tmp_path / "epoch000.fits", tmp_path / "raced.fits")
    cfg = PhotometryConfig(normalize=False)
    measured = manager.measure_image(tmp_path / "raced.fits", "image", cfg)
    outcome = runner.store_measured(manager.products.engine, measured, cfg)
    assert outcome.duplicate_of == results[0].image_id and list(outcome.results) == ["duplicate"]
    monkeypatch.setattr(manager_module, "measure_image",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("measured")))
    res = manager.measure_for_fits(tmp_path / "copy.fits", create_batch_job=False)
    assert res.duplicate_of == results[1].image_id
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        copied, orig = conn.execute("select mjd, beam_major_arcsec, ra_center_deg, duplicate_of "
                                    "from images where id in (?, ?) order by id desc",
                                    (res.image_id, results[1].image_id)).fetchall()
    assert copied[:3] == orig[:3] and copied[3] == results[1].image_id
    assert _counts(tmp_path / "p.sqlite3") == (2 * 8, [2])
