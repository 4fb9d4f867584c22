"""The status and metrics counts (store/status.py, store/detections.py, store/alerts.py) read
narrow indexes, never the wide rows of images, image_depths or alerts: every statement they run
is planned by SQLite as an index search or a covering-index scan (EXPLAIN QUERY PLAN), so their
cost stays a few bytes per image however large the images' JSON and footprints grow."""

from __future__ import annotations

import re
import time

import pytest
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


#: SQLite calls the progress handler every this many virtual-machine instructions
STEP = 10


def _queue_db(path, n_done: int):
    """A products database of ``n_done`` done jobs and as many images, plus the same few
    unsettled jobs whatever ``n_done`` (2 pending, 2 running, 1 failed and 1 dead not
    acknowledged), analysed (``ANALYZE``: SQLite's statistics then say nearly every job is
    done)."""
    from dsa110_contimg.store.counters import try_compact

    db = open_products_db(path)
    now = time.time()
    with db.engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        raw.executemany(
            "INSERT INTO images (path, content_id, kind, mjd, method, catalog, n_sources, "
            "n_success, qc_status, norm_status, measured_at) VALUES (?, 'c', 'image', ?, "
            "'forced', 'nvss', 800, 800, 'passed', 'ok', ?)",
            [(f"/data/img{i:07d}.fits", 60000.0 + i / 288.0, now - (n_done - i) * 300.0)
             for i in range(n_done)])
        unsettled = [("pending", None, None)] * 2 + [("running", "h:1:a", now + 60.0)] * 2 \
            + [("failed", None, None), ("dead", None, None)]
        raw.executemany(
            "INSERT INTO batch_jobs (type, status, origin, params, total_items, completed_items, "
            "failed_items, attempts, max_attempts, not_before, lease_owner, lease_until, "
            "created_at, updated_at, finished_at) VALUES ('photometry', ?, 'daemon', '{}', 1, 1, "
            "0, 1, 3, 0.0, ?, ?, ?, ?, ?)",
            [("done", None, None, now - (n_done - i) * 300.0, now - (n_done - i) * 300.0 + 20,
              now - (n_done - i) * 300.0 + 20) for i in range(n_done)]
            + [(s, owner, until, now - 100.0, now - 50.0, now - 50.0 if s in ("failed", "dead")
                else None) for s, owner, until in unsettled])
        raw.execute("ANALYZE")
    try_compact(db)
    return db


def _vm_steps(db, fn) -> int:
    """SQLite virtual-machine instructions ``fn(db)`` executes (to within :data:`STEP`), run
    once before to load the schema on the pool's connections."""
    n = [0]

    def count():
        n[0] += STEP
        return 0

    def checkout(dbapi_conn, record, proxy):
        dbapi_conn.set_progress_handler(count, STEP)

    fn(db)
    sa.event.listen(db.engine, "checkout", checkout)
    try:
        fn(db)
    finally:
        sa.event.remove(db.engine, "checkout", checkout)
    return n[0]


def test_status_and_metrics_reads_do_not_grow_with_the_settled_jobs(tmp_path):
    """``status`` and ``/metrics`` do the same work with 8x the done jobs and images: after
    ``ANALYZE`` every job list still seeks its few unsettled jobs in an index (no scan of
    ``batch_jobs``), and what they show is the same."""
    from dsa110_contimg.store import counters

    now = time.time()

    def reads(db):
        snap = read_status_counts(db, now=now)
        with db.engine.connect() as conn:
            got = counters.read_counts(conn)
            metrics = (got.jobs(), oldest_pending_at(conn), last_success_at(conn),
                       active_candidates_by_confidence(conn), detection_counts(conn, got))
            conn.rollback()
        return snap, metrics

    small, large = _queue_db(tmp_path / "small.sqlite3", 1_000), _queue_db(tmp_path / "large.sqlite3", 8_000)
    shown = []
    for db in (small, large):
        snap, metrics = reads(db)
        assert snap["job_counts"]["pending"] == 2 and len(snap["running"]) == 2
        assert snap["running_by_owner"] == {"h:1:a": 2}
        assert {f["status"] for f in snap["failures"]} == {"failed", "dead"}
        assert snap["oldest_pending_at"] == pytest.approx(now - 100.0)
        assert metrics[1] == pytest.approx(now - 100.0) and metrics[0]["done"] in (1_000, 8_000)
        shown.append((len(snap["running"]), len(snap["failures"]), snap["images"]))
        plans = _plans(db, lambda db=db: reads(db))
        assert not [(s, p) for s, p in plans if any(line.strip() == "SCAN batch_jobs" for line in p)]
    assert shown == [(2, 2, 1_000), (2, 2, 8_000)]
    a, b = (_vm_steps(db, reads) for db in (small, large))
    print(f"status + metrics reads: {a:,} SQLite instructions at 1,000 done jobs, {b:,} at 8,000")
    assert b <= 1.2 * a + 20 * STEP, (a, b)
    for db in (small, large):
        db.dispose()
