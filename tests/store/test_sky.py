"""Cone boxes (store/sky.py) on both backends: a box selects exactly the positions inside it,
also across RA 0/360 and near a pole, and a box that bounds RA reads through the RA-zone
index (the Dec-led index would read every RA of a declination strip)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from pgcluster import BACKENDS

from dsa110_contimg.store.schema import sources
from dsa110_contimg.store.sky import cone_box

#: a strip at Dec +30 (DSA-110's sky) over every RA, and a cap near the north pole
_RNG = np.random.default_rng(11)
RA = np.r_[_RNG.uniform(0, 360, 3000), _RNG.uniform(0, 360, 300), 0.0, 359.999, 0.5, 359.5]
DEC = np.r_[_RNG.uniform(29, 31, 3000), _RNG.uniform(89.0, 90.0, 300), 30.0, 30.0, 30.0, 30.0]
CONES = [(10.0, 30.0, 0.5), (0.05, 30.0, 0.6), (359.9, 30.2, 0.3), (180.0, 29.5, 2.0),
         (45.0, 89.5, 0.4), (0.0, 30.0, 0.0)]


def _in_box(ra0, dec0, radius):
    """The box of store/sky.py computed here (deg): Dec range; RA within the half-width
    around ra0, wrapping, unless the box reaches a pole."""
    inside = np.abs(DEC - dec0) <= radius
    half = radius / max(np.cos(np.radians(min(abs(dec0) + radius, 89.9))), 1e-3)
    if half < 180.0 and abs(dec0) + radius < 89.9:
        d = np.abs(RA - ra0) % 360.0
        inside &= np.minimum(d, 360.0 - d) <= half + 1e-9
    return set((np.flatnonzero(inside) + 1).tolist())


@pytest.fixture
def store(databases):
    from dsa110_contimg.store.engine import open_products_db

    db = open_products_db(databases.new("products"))
    with db.engine.begin() as conn:
        conn.execute(sources.insert(), [
            {"id": i + 1, "survey": "nvss", "catalog_id": f"S{i}", "ra_deg": float(r),
             "dec_deg": float(d), "reference_ok": False} for i, (r, d) in enumerate(zip(RA, DEC))])
        conn.exec_driver_sql("ANALYZE")
    yield db
    db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_box_selects_exactly_its_positions_and_seeks_the_ra_zones(store, backend):
    with store.engine.connect() as conn:
        for ra0, dec0, radius in CONES:
            q = sa.select(sources.c.id).where(*cone_box(sources.c.ra_deg, sources.c.dec_deg,
                                                        ra0, dec0, radius))
            got = set(conn.execute(q).scalars())
            assert got == _in_box(ra0, dec0, radius), (ra0, dec0, radius)
        assert {1 + 3300, 1 + 3301} <= set(conn.execute(sa.select(sources.c.id).where(
            *cone_box(sources.c.ra_deg, sources.c.dec_deg, 0.0, 30.0, 0.01))).scalars())
        q = sa.select(sources.c.id).where(*cone_box(sources.c.ra_deg, sources.c.dec_deg,
                                                    10.0, 30.0, 0.5))
        sql = str(q.compile(conn, compile_kwargs={"literal_binds": True}))
        if backend == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN " * (backend == "postgresql")
                                                                  + "EXPLAIN QUERY PLAN " * (backend == "sqlite")
                                                                  + sql))
        assert "ix_sources_ra_zone" in plan, plan


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_box_as_sql_text_selects_what_the_box_selects_through_the_same_index(store, backend):
    from dsa110_contimg.store import bulk
    from dsa110_contimg.store.sky import cone_box_sql

    with store.engine.connect() as conn:
        for ra0, dec0, radius in CONES + [(0.0, 30.0, 0.01)]:
            box, params = cone_box_sql("s.ra_deg", "s.dec_deg", ra0, dec0, radius)
            got = {r[0] for r in bulk.execute(conn, f"SELECT s.id FROM sources AS s WHERE {box}",
                                              params)}
            assert got == set(conn.execute(sa.select(sources.c.id).where(*cone_box(
                sources.c.ra_deg, sources.c.dec_deg, ra0, dec0, radius))).scalars()), (ra0, dec0)
        box, params = cone_box_sql("s.ra_deg", "s.dec_deg", 10.0, 30.0, 0.5)
        if backend == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        explain = "EXPLAIN " if backend == "postgresql" else "EXPLAIN QUERY PLAN "
        plan = " ".join(str(r[-1]) for r in bulk.execute(
            conn, f"{explain}SELECT s.id FROM sources AS s WHERE {box}", params))
        assert "ix_sources_ra_zone" in plan, plan
