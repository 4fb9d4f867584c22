"""The database-free measurement of one image (pipeline/measure.py)."""

from __future__ import annotations

import pytest

from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager


def test_measure_step_builds_the_noise_maps_once(sim_field, tmp_path, monkeypatch):
    # the maps built for the measurement are the ones blind detection and the QC
    # statistics read: one estimate per image
    from dsa110_contimg.science import noise

    calls = []
    estimate = noise.estimate_background
    monkeypatch.setattr(noise, "estimate_background",
                        lambda data, **kw: calls.append(kw) or estimate(data, **kw))
    path = tmp_path / "img.fits"
    sim_field.image(path, noise=1e-3)
    manager = PhotometryManager(None, catalog_dir=tmp_path / "catalogs")
    measured = manager.measure_image(path, "image", PhotometryConfig(detect=True))
    assert measured.table.n_success == 30 and measured.detections is not None
    assert len(calls) == 1
    assert measured.image.qc_stats["median_rms_jyb"] == pytest.approx(1e-3, rel=0.1)
