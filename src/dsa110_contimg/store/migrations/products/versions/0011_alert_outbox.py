"""alert outbox: alerts, their deliveries per destination, destination sending state

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('dedupe_key', sa.Text(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('significance', sa.Float(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('fanned_out_at', sa.Float(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_alerts_image_id_images'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_alerts_source_id_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_alerts_dedupe_key')),
    sa.UniqueConstraint('key', name=op.f('uq_alerts_key'))
    )
    op.create_index(op.f('ix_alerts_created_at'), 'alerts', ['created_at'], unique=False)
    op.create_index(op.f('ix_alerts_fanned_out_at'), 'alerts', ['fanned_out_at'], unique=False)
    op.create_table('alert_deliveries',
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.Float(), nullable=True),
    sa.Column('summary_key', sa.String(length=80), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.CheckConstraint("kind IN ('webhook', 'voevent')", name=op.f('ck_alert_deliveries_kind')),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f('ck_alert_deliveries_state')),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_deliveries_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alert_id', 'destination', name=op.f('pk_alert_deliveries'))
    )
    op.create_index(op.f('ix_alert_deliveries_destination_state_alert_id'), 'alert_deliveries',
                    ['destination', 'state', 'alert_id'], unique=False)
    op.create_index(op.f('ix_alert_deliveries_state_kind'), 'alert_deliveries', ['state', 'kind'],
                    unique=False)
    op.create_table('alert_destinations',
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_attempt_at', sa.Float(), nullable=True),
    sa.Column('last_success_at', sa.Float(), nullable=True),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('window_sent', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=True),
    sa.CheckConstraint("kind IN ('webhook', 'voevent')", name=op.f('ck_alert_destinations_kind')),
    sa.PrimaryKeyConstraint('destination', name=op.f('pk_alert_destinations'))
    )


def downgrade() -> None:
    op.drop_table('alert_destinations')
    op.drop_index(op.f('ix_alert_deliveries_state_kind'), table_name='alert_deliveries')
    op.drop_index(op.f('ix_alert_deliveries_destination_state_alert_id'), table_name='alert_deliveries')
    op.drop_table('alert_deliveries')
    op.drop_index(op.f('ix_alerts_fanned_out_at'), table_name='alerts')
    op.drop_index(op.f('ix_alerts_created_at'), table_name='alerts')
    op.drop_table('alerts')
