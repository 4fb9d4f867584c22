"""Alembic environment of the products database (run programmatically by store.engine.upgrade)."""

from alembic import context

from dsa110_contimg.store.schema import products_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=products_metadata, render_as_batch=True)
context.run_migrations()
