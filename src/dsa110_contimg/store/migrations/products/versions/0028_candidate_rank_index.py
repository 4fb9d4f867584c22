"""ix_ese_candidates_rank: the ESE candidates in the order every listing shows them (rank by
stage and shape search, highest score, oldest; store/lightcurves.candidate_order), so a page
of candidates is read from the index in order and then its sources by key, not every candidate
sorted after a join with every source.

Revision ID: 0028
Revises: 0027
"""
import sqlalchemy as sa
from alembic import op


revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None

#: the text of schema.CANDIDATE_RANK_SQL (the queries' ORDER BY must be the same text)
_RANK = ("CASE\nWHEN stage = 'confirmed' THEN 0\nWHEN stage = 'recovering' THEN 1\n"
         "WHEN stage = 'dip_in_progress' THEN 2\nWHEN stage = 'retired' THEN 5\n"
         "WHEN replace(criteria, '\"shape\"', '') <> criteria THEN 3\nELSE 4\nEND")


def upgrade() -> None:
    op.create_index('ix_ese_candidates_rank', 'ese_candidates',
                    [sa.text(f'(\n{_RANK})'), sa.text('score DESC'), 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ese_candidates_rank', table_name='ese_candidates')
