"""Engines and connections for the products database and the data registry.

SQLite settings (per connection): WAL journal, ``busy_timeout``,
``foreign_keys=ON``, ``synchronous=NORMAL``. Write transactions start with
``BEGIN IMMEDIATE`` so that a read-then-write transaction never fails with an
immediate SQLITE_BUSY (the busy handler is honoured at BEGIN). Read-only
engines (status CLI) open the file with ``mode=ro`` and never block the daemon.

Schemas are migrated with Alembic on open (:func:`~dsa110_contimg.store.migrate.upgrade`
to head), so a newer release opens an older database and brings it up to date.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.store.migrate import MIGRATIONS, upgrade  # noqa: F401 - re-exported

DEFAULT_BUSY_TIMEOUT_MS = 30_000
#: SQLite page cache per connection (MiB).
DEFAULT_CACHE_MIB = 64


def database_url(path_or_url: str | Path, *, read_only: bool = False) -> str:
    """Turn a filesystem path (SQLite) or an SQLAlchemy URL into a URL string."""
    text = str(path_or_url)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if read_only:
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    return f"sqlite:///{path}"


def _install_sqlite_hooks(engine: Engine, *, read_only: bool, busy_timeout_ms: int,
                          cache_mib: int = DEFAULT_CACHE_MIB, pragmas: tuple[str, ...] = (),
                          reads_by_default: bool = False) -> None:
    """The service's SQLite connection settings (one definition for every SQLite file).

    Every connection: busy timeout, foreign keys, page cache of ``cache_mib``, then the
    extra ``pragmas`` (e.g. ``"page_size=16384"``); writable ones also WAL and
    ``synchronous=NORMAL``. Transactions: ``BEGIN IMMEDIATE`` (the write lock) unless the
    connection has :data:`READ_OPTION`; with ``reads_by_default`` (the catalogue store,
    read far more than written) the reverse: ``BEGIN`` unless it has :data:`WRITE_OPTION`.
    """
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's begin hook (below) issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
        for pragma in pragmas:
            cur.execute(f"PRAGMA {pragma}")
        if not read_only:
            cur.execute("PRAGMA synchronous=NORMAL")
            set_wal(cur, busy_timeout_ms)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        opts = conn.get_execution_options()
        if reads_by_default:
            reading = read_only or not opts.get(WRITE_OPTION, False)
        else:
            reading = read_only or opts.get(READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


#: Connection execution option: this connection only reads (SQLite: deferred BEGIN, so no
#: write lock is taken; see :func:`read_connection`).
READ_OPTION = "contimg_read_only"
#: Connection execution option: this connection writes (``BEGIN IMMEDIATE`` on an engine
#: made with ``reads_by_default``).
WRITE_OPTION = "sqlite_immediate"


@contextmanager
def read_connection(engine: Engine):
    """A connection for reads only: its transaction never takes the SQLite write lock.

    Write connections autobegin with ``BEGIN IMMEDIATE`` (the write lock, held until
    commit); reads done before a write transaction (e.g. the QC history) use this so
    that the lock is held only for the writes. The transaction is rolled back on exit.
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_OPTION: True})
        try:
            yield conn
        finally:
            conn.rollback()


#: Key of the PostgreSQL advisory lock that serialises the per-image write transactions.
PRODUCTS_WRITE_LOCK = 110_0001


