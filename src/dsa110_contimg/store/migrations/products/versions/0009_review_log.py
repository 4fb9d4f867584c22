"""review_log: every review action and the pipeline's own flagging, append-only

A second review used to overwrite the first note and turn ``flagged_by`` from ``auto``
into ``operator``. Each candidate now has a log of entries (when, who, action, status
after, note). Existing candidates get their flagging (at ``first_flagged_at``, by the
pipeline) and, when they were reviewed, one entry of that last review (its reviewer was
not recorded: ``unknown``); ``flagged_by`` goes back to ``auto``, since only the pipeline
creates candidates.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_ACTIONS = "'flagged', 'investigating', 'dismissed', 'reactivated'"
_STATES = "'active', 'investigated', 'dismissed'"


def upgrade() -> None:
    op.create_table(
        'review_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('candidate_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('reviewer', sa.Text(), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.CheckConstraint(f"action IN ({_ACTIONS})", name=op.f('ck_review_log_action')),
        sa.CheckConstraint(f"status IN ({_STATES})", name=op.f('ck_review_log_status')),
        sa.ForeignKeyConstraint(['candidate_id'], ['ese_candidates.id'],
                                name=op.f('fk_review_log_candidate_id_ese_candidates'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_review_log')),
    )
    op.create_index('ix_review_log_candidate_id_created_at', 'review_log', ['candidate_id', 'created_at'],
                    unique=False)
    op.execute("INSERT INTO review_log (candidate_id, created_at, reviewer, action, status, note) "
               "SELECT id, first_flagged_at, 'pipeline', 'flagged', 'active', NULL FROM ese_candidates")
    op.execute("INSERT INTO review_log (candidate_id, created_at, reviewer, action, status, note) "
               "SELECT id, updated_at, 'unknown', CASE status WHEN 'investigated' THEN 'investigating' "
               "WHEN 'dismissed' THEN 'dismissed' ELSE 'reactivated' END, status, notes "
               "FROM ese_candidates WHERE flagged_by = 'operator'")
    op.execute("UPDATE ese_candidates SET flagged_by = 'auto' WHERE flagged_by = 'operator'")


def downgrade() -> None:
    op.drop_index('ix_review_log_candidate_id_created_at', table_name='review_log')
    op.drop_table('review_log')
