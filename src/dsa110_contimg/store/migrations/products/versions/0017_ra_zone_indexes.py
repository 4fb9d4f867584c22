"""position indexes led by the RA zone: a cone reads its own box, not the declination strip

- ``images (CAST(ra_center_deg AS INTEGER), dec_center_deg, ra_center_deg)``;
- ``sources (CAST(ra_deg AS INTEGER), dec_deg, ra_deg)``.

The zone is the RA cast to an integer (one-degree zones, store/sky.py). A survey at one
declination (DSA-110's) put every position in one Dec range, so the Dec-led indexes made a
cone walk every RA of the strip; the queries now name the zones the cone's RA range touches.
Expression indexes: existing rows need no new column filled in.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

_INDEXES = (("ix_images_ra_zone", "images", "ra_center_deg", "dec_center_deg"),
            ("ix_sources_ra_zone", "sources", "ra_deg", "dec_deg"))


def upgrade() -> None:
    for name, table, ra, dec in _INDEXES:
        op.create_index(name, table, [sa.text(f"CAST({ra} AS INTEGER)"), dec, ra], unique=False)


def downgrade() -> None:
    for name, table, _, _ in _INDEXES:
        op.drop_index(name, table_name=table)
