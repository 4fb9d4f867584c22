"""indexes for finding sources: by name (sources.catalog_id) and ranked by V, mean flux
or number of epochs (variability_stats.v, weighted_mean, n; eta already has one)

A name is matched as a prefix range and a ranking walks its metric's index, so a search
page reads its page of rows whatever the number of sources.

Revision ID: 0010
Revises: 0009
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_INDEXES = (("ix_sources_catalog_id", "sources", "catalog_id"),
            ("ix_variability_stats_v", "variability_stats", "v"),
            ("ix_variability_stats_weighted_mean", "variability_stats", "weighted_mean"),
            ("ix_variability_stats_n", "variability_stats", "n"))


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
