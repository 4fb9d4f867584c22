"""The driver-level bulk statements of the per-image hot paths (store/bulk.py) on both
back-ends."""

from __future__ import annotations

import numpy as np
import pytest
from pgcluster import BACKENDS

from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.schema import METRIC_COLUMNS, RUNNING_SUM_COLUMNS

both = pytest.mark.parametrize("backend", BACKENDS)


def _sources(conn, n, start=0):
    ids = [f"NVSS J{i:06d}" for i in range(start, start + n)]
    return ps.upsert_sources(conn, "nvss", ids, np.linspace(10, 11, n), np.full(n, 30.0),
                             np.full(n, 5.0), np.arange(n) % 2 == 0)


def _measurement_columns(n):
    """Stored columns of ``n`` measurement rows; every fifth one failed."""
    cols = {k: np.linspace(1, 2, n) for k in ps.MEASUREMENT_COLUMNS}
    cols.update(dof=np.full(n, 10), cluster_id=np.full(n, -1), flags=np.zeros(n, np.int64),
                success=np.arange(n) % 5 != 0)
    return cols


@both
def test_sources_are_inserted_once_and_ids_come_back_in_input_order(databases):
    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        first = _sources(conn, 1500)                       # more than one IN chunk
    assert np.unique(first).size == 1500
    with db.engine.begin() as conn:
        known = ps.existing_source_ids(conn, "nvss", [f"NVSS J{i:06d}" for i in range(1000)])
        again = _sources(conn, 2000)                       # 1,500 known + 500 new
        assert conn.exec_driver_sql("select count(*) from sources").scalar() == 2000
        rev = ps.upsert_sources(conn, "nvss", [f"NVSS J{i:06d}" for i in range(1999, -1, -1)],
                                np.zeros(2000), np.zeros(2000), known=known)
    assert len(known) == 1000
    np.testing.assert_array_equal(again[:1500], first)
    np.testing.assert_array_equal(rev, again[::-1])
    with db.engine.connect() as conn:
        ok = dict(conn.exec_driver_sql("select catalog_id, reference_ok from sources").all())
    assert bool(ok["NVSS J000002"]) is True and bool(ok["NVSS J000003"]) is False
    db.dispose()


@both
def test_measurements_and_normalised_fluxes_round_trip_with_nulls(databases):
    db = open_products_db(databases.new("products"))
    n = 1200
    with db.engine.begin() as conn:
        sid = _sources(conn, n)
        cols = _measurement_columns(n)
        cols["peak_jyb"] = np.where(np.arange(n) % 7 == 0, np.nan, np.linspace(0.1, 0.2, n))
        image_id = ps.store_image_measurements(conn, {
            "path": "/x.fits", "content_id": "1:2:ab", "kind": "image", "method": "forced",
            "catalog": "nvss", "mjd": np.float64(60000.5)}, sid, cols)
        norm = np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 1.0)
        lc_store.set_normalisation(conn, image_id, status="ok", factor=1.0, norm_flux=norm,
                                   norm_err=norm / 10, source_ids=sid)
    with db.engine.connect() as conn:
        ids, _f, _e, ref = lc_store.image_fluxes(conn, image_id, sid[:20])
        flux, _err = lc_store.load_image_fluxes(conn, image_id, sid[:20])
        fl, _er, mjd, img = lc_store.load_lightcurves(conn, sid, [image_id], normalized=True)
        raw, _, _, _ = lc_store.load_lightcurves(conn, sid[::-1], [image_id], normalized=False)
    np.testing.assert_array_equal(np.sort(ids), np.sort(sid))
    np.testing.assert_array_equal(ref, flux)               # one read gives what two did
    assert np.isnan(flux[0]) and np.isnan(flux[5]) and flux[1] == pytest.approx(cols["peak_jyb"][1])
    ok = cols["success"]
    np.testing.assert_array_equal(np.isfinite(fl[:, 0]), ok & np.isfinite(norm))
    np.testing.assert_allclose(fl[ok, 0], norm[ok])
    assert np.all(mjd[ok, 0] == 60000.5) and np.all(img[ok, 0] == image_id)
    np.testing.assert_array_equal(np.isnan(raw[::-1, 0]), ~ok | np.isnan(cols["peak_jyb"]))
    db.dispose()


@both
def test_running_stats_round_trip_and_signature_changes_on_rewrite(databases):
    db = open_products_db(databases.new("products"))
    n = 1000
    with db.engine.begin() as conn:
        sid = _sources(conn, n)
        stats = {c: np.arange(n, dtype=float) for c in RUNNING_SUM_COLUMNS}
        stats["min_flux"][::4] = np.nan
        stats["n"] = np.arange(n) % 9
        mets = {c: np.full(n, 0.5) for c in METRIC_COLUMNS}
        lc_store.save_running_stats(conn, sid[::2], {k: v[::2] for k, v in stats.items()},
                                    {k: v[::2] for k, v in mets.items()}, "normalized")
    with db.engine.connect() as conn:
        got, present, kind = lc_store.load_running_stats(conn, sid)
        sig1 = lc_store.running_stats_signature(conn, sid)
        assert lc_store.running_stats_signature(conn, sid) == sig1
    np.testing.assert_array_equal(present, np.arange(n) % 2 == 0)
    assert set(kind[present]) == {"normalized"} and set(kind[~present]) == {None}
    np.testing.assert_array_equal(got["n"][present], stats["n"][::2])
    np.testing.assert_array_equal(got["n"][~present], 0)
    np.testing.assert_array_equal(got["sum_w"][~present], 0.0)          # zero sums when absent
    assert np.isnan(got["min_flux"][~present]).all()
    np.testing.assert_array_equal(np.isnan(got["min_flux"][present]), np.isnan(stats["min_flux"][::2]))
    with db.engine.begin() as conn:     # another image rewrites one source's row
        lc_store.save_running_stats(conn, sid[2:3], {k: v[2:3] for k, v in stats.items()},
                                    {k: v[2:3] for k, v in mets.items()}, "normalized")
    with db.engine.connect() as conn:
        assert lc_store.running_stats_signature(conn, sid) != sig1
    db.dispose()


