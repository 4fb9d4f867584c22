"""The process's cache of measurement rows (store/row_cache.py): after every kind of write that
changes an image's rows, a cached read gives exactly what an uncached read gives."""

from __future__ import annotations

import numpy as np
import pytest

from pgcluster import BACKENDS


N_SRC = 6


def _image_row(i: int) -> dict:
    return {"path": f"/img/{i}.fits", "content_id": f"c{i}", "kind": "image", "mjd": 60000.0 + i,
            "ra_center_deg": 150.0, "dec_center_deg": 37.0, "radius_deg": 1.0,
            "method": "forced", "catalog": "nvss", "qc_status": "passed"}


def _columns(sid, peak, success=None) -> dict:
    n = len(sid)
    return {"ra_deg": np.full(n, 150.0), "dec_deg": np.full(n, 37.0), "x_pix": np.zeros(n),
            "y_pix": np.zeros(n), "peak_jyb": np.asarray(peak, float),
            "peak_err_jyb": np.full(n, 1e-3), "local_rms_jyb": np.full(n, 1e-3),
            "chi2": np.ones(n), "dof": np.ones(n, int), "cluster_id": np.arange(n),
            "flags": np.zeros(n, int),
            "success": np.ones(n, bool) if success is None else np.asarray(success, bool)}


def _measure(conn, i: int, sid, scale: float = 1.0, success=None) -> int:
    from dsa110_contimg.store.products import store_image_measurements

    return store_image_measurements(conn, _image_row(i), sid,
                                    _columns(sid, scale * (0.01 + 1e-3 * np.arange(len(sid))),
                                             success))


def _normalise(conn, image_id: int, sid, factor: float) -> None:
    from dsa110_contimg.store import lightcurves as lc_store

    flux = 0.01 + 1e-3 * np.arange(len(sid))
    lc_store.set_normalisation(conn, image_id, status="ok", factor=factor, factor_err=0.01,
                               norm_flux=flux / factor, norm_err=np.full(len(sid), 1e-3),
                               source_ids=sid)


def _both(db, sid, img):
    """(cached, uncached) light curves of ``sid`` over ``img``, normalised and raw."""
    from dsa110_contimg.store import lightcurves as lc_store

    with db.engine.connect() as conn:
        out = []
        for normalized in (True, False):
            a = lc_store.load_lightcurves(conn, sid, img, normalized=normalized, cached=True)
            b = lc_store.load_lightcurves(conn, sid, img, normalized=normalized)
            out.append((a, b))
    return out


def _same(db, sid, img) -> None:
    for a, b in _both(db, sid, img):
        assert len(a) == len(b) == 4
        for x, y in zip(a, b):
            assert x.shape == y.shape
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_reads_equal_uncached_after_every_kind_of_write(databases, backend):
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.products import replace_source_measurements, store_duplicate
    from dsa110_contimg.store.row_cache import CACHE, bump_rows_version

    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        sid = lc_store_sources(conn)
        ids = [_measure(conn, i, sid, success=[True] * (N_SRC - 1) + [i != 2]) for i in range(4)]
        for i in ids:
            _normalise(conn, i, sid, 1.0)
    few, img = sid[:3], ids
    _same(db, few, img)                                   # first read fills the cache
    before = CACHE.read_rows
    _same(db, few, img)                                   # served from the cache
    assert CACHE.read_rows == before
    _same(db, sid, img)                                   # more sources: only those are read
    assert CACHE.read_rows - before == (N_SRC - 3) * len(img) - 1 + (N_SRC - 3) * len(img) - 1
    with db.engine.begin() as conn:                       # a new epoch
        img = img + [_measure(conn, 9, sid)]
    _same(db, sid, img)
    with db.engine.begin() as conn:                       # earlier epochs normalised again
        _normalise(conn, ids[0], sid, 1.25)
        lc_store.set_normalisation(conn, ids[1], status="failed", reason="refs disagree")
    _same(db, sid, img)
    with db.engine.begin() as conn:                       # some sources replaced on an epoch
        replace_source_measurements(conn, ids[2], sid[:2], _columns(sid[:2], [0.5, 0.6]),
                                    [0.51, 0.61], [1e-3, 1e-3])
    _same(db, sid, img)
    with db.engine.begin() as conn:                       # an epoch measured again
        _measure(conn, 3, sid, scale=2.0)
    _same(db, sid, img)
    with db.engine.begin() as conn:                       # its file now holds another's data
        store_duplicate(conn, _image_row(9), ids[0])
    _same(db, sid, img)
    with db.engine.begin() as conn:                       # a writer outside the store's own
        conn.exec_driver_sql(f"UPDATE measurements SET norm_flux_jyb = 7.0 "
                             f"WHERE image_id = {ids[1]}")
        bump_rows_version(conn, [ids[1]])
    _same(db, sid, img)


