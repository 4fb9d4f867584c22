"""The same store, queue and workflow on PostgreSQL (one URL away from SQLite).

Runs when ``CONTIMG_TEST_POSTGRES_URL`` names an empty database the tests may use, e.g.
``postgresql+psycopg://contimg:contimg@127.0.0.1/contimg_test`` (driver:
``pip install '.[postgres]'``); otherwise every test here is skipped with that reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import sqlalchemy as sa

URL = os.environ.get("CONTIMG_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="PostgreSQL tests need CONTIMG_TEST_POSTGRES_URL (a server and an empty database)")


@pytest.fixture
def pg_url():
    engine = sa.create_engine(URL)
    with engine.begin() as conn:       # start from an empty schema
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return URL


def test_migrations_and_schema_agree_on_postgres(pg_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store.schema import products_metadata

    db = open_products_db(pg_url)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), products_metadata) == []


def test_workflow_and_queue_on_postgres(pg_url, tmp_path):
    from conftest import SimulatedField

    from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
    from dsa110_contimg.photometry.worker import run_claimed

    field = SimulatedField(tmp_path, n_sources=30, seed=4, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    manager = PhotometryManager(pg_url, default_config=cfg, catalog_dir=tmp_path / "catalogs")
    rng = np.random.default_rng(1)
    for k in range(8):
        path = tmp_path / f"e{k}.fits"
        field.image(path, mjd=60000.0 + 5 * k, gain=1 + rng.normal(0, 0.04), seed=k)
        if k % 2:
            manager.measure_for_fits(path, create_batch_job=True)
            job = manager.queue.claim()
            assert run_claimed(manager.queue, job, pg_url, None, str(tmp_path / "catalogs")) == "done"
        else:
            manager.measure_for_fits(path, create_batch_job=False)
    manager.measure_for_fits(tmp_path / "e3.fits", create_batch_job=False)    # re-measure
    with manager.products.engine.connect() as conn:
        count = lambda sql: conn.exec_driver_sql(sql).scalar()  # noqa: E731
        assert count("select count(*) from images") == 8
        assert count("select count(*) from measurements") == 240
        assert count("select count(*) from images where norm_status = 'ok'") == 8
        assert count("select min(n) from variability_stats") == 8
    queue = manager.queue
    queue.enqueue({"config": cfg.to_dict()}, [("/none.fits", "image", None)], idempotency_key="k1")
    assert queue.enqueue({}, [], idempotency_key="k1")[1] is False
    job = queue.claim()
    assert queue.release(job.id)
    job = queue.claim()
    assert job.attempts == 1 and queue.fail(job.id, "x", retryable=True) == "pending"
