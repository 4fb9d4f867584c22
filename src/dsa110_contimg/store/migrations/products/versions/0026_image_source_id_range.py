"""images.source_id_min / source_id_max: the range of source ids among each image's
measurement rows (NULL: not known), so that one source's light curve is read from the images
whose range holds it, not by a primary-key probe on every image of its field; filled from the
rows already stored (a min and a max through the primary key per image). The images' position
index (RA zone, Dec, RA) also holds the range, so that the images of a cone that cannot hold a
source are left out from the index alone.

Revision ID: 0026
Revises: 0025
"""
import sqlalchemy as sa
from alembic import op


revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

_ZONE = "CAST(ra_center_deg AS INTEGER)"


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('source_id_min', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('source_id_max', sa.Integer(), nullable=True))
    op.execute('UPDATE images SET '
               'source_id_min = (SELECT min(m.source_id) FROM measurements m WHERE m.image_id = images.id), '
               'source_id_max = (SELECT max(m.source_id) FROM measurements m WHERE m.image_id = images.id)')
    op.drop_index('ix_images_ra_zone', table_name='images')
    op.create_index('ix_images_ra_zone', 'images',
                    [sa.text(_ZONE), 'dec_center_deg', 'ra_center_deg', 'source_id_min',
                     'source_id_max'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_images_ra_zone', table_name='images')
    with op.batch_alter_table('images') as batch:
        batch.drop_column('source_id_max')
        batch.drop_column('source_id_min')
    op.create_index('ix_images_ra_zone', 'images',
                    [sa.text(_ZONE), 'dec_center_deg', 'ra_center_deg'], unique=False)
