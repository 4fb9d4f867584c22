"""`db upgrade|backup|check|prune` from the command line: both databases (or one shared by
both stores), copies that pass `db check`, SQLite and PostgreSQL (pg_dump)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dsa110_contimg.cli.main import main
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue

from pgcluster import BACKENDS


def _svc(tmp_path, **paths):
    from dsa110_contimg.service.config import render_config

    root = tmp_path / "svc"
    for sub in ("images", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = root / "photometry.toml"
    cfg.write_text(render_config(root, paths=paths))
    return cfg


def _one_failed_job(products) -> int:
    db = open_products_db(products)
    queue = JobQueue(db, owner="A")
    job_id, _ = queue.enqueue({}, [("/img/a.fits", "image", None)], idempotency_key="a")
    queue.claim()
    queue.fail(job_id, "broken", retryable=False)
    db.dispose()
    return job_id


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shared", [False, True], ids=["two databases", "one shared database"])
def test_upgrade_backup_check_of_both_databases(databases, tmp_path, capsys, shared):
    products = databases.new("products", migrated=False)
    registry = products if shared else databases.new("registry", migrated=False)
    cfg = str(_svc(tmp_path, products_db=products, registry_db=registry))
    assert main(["db", "upgrade", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "products database" in out and "registry database" in out
    job_id = _one_failed_job(products)
    assert main(["db", "check", "--config", cfg]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(": ok; schema revision" in line for line in out), out
    dest = tmp_path / "backup"
    assert main(["db", "backup", str(dest), "--config", cfg]) == 0
    out = capsys.readouterr().out
    copies = sorted(p.name for p in dest.iterdir())
    if databases.backend == "sqlite":
        assert copies == (["products1.sqlite3"] if shared else ["products1.sqlite3", "registry2.sqlite3"])
        assert "quick_check ok" in out
        copy = str(dest / copies[0])
        assert main(["db", "check", "--products-db", copy,
                     "--registry-db", copy if shared else str(dest / copies[1])]) == 0
        engine = sa.create_engine(f"sqlite:///{copy}")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM batch_jobs WHERE id = :i"),
                                {"i": job_id}).scalar() == "failed"
        engine.dispose()
    else:
        assert copies == (["products.dump"] if shared else ["products.dump", "registry.dump"])
        assert "pg_restore --list" in out and "pw-For-Tests" not in out
    assert main(["db", "backup", str(dest), "--config", cfg]) == 1      # never overwritten silently
    assert "use --force" in capsys.readouterr().err
    assert main(["db", "backup", str(dest), "--force", "--config", cfg]) == 0


def test_check_reports_an_old_schema_and_prune_says_what_it_removed(tmp_path, capsys):
    from dsa110_contimg.store.engine import make_engine
    from dsa110_contimg.store.migrate import upgrade

    cfg = str(_svc(tmp_path))
    state = tmp_path / "svc" / "state"
    engine = make_engine(state / "products.sqlite3")
    upgrade(engine, "products", "0004")
    engine.dispose()
    capsys.readouterr()
    assert main(["db", "check", "--config", cfg]) == 1
    captured = capsys.readouterr()
    assert "PROBLEMS" in captured.out and "revision 0004" in captured.err and "db upgrade" in captured.err
    assert "registry database" in captured.err and "does not exist yet" in captured.err   # a note
    assert main(["db", "upgrade", "--config", cfg]) == 0
    job_id = _one_failed_job(state / "products.sqlite3")
    capsys.readouterr()
    assert main(["db", "prune", "--jobs-before", "2000-01-01", "--config", cfg]) == 0
    assert "removed 0 job(s)" in capsys.readouterr().out
    assert main(["jobs", "ack", str(job_id), "--config", cfg]) == 0
    assert main(["db", "prune", "--jobs-before", "0d", "--dry-run", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 job(s) (1 failed) with 1 item(s)" in out and "measurements untouched: 0" in out
    assert main(["db", "prune", "--jobs-before", "2999-01-01T00:00", "--config", cfg]) == 0
    assert "removed 1 job(s) (1 failed) with 1 item(s)" in capsys.readouterr().out
    assert main(["jobs", "list", "--json", "--config", cfg]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 0
    assert main(["db", "prune", "--jobs-before", "last tuesday", "--config", cfg]) == 2
    assert "expected a UTC date" in capsys.readouterr().err
