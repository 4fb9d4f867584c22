"""index images (measured_at, id): ``images list`` (newest measured first) reads its page from
the index instead of sorting every image

Revision ID: 0016
Revises: 0015
"""
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_images_measured_at_id', 'images', ['measured_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_images_measured_at_id', table_name='images')
