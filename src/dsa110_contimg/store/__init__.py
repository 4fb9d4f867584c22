"""Persistence: schema, engines, migrations, repositories and the job queue.

The store is the only layer that speaks SQL. SQLite is the default (a path);
any SQLAlchemy URL works (``postgresql+psycopg://...``).
"""

from dsa110_contimg.store.engine import Database, database_url, open_products_db, open_registry_db

__all__ = ["Database", "database_url", "open_products_db", "open_registry_db"]
