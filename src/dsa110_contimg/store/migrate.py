"""Schema migrations of the two databases, kept apart so that both may live in one database.

The products schema and the data-registry schema each have an Alembic history
(``store/migrations/products``, ``store/migrations/registry``) and each records its
revision in a version table of its own (:data:`VERSION_TABLES`). ``paths.products_db``
and ``paths.registry_db`` may therefore name the same SQLite file or PostgreSQL
database: neither history ever reads the other's revision.

Databases made by earlier releases recorded their revision in Alembic's default table
``alembic_version``. On the first :func:`upgrade`, a history adopts that row when it is
one of its own revisions and its tables are there (:data:`MARKER_TABLES`); the row moves
to the history's own table and the old table is dropped, in the same transaction as the
migrations that follow. A row a history does not recognise is left alone, so the other
history of a shared database can still adopt it.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The version table of each history.
VERSION_TABLES = {"products": "alembic_version_products", "registry": "alembic_version_registry"}
#: Where earlier releases recorded either history's revision.
LEGACY_VERSION_TABLE = "alembic_version"
#: A table each history's first revision creates: its schema is present.
MARKER_TABLES = {"products": "batch_jobs", "registry": "data_products"}
HISTORIES = tuple(VERSION_TABLES)
#: PostgreSQL advisory lock held by a migration (SQLite's ``BEGIN IMMEDIATE`` already
#: serialises them): the second of two daemons starting on an empty database waits, then
#: finds it current.
MIGRATION_LOCK = 110_0002


def alembic_config(which: str):
    """The Alembic configuration of one history (``products`` or ``registry``)."""
    from alembic.config import Config

    if which not in VERSION_TABLES:
        raise ValueError(f"which must be one of {HISTORIES}, not {which!r}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS / which))
    cfg.attributes["version_table"] = VERSION_TABLES[which]
    return cfg


@functools.lru_cache(maxsize=None)
def _scripts(which: str):
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(which))


def head_revision(which: str) -> str:
    """The newest revision of a history (what this release's code expects)."""
    return _scripts(which).get_current_head()


@functools.lru_cache(maxsize=None)
def revisions(which: str) -> tuple[str, ...]:
    """Every revision of a history, oldest first."""
    return tuple(s.revision for s in reversed(list(_scripts(which).walk_revisions())))


def _read_version(conn: Connection, table: str) -> list[str]:
    return [str(r[0]) for r in conn.exec_driver_sql(f"SELECT version_num FROM {table}")]


def _legacy_revision(conn: Connection, which: str, tables: set[str]) -> str | None:
    """The revision in ``alembic_version`` when it belongs to ``which`` (one row, a known
    revision of this history, this history's tables present), else None."""
    if LEGACY_VERSION_TABLE not in tables or MARKER_TABLES[which] not in tables:
        return None
    rows = _read_version(conn, LEGACY_VERSION_TABLE)
    if len(rows) != 1 or rows[0] not in revisions(which):
        return None
    other = next(h for h in HISTORIES if h != which)
    if MARKER_TABLES[other] in tables and rows[0] in revisions(other):
        return None   # both schemas present and the revision fits both: not ours to take
    return rows[0]


def current_revision(conn: Connection, which: str) -> str | None:
    """The revision a database is at for one history (None: its schema is not there). A
    legacy ``alembic_version`` row this history would adopt counts as its revision."""
    return _current(conn, which, set(sa.inspect(conn).get_table_names()))


def _current(conn: Connection, which: str, tables: set[str]) -> str | None:
    own = VERSION_TABLES[which]
    if own in tables:
        rows = _read_version(conn, own)
        return rows[0] if rows else None
    return _legacy_revision(conn, which, tables)


def _adopt_legacy(conn: Connection, which: str) -> None:
    from alembic.runtime.migration import MigrationContext

    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLES[which] in tables:
        return
    rev = _legacy_revision(conn, which, tables)
    if rev is None:
        return
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLES[which]})
    ctx.stamp(_scripts(which), rev)
    conn.exec_driver_sql(f"DROP TABLE {LEGACY_VERSION_TABLE}")


