"""Light-curve and QC-history queries of the products database."""

from __future__ import annotations

import sqlite3

import pytest

from pgcluster import BACKENDS


def test_qc_history_is_read_without_the_write_lock(tmp_path):
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import make_engine, read_connection

    db = tmp_path / "p.sqlite3"
    open_products_db(db)
    holder = sqlite3.connect(db, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")          # another worker holds the write lock
    try:
        engine = make_engine(db, busy_timeout_ms=200)
        with read_connection(engine) as conn:     # deferred: reads go through
            assert lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None,
                                       exclude_path="x") == []
        # the same read on an ordinary (write) connection waits for the lock and fails
        with pytest.raises(Exception, match="locked"):
            with engine.connect() as conn:
                lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None, exclude_path="x")
        engine.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_images_near_are_the_epochs_within_the_radius(databases, backend):
    """Image centres within the radius (also across RA 0, found through the RA zones);
    duplicates never, QC failures and excluded epochs only when asked for."""
    import sqlalchemy as sa

    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.schema import images

    # (id, ra, dec, qc_status, excluded, duplicate_of): centre (0.2, 30)
    rows = [(1, 0.5, 30.0, "passed", False, None), (2, 359.6, 30.3, "passed", False, None),
            (3, 359.9, 29.9, "failed", False, None), (4, 0.1, 30.1, "passed", True, None),
            (5, 0.5, 30.0, "passed", False, 1), (6, 358.0, 30.0, "passed", False, None),
            (7, 0.2, 31.5, "warning", False, None), (8, 180.2, 30.0, "passed", False, None)]
    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        conn.execute(images.insert(), [
            {"id": i, "path": f"/img/{i}.fits", "content_id": str(i), "kind": "image",
             "mjd": 60000.0 + i, "ra_center_deg": ra, "dec_center_deg": dec, "radius_deg": 1.0,
             "method": "forced", "catalog": "nvss", "qc_status": qc, "excluded": ex,
             "duplicate_of": dup, "measured_at": 0.0} for i, ra, dec, qc, ex, dup in rows])
    with db.engine.connect() as conn:
        def near(**kw):
            return lc_store.images_near(conn, 0.2, 30.0, 1.0, **kw)["id"].tolist()

        assert near() == [1, 2]
        assert near(exclude_qc_failed=False) == [1, 2, 3]
        assert near(exclude_qc_failed=False, include_excluded=True) == [1, 2, 3, 4]
        out = lc_store.images_near(conn, 0.2, 30.0, 1.0, include_excluded=True)
        assert out["excluded"].tolist() == [False, False, True]
        assert out["mjd"].tolist() == [60001.0, 60002.0, 60004.0]
    db.dispose()


def test_light_curves_with_the_callers_epochs_equal_those_read_from_the_images(tmp_path):
    """A step that holds its field's epochs passes them instead of the images being read
    again: the light curves (order, MJD, fluxes, images) are the same either way."""
    import numpy as np

    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.schema import images, measurements, sources

    mjd = {1: 60003.0, 2: 60001.0, 3: None, 4: 60002.0}     # image id -> epoch, out of order
    db = open_products_db(tmp_path / "products.sqlite3")
    with db.engine.begin() as conn:
        conn.execute(images.insert(), [
            {"id": i, "path": f"/img/{i}.fits", "content_id": str(i), "kind": "image", "mjd": t,
             "method": "forced", "catalog": "nvss", "qc_status": "passed", "measured_at": 0.0}
            for i, t in mjd.items()])
        conn.execute(sources.insert(), [
            {"id": s, "survey": "nvss", "catalog_id": f"S{s}", "ra_deg": 10.0, "dec_deg": 30.0,
             "reference_ok": False} for s in (7, 9)])
        conn.execute(measurements.insert(), [
            {"image_id": i, "source_id": s, "ra_deg": 10.0, "dec_deg": 30.0,
             "peak_jyb": 0.01 * i + s, "peak_err_jyb": 1e-3, "flags": 0, "success": True}
            for i in mjd for s in (7, 9) if (i, s) != (4, 9)])
    ids = [4, 1, 3, 2]
    with db.engine.connect() as conn:
        read = lc_store.load_lightcurves(conn, [9, 7], ids, normalized=False)
        given = lc_store.load_lightcurves(conn, [9, 7], ids, normalized=False,
                                          epochs=[np.nan if mjd[i] is None else mjd[i] for i in ids])
    for a, b in zip(read, given):
        np.testing.assert_array_equal(a, b)
    assert read[0][1, :3].tolist() == [7.02, 7.04, 7.01]          # source 7 by MJD
    db.dispose()
