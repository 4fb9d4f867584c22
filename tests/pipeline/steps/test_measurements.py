"""Step ``store``: one set of rows per image path, and the row counts ``status`` sums."""

from __future__ import annotations

import sqlite3

from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
from dsa110_contimg.store.engine import open_products_db


def _count(db_path, sql: str):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchone()[0]


def test_remeasuring_leaves_one_set_of_rows(sim_field, tmp_path):
    path = tmp_path / "img.fits"
    sim_field.image(path)
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs")
    first = manager.measure_for_fits(path, create_batch_job=False)
    sim_field.image(path, gain=1.2, seed=5)          # the file is rewritten, then measured again
    second = manager.measure_for_fits(path, create_batch_job=False)
    assert first.image_id == second.image_id
    db = tmp_path / "p.sqlite3"
    assert _count(db, "select count(*) from images") == 1
    assert _count(db, "select count(*) from measurements") == 30
    assert _count(db, "select count(*) from sources") == 30


def test_status_measurement_total_is_the_number_of_rows(sim_field, tmp_path):
    # status sums the images' row counts instead of counting millions of measurements:
    # the two agree after first measurements and after a re-measurement replaced rows
    import time

    from dsa110_contimg.store.status import read_status_counts

    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    sim_field.image(a)
    sim_field.image(b, seed=2, mjd=60677.0)
    m = PhotometryManager(tmp_path / "products.sqlite3", catalog_dir=tmp_path / "catalogs")
    cfg = PhotometryConfig(catalog="nvss", method="forced")
    for p in (a, b, a):
        m.run_image(p, "image", cfg)
    db = open_products_db(tmp_path / "products.sqlite3")
    counts = read_status_counts(db, now=time.time())
    n_rows = _count(tmp_path / "products.sqlite3", "SELECT count(*) FROM measurements")
    assert n_rows == 2 * len(sim_field.ra_deg) > 0
    assert counts["measurements"] == n_rows and counts["images"] == 2
