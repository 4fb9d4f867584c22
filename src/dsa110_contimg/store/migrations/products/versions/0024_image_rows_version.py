"""images.rows_version: bumped by every write that changes an image's measurement rows once
stored (normalised fluxes, re-measurement, replaced sources), so that a process's cache of
measurement rows (store/row_cache.py) knows which images to read again

Revision ID: 0024
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('rows_version', sa.Integer(), nullable=False,
                                   server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.drop_column('rows_version')
