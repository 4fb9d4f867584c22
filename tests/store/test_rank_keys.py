"""Rank keys (store/rank_keys.py): order-preserving both ways on any doubles, equal values
equal keys, NULL/non-finite no key, and :func:`refresh_rank_keys` writes each row's keys."""

from __future__ import annotations

import numpy as np


def test_keys_preserve_the_order_of_any_values():
    from dsa110_contimg.store.rank_keys import KEY_BITS, rank_key

    rng = np.random.default_rng(1)
    v = np.concatenate([rng.standard_normal(3000) * 10.0 ** rng.integers(-300, 300, 3000),
                        rng.lognormal(0, 1, 3000), [0.0, -0.0, 1.0, 1.0, -1.0, 5e-324, -5e-324,
                                                    1.7e308, -1.7e308, 2.0, 2.0 * (1 + 2.0 ** -4)]])
    k = rank_key(v)
    assert np.all(np.isfinite(k)) and k.min() >= -2 ** (KEY_BITS - 1) and k.max() < 2 ** (KEY_BITS - 1)
    i, j = rng.integers(0, v.size, (2, 200_000))
    assert np.all(k[i][v[i] < v[j]] <= k[j][v[i] < v[j]])          # a < b: key(a) <= key(b)
    assert np.all(v[i][k[i] < k[j]] < v[j][k[i] < k[j]])           # key(a) < key(b): a < b
    assert np.all(k[i][v[i] == v[j]] == k[j][v[i] == v[j]])        # ties (0.0 and -0.0 too)
    assert rank_key(np.array([2.0]))[0] + 1 == rank_key(np.array([2.0 * (1 + 2.0 ** -4)]))[0]
    assert np.isnan(rank_key(np.array([np.nan, np.inf, -np.inf]))).all()
    assert np.isnan(rank_key([None, 1.0]))[0]


def test_refresh_writes_the_keys_of_rows_written_by_hand(tmp_path):
    import sqlalchemy as sa

    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.rank_keys import refresh_rank_keys

    from rank_key_check import assert_rank_keys_true

    db = open_products_db(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    try:
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sources (id, survey, catalog_id, ra_deg, dec_deg, reference_ok) "
                                 "VALUES (1, 'nvss', 'A', 1, 1, false), (2, 'nvss', 'B', 1, 1, false)"))
            conn.execute(sa.text("INSERT INTO variability_stats (source_id, flux_kind, n, eta, updated_at) "
                                 "VALUES (1, 'raw', 3, 2.5, 0), (2, 'raw', 0, NULL, 0)"))
            assert refresh_rank_keys(conn) == 2
            assert assert_rank_keys_true(conn) == 2
            assert conn.execute(sa.text("SELECT eta_key, v_key FROM variability_stats WHERE source_id = 2")).one() \
                == (None, None)
    finally:
        db.dispose()
