"""indexes for the status and metrics counts: narrow covering indexes instead of scans of the
wide tables (images rows hold JSON lists, image_depths rows a footprint), and the last hour's
settled jobs found as a range

- ``images (qc_status, n_sources)``: counts by QC verdict and the measurement total;
- ``images (norm_status, norm_method)``: normalisation failures (and their reasons through the
  rows found), images not normalised, ensemble normalisations;
- ``images (excluded, excluded_at)``, ``images (duplicate_of)``: excluded epochs (counted and
  listed latest first) and duplicates;
- ``batch_jobs (status, finished_at)``: jobs done or failed in the last hour, the latest success;
- ``image_depths (n_detections)``: the detection total;
- ``alerts (event)``: alerts recorded by event.

Revision ID: 0015
Revises: 0014
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_INDEXES = (("ix_images_qc_status_n_sources", "images", ["qc_status", "n_sources"]),
            ("ix_images_norm_status_norm_method", "images", ["norm_status", "norm_method"]),
            ("ix_images_excluded_excluded_at", "images", ["excluded", "excluded_at"]),
            ("ix_images_duplicate_of", "images", ["duplicate_of"]),
            ("ix_batch_jobs_status_finished_at", "batch_jobs", ["status", "finished_at"]),
            ("ix_image_depths_n_detections", "image_depths", ["n_detections"]),
            ("ix_alerts_event", "alerts", ["event"]))


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
