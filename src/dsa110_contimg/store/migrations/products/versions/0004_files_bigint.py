"""files.size and files.mtime_ns are 64-bit on PostgreSQL

Nanosecond mtimes overflow PostgreSQL's 32-bit INTEGER; SQLite's INTEGER is 64-bit
already, so nothing changes there.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for column in ("size", "mtime_ns"):
        op.alter_column("files", column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for column in ("size", "mtime_ns"):
        op.alter_column("files", column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=False)
