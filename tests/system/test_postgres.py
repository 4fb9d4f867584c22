"""The workflow, the CLI and the configuration on PostgreSQL (one URL away from SQLite).

The server is the session's throw-away cluster (tests/support/pgcluster.py, started by the
``postgres_cluster`` fixture): no external server, no skip in CI. Every workflow test
runs on both backends and must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from fields import SimulatedField
from pgcluster import BACKENDS

both = pytest.mark.parametrize("backend", BACKENDS)


def _engine(target: str):
    return sa.create_engine(target if "://" in target else f"sqlite:///{target}")


@both
def test_workflow_and_queue(databases, tmp_path):
    from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
    from dsa110_contimg.service.runtime import run_claimed

    products, registry = databases.new("products"), databases.new("registry")
    field = SimulatedField(tmp_path, n_sources=30, seed=4, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    cfg = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)
    manager = PhotometryManager(products, registry, default_config=cfg, catalog_dir=tmp_path / "catalogs")
    rng = np.random.default_rng(1)
    for k in range(8):
        path = tmp_path / f"e{k}.fits"
        field.image(path, mjd=60000.0 + 5 * k, gain=1 + rng.normal(0, 0.04), seed=k)
        if k % 2:
            manager.measure_for_fits(path, create_batch_job=True)
            job = manager.queue.claim()
            assert run_claimed(manager.queue, job, products, registry, str(tmp_path / "catalogs")) == "done"
        else:
            manager.measure_for_fits(path, create_batch_job=False, data_id=f"e{k}")
    manager.measure_for_fits(tmp_path / "e3.fits", create_batch_job=False)    # re-measure
    with manager.products.engine.connect() as conn:
        count = lambda sql: conn.exec_driver_sql(sql).scalar()  # noqa: E731
        assert count("select count(*) from images") == 8
        assert count("select count(*) from measurements") == 240
        assert count("select count(*) from images where norm_status = 'ok'") == 8
        assert count("select min(n) from variability_stats") == 8
        # normalised fluxes recover the truth (per-epoch gain errors removed)
        ratio = np.array(conn.exec_driver_sql(
            "select m.norm_flux_jyb / s.catalog_flux_mjy from measurements m "
            "join sources s on s.id = m.source_id").scalars().all(), float) * 1000
    assert np.nanmedian(np.abs(ratio - 1)) < 0.05
    with _engine(registry).connect() as conn:
        assert conn.exec_driver_sql("select count(*) from data_products where photometry_status = "
                                    "'completed'").scalar() == 8
    queue = manager.queue
    queue.enqueue({"config": cfg.to_dict()}, [("/none.fits", "image", None)], idempotency_key="k1")
    assert queue.enqueue({}, [], idempotency_key="k1")[1] is False
    job = queue.claim()
    assert queue.release(job.id)
    job = queue.claim()
    assert job.attempts == 1 and queue.fail(job.id, "x", retryable=True) == "pending"


def test_configuration_url_with_credentials_from_env_and_file(postgres_cluster, tmp_path, monkeypatch,
                                                              capsys):
    """A URL in [paths] is used as a URL; the password comes from the environment or a
    file and never shows in status, logs or errors."""
    from pgcluster import PASSWORD

    from dsa110_contimg.cli.main import main
    from dsa110_contimg.service.config import load_config, render_config

    db_url = postgres_cluster.new_database("products")
    reg_url = postgres_cluster.new_database("registry")
    bare = postgres_cluster.url(db_url.rsplit("/", 1)[1], password=False)
    bare_reg = postgres_cluster.url(reg_url.rsplit("/", 1)[1], password=False)
    secret = tmp_path / "db.secret"
    secret.write_text(PASSWORD + "\n")
    cfg_path = tmp_path / "photometry.toml"
    text = render_config(tmp_path)
    user_pw = bare.replace("contimg@", "contimg:${CONTIMG_TEST_DBPW}@")
    text = text.replace(f'products_db = "{tmp_path / "state" / "products.sqlite3"}"',
                        f'products_db = "{user_pw}"')
    text = text.replace(f'registry_db = "{tmp_path / "state" / "data_registry.sqlite3"}"',
                        f'registry_db = "{bare_reg}"\ndb_password_file = "db.secret"')
    cfg_path.write_text(text)
    monkeypatch.setenv("CONTIMG_TEST_DBPW", PASSWORD)
    cfg = load_config(cfg_path)
    assert str(cfg.paths.products_db) == db_url            # a URL, not a path under the folder
    assert str(cfg.paths.registry_db) == reg_url           # password from the file
    assert PASSWORD not in repr(cfg)
    # status reads the PostgreSQL database named in the file (no daemon: exit 3)
    assert main(["status", "--config", str(cfg_path)]) == 3
    assert main(["db", "upgrade", "--config", str(cfg_path)]) == 0
    out = capsys.readouterr()
    assert "daemon:        not started yet" in out.out and "127.0.0.1" in out.out
    assert PASSWORD not in out.out + out.err
    # an unset variable and a bad URL are one clear line, password masked
    monkeypatch.delenv("CONTIMG_TEST_DBPW")
    assert main(["status", "--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CONTIMG_TEST_DBPW" in err and "paths.products_db" in err
    cfg_path.write_text(text.replace(user_pw, "postgresql+psycopg://u:hunter2@dbhost:port/x"))
    assert main(["status", "--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "paths.products_db" in err and "hunter2" not in err
    # a wrong password: one line naming the database, no password
    monkeypatch.setenv("CONTIMG_TEST_DBPW", "wrong-secret")
    cfg_path.write_text(text)
    assert main(["status", "--config", str(cfg_path)]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "password authentication failed" in err
    assert "wrong-secret" not in err and PASSWORD not in err
