"""The data registry: data products and their photometry status.

``link`` creates the product row the first time a ``data_id`` is seen and
updates its photometry status and job id afterwards. Photometry status moves
``pending`` (job created) -> ``running`` -> ``completed`` | ``failed``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from dsa110_contimg.core.paths import db_path, printable
from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.retry import with_retry
from dsa110_contimg.store.schema import data_products

PHOTOMETRY_STATES = ("pending", "running", "completed", "failed")


def link(db: Database, data_id: str, *, data_type: str, path: str | None,
         photometry_status: str, job_id: int | str | None = None, error: str | None = None,
         metadata: dict[str, Any] | None = None) -> None:
    """Create or update the product ``data_id`` with its photometry status."""
    if photometry_status not in PHOTOMETRY_STATES:
        raise ValueError(f"photometry_status must be one of {PHOTOMETRY_STATES}, not {photometry_status!r}")
    now = time.time()
    values: dict[str, Any] = {"photometry_status": photometry_status,
                              "photometry_error": None if error is None else printable(error),
                              "updated_at": now}
    if job_id is not None:
        values["photometry_job_id"] = str(job_id)
    if path is not None:
        values["path"] = db_path(path)   # the database form (``fsb64:`` for a non-UTF-8 name)
    if metadata is not None:
        values["metadata_json"] = json.dumps(metadata, sort_keys=True)

    def _do():
        with db.engine.begin() as conn:
            n = conn.execute(data_products.update().where(data_products.c.data_id == data_id)
                             .values(**values)).rowcount
            if n == 0:
                conn.execute(data_products.insert().values(
                    data_id=data_id, data_type=data_type, status="registered", created_at=now, **values))

    with_retry(_do)


def get(db: Database, data_id: str) -> dict | None:
    """The product row as a dict, or None."""
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(data_products).where(data_products.c.data_id == data_id)).mappings().first()
        conn.rollback()
    return None if row is None else dict(row)
