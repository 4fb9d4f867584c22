"""index batch_jobs (status, acknowledged_at, updated_at): the failed and dead jobs no operator
acknowledged (``status``, ``/``, ``jobs list --unacknowledged``), latest first, found without
reading every failed job of the past

Revision ID: 0019
Revises: 0018
"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_batch_jobs_status_acknowledged_at_updated_at', 'batch_jobs',
                    ['status', 'acknowledged_at', 'updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_batch_jobs_status_acknowledged_at_updated_at', table_name='batch_jobs')
