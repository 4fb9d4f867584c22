"""The field a per-image step reads (``ImageContext.field_images``): the field window, so that
the rows read per image do not grow with the field's history; the whole history where a
step recomputes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.pipeline.steps import normalise as norm_step
from dsa110_contimg.pipeline.steps import qc as qc_step
from dsa110_contimg.pipeline.steps.base import ImageContext
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.schema import images

RA, DEC = 150.0, 37.0
MJD0 = 59000.0


class RowCounter:
    """A connection that counts the rows its statements return (reads only)."""

    def __init__(self, conn):
        self._conn = conn
        self.rows = 0
        self.statements = 0

    def _count(self, result):
        frozen = result.freeze()
        self.statements += 1
        self.rows += len(frozen.data)
        return frozen()

    def execute(self, *a, **kw):
        return self._count(self._conn.execute(*a, **kw))

    def exec_driver_sql(self, *a, **kw):
        return self._count(self._conn.exec_driver_sql(*a, **kw))

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _field(tmp_path, n_epochs: int, *, step_days: float = 1.0):
    """A products database holding ``n_epochs`` images of one field, ``step_days`` apart,
    normalised with references [1, 2, 3], every
    tenth waiting for references and every seventh failed QC; returns (db, the epoch of a new
    image ``step_days`` after the last)."""
    db = open_products_db(tmp_path / f"p{n_epochs}.sqlite3")
    mjd = MJD0 + step_days * np.arange(n_epochs)
    rows = []
    for i, m in enumerate(mjd):
        pending = i % 10 == 3
        rows.append({"path": f"/img/{i}.fits", "content_id": str(i), "kind": "image",
                     "mjd": float(m), "ra_center_deg": RA, "dec_center_deg": DEC,
                     "radius_deg": 0.2, "method": "forced", "catalog": "nvss",
                     "qc_status": "failed" if i % 7 == 5 else "passed",
                     "qc_metrics": json.dumps({"median_rms_jyb": 1e-3}),
                     "norm_status": "failed" if pending else "ok",
                     "norm_reason": ("too few references (no bright sources): 0 source(s)"
                                     if pending else None),
                     "norm_ref_ids": None if pending else json.dumps([1, 2, 3]),
                     "measured_at": 0.0})
    with db.engine.begin() as conn:
        conn.execute(images.insert(), rows)
    return db, float(mjd[-1]) + step_days


@pytest.fixture(scope="module")
def field1000(tmp_path_factory):
    db, mjd = _field(tmp_path_factory.mktemp("field1000"), 1000)
    yield db, mjd
    db.dispose()


def _ctx(mjd, *, window=600.0, remeasured=False) -> ImageContext:
    return ImageContext(image_id=None, path="/img/new.fits", mjd=mjd, ra_deg=RA, dec_deg=DEC,
                        radius_deg=0.2, kind="image", remeasured=remeasured,
                        source_ids=np.array([1, 2, 3], np.int64), method="forced",
                        cfg=PhotometryConfig(), field_window_days=window)


def _reads(tmp_path, n_epochs: int) -> dict:
    """Rows read per image by the field's users, on a field of ``n_epochs`` daily epochs."""
    db, mjd = _field(tmp_path, n_epochs)
    out = {}
    with db.engine.connect() as conn:
        ctx = _ctx(mjd)
        counted = RowCounter(conn)
        field = ctx.field_images(counted)
        out["field"] = counted.rows
        out["window_images"] = int(field.ids.size)
        counted = RowCounter(conn)
        out["qc_history"] = len(qc_step.field_history(counted, ctx))
        out["qc"] = counted.rows
        counted = RowCounter(conn)
        out["pending"] = len(norm_step.pending_images(counted, ctx.recent_field(counted)))
        out["pending_rows"] = counted.rows
    db.dispose()
    return out


def test_rows_read_per_image_do_not_grow_with_the_fields_history(tmp_path):
    """The field read, the QC history and the images waiting for references read the same
    number of rows at 700 and at 1,400 daily epochs: the 600-day field window and the
    latest 20 QC images, not the history."""
    short, long = _reads(tmp_path, 700), _reads(tmp_path, 1400)
    assert short == long
    # the window: the images of the last 600 days that did not fail QC (every 7th did)
    assert 500 < short["window_images"] < 601
    # QC: a few times 20 narrow rows in time order, then the 20 images' metrics
    assert short["qc_history"] == 20 and short["qc"] <= 4 * 20 + 20
    assert 40 < short["pending"] <= 60 and short["pending_rows"] <= 60


def test_short_history_reads_every_image(tmp_path):
    """A field younger than its window: the window holds its whole history."""
    db, mjd = _field(tmp_path, 50)
    with db.engine.connect() as conn:
        ctx = _ctx(mjd)
        windowed = ctx.field_images(conn)
        everything = lc_store.images_near(conn, RA, DEC,
                                          lc_store.neighbourhood_radius(conn, 0.2))
    assert windowed.ids.tolist() == everything["id"].tolist()
    db.dispose()


@pytest.mark.parametrize("case", ["full", "remeasured", "no_window", "gap", "renormalised"])
def test_the_whole_history_is_read_where_a_step_needs_it(field1000, case):
    """Recomputations (``full``), a re-measured image, a context without a window, earlier
    images normalised again in this transaction, and a field whose latest earlier epoch lies
    so far back that the ESE search window would start before the field window: every
    image is read."""
    db, mjd = field1000
    with db.engine.connect() as conn:
        everything = lc_store.images_near(conn, RA, DEC, lc_store.neighbourhood_radius(conn, 0.2))
        ctx = _ctx(mjd + (200.0 if case == "gap" else 0.0), remeasured=case == "remeasured",
                   window=None if case == "no_window" else 600.0)
        if case == "renormalised":
            first = ctx.field_images(conn)
            assert not first.complete
            ctx.results["normalise"] = {"renormalised": {int(first.ids[0])}}
        field = ctx.field_images(conn, full=case == "full")
    assert field.complete
    assert field.ids.tolist() == everything["id"].tolist()


def test_the_window_view_keeps_the_window_when_the_whole_history_was_read(field1000):
    """Steps whose rule is the window (images waiting for references, images normalised
    again without a new ESE candidate) see the window even after a recomputation in the
    same transaction read the whole field."""
    db, mjd = field1000
    with db.engine.connect() as conn:
        ctx = _ctx(mjd)
        window = ctx.field_images(conn).ids.tolist()
        assert len(window) < 600
        ctx.field_images(conn, full=True)
        assert ctx.recent_field(conn).ids.tolist() == window
        assert min(ctx.recent_field(conn).mjd) >= mjd - 600.0
