"""batch_jobs.acknowledged_at: an operator has seen a failed or dead job

A failed or dead job no operator has acknowledged makes ``status`` degraded; once
acknowledged (``contimg-photometry jobs ack``) it stays listed but no longer does.
Existing failed and dead jobs start unacknowledged.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('batch_jobs', sa.Column('acknowledged_at', sa.Float(), nullable=True))


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute('ALTER TABLE batch_jobs DROP COLUMN acknowledged_at')
    else:
        op.drop_column('batch_jobs', 'acknowledged_at')
