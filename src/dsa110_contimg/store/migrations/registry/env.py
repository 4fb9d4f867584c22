"""Alembic environment of the registry database (run programmatically by store.migrate.upgrade).

Its revisions are recorded in a version table of their own (``store.migrate.VERSION_TABLES``),
so the products and registry histories can share one database.
"""

from alembic import context

from dsa110_contimg.store.schema import registry_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=registry_metadata, render_as_batch=True,
                  version_table=context.config.attributes["version_table"])
context.run_migrations()
