"""PostgreSQL: the tables every image appends to are vacuumed and analysed after a number of
new rows, not after a fraction of the table

PostgreSQL's autovacuum starts a table's vacuum after 20 % of its rows were inserted since the
last one and its analyze after 10 % changed. On ``measurements`` (10^7-10^8 rows a year) that
is one vacuum every 10^7 new rows at 5 x 10^7: a burst of ~1.5 GB of reads and writes that a
running daemon and the web site share the disk with, and in between, the newest images' pages
stay out of the visibility map and their rows without hint bits, so the first reads of each
new image (the light curves, the ESE window) set them. Here the appending tables are vacuumed
every :data:`VACUUM_INSERT_ROWS` inserted rows (a vacuum reads only the pages not yet all
visible: the work is that of the rows added, at any size) and analysed after
:data:`ANALYZE_ROWS` rows plus 2 % changed (an analyze samples a fixed number of rows). The
thresholds are storage parameters of the tables (``ALTER TABLE ... SET``); an operator may
change them the same way. SQLite has no autovacuum: nothing to do there.

Revision ID: 0025
Revises: 0024
"""
from alembic import op


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

#: Tables that grow by hundreds to thousands of rows with every image.
APPENDED = ('measurements', 'detections', 'reference_choices')
#: Rows inserted between two vacuums of such a table (~100 images of 1,000 sources).
VACUUM_INSERT_ROWS = 100_000
#: Rows changed (plus 2 % of the table) between two analyzes.
ANALYZE_ROWS = 10_000
SETTINGS = {'autovacuum_vacuum_insert_threshold': VACUUM_INSERT_ROWS,
            'autovacuum_vacuum_insert_scale_factor': 0,
            'autovacuum_analyze_threshold': ANALYZE_ROWS,
            'autovacuum_analyze_scale_factor': 0.02}


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    values = ', '.join(f'{k} = {v}' for k, v in SETTINGS.items())
    for table in APPENDED:
        op.execute(f'ALTER TABLE {table} SET ({values})')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in APPENDED:
        op.execute(f'ALTER TABLE {table} RESET ({", ".join(SETTINGS)})')
