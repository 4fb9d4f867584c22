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