def serialise_writes(conn) -> None:
    """Hold the products database's write lock for the rest of this transaction.

    The per-image transaction reads and rewrites running sums, baselines and candidates of
    the sources it touches; two of them must never interleave. SQLite's ``BEGIN
    IMMEDIATE`` already serialises them; on PostgreSQL a transaction-level advisory lock
    does the same (released at commit or rollback). Call it first in the transaction.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PRODUCTS_WRITE_LOCK})")


def dialect_insert(conn, table: sa.Table):
    """``INSERT`` of the connection's dialect, which has ``on_conflict_do_nothing/update``.

    Used where two processes (or two daemons on two hosts) may insert the same key at
    once: the loser's row is merged by the database instead of raising a unique violation.
    """
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - other back-ends are not supported
        raise NotImplementedError(f"upsert on {name}")
    return insert(table)


def set_wal(cur, busy_timeout_ms: int) -> None:
    """Switch to WAL (persistent); a fresh file may need the write lock, so retry."""
    import sqlite3

    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(path_or_url: str | Path, *, read_only: bool = False,
                busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, cache_mib: int = DEFAULT_CACHE_MIB,
                pragmas: tuple[str, ...] = (), reads_by_default: bool = False,
                keep_connections: int = 0) -> Engine:
    """Create an engine with the service's connection settings.

    Parameters
    ----------
    path_or_url : str or Path
        SQLite file path or SQLAlchemy URL.
    read_only : bool
        Open SQLite read-only (``mode=ro``); the file must exist.
    busy_timeout_ms : int
        How long a writer waits for the lock before "database is locked".
    cache_mib, pragmas, reads_by_default
        SQLite only: see :func:`_install_sqlite_hooks`.
    keep_connections : int
        SQLite read-only engines: how many idle connections are kept for the next reads
        (each with its page cache, up to ``cache_mib``, valid until the file changes), so
        that a long-running reader (the web site) neither reopens the file nor rereads
        the pages of every request; 0 (the default): every connection is closed after use.
    """
    url = database_url(path_or_url, read_only=read_only)
    if url.startswith("sqlite"):
        if not read_only and "://" not in str(path_or_url):
            Path(str(path_or_url)).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        pool = {"poolclass": sa.pool.NullPool} if read_only and keep_connections <= 0 else {}
        if read_only and keep_connections > 0:
            pool = {"pool_size": int(keep_connections), "max_overflow": -1}
        engine = sa.create_engine(
            url, connect_args={"timeout": busy_timeout_ms / 1000.0, "check_same_thread": False},
            **pool)
        _install_sqlite_hooks(engine, read_only=read_only, busy_timeout_ms=busy_timeout_ms,
                              cache_mib=cache_mib, pragmas=pragmas, reads_by_default=reads_by_default)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@dataclass
class Database:
    """An opened, migrated database: its engine and where it came from."""

    engine: Engine
    url: str
    which: str

    def dispose(self) -> None:
        self.engine.dispose()


def _open(path_or_url, which: str, *, migrate: bool, read_only: bool,
          keep_connections: int = 0) -> Database:
    url = database_url(path_or_url, read_only=read_only)
    if read_only and url.startswith("sqlite") and not Path(str(path_or_url)).exists():
        raise StoreError(f"{which} database does not exist", path_or_url)
    try:
        engine = make_engine(path_or_url, read_only=read_only, keep_connections=keep_connections)
        if migrate and not read_only:
            upgrade(engine, which)
    except StoreError:
        raise
    except Exception as exc:  # sqlalchemy / sqlite errors: name the database and the cause
        from dsa110_contimg.store.urls import error_line, mask_url

        raise StoreError(f"cannot open {which} database: {error_line(exc, path_or_url)}",
                         mask_url(path_or_url)) from exc
    return Database(engine, url, which)


def open_products_db(path_or_url: str | Path, *, migrate: bool = True,
                     read_only: bool = False, keep_connections: int = 0) -> Database:
    """Open (and by default migrate) the products database (``keep_connections``: see
    :func:`make_engine`)."""
    return _open(path_or_url, "products", migrate=migrate, read_only=read_only,
                 keep_connections=keep_connections)


def open_registry_db(path_or_url: str | Path, *, migrate: bool = True,
                     read_only: bool = False) -> Database:
    """Open (and by default migrate) the data-registry database."""
    return _open(path_or_url, "registry", migrate=migrate, read_only=read_only)


def empty_products_database() -> Database:
    """A products schema without a row, in memory (what the read-only queries see before the
    daemon's first run)."""
    from dsa110_contimg.store.schema import products_metadata

    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    products_metadata.create_all(engine)
    return Database(engine, "sqlite://", "products")
