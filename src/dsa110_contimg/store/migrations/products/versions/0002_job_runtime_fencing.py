"""job runtime: cancel flag, daemon interruptions, node of each daemon

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 12:20:00

* ``batch_jobs.cancel_requested``: an operator asked to cancel a running job
  (replaces the ``error = 'cancel requested'`` string); a cancelled job never
  runs again, whatever the worker reports afterwards.
* ``batch_jobs.interruptions``: attempts interrupted by the death of the
  daemon that held the lease (they do not count against ``max_attempts``).
* ``heartbeats.node``: the ``[daemon] node`` name of each daemon instance.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batch_jobs') as batch:
        batch.add_column(sa.Column('cancel_requested', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('interruptions', sa.Integer(), nullable=False,
                                   server_default='0'))
    with op.batch_alter_table('heartbeats') as batch:
        batch.add_column(sa.Column('node', sa.Text(), nullable=True))
    # carry over cancellations requested through the old error string
    op.execute("UPDATE batch_jobs SET cancel_requested = TRUE WHERE status = 'running' "
               "AND error = 'cancel requested'")


def downgrade() -> None:
    with op.batch_alter_table('heartbeats') as batch:
        batch.drop_column('node')
    with op.batch_alter_table('batch_jobs') as batch:
        batch.drop_column('interruptions')
        batch.drop_column('cancel_requested')
