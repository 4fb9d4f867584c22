"""drop images.field_key (written and indexed, never read)

The QC history of a field is read by position (images whose centre lies within the
field's radius, store.lightcurves.qc_history), which has no boundary effects, so the
0.1-degree rounded ``field_key`` and its index were dead weight on every insert.

On SQLite the column is dropped with ``ALTER TABLE ... DROP COLUMN`` (SQLite >= 3.35)
rather than a batch table rebuild, which would have to drop and recreate ``images``
under the tables that reference it.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_images_field_key_mjd', table_name='images')
    if op.get_context().dialect.name == "sqlite":
        op.execute('ALTER TABLE images DROP COLUMN field_key')
    else:
        op.drop_column('images', 'field_key')


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute('ALTER TABLE images ADD COLUMN field_key VARCHAR(32)')
    else:
        op.add_column('images', sa.Column('field_key', sa.String(length=32), nullable=True))
    op.create_index('ix_images_field_key_mjd', 'images', ['field_key', 'mjd'], unique=False)
