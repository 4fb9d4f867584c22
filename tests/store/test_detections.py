"""Blind-detection tables: own sources in a cone with weighted positions, detections replaced
per image, image depths (deepest earlier first), new sources recorded once, counts."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from dsa110_contimg.store import detections as ds
from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.schema import detections, new_sources, sources

from pgcluster import BACKENDS

both = pytest.mark.parametrize("backend", BACKENDS)


def _image(conn, path, mjd):
    return ps.store_image_measurements(conn, {
        "path": path, "content_id": "x", "kind": "image", "method": "forced", "catalog": "nvss",
        "mjd": mjd, "ra_center_deg": 150.0, "dec_center_deg": 37.0, "radius_deg": 1.0},
        np.zeros(0, np.int64), {k: np.zeros(0) for k in ps.MEASUREMENT_COLUMNS})


def _own_source(conn, name, ra, dec, kind):
    conn.execute(sources.insert().values(survey="dsa110", catalog_id=name, ra_deg=ra, dec_deg=dec,
                                         reference_ok=False, kind=kind))
    return conn.execute(sa.select(sources.c.id).where(sources.c.catalog_id == name)).scalar_one()


def _detection_columns(source_ids, status):
    n = len(source_ids)
    cols = {c: [None] * n for c in ds.DETECTION_COLUMNS}
    cols.update(source_id=list(source_ids), ra_deg=[150.0] * n, dec_deg=[37.0] * n,
                flags=[0] * n, status=[status] * n, n_candidates=[1] * n, peak_jyb=[0.01] * n)
    return cols


@both
def test_own_sources_near_use_the_weighted_position_and_the_cone(databases):
    db = open_products_db(databases.new())
    with db.engine.begin() as conn:
        a = _own_source(conn, "DSA110 J1", 150.0, 37.0, "new")
        b = _own_source(conn, "DSA110 J2", 150.5, 37.0, "blind")
        _own_source(conn, "DSA110 J3", 152.0, 37.0, "monitor")          # outside the cone
        conn.execute(sources.insert().values(survey="nvss", catalog_id="NVSS J1", ra_deg=150.0,
                                             dec_deg=37.0, reference_ok=False))
        ds.save_detection_positions(conn, [(a, 150.001, 37.001, 4.0, 5.0, 2, 60000.0, 60001.0)])
    with db.engine.connect() as conn:
        near = ds.own_sources_near(conn, 150.0, 37.0, 0.5)
    assert sorted(near["id"].tolist()) == sorted([a, b])
    i = near["id"].tolist().index(a)
    assert near["ra_deg"][i] == 150.001 and near["w_ra"][i] == 4.0 and near["n_detections"][i] == 2
    j = near["id"].tolist().index(b)
    assert near["ra_deg"][j] == 150.5 and near["w_ra"][j] == 0.0
    with db.engine.begin() as conn:         # upsert replaces
        ds.save_detection_positions(conn, [(a, 150.002, 37.0, 8.0, 9.0, 3, 60000.0, 60002.0)])
        assert ds.detection_positions(conn, [a])[a][:5] == (150.002, 37.0, 8.0, 9.0, 3)
        # as arrays in the asked order (repeats allowed); a source never detected: NaN, 0
        arr = ds.detection_position_arrays(conn, [b, a, a])
    assert arr["found"].tolist() == [False, True, True]
    assert arr["ra"][1:].tolist() == [150.002] * 2 and np.isnan(arr["ra"][0])
    assert arr["w_dec"].tolist() == [0.0, 9.0, 9.0] and arr["n"].tolist() == [0, 3, 3]
    assert arr["first_mjd"][1] == 60000.0 and np.isnan(arr["first_mjd"][0])
    with db.engine.begin() as conn:         # many rows (multi-row upserts), then a repeated id
        many = [_own_source(conn, f"DSA110 M{k}", 150.0, 37.0, "blind") for k in range(40)]
        for n in (1, 2):
            ds.save_detection_positions(conn, [(s, 150.0, 37.0 + k, 1.0, 1.0, n, 1.0, 2.0)
                                               for k, s in enumerate(many)])
        ds.save_detection_positions(conn, [(many[0], 151.0, 37.0, 1.0, 1.0, 3, 1.0, 3.0),
                                           (many[0], 152.0, 37.0, 1.0, 1.0, 4, 1.0, 4.0)])
        arr = ds.detection_position_arrays(conn, many)
    assert arr["dec"][1:].tolist() == [37.0 + k for k in range(1, 40)]
    assert arr["n"][1:].tolist() == [2] * 39 and arr["n"][0] == 4 and arr["ra"][0] == 152.0
    with db.engine.begin() as conn:         # catalogue names -> ids and positions, one query
        nv = conn.execute(sa.select(sources.c.id).where(sources.c.catalog_id == "NVSS J1")
                          ).scalar_one()
        before = ds.catalogue_source_positions(conn, "nvss", ["missing", "NVSS J1"])
        ds.save_detection_positions(conn, [(nv, 150.01, 37.02, 3.0, 4.0, 1, 60000.0, 60000.0)])
        after = ds.catalogue_source_positions(conn, "nvss", ["NVSS J1", "missing", "NVSS J1"])
    assert before["id"].tolist() == [-1, nv] and not before["found"].any()
    assert after["id"].tolist() == [nv, -1, nv] and after["found"].tolist() == [True, False, True]
    assert after["dec"][0] == 37.02 and after["w_dec"][2] == 4.0 and after["n"][0] == 1
    assert np.isnan(after["ra"][1])


@both
def test_detections_are_replaced_per_image_and_depths_ordered(databases):
    db = open_products_db(databases.new())
    with db.engine.begin() as conn:
        ids = [_image(conn, f"/d/{i}.fits", 60000.0 + i) for i in range(4)]
        src = _own_source(conn, "DSA110 J1", 150.0, 37.0, "new")
        for i, rms in zip(ids, (3e-3, 1e-3, 2e-3, 0.5e-3)):
            ds.store_image_depth(conn, i, b"fp%d" % i, rms, 2 * rms, 1)
        ds.store_image_depth(conn, ids[0], b"again", 3e-3, 6e-3, 5)       # upsert
        ds.replace_detections(conn, ids[3], _detection_columns([src, src], "associated"))
        # many rows (multi-row statements and the remainder), in order
        many = _detection_columns([src] * 70, "associated")
        many["peak_jyb"] = [0.001 * k for k in range(70)]
        ds.replace_detections(conn, ids[2], many)
        got = ds.image_detections(conn, ids[2])
        assert len(got) == 70 and sorted(r["peak_jyb"] for r in got) == many["peak_jyb"]
        assert [r["peak_jyb"] for r in sorted(got, key=lambda r: r["id"])] == many["peak_jyb"]
        ds.replace_detections(conn, ids[2], _detection_columns([], "associated"))
        ds.replace_detections(conn, ids[3], _detection_columns([src], "new_source"))
        rows = ds.earlier_depths(conn, ids, before_mjd=60003.0, limit=2)
        assert [r["image_id"] for r in rows] == [ids[1], ids[2]]      # deepest first, earlier only
        assert rows[0]["footprint"] == b"fp%d" % ids[1]
        assert conn.execute(sa.select(sa.func.count()).select_from(detections)).scalar() == 1
        assert ds.image_detections(conn, ids[3])[0]["source_name"] == "DSA110 J1"
        got = ds.source_detections_in(conn, src, ids)
        assert [r["status"] for r in got] == ["new_source"]
        ds.record_new_sources(conn, [{"source_id": src, "image_id": ids[3], "mjd": 60003.0,
                                      "peak_jyb": 0.05, "new_high_sigma": 50.0,
                                      "sigma_image_id": ids[1], "likely_transient": True,
                                      "n_earlier_images": 3}])
        ds.record_new_sources(conn, [{"source_id": src, "image_id": ids[3], "mjd": 60003.0,
                                      "peak_jyb": 0.05, "new_high_sigma": 9.0,
                                      "likely_transient": False, "n_earlier_images": 3}])
        assert conn.execute(sa.select(new_sources.c.new_high_sigma)).scalar_one() == 50.0
        counts = ds.detection_counts(conn)
    assert counts == {"detections": 8, "new_sources": 1, "blind_sources": 0, "monitor_sources": 0}


def test_unknown_source_kind_is_refused(tmp_path):
    db = open_products_db(tmp_path / "p.sqlite3")
    with pytest.raises(sa.exc.IntegrityError):
        with db.engine.begin() as conn:
            _own_source(conn, "X", 1.0, 1.0, "transient")


@both
def test_detections_fold_into_weighted_positions_in_one_statement(databases):
    """The set-based fold equals the running mean of science/associate.py, in detection
    order, for a source detected twice in one image too, across RA 0/360."""
    from dsa110_contimg.science.associate import update_weighted_positions

    db = open_products_db(databases.new())
    rng = np.random.default_rng(3)
    with db.engine.begin() as conn:
        src = [_own_source(conn, f"DSA110 W{k}", 359.9999, 10.0, "blind") for k in range(3)]
        expect = {s: (np.array([np.nan]), np.array([np.nan]), np.zeros(1), np.zeros(1))
                  for s in src}
        for epoch, feeding in enumerate(([src[0], src[1]], [src[0], src[2], src[0]],
                                         [src[1], None])):
            image = _image(conn, f"/d/w{epoch}.fits", 60000.0 + epoch)
            n = len(feeding)
            ra = (359.9999 + rng.normal(0, 2e-4, n)) % 360.0
            dec = 10.0 + rng.normal(0, 2e-4, n)
            err = rng.uniform(0.5, 3.0, (2, n))
            cols = _detection_columns(feeding, "associated")
            cols.update(ra_deg=ra.tolist(), dec_deg=dec.tolist(), ra_err_arcsec=err[0].tolist(),
                        dec_err_arcsec=err[1].tolist(), mjd=[60000.0 + epoch] * n)
            ds.replace_detections(conn, image, cols)
            fed = [s for s in feeding if s is not None]
            repeats = None if epoch == 0 else len(set(fed)) < len(fed)   # counted, or told
            assert ds.accumulate_detection_positions(conn, image, 1.0, repeats=repeats) == len(fed)
            for k, s in enumerate(feeding):
                if s is not None:
                    expect[s] = update_weighted_positions(*expect[s], ra[k:k + 1],
                                                          dec[k:k + 1], err[0, k], err[1, k])
        arr = ds.detection_position_arrays(conn, src)
    for k, s in enumerate(src):
        ra, dec, w_ra, w_dec = (float(v[0]) for v in expect[s])
        assert arr["ra"][k] == pytest.approx(ra, abs=1e-12)
        assert arr["dec"][k] == pytest.approx(dec, abs=1e-12)
        assert arr["w_ra"][k] == pytest.approx(w_ra) and arr["w_dec"][k] == pytest.approx(w_dec)
    assert arr["n"].tolist() == [3, 2, 1]
    assert arr["first_mjd"].tolist() == [60000.0, 60000.0, 60001.0]
    assert all(0.0 <= r < 360.0 for r in arr["ra"])
