"""Step ``qc``: a failed image is stored, flagged, kept out of light curves and reported."""

from __future__ import annotations

import json
import sqlite3

from dsa110_contimg.cli.main import main as cli_main
from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager


def _count(db_path, sql: str):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchone()[0]


def test_qc_failure_is_stored_kept_out_of_light_curves_and_reported(sim_field, tmp_path, capsys):
    path = tmp_path / "noisy.fits"
    sim_field.image(path, noise=1e-3)
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig(qc_max_rms_jyb=1e-4, detect_ese=True))
    result = manager.measure_for_fits(path, create_batch_job=False)
    assert result.qc_status == "failed"
    assert any("QC failed" in n and "rms" in n for n in result.notes)
    db = tmp_path / "p.sqlite3"
    assert _count(db, "select count(*) from measurements") == 30          # stored ...
    assert _count(db, "select count(*) from measurements where flags & 1024") == 30
    assert _count(db, "select count(*) from variability_stats where n > 0") == 0   # ... kept out
    capsys.readouterr()            # the measurement's own log lines are not the JSON
    assert cli_main(["status", "--json", "--products-db", str(db)]) == 3  # no daemon running
    st = json.loads(capsys.readouterr().out)
    assert st["qc"]["failed"] == 1 and st["images"]["measured"] == 1
    assert st["qc"]["recent_failures"][0]["path"].endswith("noisy.fits")
    assert any("rms" in r for r in st["qc"]["recent_failures"][0]["reasons"])
