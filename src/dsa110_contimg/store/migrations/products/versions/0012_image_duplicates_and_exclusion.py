"""images: an observation stored once (data_digest, duplicate_of) and epochs an operator
took out of the light curves (excluded, excluded_reason, excluded_at)

``data_digest`` identifies a file's data independently of its name and modification time;
an image whose digest is already stored under another path is kept as a row with
``duplicate_of`` set and no measurements. ``excluded`` images keep their measurements but
count in no light curve, normalisation, variability statistic or ESE search.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('data_digest', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('duplicate_of', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('excluded', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('excluded_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('excluded_at', sa.Float(), nullable=True))
    op.create_index(op.f('ix_images_data_digest'), 'images', ['data_digest'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_images_data_digest'), table_name='images')
    with op.batch_alter_table('images') as batch:
        for col in ('excluded_at', 'excluded_reason', 'excluded', 'duplicate_of', 'data_digest'):
            batch.drop_column(col)
