"""Seasons of simulated epochs of one field through the workflow, and what they stored."""

from __future__ import annotations

import sqlite3

import numpy as np

from fields import SimulatedField


def bright_field(tmp_path, seed=0, n_sources=30):
    """A field of 60-400 mJy sources with its catalogue ingested into ``tmp_path/catalogs``."""
    field = SimulatedField(tmp_path, n_sources=n_sources, seed=seed, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    return field


def run_epochs(tmp_path, field, order, gains, cfg, scales=None, mjds=None, db_name="p.sqlite3"):
    """Write epoch ``k`` (gain ``gains[k]``, per-source ``scales[k]``, 3-day cadence unless
    ``mjds``) of ``field`` for each k of ``order`` and measure it synchronously.
    Returns (manager, {k: PhotometryResult})."""
    from dsa110_contimg.photometry import PhotometryManager

    manager = PhotometryManager(tmp_path / db_name, default_config=cfg,
                                catalog_dir=tmp_path / "catalogs")
    mjds = np.arange(len(gains)) * 3.0 + 60000.0 if mjds is None else mjds
    results = {}
    for k in order:
        path = tmp_path / f"epoch{k:03d}.fits"
        if not path.exists():
            field.image(path, mjd=float(mjds[k]), gain=gains[k], seed=100 + k,
                        scale=None if scales is None else scales[k])
        results[k] = manager.measure_for_fits(path, create_batch_job=False)
    return manager, results


def stored_lightcurves(db):
    """{catalog_id: array of rows (mjd, peak, err, norm_flux, norm_err)} in MJD order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select s.catalog_id, i.mjd, m.peak_jyb, m.peak_err_jyb, m.norm_flux_jyb, m.norm_err_jyb "
            "from measurements m join sources s on s.id = m.source_id join images i "
            "on i.id = m.image_id order by s.catalog_id, i.mjd").fetchall()
    out = {}
    for cid, mjd, f, e, fn, en in rows:
        out.setdefault(cid, []).append((mjd, f, e, fn, en))
    return {k: np.array(v, dtype=float) for k, v in out.items()}
