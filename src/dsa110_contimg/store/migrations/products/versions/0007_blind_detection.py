"""Blind detection: sources.kind, source_detections, detections, image_depths, new_sources

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

KINDS = "kind IN ('catalogue', 'monitor', 'new', 'blind')"
STATES = "status IN ('associated', 'duplicate', 'new_source', 'blind_source', 'rejected')"


def upgrade() -> None:
    with op.batch_alter_table('sources') as batch:
        batch.add_column(sa.Column('kind', sa.String(16), nullable=False,
                                   server_default='catalogue'))
        batch.create_check_constraint('kind', KINDS)
        batch.create_index('ix_sources_kind', ['kind'])
    op.create_table(
        'source_detections',
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('wm_ra_deg', sa.Float(), nullable=False),
        sa.Column('wm_dec_deg', sa.Float(), nullable=False),
        sa.Column('w_ra', sa.Float(), nullable=False),
        sa.Column('w_dec', sa.Float(), nullable=False),
        sa.Column('n_detections', sa.Integer(), nullable=False),
        sa.Column('first_detected_mjd', sa.Float(), nullable=True),
        sa.Column('last_detected_mjd', sa.Float(), nullable=True),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE',
                                name='fk_source_detections_source_id_sources'),
        sa.PrimaryKeyConstraint('source_id', name='pk_source_detections'),
    )
    op.create_table(
        'detections',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=True),
        sa.Column('mjd', sa.Float(), nullable=True),
        sa.Column('ra_deg', sa.Float(), nullable=False),
        sa.Column('dec_deg', sa.Float(), nullable=False),
        sa.Column('ra_err_arcsec', sa.Float(), nullable=True),
        sa.Column('dec_err_arcsec', sa.Float(), nullable=True),
        sa.Column('x_pix', sa.Float(), nullable=True),
        sa.Column('y_pix', sa.Float(), nullable=True),
        sa.Column('peak_jyb', sa.Float(), nullable=True),
        sa.Column('peak_err_jyb', sa.Float(), nullable=True),
        sa.Column('local_rms_jyb', sa.Float(), nullable=True),
        sa.Column('snr', sa.Float(), nullable=True),
        sa.Column('island_id', sa.Integer(), nullable=True),
        sa.Column('n_components', sa.Integer(), nullable=True),
        sa.Column('flags', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('de_ruiter_r', sa.Float(), nullable=True),
        sa.Column('n_candidates', sa.Integer(), nullable=False),
        sa.Column('related_source_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.CheckConstraint(STATES, name='ck_detections_status'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE',
                                name='fk_detections_image_id_images'),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='SET NULL',
                                name='fk_detections_source_id_sources'),
        sa.ForeignKeyConstraint(['related_source_id'], ['sources.id'], ondelete='SET NULL',
                                name='fk_detections_related_source_id_sources'),
        sa.PrimaryKeyConstraint('id', name='pk_detections'),
    )
    op.create_index('ix_detections_image_id', 'detections', ['image_id'])
    op.create_table(
        'image_depths',
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('rms_min_jyb', sa.Float(), nullable=True),
        sa.Column('rms_max_jyb', sa.Float(), nullable=True),
        sa.Column('footprint', sa.LargeBinary(), nullable=False),
        sa.Column('n_detections', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE',
                                name='fk_image_depths_image_id_images'),
        sa.PrimaryKeyConstraint('image_id', name='pk_image_depths'),
    )
    op.create_index('ix_image_depths_rms_min_jyb', 'image_depths', ['rms_min_jyb'])
    op.create_table(
        'new_sources',
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('mjd', sa.Float(), nullable=True),
        sa.Column('peak_jyb', sa.Float(), nullable=False),
        sa.Column('peak_err_jyb', sa.Float(), nullable=True),
        sa.Column('new_high_sigma', sa.Float(), nullable=False),
        sa.Column('sigma_image_id', sa.Integer(), nullable=True),
        sa.Column('sigma_rms_min', sa.Float(), nullable=True),
        sa.Column('likely_transient', sa.Boolean(), nullable=False),
        sa.Column('n_earlier_images', sa.Integer(), nullable=False),
        sa.Column('backfill_job_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE',
                                name='fk_new_sources_source_id_sources'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE',
                                name='fk_new_sources_image_id_images'),
        sa.ForeignKeyConstraint(['sigma_image_id'], ['images.id'], ondelete='SET NULL',
                                name='fk_new_sources_sigma_image_id_images'),
        sa.ForeignKeyConstraint(['backfill_job_id'], ['batch_jobs.id'], ondelete='SET NULL',
                                name='fk_new_sources_backfill_job_id_batch_jobs'),
        sa.PrimaryKeyConstraint('source_id', name='pk_new_sources'),
    )
    op.create_index('ix_new_sources_new_high_sigma', 'new_sources', ['new_high_sigma'])


def downgrade() -> None:
    op.drop_table('new_sources')
    op.drop_table('image_depths')
    op.drop_table('detections')
    op.drop_table('source_detections')
    with op.batch_alter_table('sources') as batch:
        batch.drop_index('ix_sources_kind')
        batch.drop_constraint('ck_sources_kind', type_='check')
        batch.drop_column('kind')
