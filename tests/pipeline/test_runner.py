"""The step runner: an added step slots in by one entry, the field is read once per image,
one write transaction per image, and the measured image is left as it was given."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
from dsa110_contimg.pipeline import runner
from dsa110_contimg.pipeline.steps import OWN_TRANSACTION, STEPS, Step
from dsa110_contimg.store import lightcurves as lc_store

from seasons import bright_field


def _count_rows(conn, ctx):
    return conn.exec_driver_sql("select count(*) from measurements where image_id = ?",
                                (ctx.image_id,)).scalar()


def test_an_added_step_runs_in_order_with_its_result_time_and_transaction(sim_field, tmp_path):
    seen = []

    def prepare(conn, ctx):
        seen.append(("prepare", ctx.image_id))          # before the image's transaction
        ctx.prepared["census"] = "read before the lock"

    def write(conn, ctx):
        seen.append(("write", ctx.image_id, sorted(ctx.results)))
        return (_count_rows(conn, ctx), ctx.prepared["census"])

    def after(conn, ctx):
        return _count_rows(conn, ctx)

    after_qc = [s.name for s in STEPS].index("qc") + 1
    steps = STEPS[:after_qc] + (Step("census", write, prepare),) + STEPS[after_qc:] + (
        Step("after_commit", after, transaction=OWN_TRANSACTION),
        Step("switched_off", lambda conn, ctx: 1 / 0, enabled=lambda cfg: False))
    path = tmp_path / "img.fits"
    sim_field.image(path)
    cfg = PhotometryConfig()
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs")
    measured = manager.measure_image(path, "image", cfg)
    outcome = runner.store_measured(manager.products.engine, measured, cfg, steps=steps)
    # prepared with no image id yet; written after 'store' and 'qc', before 'normalise'
    assert seen == [("prepare", None),
                    ("write", outcome.image_id, ["associate", "detections", "duplicate", "qc", "store"])]
    assert outcome.results["census"] == (30, "read before the lock")
    assert outcome.results["after_commit"] == 30 and "switched_off" not in outcome.results
    assert {"census", "after_commit", "after_commit_lock", "write_lock", "store", "open"} <= \
        set(outcome.step_seconds)
    assert outcome.qc_status == "passed" and outcome.results["store"]["image_id"] == outcome.image_id


def test_a_failing_step_rolls_back_the_whole_image(sim_field, tmp_path):
    def broken(conn, ctx):
        raise RuntimeError("step failed")

    path = tmp_path / "img.fits"
    sim_field.image(path)
    cfg = PhotometryConfig()
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs")
    measured = manager.measure_image(path, "image", cfg)
    with pytest.raises(RuntimeError, match="step failed"):
        runner.store_measured(manager.products.engine, measured, cfg,
                              steps=STEPS[:3] + (Step("broken", broken),))
    with manager.products.engine.connect() as conn:
        counts = [conn.exec_driver_sql(f"select count(*) from {t}").scalar()
                  for t in ("images", "measurements", "sources", "reference_choices")]
    assert counts == [0, 0, 0, 0]


def test_the_measured_image_is_left_as_given(sim_field, tmp_path):
    path = tmp_path / "img.fits"
    sim_field.image(path)
    cfg = PhotometryConfig(detect_ese=True)
    manager = PhotometryManager(tmp_path / "p.sqlite3", catalog_dir=tmp_path / "catalogs")
    measured = manager.measure_image(path, "image", cfg)
    columns, notes, steps = list(measured.table.columns), list(measured.notes), dict(measured.steps)
    result = manager.store_measured(measured, cfg)
    assert list(measured.table.columns) == columns and measured.notes == notes
    assert measured.steps == steps and "image_id" not in measured.table.meta
    # the result carries the stored ids
    assert result.results.meta["image_id"] == result.image_id
    assert sorted(result.results["catalog_id"]) == sorted(sim_field.names)
    with manager.products.engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("select catalog_id, id from sources").all())
    assert [stored[c] for c in result.results["catalog_id"]] == list(result.results["source_id"])


def test_the_field_is_read_once_per_image(tmp_path, monkeypatch):
    """A season that exercises every reader of the field: baselines being established
    (earlier images normalised again), an epoch arriving out of time order (running
    statistics recomputed), reference stability checks and the ESE template search."""
    field = bright_field(tmp_path, seed=1, n_sources=12)
    reads = []
    real = lc_store.neighbourhood_radius
    monkeypatch.setattr(lc_store, "neighbourhood_radius",
                        lambda *a: reads.append(1) or real(*a))
    rows = []          # image rows read per call (the window, then the rest of the history)
    near = lc_store.images_near
    monkeypatch.setattr(lc_store, "images_near",
                        lambda *a, **kw: (lambda out: rows.append(out["id"].size) or out)(
                            near(*a, **kw)))
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0,
                           norm_baseline_epochs=4)
    manager = PhotometryManager(tmp_path / "p.sqlite3", default_config=cfg,
                                catalog_dir=tmp_path / "catalogs")
    gains = 1.0 + np.random.default_rng(2).normal(0, 0.03, 12)
    scales = np.ones((12, 12))
    scales[6:9, 0] = 0.6                               # a dip: the template search runs
    per_image, renormalised, recomputed = [], 0, 0
    for k in [0, 1, 2, 3, 5, 6, 4, 7, 8, 9, 10, 11]:
        path = tmp_path / f"e{k:02d}.fits"
        field.image(path, mjd=60000.0 + 2 * k, gain=gains[k], seed=10 + k, scale=scales[k])
        before, rows_before = len(reads), len(rows)
        measured = manager.measure_image(path, "image", cfg)
        outcome = runner.store_measured(manager.products.engine, measured, cfg)
        per_image.append(len(reads) - before)
        # the steps read each image row once (the transient search reads the field too)
        assert sum(rows[rows_before:]) <= 2 * len(per_image), rows[rows_before:]
        renormalised += bool(outcome.results["normalise"]["renormalised"])
        recomputed += outcome.results["variability"]["recomputed"] > 0
    assert renormalised and recomputed
    assert max(per_image) == 1, per_image
