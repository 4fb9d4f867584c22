"""initial products schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 05:19:51.477852
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch_jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('data_id', sa.Text(), nullable=True),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('total_items', sa.Integer(), nullable=False),
    sa.Column('completed_items', sa.Integer(), nullable=False),
    sa.Column('failed_items', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', sa.Float(), nullable=False),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed', 'dead', 'cancelled')", name=op.f('ck_batch_jobs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_jobs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_batch_jobs_idempotency_key'))
    )
    with op.batch_alter_table('batch_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_jobs_status_not_before_id'), ['status', 'not_before', 'id'], unique=False)

    op.create_table('heartbeats',
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('beat_at', sa.Float(), nullable=False),
    sa.Column('workers', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('status_text', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('owner', name=op.f('pk_heartbeats'))
    )
    op.create_table('images',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('content_id', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('data_id', sa.Text(), nullable=True),
    sa.Column('mjd', sa.Float(), nullable=True),
    sa.Column('freq_hz', sa.Float(), nullable=True),
    sa.Column('beam_major_arcsec', sa.Float(), nullable=True),
    sa.Column('beam_minor_arcsec', sa.Float(), nullable=True),
    sa.Column('beam_pa_deg', sa.Float(), nullable=True),
    sa.Column('beam_source', sa.String(length=16), nullable=True),
    sa.Column('ra_center_deg', sa.Float(), nullable=True),
    sa.Column('dec_center_deg', sa.Float(), nullable=True),
    sa.Column('radius_deg', sa.Float(), nullable=True),
    sa.Column('field_key', sa.String(length=32), nullable=True),
    sa.Column('median_rms_jyb', sa.Float(), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('catalog', sa.String(length=16), nullable=False),
    sa.Column('n_sources', sa.Integer(), nullable=False),
    sa.Column('n_success', sa.Integer(), nullable=False),
    sa.Column('qc_status', sa.String(length=16), nullable=False),
    sa.Column('qc_reasons', sa.Text(), nullable=True),
    sa.Column('qc_metrics', sa.Text(), nullable=True),
    sa.Column('norm_status', sa.String(length=16), nullable=False),
    sa.Column('norm_factor', sa.Float(), nullable=True),
    sa.Column('norm_factor_err', sa.Float(), nullable=True),
    sa.Column('norm_scatter', sa.Float(), nullable=True),
    sa.Column('norm_n_refs', sa.Integer(), nullable=True),
    sa.Column('norm_reason', sa.Text(), nullable=True),
    sa.Column('norm_ref_ids', sa.Text(), nullable=True),
    sa.Column('norm_used_ids', sa.Text(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('measured_at', sa.Float(), nullable=False),
    sa.CheckConstraint("kind IN ('image', 'mosaic')", name=op.f('ck_images_kind')),
    sa.CheckConstraint("norm_status IN ('not_requested', 'ok', 'failed')", name=op.f('ck_images_norm_status')),
    sa.CheckConstraint("qc_status IN ('pending', 'passed', 'warning', 'failed')", name=op.f('ck_images_qc_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('path', name=op.f('uq_images_path'))
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_images_dec_center_deg'), ['dec_center_deg'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_field_key_mjd'), ['field_key', 'mjd'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_mjd'), ['mjd'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_ra_center_deg'), ['ra_center_deg'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_radius_deg'), ['radius_deg'], unique=False)

    op.create_table('sources',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('survey', sa.String(length=16), nullable=False),
    sa.Column('catalog_id', sa.Text(), nullable=False),
    sa.Column('ra_deg', sa.Float(), nullable=False),
    sa.Column('dec_deg', sa.Float(), nullable=False),
    sa.Column('catalog_flux_mjy', sa.Float(), nullable=True),
    sa.Column('reference_ok', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources')),
    sa.UniqueConstraint('survey', 'catalog_id', name=op.f('uq_sources_survey_catalog_id'))
    )
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sources_dec_deg_ra_deg'), ['dec_deg', 'ra_deg'], unique=False)

    op.create_table('batch_job_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('fits_path', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('data_id', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('n_measurements', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('completed_at', sa.Float(), nullable=True),
    sa.CheckConstraint("kind IN ('image', 'mosaic')", name=op.f('ck_batch_job_items_kind')),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_batch_job_items_status')),
    sa.ForeignKeyConstraint(['batch_id'], ['batch_jobs.id'], name=op.f('fk_batch_job_items_batch_id_batch_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_batch_job_items_image_id_images'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_job_items'))
    )
    with op.batch_alter_table('batch_job_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_job_items_batch_id'), ['batch_id'], unique=False)

    op.create_table('ese_candidates',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flagged_by', sa.String(length=16), nullable=False),
    sa.Column('criteria', sa.Text(), nullable=False),
    sa.Column('preset', sa.String(length=16), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('confidence', sa.String(length=8), nullable=False),
    sa.Column('sigma_deviation', sa.Float(), nullable=True),
    sa.Column('chi2_nu', sa.Float(), nullable=True),
    sa.Column('eta', sa.Float(), nullable=True),
    sa.Column('v', sa.Float(), nullable=True),
    sa.Column('shape_significance', sa.Float(), nullable=True),
    sa.Column('depth', sa.Float(), nullable=True),
    sa.Column('duration_days', sa.Float(), nullable=True),
    sa.Column('t_min_mjd', sa.Float(), nullable=True),
    sa.Column('template', sa.Text(), nullable=True),
    sa.Column('n_epochs', sa.Integer(), nullable=True),
    sa.Column('first_flagged_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('investigated_at', sa.Float(), nullable=True),
    sa.Column('dismissed_at', sa.Float(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('active', 'investigated', 'dismissed')", name=op.f('ck_ese_candidates_status')),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_ese_candidates_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ese_candidates')),
    sa.UniqueConstraint('source_id', name=op.f('uq_ese_candidates_source_id'))
    )
    with op.batch_alter_table('ese_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ese_candidates_status_score'), ['status', 'score'], unique=False)

    op.create_table('files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('mtime_ns', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.CheckConstraint("decision IN ('queued', 'skipped', 'incomplete')", name=op.f('ck_files_decision')),
    sa.ForeignKeyConstraint(['batch_id'], ['batch_jobs.id'], name=op.f('fk_files_batch_id_batch_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('path', 'size', 'mtime_ns', name=op.f('uq_files_path_size_mtime_ns'))
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_decision'), ['decision'], unique=False)

    op.create_table('measurements',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('mjd', sa.Float(), nullable=True),
    sa.Column('ra_deg', sa.Float(), nullable=False),
    sa.Column('dec_deg', sa.Float(), nullable=False),
    sa.Column('x_pix', sa.Float(), nullable=True),
    sa.Column('y_pix', sa.Float(), nullable=True),
    sa.Column('peak_jyb', sa.Float(), nullable=True),
    sa.Column('peak_err_jyb', sa.Float(), nullable=True),
    sa.Column('local_rms_jyb', sa.Float(), nullable=True),
    sa.Column('snr', sa.Float(), nullable=True),
    sa.Column('chi2', sa.Float(), nullable=True),
    sa.Column('dof', sa.Integer(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('flags', sa.Integer(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('norm_flux_jyb', sa.Float(), nullable=True),
    sa.Column('norm_err_jyb', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_measurements_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_measurements_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measurements')),
    sa.UniqueConstraint('image_id', 'source_id', name=op.f('uq_measurements_image_id_source_id'))
    )
    op.create_table('reference_baselines',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('baseline_jyb', sa.Float(), nullable=True),
    sa.Column('baseline_rms_jyb', sa.Float(), nullable=True),
    sa.Column('n_points', sa.Integer(), nullable=False),
    sa.Column('through_mjd', sa.Float(), nullable=True),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('invalid_reason', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_reference_baselines_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_reference_baselines'))
    )
    op.create_table('variability_stats',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('flux_kind', sa.String(length=16), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('sum_w', sa.Float(), nullable=True),
    sa.Column('sum_wf', sa.Float(), nullable=True),
    sa.Column('sum_wf2', sa.Float(), nullable=True),
    sa.Column('sum_f', sa.Float(), nullable=True),
    sa.Column('sum_f2', sa.Float(), nullable=True),
    sa.Column('sum_var', sa.Float(), nullable=True),
    sa.Column('min_flux', sa.Float(), nullable=True),
    sa.Column('max_flux', sa.Float(), nullable=True),
    sa.Column('first_mjd', sa.Float(), nullable=True),
    sa.Column('last_mjd', sa.Float(), nullable=True),
    sa.Column('last_flux', sa.Float(), nullable=True),
    sa.Column('last_err', sa.Float(), nullable=True),
    sa.Column('vs_max', sa.Float(), nullable=True),
    sa.Column('m_at_vs_max', sa.Float(), nullable=True),
    sa.Column('mean', sa.Float(), nullable=True),
    sa.Column('weighted_mean', sa.Float(), nullable=True),
    sa.Column('v', sa.Float(), nullable=True),
    sa.Column('eta', sa.Float(), nullable=True),
    sa.Column('chi2_nu', sa.Float(), nullable=True),
    sa.Column('p_value', sa.Float(), nullable=True),
    sa.Column('m', sa.Float(), nullable=True),
    sa.Column('m_debiased', sa.Float(), nullable=True),
    sa.Column('sigma_deviation', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_variability_stats_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_variability_stats'))
    )
    with op.batch_alter_table('variability_stats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variability_stats_eta'), ['eta'], unique=False)
        batch_op.create_index(batch_op.f('ix_variability_stats_sigma_deviation'), ['sigma_deviation'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('variability_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variability_stats_sigma_deviation'))
        batch_op.drop_index(batch_op.f('ix_variability_stats_eta'))

    op.drop_table('variability_stats')
    op.drop_table('reference_baselines')
    op.drop_table('measurements')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_decision'))

    op.drop_table('files')
    with op.batch_alter_table('ese_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ese_candidates_status_score'))

    op.drop_table('ese_candidates')
    with op.batch_alter_table('batch_job_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_job_items_batch_id'))

    op.drop_table('batch_job_items')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sources_dec_deg_ra_deg'))

    op.drop_table('sources')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_images_radius_deg'))
        batch_op.drop_index(batch_op.f('ix_images_ra_center_deg'))
        batch_op.drop_index(batch_op.f('ix_images_mjd'))
        batch_op.drop_index(batch_op.f('ix_images_field_key_mjd'))
        batch_op.drop_index(batch_op.f('ix_images_dec_center_deg'))

    op.drop_table('images')
    op.drop_table('heartbeats')
    with op.batch_alter_table('batch_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_jobs_status_not_before_id'))

    op.drop_table('batch_jobs')
