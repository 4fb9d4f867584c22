"""Schema upgrades (store/migrate.py): a database holding data written at every earlier
revision is brought to the current schema without losing a row, on SQLite and PostgreSQL;
both histories keep their own version table, so they can share one database; databases
of earlier releases (one ``alembic_version`` table) are adopted in place.

The databases are built by ``tests/support/schema_history.py``; adding a migration means
adding its seed data there (the first test fails until then).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dsa110_contimg.store.engine import make_engine, open_products_db, open_registry_db
from dsa110_contimg.store.migrate import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLES,
    current_revision,
    revisions,
    schema_differences,
)

from pgcluster import BACKENDS
from schema_history import CHECKS, LEGACY_UNTIL, SEEDS, build, build_each, snapshot


def test_every_revision_has_seed_data():
    for which in VERSION_TABLES:
        assert list(SEEDS[which]) == list(revisions(which)), \
            f"add the data revision(s) {set(revisions(which)) - set(SEEDS[which])} write to SEEDS"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", list(VERSION_TABLES))
def test_upgrade_from_every_earlier_revision_keeps_every_row(databases, which):
    opener = open_products_db if which == "products" else open_registry_db
    history = databases.new(which, migrated=False)
    builder = make_engine(history)
    # one pass builds the history; a copy of the database at each revision is upgraded
    for start in build_each(builder, which):
        target = databases.copy(history)
        engine = make_engine(target)
        with engine.connect() as conn:
            before = snapshot(conn)
        engine.dispose()
        db = opener(target)          # what every command and the daemon do: upgrade on open
        with db.engine.connect() as conn:
            after = snapshot(conn)
            assert current_revision(conn, which) == revisions(which)[-1]
            assert schema_differences(conn, which) == [], start
            tables = set(sa.inspect(conn).get_table_names())
            assert LEGACY_VERSION_TABLE not in tables and VERSION_TABLES[which] in tables
            for rev, check in CHECKS[which].items():
                if revisions(which).index(start) < revisions(which).index(rev):
                    check(conn, start)
        db.dispose()
        for table, keys in before.items():
            assert after[table] == keys, f"{which} from {start}: rows of {table} changed"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("first", ["products", "registry"])
def test_both_histories_in_one_database(databases, first):
    """One database for both stores: each history migrates in its own version table,
    whichever opens it first, and neither sees the other's revision."""
    url = databases.new("products", migrated=False)
    openers = {"products": open_products_db, "registry": open_registry_db}
    order = [first] + [w for w in openers if w != first]
    for which in order + order:          # twice: the second opens are no-ops
        openers[which](url).dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        for which in openers:
            assert current_revision(conn, which) == revisions(which)[-1]
            assert schema_differences(conn, which) == []
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_database_left_broken_by_an_earlier_release_is_repaired(databases):
    """Earlier releases kept both histories in ``alembic_version``: products migrated
    first and the registry then failed on every open ("Can't locate revision"). Opening it
    now adopts the products revision and creates the registry schema beside it."""
    url = databases.new("products", migrated=False)
    engine = make_engine(url)
    build(engine, "products", LEGACY_UNTIL["products"])
    with engine.connect() as conn:
        before = snapshot(conn)
    engine.dispose()
    open_registry_db(url).dispose()          # registry first: the row is not its own
    open_products_db(url).dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        for which in VERSION_TABLES:
            assert current_revision(conn, which) == revisions(which)[-1]
        after = snapshot(conn)
    engine.dispose()
    assert all(after[t] == keys for t, keys in before.items())


@pytest.mark.parametrize("backend", ["postgresql"])
def test_appended_tables_vacuumed_by_rows_not_by_fraction_on_postgresql(databases):
    """Autovacuum starts on the per-image tables after a number of new rows (PostgreSQL's
    default, a fraction of the table, is 10^7 rows at 5 x 10^7); SQLite has no autovacuum."""
    db = open_products_db(databases.new("products"))
    with db.engine.connect() as conn:
        got = {name: dict(opt.split("=") for opt in (opts or [])) for name, opts in conn.execute(
            sa.text("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                    "('measurements', 'detections', 'reference_choices', 'images')"))}
    db.dispose()
    for table in ("measurements", "detections", "reference_choices"):
        opts = got[table]
        # a vacuum after 100,000 inserted rows whatever the table's size
        assert float(opts["autovacuum_vacuum_insert_scale_factor"]) == 0.0, table
        assert int(opts["autovacuum_vacuum_insert_threshold"]) == 100_000, table
        # an analyze after 10,000 rows + 2 %: 1.01 x 10^6 rows at 5 x 10^7
        assert int(opts["autovacuum_analyze_threshold"]) + float(
            opts["autovacuum_analyze_scale_factor"]) * 5e7 == pytest.approx(1.01e6), table
    assert got["images"] == {}
