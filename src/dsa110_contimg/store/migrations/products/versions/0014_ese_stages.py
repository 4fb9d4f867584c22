"""ESE stages: the candidate's stage (dip in progress, recovering, confirmed, retired) and
an append-only history of its changes

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_STAGES = "stage IN ('confirmed', 'recovering', 'dip_in_progress', 'retired')"


def upgrade() -> None:
    with op.batch_alter_table('ese_candidates') as batch:
        batch.add_column(sa.Column('stage', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('stage_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('stage_changed_at', sa.Float(), nullable=True))
        batch.create_check_constraint(op.f('ck_ese_candidates_stage'), _STAGES)
    op.create_table('ese_stage_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=True),
    sa.Column('previous_stage', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('significance', sa.Float(), nullable=True),
    sa.Column('mjd', sa.Float(), nullable=True),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.CheckConstraint(_STAGES, name=op.f('ck_ese_stage_history_stage')),
    sa.ForeignKeyConstraint(['candidate_id'], ['ese_candidates.id'],
                            name=op.f('fk_ese_stage_history_candidate_id_ese_candidates'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'],
                            name=op.f('fk_ese_stage_history_image_id_images'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ese_stage_history'))
    )
    op.create_index(op.f('ix_ese_stage_history_candidate_id_created_at'), 'ese_stage_history',
                    ['candidate_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ese_stage_history_candidate_id_created_at'), table_name='ese_stage_history')
    op.drop_table('ese_stage_history')
    with op.batch_alter_table('ese_candidates') as batch:
        batch.drop_constraint(op.f('ck_ese_candidates_stage'), type_='check')
        batch.drop_column('stage_changed_at')
        batch.drop_column('stage_reason')
        batch.drop_column('stage')
