"""reference provenance: the role of each candidate reference on an image (used, clipped,
rejected, not_chosen) and its flux / baseline ratio there

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reference_choices') as batch:
        batch.add_column(sa.Column('role', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('ratio', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reference_choices') as batch:
        batch.drop_column('ratio')
        batch.drop_column('role')
