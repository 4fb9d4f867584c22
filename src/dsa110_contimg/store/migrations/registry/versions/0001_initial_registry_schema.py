"""initial registry schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 05:19:51.516584
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('data_products',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('data_id', sa.Text(), nullable=False),
    sa.Column('data_type', sa.String(length=32), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('photometry_status', sa.String(length=16), nullable=True),
    sa.Column('photometry_job_id', sa.Text(), nullable=True),
    sa.Column('photometry_error', sa.Text(), nullable=True),
    sa.Column('metadata_json', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.CheckConstraint("photometry_status IS NULL OR photometry_status IN ('pending', 'running', 'completed', 'failed')", name=op.f('ck_data_products_photometry_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_products')),
    sa.UniqueConstraint('data_id', name=op.f('uq_data_products_data_id'))
    )


def downgrade() -> None:
    op.drop_table('data_products')
