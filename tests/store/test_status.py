"""The status and metrics counts (store/status.py, store/detections.py, store/alerts.py) read
narrow indexes, never the wide rows of images, image_depths or alerts: every statement they run
is planned by SQLite as an index search or a covering-index scan (EXPLAIN QUERY PLAN), so their
cost stays a few bytes per image however large the images' JSON and footprints grow."""

from __future__ import annotations

import re
import time

import sqlalchemy as sa

from dsa110_contimg.store.alerts import delivery_counts, event_counts
from dsa110_contimg.store.detections import detection_counts
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.status import (
    active_candidates_by_confidence, job_counts, last_success_at, oldest_pending_at,
    read_status_counts,
)

#: tables whose rows are wide (JSON lists, QC metrics, footprints, payloads) and grow per image
WIDE = ("images", "image_depths", "alerts", "batch_jobs")


def _plans(db, fn):
    """Run ``fn`` and return every (statement, plan lines) it executed on ``db``."""
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
    out = []
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, params in seen:
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            out.append((statement, [r[-1] for r in rows]))
    return out


def test_status_and_metrics_counts_read_no_wide_table_whole(tmp_path):
    db = open_products_db(tmp_path / "products.sqlite3")
    now = time.time()

    def counts():
        read_status_counts(db, now=now)
        with db.engine.connect() as conn:
            job_counts(conn)
            oldest_pending_at(conn)
            last_success_at(conn)
            active_candidates_by_confidence(conn)
            detection_counts(conn)
            delivery_counts(conn)
            event_counts(conn)

    plans = _plans(db, counts)
    assert len(plans) > 10
    whole = re.compile(rf"^SCAN ({'|'.join(WIDE)})$")
    bad = [(s, p) for s, p in plans if any(whole.match(line.strip()) for line in p)]
    assert not bad, "\n".join(f"{p}: {s}" for s, p in bad)
    db.dispose()


def test_images_list_reads_its_page_from_an_index(tmp_path):
    """``images list`` (newest measured first) neither scans nor sorts the whole table."""
    from dsa110_contimg.store.images import list_images

    db = open_products_db(tmp_path / "products.sqlite3")

    def page():
        with db.engine.connect() as conn:
            list_images(conn, limit=100)

    plans = _plans(db, page)
    assert plans
    for statement, plan in plans:
        assert not any(line.strip() == "SCAN images" or "TEMP B-TREE" in line for line in plan), \
            (plan, statement)
    db.dispose()
