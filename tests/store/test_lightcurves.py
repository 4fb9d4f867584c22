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


@pytest.mark.parametrize("backend", BACKENDS)
def test_source_lightcurve_is_every_epoch_of_the_source_in_time_order(databases, backend):
    """One source's light curve: its measurements on the images within reach (not the
    duplicates, not the images too far away), by MJD (undated last, then by image), each
    with its image's QC, normalisation, the operator's exclusion reason, and whether the
    source's ratio entered that image's correction (the image's ``norm_used_ids``)."""
    import json

    import numpy as np

    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.schema import images, measurements, sources

    # (id, ra, mjd, qc, excluded reason, duplicate_of, norm_used_ids)
    rows = [(1, 10.1, 60003.0, "passed", None, None, [17, 3]),
            (2, 10.0, 60001.0, "failed", None, None, [173]),
            (3, 10.2, None, "passed", None, None, None),
            (4, 9.9, 60002.0, "passed", "bad calibration", None, [2, 17]),
            (5, 10.1, 60003.0, "passed", None, None, []),
            (6, 10.1, 60004.0, "passed", None, 1, [17]),          # a duplicate
            (7, 14.0, 60005.0, "passed", None, None, [17])]       # beyond reach
    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        conn.execute(images.insert(), [
            {"id": i, "path": f"/img/{i}.fits", "content_id": str(i), "kind": "image", "mjd": t,
             "ra_center_deg": ra, "dec_center_deg": 30.0, "radius_deg": 1.5, "method": "forced",
             "catalog": "nvss", "qc_status": qc, "excluded": why is not None,
             "excluded_reason": why, "duplicate_of": dup, "measured_at": 0.0,
             "norm_status": "ok" if used is not None else "not_requested",
             "norm_used_ids": None if used is None else json.dumps(used)}
            for i, ra, t, qc, why, dup, used in rows])
        conn.execute(sources.insert(), [
            {"id": s, "survey": "nvss", "catalog_id": f"S{s}", "ra_deg": 10.0, "dec_deg": 30.0,
             "reference_ok": True} for s in (17, 18)])
        conn.execute(measurements.insert(), [
            {"image_id": i, "source_id": s, "ra_deg": 10.0, "dec_deg": 30.0,
             "peak_jyb": 0.01 * i + s, "peak_err_jyb": 0.0 if i == 5 else 1e-3,
             "norm_flux_jyb": None if i == 3 else 0.02 * i, "flags": i, "success": i != 2}
            for i, *_ in rows for s in (17, 18)])
    with db.engine.connect() as conn:
        src = lc_store.find_source(conn, "17")
        lc = lc_store.source_lightcurve(conn, src)
        empty = lc_store.source_lightcurve(conn, dict(src, id=99))
        with_radius = lc_store.source_lightcurve(conn, src, image_columns=("radius_deg", "mjd"))
    db.dispose()
    assert lc["image_id"].tolist() == [2, 4, 1, 5, 3]
    assert lc["mjd"][:4].tolist() == [60001.0, 60002.0, 60003.0, 60003.0]
    assert np.isnan(lc["mjd"][4])
    np.testing.assert_allclose(lc["peak_jyb"], [17.02, 17.04, 17.01, 17.05, 17.03])
    np.testing.assert_allclose(lc["snr"][:3], [17020.0, 17040.0, 17010.0])
    assert np.isnan(lc["snr"][3]) and np.isnan(lc["norm_flux_jyb"][4])
    assert lc["success"].tolist() == [False, True, True, True, True]
    assert lc["flags"].dtype == np.int64 and lc["flags"].tolist() == [2, 4, 1, 5, 3]
    assert lc["qc_status"].tolist() == ["failed", "passed", "passed", "passed", "passed"]
    assert lc["image_path"].tolist() == [f"/img/{i}.fits" for i in (2, 4, 1, 5, 3)]
    assert lc["norm_status"].tolist() == ["ok", "ok", "ok", "ok", "not_requested"]
    assert lc["used_as_reference"].tolist() == [False, True, True, False, False]
    assert lc["excluded_reason"].tolist() == [None, "bad calibration", None, None, None]
    assert list(lc) == ["mjd", "peak_jyb", "peak_err_jyb", "norm_flux_jyb", "norm_err_jyb",
                        "local_rms_jyb", "snr", "flags", "success", "image_id", "image_path",
                        "qc_status", "norm_status", "used_as_reference", "excluded_reason"]
    assert all(v.size == 0 for v in empty.values()) and list(empty) == list(lc)
    assert with_radius["radius_deg"].tolist() == [1.5] * 5          # each epoch's image's
    assert list(with_radius)[:-1] == list(lc)


