"""Products database: migrations, connection settings, atomic replace, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
import sqlalchemy as sa

from dsa110_contimg.store import open_products_db, open_registry_db
from dsa110_contimg.store import products as ps
from dsa110_contimg.store import registry
from dsa110_contimg.store.schema import measurements, sources

from pgcluster import BACKENDS

both = pytest.mark.parametrize("backend", BACKENDS)


@both
def test_migrations_create_exactly_the_schema(databases):
    from dsa110_contimg.store.migrate import VERSION_TABLES, schema_differences

    for which, opener in (("products", open_products_db), ("registry", open_registry_db)):
        db = opener(databases.new("products", migrated=False))   # an empty database, migrated here
        with db.engine.connect() as conn:
            diff = schema_differences(conn, which)
            tables = set(sa.inspect(conn).get_table_names())
        db.dispose()
        assert diff == [], f"migrations and schema.py disagree: {diff}"
        assert VERSION_TABLES[which] in tables and "alembic_version" not in tables


def test_connection_settings(tmp_path):
    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_read_only_open_of_missing_db_is_a_clear_error(tmp_path):
    from dsa110_contimg.core.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        open_products_db(tmp_path / "nope.sqlite3", read_only=True)


def _columns(n, rng, flux_scale=1.0):
    cols = {k: rng.normal(size=n) for k in ps.MEASUREMENT_COLUMNS}
    cols["peak_jyb"] = cols["peak_jyb"] * flux_scale
    cols["peak_jyb"][0] = np.nan          # a failed measurement stays NULL, not 0
    cols["dof"] = np.arange(n)
    cols["cluster_id"] = np.full(n, -1)
    cols["flags"] = np.zeros(n, int)
    cols["success"] = np.ones(n, bool)
    return cols


def _store(db, path, n, rng, scale=1.0):
    with db.engine.begin() as conn:
        sid = ps.upsert_sources(conn, "nvss", [f"NVSS J{i:06d}" for i in range(n)],
                                rng.uniform(0, 360, n), rng.uniform(-30, 80, n), np.ones(n))
        return ps.store_image_measurements(conn, {
            "path": path, "content_id": "x", "kind": "image", "method": "forced", "catalog": "nvss",
            "mjd": 60000.0}, sid, _columns(n, rng, scale))


@both
def test_remeasure_replaces_rows_atomically(databases):
    db = open_products_db(databases.new())
    rng = np.random.default_rng(1)
    first = _store(db, "/data/a.fits", 50, rng)
    second = _store(db, "/data/a.fits", 50, rng, scale=10.0)
    assert first == second
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar() == 50
        assert conn.execute(sa.select(sa.func.count()).select_from(sources)).scalar() == 50
        null_flux = conn.execute(sa.select(sa.func.count()).select_from(measurements).where(
            measurements.c.peak_jyb.is_(None))).scalar()
    assert null_flux == 1


@both
def test_failed_transaction_leaves_previous_rows(databases):
    db = open_products_db(databases.new())
    rng = np.random.default_rng(2)
    _store(db, "/data/a.fits", 20, rng)
    with pytest.raises(KeyError):
        with db.engine.begin() as conn:
            ps.store_image_measurements(conn, {"path": "/data/a.fits", "content_id": "y", "kind": "image",
                                               "method": "forced", "catalog": "nvss"},
                                        np.arange(1, 21), {"ra_deg": np.zeros(20)})
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar() == 20


def _writer(db_path, image_path, seed, n_images):
    db = open_products_db(db_path)
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        _store(db, f"{image_path}-{i}", 300, rng)


def test_two_processes_write_one_sqlite_file(tmp_path):
    db_path = tmp_path / "p.sqlite3"
    open_products_db(db_path).dispose()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db_path, f"/data/w{k}", k, 5)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("select count(*) from images").fetchone()[0] == 10
        assert conn.execute("select count(*) from measurements").fetchone()[0] == 3000
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"


@both
def test_registry_link_creates_then_updates(databases):
    db = open_registry_db(databases.new("registry"))
    registry.link(db, "img1", data_type="image", path="/a.fits", photometry_status="pending", job_id=7)
    row = registry.get(db, "img1")
    assert (row["photometry_status"], row["photometry_job_id"], row["data_type"]) == ("pending", "7", "image")
    registry.link(db, "img1", data_type="image", path=None, photometry_status="failed", error="bad")
    row = registry.get(db, "img1")
    assert (row["photometry_status"], row["photometry_error"], row["path"]) == ("failed", "bad", "/a.fits")
    with pytest.raises(ValueError):
        registry.link(db, "img1", data_type="image", path=None, photometry_status="weird")


def _head(which: str) -> str:
    from dsa110_contimg.store.migrate import head_revision

    return head_revision(which)


@both
def test_db_upgrade_command_brings_both_databases_to_head(databases, capsys):
    from dsa110_contimg.cli.main import main

    targets = [databases.new("products", migrated=False), databases.new("registry", migrated=False)]
    argv = ["db", "upgrade", "--products-db", targets[0], "--registry-db", targets[1]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    heads = {which: _head(which) for which in ("products", "registry")}
    assert "products database" in out and "registry database" in out
    assert f"revision {heads['products']}" in out and f"revision {heads['registry']}" in out
    assert "pw-For-Tests" not in out          # a URL's password is never printed
    for target, which in zip(targets, ("products", "registry")):
        engine = sa.create_engine(target if "://" in target else f"sqlite:///{target}")
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"select version_num from alembic_version_{which}").scalar() \
                == heads[which]
        engine.dispose()
    assert main(argv) == 0          # idempotent


def test_migration_0002_carries_a_requested_cancel_over(tmp_path):
    """A database at 0001 with a running job cancelled through the old error string is
    upgraded: the flag is set and the job's other columns are kept."""
    from dsa110_contimg.store.engine import make_engine, open_products_db
    from dsa110_contimg.store.migrate import upgrade

    path = tmp_path / "old.sqlite3"
    engine = make_engine(path)
    upgrade(engine, "products", "0001")
    with sqlite3.connect(path) as conn:
        for i, (status, error) in enumerate((("running", "cancel requested"), ("running", None),
                                             ("failed", "cancel requested"))):
            conn.execute("insert into batch_jobs (type, status, origin, params, total_items, "
                         "completed_items, failed_items, attempts, max_attempts, not_before, "
                         "created_at, updated_at, error) values ('photometry', ?, 'api', '{}', 0, 0, "
                         "0, 1, 3, 0, 0, 0, ?)", (status, error))
    engine.dispose()
    db = open_products_db(path)
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("select status, cancel_requested, interruptions, attempts "
                                    "from batch_jobs order by id")).all()
    db.dispose()
    assert [tuple(r) for r in rows] == [("running", 1, 0, 1), ("running", 0, 0, 1), ("failed", 0, 0, 1)]


