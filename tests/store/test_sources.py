"""Finding sources (``sources list`` and the web site's ``/sources``): a cone keeps exactly
the sources within its radius, also across RA 0 and near a pole; a name is a prefix, a bare
designation matches under any survey; a ranking by a metric leaves out the sources without
it; the count is that of every match, the rows one page."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from pgcluster import BACKENDS

from dsa110_contimg.core.geometry import angular_separation_deg


def _fill(url):
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.rank_keys import refresh_rank_keys

    rng = np.random.default_rng(3)
    centres = [(0.05, 10.0), (150.0, 36.0), (200.0, 89.5)]      # across RA 0, mid-sky, near the pole
    ra, dec = [], []
    for ra0, dec0 in centres:
        d = rng.uniform(-0.3, 0.3, 300) + dec0
        ra.append((ra0 + rng.uniform(-0.3, 0.3, 300) / np.cos(np.radians(np.minimum(np.abs(d), 89.9)))) % 360)
        dec.append(np.clip(d, -90, 90))
    ra, dec = np.concatenate(ra), np.concatenate(dec)
    db = open_products_db(url)
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, "
                             "reference_ok, kind) VALUES (:s, :n, :r, :d, :f, false, 'catalogue')"),
                     [{"s": "nvss" if i % 2 else "first", "n": f"{'NVSS' if i % 2 else 'FIRST'} J{i:06d}+000000",
                       "r": float(r), "d": float(d), "f": 10.0 + i} for i, (r, d) in enumerate(zip(ra, dec))])
        conn.execute(sa.text("INSERT INTO variability_stats (source_id, flux_kind, n, eta, v, weighted_mean, "
                             "updated_at) VALUES (:i, 'normalized', :n, :e, :v, :m, 0)"),
                     [{"i": i, "n": 5 + i % 7, "e": float(i % 13), "v": 0.01 * (i % 11), "m": 0.001 * i}
                      for i in range(1, 601)])           # the third field has no metrics
        refresh_rank_keys(conn)                              # written by hand: their rank keys
    return db, ra, dec


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    store, ra, dec = _fill(str(tmp_path_factory.mktemp("sources") / "p.sqlite3"))
    yield store, ra, dec
    store.dispose()


@pytest.mark.parametrize("centre", [(0.02, 10.05), (359.9, 9.9), (150.1, 36.1), (200.0, 89.6), (100.0, 89.7)])
def test_a_cone_keeps_exactly_the_sources_within_it(db, centre):
    from dsa110_contimg.store.sources import SourceQuery, search_sources

    store, ra, dec = db
    radius = 0.2
    sep = angular_separation_deg(ra, dec, *centre)
    with store.engine.connect() as conn:
        rows, total, _ = search_sources(conn, SourceQuery(ra_deg=centre[0], dec_deg=centre[1], radius_deg=radius,
                                                       order="distance", limit=None))
    assert total == int((sep <= radius).sum()) == len(rows) > 0
    assert sorted(r["id"] for r in rows) == sorted((np.flatnonzero(sep <= radius) + 1).tolist())
    got = [r["separation_arcsec"] for r in rows]
    assert got == sorted(got) and got == pytest.approx(np.sort(sep[sep <= radius]) * 3600)


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_rankings_and_pages(databases):
    from dsa110_contimg.store.sources import SourceQuery, search_sources

    store, _, _ = _fill(databases.new("products"))
    with store.engine.connect() as conn:
        rows, total, _ = search_sources(conn, SourceQuery(name="nvss j00001", order="name", limit=None))
        assert total == len(rows) == 5 and all(r["name"].startswith("NVSS J00001") for r in rows)
        bare, n_bare, _ = search_sources(conn, SourceQuery(name="J00012", order="name"))
        assert n_bare == 10 and {r["survey"] for r in bare} == {"nvss", "first"}
        ranked, n_ranked, _ = search_sources(conn, SourceQuery(order="eta", limit=20, offset=20))
        assert n_ranked == 600                              # the 300 without metrics are left out
        eta = [r["eta"] for r in ranked]
        assert eta == sorted(eta, reverse=True) and len(ranked) == 20
        top = search_sources(conn, SourceQuery(order="eta", limit=40))[0]
        assert [r["id"] for r in top[20:]] == [r["id"] for r in ranked]
        few, n_few, _ = search_sources(conn, SourceQuery(order="epochs", min_epochs=11, limit=None))
        assert n_few == len(few) == sum(1 for i in range(1, 601) if 5 + i % 7 >= 11)
        assert search_sources(conn, SourceQuery(order="id", limit=None))[1] == 900
        # ties in a metric are ranked by id, highest first (the index's own order), on every page
        pages = [r["id"] for k in range(0, 600, 50)
                 for r in search_sources(conn, SourceQuery(order="epochs", limit=50, offset=k)).rows]
        assert pages == [i for _, i in sorted(((5 + i % 7, i) for i in range(1, 601)), reverse=True)]
    store.dispose()


def test_counts_stop_at_the_cap(db, monkeypatch):
    from dsa110_contimg.store import sources as store_sources

    monkeypatch.setattr(store_sources, "COUNT_CAP", 100)
    store, _, _ = db
    with store.engine.connect() as conn:
        page = store_sources.search_sources(conn, store_sources.SourceQuery(order="eta", limit=10, offset=590))
        assert (page.total, page.exact, len(page.rows)) == (100, False, 10)      # the page is still served
        assert store_sources.search_sources(conn, store_sources.SourceQuery(name="NVSS J00001")).exact


@pytest.mark.parametrize("fields, why", [({"ra_deg": 1.0}, "both RA and Dec"),
                                          ({"ra_deg": 1.0, "dec_deg": 1.0, "radius_deg": 3.0}, "at most 2"),
                                          ({"order": "distance"}, "needs a position"), ({"order": "x"}, "one of")])
def test_queries_that_cannot_run(fields, why):
    from dsa110_contimg.store.sources import SourceQuery

    with pytest.raises(ValueError, match=why):
        SourceQuery(**fields)


#: Metric values with many ties, values sharing a rank key (1.0, 1.01, 1.02), signed zeros,
#: negatives, tiny and huge magnitudes, and NULLs.
_TIED = [None, None, 0.0, -0.0, 1.0, 1.01, 1.02, 1.0625, 1.07, 2.0, -3.0, -3.1, 5e-300, 1e300, 7.5, 7.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_metric_pages_equal_a_full_sort_with_ties_and_nulls(databases):
    """Every page of every ranking (the rank-key band read of store/sources.py) holds exactly
    the rows, in the order, of a sort of all rows by (metric desc, id desc): any offset and
    limit, with and without the kind and epoch filters."""
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.rank_keys import refresh_rank_keys
    from dsa110_contimg.store.sources import METRIC_ORDERS, SourceQuery, search_sources

    rng = np.random.default_rng(7)
    n = 240
    kind = rng.choice(["catalogue", "monitor", "new"], n).tolist()
    values = {m: [_TIED[i] for i in rng.integers(0, len(_TIED), n)] for m in ("eta", "v", "weighted_mean")}
    values["n"] = rng.integers(1, 40, n).tolist()
    store = open_products_db(databases.new("products"))
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sources (id, survey, catalog_id, ra_deg, dec_deg, reference_ok, kind) "
                                 "VALUES (:i, 'nvss', :c, :r, 10.0, false, :k)"),
                         [{"i": i + 1, "c": f"NVSS J{i:06d}", "r": 0.01 * i, "k": kind[i]} for i in range(n)])
            conn.execute(sa.text("INSERT INTO variability_stats (source_id, flux_kind, n, eta, v, weighted_mean, "
                                 "updated_at) VALUES (:i, 'normalized', :n, :eta, :v, :wm, 0)"),
                         [{"i": i + 1, "n": int(values["n"][i]), "eta": values["eta"][i], "v": values["v"][i],
                           "wm": values["weighted_mean"][i]} for i in range(n) if i % 17])   # some without a row
            refresh_rank_keys(conn)
        with store.engine.connect() as conn:
            for order, col in METRIC_ORDERS.items():
                for kinds, min_epochs in (((), None), (("catalogue", "new"), None), ((), 20), (("monitor",), 9)):
                    keep = [i for i in range(n) if i % 17 and values[col.name][i] is not None
                            and (not kinds or kind[i] in kinds) and (min_epochs is None or values["n"][i] >= min_epochs)]
                    ranked = [i + 1 for i in sorted(keep, key=lambda i: (values[col.name][i], i), reverse=True)]
                    for offset, limit in ((0, 1), (0, 10), (3, 7), (25, 30), (len(ranked) - 5, 10), (len(ranked) + 3, 5),
                                          (0, len(ranked) + 10), (11, None)):
                        page = search_sources(conn, SourceQuery(order=order, kinds=kinds, min_epochs=min_epochs,
                                                                offset=offset, limit=limit))
                        stop = None if limit is None else offset + limit
                        want = ranked[offset:stop] if limit is not None else ranked
                        assert [r["id"] for r in page.rows] == want, (order, kinds, min_epochs, offset, limit)
                        assert page.total == len(ranked)
    finally:
        store.dispose()
