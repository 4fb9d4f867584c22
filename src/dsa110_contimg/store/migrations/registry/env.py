"""Alembic environment of the registry database (run programmatically by store.engine.upgrade)."""

from alembic import context

from dsa110_contimg.store.schema import registry_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=registry_metadata, render_as_batch=True)
context.run_migrations()
