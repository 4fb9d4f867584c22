"""ese_candidates.baseline_jyb and caustic_amp: the whole fitted ESE template

With depth, duration_days, t_min_mjd and template, these two make the fitted
template of the shape search complete, so a page or a plot draws the model from
the stored row instead of fitting the light curve again.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('ese_candidates', sa.Column('baseline_jyb', sa.Float(), nullable=True))
    op.add_column('ese_candidates', sa.Column('caustic_amp', sa.Float(), nullable=True))


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute('ALTER TABLE ese_candidates DROP COLUMN caustic_amp')
        op.execute('ALTER TABLE ese_candidates DROP COLUMN baseline_jyb')
    else:
        op.drop_column('ese_candidates', 'caustic_amp')
        op.drop_column('ese_candidates', 'baseline_jyb')