def test_a_kept_read_connection_sees_every_write_committed_since(tmp_path):
    """A read-only engine that keeps its connections (the web site's) reuses one connection
    and its page cache across reads, and each read still sees the rows committed by another
    connection since the last one; without ``keep_connections`` every read opens the file."""
    path = tmp_path / "p.sqlite3"
    writer = open_products_db(path)
    reader = open_products_db(path, read_only=True, keep_connections=2)
    plain = open_products_db(path, read_only=True)
    row = {"survey": "nvss", "ra_deg": 10.0, "dec_deg": 30.0, "reference_ok": True}
    seen = []
    for k in range(3):
        with writer.engine.begin() as conn:
            conn.execute(sources.insert(), [dict(row, catalog_id=f"S{k}")])
        with reader.engine.connect() as conn:
            seen.append((conn.connection.driver_connection,
                         conn.execute(sa.select(sa.func.count()).select_from(sources)).scalar()))
    assert [n for _, n in seen] == [1, 2, 3]
    assert len({id(c) for c, _ in seen}) == 1                     # one connection, kept
    with plain.engine.connect() as a:
        first = a.connection.driver_connection
    with plain.engine.connect() as b:
        assert b.connection.driver_connection is not first
    for db in (reader, plain, writer):
        db.dispose()