def test_qc_history_is_the_latest_good_images_and_the_window_splits_the_field(databases, backend):
    """QC history: the ``limit`` most recent images before the epoch that passed QC or warned
    (newest first; failed, excluded, duplicate and far images never), whatever the number
    of rows behind them. ``images_near(since_mjd)`` and ``images_near(before_mjd)`` split
    the field in two without overlap, images without an epoch in the second."""
    import json

    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.schema import images

    rows = []
    for i in range(1, 101):
        rows.append({"id": i, "path": f"/img/{i}.fits", "content_id": str(i), "kind": "image",
                     "mjd": None if i == 50 else 60000.0 + i, "ra_center_deg": 150.0,
                     "dec_center_deg": 37.0 if i != 97 else 39.0, "radius_deg": 0.2,
                     "method": "forced", "catalog": "nvss",
                     "qc_status": {98: "failed", 96: "warning"}.get(i, "passed"),
                     "excluded": i == 95, "duplicate_of": 1 if i == 94 else None,
                     "qc_metrics": json.dumps({"i": i}), "measured_at": 0.0})
    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        conn.execute(images.insert(), rows)
    with db.engine.connect() as conn:
        got = lc_store.qc_history(conn, 150.0, 37.0, 0.5, before_mjd=60100.0, exclude_path="x",
                                  limit=5)
        assert [m["i"] for m in got] == [99, 96, 93, 92, 91]
        got = lc_store.qc_history(conn, 150.0, 37.0, 0.5, before_mjd=60100.0, exclude_path="x",
                                  limit=5, since_mjd=60092.0)
        assert [m["i"] for m in got] == [99, 96, 93, 92]
        assert lc_store.qc_history(conn, 150.0, 37.0, 0.5, before_mjd=None,
                                   exclude_path="/img/100.fits", limit=1) == [{"i": 99}]
        recent = lc_store.images_near(conn, 150.0, 37.0, 0.5, since_mjd=60090.0)["id"].tolist()
        older = lc_store.images_near(conn, 150.0, 37.0, 0.5, before_mjd=60090.0)["id"].tolist()
        assert recent == [90, 91, 92, 93, 96, 99, 100]
        assert 50 in older and max(older) == 89 and not set(recent) & set(older)
    db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_image_records_the_range_of_its_sources_and_a_light_curve_reads_those_holding_it(
        databases, backend):
    """Every writer of an image's measurement rows keeps its recorded source-id range holding
    them: a new image (its sources'), a source measured later on an earlier image (widened),
    an image measured again (its new sources'); a range not known (NULL, rows written by
    another writer) stays unknown. One source's light curve reads only the images whose
    range holds it, or is unknown, and is every measurement of it all the same."""
    import numpy as np
    import sqlalchemy as sa

    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.products import (
        insert_measurements, replace_source_measurements, store_image_measurements,
        store_image_row, upsert_sources)
    from dsa110_contimg.store.schema import images, measurements

    def row(i):
        return {"path": f"/img/{i}.fits", "content_id": f"c{i}", "kind": "image",
                "mjd": 60000.0 + i, "ra_center_deg": 150.0, "dec_center_deg": 37.0,
                "radius_deg": 1.0, "method": "forced", "catalog": "nvss", "qc_status": "passed"}

    def cols(n, i):
        return {"ra_deg": np.full(n, 150.0), "dec_deg": np.full(n, 37.0), "x_pix": np.zeros(n),
                "y_pix": np.zeros(n), "peak_jyb": np.full(n, 0.01 * i),
                "peak_err_jyb": np.full(n, 1e-3), "local_rms_jyb": np.full(n, 1e-3),
                "chi2": np.ones(n), "dof": np.ones(n, int), "cluster_id": np.arange(n),
                "flags": np.zeros(n, int), "success": np.ones(n, bool)}

    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        sid = upsert_sources(conn, "nvss", [f"S{k}" for k in range(5)], np.full(5, 150.0),
                             np.full(5, 37.0))
        field, late = sid[:4], sid[4]                        # the late source: the largest id
        ids = [store_image_measurements(conn, row(i), field, cols(4, i)) for i in range(4)]
        # the late source measured later on image 1 (as the backfill does), then on new images
        replace_source_measurements(conn, ids[1], [late], cols(1, 1), [0.01], [1e-3])
        ids += [store_image_measurements(conn, row(i), sid, cols(5, i)) for i in (4, 5)]
        # image 2 measured again with the late source; image 3's row written without its
        # sources (range unknown), then its rows and the late source's
        store_image_measurements(conn, row(2), sid[::-1], cols(5, 2))
        store_image_row(conn, row(3), 5)
        insert_measurements(conn, ids[3], sid, cols(5, 3))
        ids += [store_image_measurements(conn, row(6), field, cols(4, 6))]
        # a writer of its own (SQL): image 7 without a recorded range
        conn.execute(images.insert().values(id=100, **dict(row(7), measured_at=0.0)))
        conn.execute(measurements.insert(), [dict(image_id=100, source_id=int(late),
                                                  ra_deg=150.0, dec_deg=37.0, success=True,
                                                  peak_jyb=0.07, flags=0)])
        ranges = dict((r[0], (r[1], r[2])) for r in conn.execute(sa.select(
            images.c.id, images.c.source_id_min, images.c.source_id_max)))
        truth = dict((r[0], (r[1], r[2])) for r in conn.execute(sa.select(
            measurements.c.image_id, sa.func.min(measurements.c.source_id),
            sa.func.max(measurements.c.source_id)).group_by(measurements.c.image_id)))
        read = sorted(conn.execute(sa.select(images.c.id).where(
            lc_store.holds_source(late))).scalars())
        near = lc_store.images_near(conn, 150.0, 37.0, 0.5, holding=int(late))["id"].tolist()
        lc = lc_store.source_lightcurve(conn, lc_store.find_source(conn, str(late)))
        first = lc_store.source_lightcurve(conn, lc_store.find_source(conn, str(field[0])))
    db.dispose()
    lo, hi = int(field.min()), int(late)
    assert ranges[ids[0]] == truth[ids[0]] == (lo, int(field.max()))
    for i in (1, 2, 4, 5):
        assert ranges[ids[i]] == truth[ids[i]] == (lo, hi), i
    assert ranges[ids[3]] == (None, None) and ranges[100] == (None, None)
    assert ranges[ids[6]][1] < late
    assert read == near == sorted([ids[1], ids[2], ids[3], ids[4], ids[5], 100])
    assert lc["image_id"].tolist() == [ids[1], ids[2], ids[3], ids[4], ids[5], 100]
    np.testing.assert_allclose(lc["peak_jyb"], [0.01, 0.02, 0.03, 0.04, 0.05, 0.07])
    assert first["image_id"].tolist() == ids[:7]