@both
def test_running_stats_of_stored_rows_updated_and_new_ones_inserted_as_an_upsert_would(databases):
    """With ``present`` (read in the same transaction) stored rows are updated by key and
    the others inserted; the rows read back are those the upsert writes."""
    n = 300
    rng = np.random.default_rng(8)
    first = {c: rng.normal(size=n) for c in RUNNING_SUM_COLUMNS}
    first["n"] = rng.integers(1, 9, n)
    second = {c: rng.normal(size=n) for c in RUNNING_SUM_COLUMNS}
    second["min_flux"][::5] = np.nan
    second["n"] = rng.integers(1, 9, n)
    mets = {c: rng.normal(size=n) for c in METRIC_COLUMNS}
    got = []
    for use_present in (False, True):
        db = open_products_db(databases.new("products"))
        with db.engine.begin() as conn:
            sid = _sources(conn, n)
            half = {k: v[::2] for k, v in first.items()}
            lc_store.save_running_stats(conn, sid[::2], half, {k: v[::2] for k, v in mets.items()},
                                        "raw")
        with db.engine.begin() as conn:
            _, present, _ = lc_store.load_running_stats(conn, sid)
            lc_store.save_running_stats(conn, sid, second, mets, "normalized",
                                        present=present if use_present else None)
        with db.engine.connect() as conn:
            got.append(lc_store.load_running_stats(conn, sid))
            names = ", ".join(METRIC_COLUMNS)
            got[-1] += (conn.exec_driver_sql(f"select {names} from variability_stats "
                                             "order by source_id").all(),)
        db.dispose()
    (a, pa, ka, ma), (b, pb, kb, mb) = got
    assert pa.all() and pb.all() and set(ka) == set(kb) == {"normalized"} and ma == mb
    for c in a:
        np.testing.assert_array_equal(a[c], b[c], err_msg=c)
    np.testing.assert_array_equal(b["n"], second["n"])


@both
def test_running_stats_read_back_in_their_stored_form(databases):
    # the one rule of how running statistics come back from the store (NULL for non-finite;
    # NaN, or 0 for the running sums), which lets the ESE step use what was just written
    db = open_products_db(databases.new("products"))
    rng = np.random.default_rng(4)
    n = 40
    stats = {c: rng.normal(size=n) for c in RUNNING_SUM_COLUMNS}
    for c in RUNNING_SUM_COLUMNS:
        stats[c][rng.random(n) < 0.2] = rng.choice([np.nan, np.inf, -np.inf])
    stats["n"] = rng.integers(0, 50, n)
    with db.engine.begin() as conn:
        sid = _sources(conn, n)
        lc_store.save_running_stats(conn, sid, stats, {c: np.ones(n) for c in METRIC_COLUMNS},
                                    "normalized")
    with db.engine.connect() as conn:
        got, present, _ = lc_store.load_running_stats(conn, sid)
    assert present.all()
    want = lc_store.as_stored(stats)
    assert set(want) == set(got)
    for c in want:
        np.testing.assert_array_equal(got[c], want[c], err_msg=c)
    db.dispose()


@both
def test_measurements_inserted_with_their_normalised_fluxes_read_back_as_normalised(databases):
    """An image's rows written once with their normalised flux and error (NaN -> NULL)."""
    db = open_products_db(databases.new("products"))
    n = 1000
    with db.engine.begin() as conn:
        sid = _sources(conn, n)
        cols = _measurement_columns(n)
        image_id = ps.store_image_row(conn, {"path": "/y.fits", "content_id": "1:2:cd",
                                             "kind": "image", "method": "forced",
                                             "catalog": "nvss", "mjd": 60001.0}, n)
        norm = np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 1.0)
        ps.insert_measurements(conn, image_id, sid, cols, norm_flux=norm, norm_err=norm / 10)
    with db.engine.connect() as conn:
        fl, er, _, _ = lc_store.load_lightcurves(conn, sid, [image_id], normalized=True)
        n_rows = conn.exec_driver_sql("select n_sources from images").scalar()
    ok = cols["success"]
    assert n_rows == n
    np.testing.assert_array_equal(np.isfinite(fl[:, 0]), ok & np.isfinite(norm))
    np.testing.assert_allclose(fl[ok, 0], norm[ok])
    np.testing.assert_allclose(er[ok, 0], norm[ok] / 10)
    db.dispose()


@both
def test_a_driver_level_read_binds_positional_parameters_and_names_its_columns(databases):
    from dsa110_contimg.store import bulk

    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        ids = _sources(conn, 5)
    with db.engine.connect() as conn:
        got = bulk.rows(conn, "SELECT id, catalog_id FROM sources WHERE survey = ? AND id IN "
                              "(?, ?) ORDER BY id DESC", ("nvss", int(ids[1]), int(ids[3])))
    assert [(r.id, r.catalog_id) for r in got] == [(ids[3], "NVSS J000003"),
                                                   (ids[1], "NVSS J000001")]
    db.dispose()
