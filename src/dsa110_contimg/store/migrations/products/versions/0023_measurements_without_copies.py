"""measurements: keyed by (image_id, source_id), without the copied epoch (mjd) and the
derived SNR (snr), and without the surrogate id

Nothing reads a measurement by ``id``; ``mjd`` is the image's (``images.mjd``) and ``snr`` is
``peak_jyb / peak_err_jyb`` (both computed on read). On SQLite the table is rebuilt as a
WITHOUT ROWID table whose primary key is (image_id, source_id): the rows live in the key's
B-tree, so the rowid and the separate unique index are gone too. The rebuild copies every row
(the README's upgrade section gives its time per 10^7 rows). On PostgreSQL the columns are
dropped in place and the primary key moves to (image_id, source_id) (the index on ``id`` is
dropped; the unique index on the pair is rebuilt as the key); the dropped columns' bytes in the
existing rows are reclaimed when the table is rewritten (``VACUUM FULL measurements`` or
pg_repack), rows written afterwards are smaller at once.

Revision ID: 0023
Revises: 0022
"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

#: The columns kept, in table order.
KEPT = ('image_id', 'source_id', 'ra_deg', 'dec_deg', 'x_pix', 'y_pix', 'peak_jyb',
        'peak_err_jyb', 'local_rms_jyb', 'chi2', 'dof', 'cluster_id', 'flags', 'success',
        'norm_flux_jyb', 'norm_err_jyb')


def _value_columns() -> list[sa.Column]:
    return [
        sa.Column('ra_deg', sa.Float(), nullable=False),
        sa.Column('dec_deg', sa.Float(), nullable=False),
        sa.Column('x_pix', sa.Float(), nullable=True),
        sa.Column('y_pix', sa.Float(), nullable=True),
        sa.Column('peak_jyb', sa.Float(), nullable=True),
        sa.Column('peak_err_jyb', sa.Float(), nullable=True),
        sa.Column('local_rms_jyb', sa.Float(), nullable=True),
        sa.Column('chi2', sa.Float(), nullable=True),
        sa.Column('dof', sa.Integer(), nullable=True),
        sa.Column('cluster_id', sa.Integer(), nullable=True),
        sa.Column('flags', sa.Integer(), nullable=False),
        sa.Column('success', sa.Boolean(), nullable=False),
        sa.Column('norm_flux_jyb', sa.Float(), nullable=True),
        sa.Column('norm_err_jyb', sa.Float(), nullable=True),
    ]


def _foreign_keys() -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(['image_id'], ['images.id'],
                                name='fk_measurements_image_id_images', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'],
                                name='fk_measurements_source_id_sources', ondelete='CASCADE'),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.create_table(
            'measurements_new',
            sa.Column('image_id', sa.Integer(), autoincrement=False, nullable=False),
            sa.Column('source_id', sa.Integer(), autoincrement=False, nullable=False),
            *_value_columns(), *_foreign_keys(),
            sa.PrimaryKeyConstraint('image_id', 'source_id', name='pk_measurements'),
            sqlite_with_rowid=False,
        )
        cols = ', '.join(KEPT)
        # in key order: the new B-tree is written by appends
        op.execute(f'INSERT INTO measurements_new ({cols}) SELECT {cols} FROM measurements '
                   'ORDER BY image_id, source_id')
        op.drop_table('measurements')
        op.rename_table('measurements_new', 'measurements')
        return
    op.execute('ALTER TABLE measurements DROP CONSTRAINT pk_measurements, '
               'DROP CONSTRAINT uq_measurements_image_id_source_id, '
               'DROP COLUMN id, DROP COLUMN mjd, DROP COLUMN snr, '
               'ADD CONSTRAINT pk_measurements PRIMARY KEY (image_id, source_id)')


def downgrade() -> None:
    snr = 'CASE WHEN m.peak_err_jyb <> 0 THEN m.peak_jyb / m.peak_err_jyb END'
    if op.get_bind().dialect.name == 'sqlite':
        op.create_table(
            'measurements_old',
            sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
            sa.Column('image_id', sa.Integer(), nullable=False),
            sa.Column('source_id', sa.Integer(), nullable=False),
            sa.Column('mjd', sa.Float(), nullable=True),
            *_value_columns()[:7], sa.Column('snr', sa.Float(), nullable=True),
            *_value_columns()[7:], *_foreign_keys(),
            sa.PrimaryKeyConstraint('id', name='pk_measurements'),
            sa.UniqueConstraint('image_id', 'source_id', name='uq_measurements_image_id_source_id'),
        )
        cols = ', '.join(KEPT)
        op.execute(f'INSERT INTO measurements_old ({cols}, mjd, snr) SELECT '
                   + ', '.join(f'm.{c}' for c in KEPT) + f', i.mjd, {snr} FROM measurements m '
                   'JOIN images i ON i.id = m.image_id ORDER BY m.image_id, m.source_id')
        op.drop_table('measurements')
        op.rename_table('measurements_old', 'measurements')
        return
    op.execute('ALTER TABLE measurements DROP CONSTRAINT pk_measurements, '
               'ADD COLUMN id SERIAL, ADD COLUMN mjd double precision, '
               'ADD COLUMN snr double precision')
    op.execute(f'UPDATE measurements m SET mjd = i.mjd, snr = {snr} FROM images i '
               'WHERE i.id = m.image_id')
    op.execute('ALTER TABLE measurements ADD CONSTRAINT pk_measurements PRIMARY KEY (id), '
               'ADD CONSTRAINT uq_measurements_image_id_source_id UNIQUE (image_id, source_id)')
