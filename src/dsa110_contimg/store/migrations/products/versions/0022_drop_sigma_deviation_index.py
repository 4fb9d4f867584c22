"""drop the index of variability_stats.sigma_deviation: no listing, page or step orders or
filters by it (the source pages rank by eta, V, mean flux and epochs), and every image's
upsert of its sources' statistics rewrote an entry of it per source

Revision ID: 0022
Revises: 0021
"""
from alembic import op


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_variability_stats_sigma_deviation', table_name='variability_stats')


def downgrade() -> None:
    op.create_index('ix_variability_stats_sigma_deviation', 'variability_stats',
                    ['sigma_deviation'], unique=False)
