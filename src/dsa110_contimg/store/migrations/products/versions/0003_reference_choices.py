"""reference choices per image and the normalisation method

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reference_choices',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('chosen', sa.Boolean(), nullable=False),
    sa.Column('compactness', sa.String(length=16), nullable=False),
    sa.Column('snr', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_reference_choices_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_reference_choices_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', 'source_id', name=op.f('pk_reference_choices'))
    )
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('norm_method', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.drop_column('norm_method')
    op.drop_table('reference_choices')
