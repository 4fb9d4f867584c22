"""batch_jobs.acknowledged_at (an operator has seen a failed or dead job); an index on
files.batch_id (deleting old jobs)

A failed or dead job no operator has acknowledged makes ``status`` degraded; once
acknowledged (``contimg-photometry jobs ack``) it stays listed but no longer does.
Existing failed and dead jobs start unacknowledged.

``db prune`` deletes old jobs; each deleted job sets ``files.batch_id`` of its files to
NULL, which without an index costs a scan of ``files`` per job.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('batch_jobs', sa.Column('acknowledged_at', sa.Float(), nullable=True))
    op.create_index('ix_files_batch_id', 'files', ['batch_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_files_batch_id', table_name='files')
    if op.get_context().dialect.name == "sqlite":
        op.execute('ALTER TABLE batch_jobs DROP COLUMN acknowledged_at')
    else:
        op.drop_column('batch_jobs', 'acknowledged_at')
