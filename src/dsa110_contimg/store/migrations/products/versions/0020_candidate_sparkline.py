"""ESE candidates keep a fixed-size summary of their light curve (the sparkline of the
candidates page), written by the ESE step, so that a page of candidates reads no measurement

Revision ID: 0020
Revises: 0019
"""
from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ese_candidates') as batch:
        batch.add_column(sa.Column('sparkline', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ese_candidates') as batch:
        batch.drop_column('sparkline')
