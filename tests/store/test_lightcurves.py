"""Light-curve and QC-history queries of the products database."""

from __future__ import annotations

import sqlite3

import pytest


def test_qc_history_is_read_without_the_write_lock(tmp_path):
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import make_engine, read_connection

    db = tmp_path / "p.sqlite3"
    open_products_db(db)
    holder = sqlite3.connect(db, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")          # another worker holds the write lock
    try:
        engine = make_engine(db, busy_timeout_ms=200)
        with read_connection(engine) as conn:     # deferred: reads go through
            assert lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None,
                                       exclude_path="x") == []
        # the same read on an ordinary (write) connection waits for the lock and fails
        with pytest.raises(Exception, match="locked"):
            with engine.connect() as conn:
                lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None, exclude_path="x")
        engine.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
