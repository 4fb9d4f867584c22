"""pipeline/transients.py: the known sources a detection is associated with."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import sqlalchemy as sa
from astropy.table import Table

from dsa110_contimg.pipeline.measure import append_rows
from dsa110_contimg.pipeline.transients import _rows_catalog_ids


def test_catalogue_rows_keep_their_survey_once_own_rows_are_appended():
    """With monitor or own rows appended the table has a ``survey`` column, empty for the
    catalogue rows: those are still the catalogue's (else their stored weighted-mean
    positions and their catalogue errors are not found, and a detection off the catalogue
    position by its error is taken for a new source)."""
    cat = Table({"source_id": ["NVSS J1", "NVSS J2"], "ra_deg": [1.0, 2.0],
                 "dec_deg": [3.0, 4.0], "flux_mjy": [5.0, 6.0]})
    both = append_rows(cat, {"source_id": np.array(["DSA110 J3"]), "ra_deg": np.array([1.5]),
                             "dec_deg": np.array([3.5]), "survey": np.array(["dsa110"], object),
                             "kind": np.array(["blind"], object)})
    names, surveys = _rows_catalog_ids(SimpleNamespace(cat=both), "nvss")
    assert names.tolist() == ["NVSS J1", "NVSS J2", "DSA110 J3"]
    assert surveys.tolist() == ["nvss", "nvss", "dsa110"]
    _, surveys = _rows_catalog_ids(SimpleNamespace(cat=cat), "nvss")
    assert surveys.tolist() == ["nvss", "nvss"]


def _depth_field(tmp_path, n_epochs: int):
    """A products database with ``n_epochs`` daily images of one field, each with a stored
    depth (rms_min 1 mJy/beam, except the first image: 0.1 mJy/beam, the deepest); returns
    (db, the epoch of a new image a day after the last, MJD)."""
    from dsa110_contimg.store import detections as ds
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.schema import images

    db = open_products_db(tmp_path / f"d{n_epochs}.sqlite3")
    mjd = 59000.0 + np.arange(n_epochs, dtype=float)
    with db.engine.begin() as conn:
        conn.execute(images.insert(), [{
            "path": f"/img/{i}.fits", "content_id": str(i), "kind": "image", "mjd": float(m),
            "ra_center_deg": 150.0, "dec_center_deg": 37.0, "radius_deg": 0.2,
            "method": "forced", "catalog": "nvss", "qc_status": "passed", "measured_at": 0.0}
            for i, m in enumerate(mjd)])
        ids = [r[0] for r in conn.execute(sa.select(images.c.id).order_by(images.c.mjd))]
        for k, i in enumerate(ids):
            rms = 1e-4 if k == 0 else 1e-3
            ds.store_image_depth(conn, i, b"fp%d" % i, rms, 2 * rms, 1)
    return db, float(mjd[-1]) + 1.0


def test_earlier_depths_are_those_of_the_field_window(tmp_path, monkeypatch):
    """The new-source depth test reads the earlier images of the field window (600 days),
    not the field's whole history: the rows read are the same at 700 and 1,400 daily epochs,
    and the deepest image, older than the window, is not among the earlier images; a field
    younger than its window is tested against all of them, the deepest first."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline import transients
    from dsa110_contimg.pipeline.steps.base import ImageContext
    from dsa110_contimg.science.footprint import NoiseFootprint

    stub = SimpleNamespace(noise_corr_factor=1.0, depth_at=lambda ra, dec, **kw: (
        np.full(np.size(ra), 1e-3), np.full(np.size(ra), "ok", dtype=object)))
    monkeypatch.setattr(NoiseFootprint, "parsed", staticmethod(lambda blob: stub))
    rules = SimpleNamespace(edge_beams=1.8, blank_beams=0.5)
    found = {}
    for n in (100, 700, 1400):
        db, mjd = _depth_field(tmp_path, n)
        ctx = ImageContext(image_id=None, path="/img/new.fits", mjd=mjd, ra_deg=150.0,
                           dec_deg=37.0, radius_deg=0.2, kind="image", remeasured=False,
                           source_ids=np.array([1], np.int64), method="forced",
                           cfg=PhotometryConfig(), field_window_days=600.0)
        with db.engine.connect() as conn:
            calls = []
            real = transients.lc_store.images_near
            monkeypatch.setattr(transients.lc_store, "images_near",
                                lambda *a, **kw: calls.append(real(*a, **kw)) or calls[-1])
            rows, rms, status, corr = transients._earlier_depths(
                conn, ctx, np.array([150.0]), np.array([37.0]), rules)
            monkeypatch.setattr(transients.lc_store, "images_near", real)
        found[n] = (len(calls[0]["id"]), [r["mjd"] for r in rows], [r["rms_min_jyb"] for r in rows])
        assert rms.shape == (1, len(rows)) and (status == "ok").all()
        db.dispose()
    assert found[700][0] == found[1400][0] <= 601              # the window's images only
    assert len(found[1400][1]) == transients.MAX_EARLIER_IMAGES
    assert min(found[1400][1]) >= 59000.0 + 1400 - 600 and 1e-4 not in found[1400][2]
    assert found[100][0] == 100 and found[100][2][0] == 1e-4    # young field: all, deepest first
