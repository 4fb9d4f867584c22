"""A simulated season for the variables tests: steady sources plus a 4-day 40 % dip, a
one-epoch flare and a slow fade (tests/science/test_variables.py, tests/store/test_variables.py)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from dsa110_contimg.science import ese_models
from dsa110_contimg.science.variability import RunningStats
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.schema import images


def season(n_steady=2000, seed=0, n_days=120.0):
    """A daily season (25 % gaps) of steady sources at 2.5 % errors plus a 4-day 40 % dip,
    a one-epoch flare (x1.6) and a slow 35 % fade (rows 0, 1, 2 of the result)."""
    rng = np.random.default_rng(seed)
    t = ese_models.dsa110_cadence(n_days, rng=rng)
    shape = np.ones((n_steady + 3, t.size))
    shape[0, (t >= 60050.0) & (t < 60054.0)] = 0.6
    shape[1, t.size // 2] = 1.6
    shape[2] = 1.0 - 0.35 * (t - t[0]) / (t[-1] - t[0])
    flux0 = 10 ** rng.uniform(-2.0, 0.0, shape.shape[0])[:, None]            # Jy/beam
    err = 0.025 * flux0 * np.ones_like(shape)
    flux = flux0 * shape + err * rng.standard_normal(shape.shape)
    return t, flux, err


def store_season(path, t, flux, err):
    """Sources of one field with the statistics of their light curves, and the field's images."""
    n = flux.shape[0]
    db = open_products_db(path)
    with db.engine.begin() as conn:
        ids = [f"NVSS J{i:06d}" for i in range(n)]
        rng = np.random.default_rng(2)
        sid = ps.upsert_sources(conn, "nvss", ids, 150.0 + rng.uniform(-1, 1, n),
                                37.0 + rng.uniform(-1, 1, n), np.full(n, 5.0), np.ones(n, bool))
        rs = RunningStats.from_lightcurves(flux, err, t)
        lc_store.save_running_stats(conn, sid, rs.to_dict(), rs.metrics(), "normalized")
        conn.execute(sa.insert(images), [
            {"path": f"/img/{k}.fits", "content_id": f"1:{k}", "kind": "image", "method": "forced",
             "catalog": "nvss", "mjd": float(tk), "ra_center_deg": 150.0 + 0.01 * (k % 3),
             "dec_center_deg": 37.0, "radius_deg": 1.5, "measured_at": 0.0}
            for k, tk in enumerate(t)])
    db.dispose()
    return sid