def lc_store_sources(conn) -> np.ndarray:
    from dsa110_contimg.store.products import upsert_sources

    return upsert_sources(conn, "nvss", [f"S{k}" for k in range(N_SRC)],
                          np.full(N_SRC, 150.0), np.full(N_SRC, 37.0) + 1e-3 * np.arange(N_SRC))


def test_the_cache_holds_a_bounded_number_of_rows(tmp_path):
    """The least recently used images are dropped past ``max_rows``; reads stay exact."""
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.row_cache import ENTRY_ROWS, RowCache

    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        sid = lc_store_sources(conn)
        ids = [_measure(conn, i, sid) for i in range(5)]
    cache = RowCache(max_rows=2 * (N_SRC + ENTRY_ROWS))
    one = RowCache(max_rows=3 * (1 + ENTRY_ROWS))     # images of one row each: entries bounded
    with db.engine.connect() as conn:
        for _ in range(2):
            got = cache.rows(conn, sid, ids, normalized=False)
            want = np.array(lc_store.fetch_rows(conn, sid, ids, normalized=False), float)
            order = np.lexsort((want[:, 0], want[:, 1]))
            np.testing.assert_array_equal(got, want[order])
            assert cache._rows <= 2 * (N_SRC + ENTRY_ROWS) and len(cache._entries) <= 2
            got = one.rows(conn, sid[:1], ids, normalized=False)
            want = np.array(lc_store.fetch_rows(conn, sid[:1], ids, normalized=False), float)
            np.testing.assert_array_equal(got, want[np.argsort(want[:, 1])])
            assert len(one._entries) == 3


def test_a_sliding_window_of_images_read_image_after_image_equals_a_fresh_read(tmp_path):
    """The step's read of one field's window, one image more (and the oldest out) each time,
    with earlier epochs normalised again, failed, replaced, measured again, normalised back and
    left out of one read in between: every
    read equals an uncached read, only the new or changed images are read from the database,
    and the kept windows stay within their bound of cells."""
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.products import replace_source_measurements
    from dsa110_contimg.store.row_cache import RowCache

    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        sid = lc_store_sources(conn)
        ids = [_measure(conn, i, sid, success=[True] * (N_SRC - 1) + [i % 3 != 1])
               for i in range(12)]
        for i in ids:
            _normalise(conn, i, sid, 1.0 + 0.01 * i)
    cache = RowCache(max_window_cells=4 * N_SRC * 6)
    writes = {5: lambda conn, w: _normalise(conn, w[1], sid, 1.3),
              6: lambda conn, w: lc_store.set_normalisation(conn, w[2], status="failed",
                                                            reason="refs disagree"),
              7: lambda conn, w: replace_source_measurements(
                  conn, w[3], sid[:2], _columns(sid[:2], [0.5, 0.6]), [0.51, 0.61], [1e-3, 1e-3]),
              8: lambda conn, w: _measure(conn, 4, sid, scale=2.0),
              9: lambda conn, w: _normalise(conn, w[1], sid, 1.0)}
    for end in range(4, len(ids) + 1):
        window = ids[max(0, end - 6):end]
        if end == 10:                       # an epoch excluded, then back in the next read
            window = [i for i in window if i != ids[6]]
        if end in writes:
            with db.engine.begin() as conn:
                writes[end](conn, window)
        with db.engine.connect() as conn:
            for normalized in (True, False):
                read = cache.read_rows
                got = cache.window(conn, sid[1:], window, normalized=normalized)
                a = lc_store.pack_lightcurves(conn, sid[1:], got, window)
                b = lc_store.load_lightcurves(conn, sid[1:], window, normalized=normalized)
                for x, y in zip(a, b):
                    np.testing.assert_array_equal(x, y)
                if end > 4 and end not in writes and end != 11:      # the new image only
                    assert cache.read_rows - read <= N_SRC - 1
        assert cache.window_cells <= 4 * N_SRC * 6
    db.dispose()
