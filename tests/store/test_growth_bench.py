"""The growth benchmark's databases (bench/growth.py) look like real data: copied epochs
scatter about the template by their errors (the SQL deviate is the numpy one, on both
backends), every source's running statistics are those of its light curve, and the ESE
candidates' stored templates lie inside their light curves. Counts and values only."""

from __future__ import annotations

import numpy as np
import pytest

from benchmods import load_bench
from pgcluster import BACKENDS
from rank_key_check import assert_rank_keys_true

pytestmark = pytest.mark.timeout(300)

growth = load_bench("growth")


@pytest.mark.parametrize("backend", BACKENDS)
def test_scatter_sql_is_the_numpy_deviate(databases):
    from dsa110_contimg.store import bulk
    from dsa110_contimg.store.engine import open_products_db

    db = open_products_db(databases.new("products"))
    src = np.arange(10_000, 14_000)
    try:
        with db.engine.begin() as conn:
            bulk.execute(conn, "CREATE TABLE deviate_ids (s INTEGER NOT NULL)")
            bulk.executemany(conn, "INSERT INTO deviate_ids (s) VALUES (?)",
                             [(int(s),) for s in src])
            got = np.array([r[0] for r in bulk.execute(
                conn, f"SELECT {growth.scatter_sql(987_654, 's + 0', db.engine.dialect.name)} FROM deviate_ids "
                "ORDER BY s")])
    finally:
        db.dispose()
    want = growth.scatter_values(987_654, src)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    steady = (src * 7919) % 100 >= growth.EXCESS_PERCENT
    assert abs(np.mean(want[steady])) < 0.05 and abs(np.std(want[steady]) - 1.0) < 0.05
    assert 0.02 < np.mean(~steady) < 0.04


def late_epochs(gdb) -> list[float]:
    """MJDs of the late source's measurements (sorted)."""
    from dsa110_contimg.store import bulk

    with gdb.db.engine.begin() as conn:
        return sorted(r[0] for r in bulk.execute(
            conn, "SELECT i.mjd FROM measurements m JOIN images i ON i.id = m.image_id "
                  "WHERE m.source_id = ?", (growth.LATE_SOURCE,)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_built_database_is_consistent(databases, tmp_path):
    from dsa110_contimg.store import bulk

    url = databases.new("products")
    gdb = growth.GrowthDB(url, tmp_path, size=192, n_sources=30, n_fields=3)
    try:
        gdb.seed()
        per_epoch = len(gdb.field0_sources) * 3
        gdb.grow_to(per_epoch * 12)
        gdb.measure_real()          # a new epoch of field 0 between two sizes, as in the bench
        gdb.grow_to(per_epoch * 24)                            # ~24 epochs a field
        srcs = sorted(gdb.field0_sources)
        for k in range(3):
            for s in (srcs[0], srcs[len(srcs) // 2], srcs[-1]):
                gdb.check_stats(s + k * growth.SOURCE_STRIDE)      # raises on a difference
        gdb.check_stats(growth.LATE_SOURCE)
        gdb.check_source_id_ranges()                   # raises unless each is its rows'
        with gdb.db.engine.connect() as conn:
            assert assert_rank_keys_true(conn)         # the bulk path and the step keep the keys
        late_after_24 = late_epochs(gdb)
        gdb.grow_to(per_epoch * 30)
        late_after_30 = late_epochs(gdb)
        with gdb.db.engine.begin() as conn:
            stats = bulk.execute(conn, "SELECT source_id, n, chi2_nu FROM variability_stats "
                                 "WHERE source_id != ?", (growth.LATE_SOURCE,))
            field0 = sorted(gdb.field0_images(conn), key=lambda r: r[1])
            cand = bulk.execute(conn, (
                "SELECT e.t_min_mjd, v.first_mjd, v.last_mjd, e.n_epochs, v.n "
                "FROM ese_candidates e JOIN variability_stats v ON v.source_id = e.source_id"))
            normalised = {k: v[0].size for k, v in gdb.field_images(conn).items()}
            # the copies of one source differ from epoch to epoch
            fluxes = [r[0] for r in bulk.execute(
                conn, "SELECT peak_jyb FROM measurements WHERE source_id = ?", (srcs[0] + 10_000,))]
    finally:
        gdb.db.dispose()
    src, n, chi = (np.array(c, float) for c in zip(*stats))
    assert len(src) == 3 * len(srcs) and normalised[1] == normalised[2] >= 20
    field = (src // growth.SOURCE_STRIDE).astype(int)
    # every normalised epoch counted (field 0's first two are not normalised)
    assert np.all(n == np.array([normalised[k] for k in field])), (n, normalised)
    steady = (src.astype(np.int64) * 7919) % 100 >= growth.EXCESS_PERCENT
    assert 0.6 < np.median(chi[steady]) < 1.6
    assert np.all(chi[~steady] > 1.5)
    assert len(set(fluxes)) == len(fluxes) == normalised[1]
    assert len(cand) == 3                            # 1 % of the sources: id % 100 == 7
    # the late source: measured on the 13 newest epochs of field 0 when it was added (the
    # first size with that many), the same light curve at every later size
    assert len(late_after_24) == growth.LATE_EPOCHS and late_after_24 == late_after_30
    assert max(late_after_24) < field0[-1][1]                # a real epoch measured later
    assert len(field0) > 2 * growth.LATE_EPOCHS
    for t_min, first, last, n_epochs, n_stats in cand:
        assert first < t_min < last and n_epochs == n_stats
