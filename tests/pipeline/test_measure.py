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


def test_artefact_hosts_are_the_bright_sources_and_one_catalogue_read_serves_a_field(
        sim_field, tmp_path, monkeypatch):
    # the hosts of an image are the catalogue sources at or above detect_sigma x its lowest rms
    # / artefact_flux_ratio; a second image of the field, a little noisier, reads no catalogue
    import numpy as np

    from dsa110_contimg.science.footprint import NoiseFootprint
    from dsa110_contimg.store import catalogs as catalog_store

    cfg = PhotometryConfig(detect=True, artefact_flux_ratio=0.05)
    manager = PhotometryManager(None, catalog_dir=tmp_path / "catalogs")
    reads = []
    fetch = catalog_store.SurveyCatalog._fetch
    monkeypatch.setattr(catalog_store.SurveyCatalog, "_fetch",
                        lambda self, *a: reads.append(a) or fetch(self, *a))
    for n, noise in enumerate((1.0e-3, 1.05e-3)):
        path = tmp_path / f"img{n}.fits"
        sim_field.image(path, noise=noise)
        reads.clear()
        measured = manager.measure_image(path, "image", cfg)
        rms_min, _ = NoiseFootprint.extremes_of(measured.footprint)
        floor_mjy = 1000.0 * cfg.detect_sigma * rms_min / cfg.artefact_flux_ratio
        expected = np.sort(sim_field.flux_mjy[sim_field.flux_mjy >= floor_mjy])
        ra, dec, peak_jyb = measured.artefact_hosts
        assert 0 < len(expected) < len(sim_field.flux_mjy)
        np.testing.assert_allclose(np.sort(peak_jyb) * 1000.0, expected, rtol=1e-9)
        if n == 1:
            assert reads == [], "the second image of the field read the catalogue again"
