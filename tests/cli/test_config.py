"""`config check` looks at the databases of a valid file: one database for both stores is
fine (also one left broken by an earlier release), swapped databases, a revision from a
newer release and an unreachable server are problems (exit 1, one line on stderr)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dsa110_contimg.cli.main import main
from dsa110_contimg.service.config import render_config
from dsa110_contimg.store.engine import make_engine, open_products_db, open_registry_db

from pgcluster import BACKENDS


def _cfg(tmp_path, **paths):
    (tmp_path / "images").mkdir(exist_ok=True)
    cfg = tmp_path / "photometry.toml"
    cfg.write_text(render_config(tmp_path, paths=paths))
    return str(cfg)


def _check(cfg, capsys, *extra):
    capsys.readouterr()
    rc = main(["config", "check", "--config", cfg, *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_before_the_first_run_and_without_looking(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    rc, out, err = _check(cfg, capsys)
    assert rc == 0 and err == "" and ": valid (" in out
    assert out.count("does not exist yet (the daemon creates it)") == 2
    rc, out, _ = _check(cfg, capsys, "--no-db")
    assert rc == 0 and len(out.splitlines()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_database_for_both_stores_even_one_an_earlier_release_broke(databases, tmp_path, capsys):
    from schema_history import LEGACY_UNTIL, build

    shared = databases.new("products", migrated=False)
    engine = make_engine(shared)
    build(engine, "products", LEGACY_UNTIL["products"])   # registry never got its schema
    engine.dispose()
    cfg = _cfg(tmp_path, products_db=shared, registry_db=shared)
    rc, out, err = _check(cfg, capsys)
    assert rc == 0, err
    assert "products_db = registry_db" in out and "no registry schema yet" in out
    assert f"products schema at revision {LEGACY_UNTIL['products']}: the daemon of this release " \
           "upgrades it" in out
    open_products_db(shared).dispose()
    open_registry_db(shared).dispose()
    rc, out, _ = _check(cfg, capsys)
    assert rc == 0 and out.count("(this release's)") == 2 and "pw-For-Tests" not in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_swapped_databases_and_a_newer_revision_are_problems(databases, tmp_path, capsys):
    products, registry = databases.new("products"), databases.new("registry")
    open_products_db(products).dispose()
    open_registry_db(registry).dispose()
    cfg = _cfg(tmp_path, products_db=registry, registry_db=products)
    rc, out, err = _check(cfg, capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert "products_db: holds the registry schema" in err and "registry_db: holds the products schema" in err
    engine = make_engine(products)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version_products SET version_num = '0999'"))
    engine.dispose()
    rc, _, err = _check(_cfg(tmp_path, products_db=products, registry_db=registry), capsys)
    assert rc == 1 and "revision 0999, which this release does not know" in err


def test_an_unreachable_server_is_a_problem(tmp_path, capsys, monkeypatch):
    from pgcluster import free_port

    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    url = f"postgresql+psycopg://u:hunter2@127.0.0.1:{free_port()}/nodb"
    rc, out, err = _check(_cfg(tmp_path, products_db=url), capsys)
    assert rc == 1 and "products_db: cannot be read" in err and "hunter2" not in out + err
