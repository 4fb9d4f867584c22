"""The earlier pipeline's trigger entry points, as thin wrappers over the manager."""

from __future__ import annotations

from argparse import Namespace

import pytest

from dsa110_contimg.photometry.compat import (
    MosaicPhotometryMixin, trigger_photometry_for_image, trigger_photometry_for_mosaic,
)
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.store import open_products_db, open_registry_db, registry
from dsa110_contimg.store.queue import JobQueue


def test_trigger_for_image_queues_a_linked_job(sim_field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sim_field.image(tmp_path / "2025-01-01T00:00:00.img-image-pb.fits")
    args = Namespace(photometry_catalog="nvss", photometry_radius=0.3, photometry_normalize=True)
    job_id = trigger_photometry_for_image(tmp_path / "2025-01-01T00:00:00.img-image-pb.fits",
                                          "2025-01-01T00:00:00", args, tmp_path / "p.sqlite3",
                                          tmp_path / "r.sqlite3")
    job = JobQueue(open_products_db(tmp_path / "p.sqlite3")).get(job_id)
    assert job["status"] == "pending"
    assert job["params"]["config"]["radius_deg"] == 0.3 and job["params"]["config"]["normalize"] is True
    assert job["params"]["group_id"] == "2025-01-01T00:00:00"
    row = registry.get(open_registry_db(tmp_path / "r.sqlite3"), "2025-01-01T00:00:00.img-image-pb")
    assert row["photometry_status"] == "pending" and row["photometry_job_id"] == str(job_id)


def test_trigger_for_image_rejects_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="catalog"):
        trigger_photometry_for_image(tmp_path / "x.fits", None, Namespace(photometry_catalog="sdss"),
                                     tmp_path / "p.sqlite3")


class _Orchestrator(MosaicPhotometryMixin):
    def __init__(self, tmp_path, enable):
        self.enable_photometry = enable
        self.photometry_config = {"catalog": "nvss", "radius_deg": 1.0}
        self.products_db_path = tmp_path / "p.sqlite3"
        self.data_registry_db_path = tmp_path / "r.sqlite3"


def test_mosaic_trigger_mixin_and_function(sim_field, tmp_path):
    path = tmp_path / "nightly_20250101.fits"
    sim_field.image(path, include_beam=False, naxis=2, extra_header={"NIMAGES": 12})
    orch = _Orchestrator(tmp_path, enable=True)
    job_id = orch._trigger_photometry_for_mosaic(path, "nightly_20250101")
    queue = JobQueue(open_products_db(tmp_path / "p.sqlite3"))
    assert queue.get(job_id)["items"][0]["kind"] == "mosaic"
    assert registry.get(open_registry_db(tmp_path / "r.sqlite3"), "nightly_20250101")["data_type"] == "mosaic"
    assert _Orchestrator(tmp_path, enable=False)._trigger_photometry_for_mosaic(path, "x") is None
    other = trigger_photometry_for_mosaic(path, "nightly_20250101b", products_db_path=tmp_path / "p.sqlite3",
                                          photometry_config={"catalog": "nvss"})
    assert other != job_id