def upgrade(engine: Engine, which: str, revision: str = "head") -> str:
    """Bring one history of a database to ``revision`` (default: head) and return the
    revision it is at. Cheap when the database is already current; adopts a legacy
    ``alembic_version`` row first (see the module docstring)."""
    from alembic import command

    target = head_revision(which) if revision == "head" else revision
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        current = _current(conn, which, tables)
        conn.rollback()
    if current == target and VERSION_TABLES[which] in tables:
        return target
    cfg = alembic_config(which)
    with engine.connect() as conn, _foreign_keys_deferred(conn):
        with conn.begin():
            if conn.dialect.name == "postgresql":   # daemons starting at once migrate in turn
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            _adopt_legacy(conn, which)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            _check_foreign_keys(conn, which)
    return target


@contextlib.contextmanager
def _foreign_keys_deferred(conn: Connection):
    """SQLite: foreign keys off while migrating. A batch migration rebuilds a table (copy,
    drop, rename), and dropping a parent with ``ON DELETE CASCADE`` children would delete
    every child row. The pragma only takes effect outside a transaction, so it is set on
    the driver's connection before the migration's transaction begins."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection, which: str) -> None:
    """SQLite: refuse (roll back) a migration that left a row pointing at no parent."""
    if conn.dialect.name != "sqlite":
        return
    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if bad:
        from dsa110_contimg.core.errors import StoreError

        raise StoreError(f"migrating the {which} schema left {len(bad)} row(s) without their "
                         f"parent (first: table {bad[0][0]}, row {bad[0][1]}); nothing was changed")


def schema_differences(conn: Connection, which: str) -> list:
    """Alembic's comparison of a database with this release's schema (an empty list when
    they agree; version tables and other histories' tables are not differences)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dsa110_contimg.store.schema import products_metadata, registry_metadata

    meta = products_metadata if which == "products" else registry_metadata
    other = registry_metadata if which == "products" else products_metadata
    ignore = set(VERSION_TABLES.values()) | {LEGACY_VERSION_TABLE} | set(other.tables)

    def include(obj, name, type_, reflected, compare_to):
        return not (type_ == "table" and name in ignore)

    ctx = MigrationContext.configure(conn, opts={"include_object": include})
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (the RA-zone position indexes): alembic
        # leaves them out of the comparison there and says so; PostgreSQL compares them
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        return compare_metadata(ctx, meta)


def schema_state(engine: Engine, which: str) -> tuple[str | None, str]:
    """``(revision the database is at or None when its schema is absent, this release's
    head revision)`` of one history; reads only."""
    with engine.connect() as conn:
        current = current_revision(conn, which)
        conn.rollback()
    return current, head_revision(which)


def inspect_schemas(conn: Connection, histories) -> tuple[list[str], list[str]]:
    """``(notes, problems)`` about a database configured to hold the schemas ``histories``:
    the revision of each against this release's; a problem when a revision is unknown to
    this release or when the database holds the other history's schema although it is not
    configured for it (the two databases swapped, or another service's)."""
    tables = set(sa.inspect(conn).get_table_names())
    notes, problems = [], []
    for which in histories:
        current, head = _current(conn, which, tables), head_revision(which)
        own = VERSION_TABLES[which] in tables
        if current is None and own:
            problems.append(f"{VERSION_TABLES[which]} is empty")
        elif current is None:
            notes.append(f"no {which} schema yet (created when the daemon starts)")
        elif current not in revisions(which):
            problems.append(f"{which} schema at revision {current}, which this release does not "
                            "know (written by a newer release?)")
        elif current == head:
            notes.append(f"{which} schema at revision {current} (this release's)"
                         + ("" if own else "; its version row moves to its own table on the next "
                                           "upgrade"))
        else:
            notes.append(f"{which} schema at revision {current}: the daemon of this release upgrades "
                         f"it to {head} when it starts (take a `db backup` first)")
    for which in VERSION_TABLES:
        if which not in histories and MARKER_TABLES[which] in tables:
            problems.append(f"holds the {which} schema (table {MARKER_TABLES[which]}) but is not "
                            f"configured as the {which} database: databases swapped, or another "
                            "service's?")
    if LEGACY_VERSION_TABLE in tables and not any(_legacy_revision(conn, w, tables)
                                                   for w in VERSION_TABLES):
        rows = _read_version(conn, LEGACY_VERSION_TABLE)
        notes.append(f"{LEGACY_VERSION_TABLE} (revision {', '.join(rows) or 'none'}) is not this "
                     "service's (another application's migrations?); left alone")
    return notes, problems
