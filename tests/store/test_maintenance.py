"""Database upkeep (store/maintenance.py): prune removes exactly the settled job and file
records older than the cut-off and never a measurement; check finds a damaged file and
an old schema."""

from __future__ import annotations

import os

import numpy as np
import pytest
import sqlalchemy as sa

from dsa110_contimg.store import files as filestore
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.files import FileKey
from dsa110_contimg.store.maintenance import check_database, prune
from dsa110_contimg.store.queue import JobQueue

from pgcluster import BACKENDS

OLD, CUT, NEW = 1_000_000.0, 2_000_000.0, 3_000_000.0


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


class Clock:
    t = OLD

    def __call__(self):
        return self.t


def _measure(db, n_images: int, n_sources: int = 5) -> None:
    rng = np.random.default_rng(1)
    with db.engine.begin() as conn:
        sids = ps.upsert_sources(conn, "nvss", [f"S{i}" for i in range(n_sources)],
                                 np.full(n_sources, 150.0), np.full(n_sources, 37.0))
        for i in range(n_images):
            cols = {k: rng.normal(size=n_sources) for k in ps.MEASUREMENT_COLUMNS}
            cols.update(dof=np.ones(n_sources, int), cluster_id=np.full(n_sources, -1),
                        flags=np.zeros(n_sources, int), success=np.ones(n_sources, bool))
            ps.store_image_measurements(conn, {"path": f"/img/{i}.fits", "content_id": str(i),
                                               "kind": "image", "mjd": 60000.0 + i, "method": "forced",
                                               "catalog": "nvss"}, sids, cols)


def _settle(queue, clock, name: str, state: str, when: float, *, ack: bool = False) -> int:
    clock.t = when
    job_id, _ = queue.enqueue({}, [(f"/img/{name}.fits", "image", None)], idempotency_key=name)
    if state == "pending":
        return job_id
    job = queue.claim()
    if state == "done":
        queue.update_item(job.items[0].id, "done")
        queue.complete(job_id)
    elif state == "cancelled":
        queue.cancel(job_id)
        queue.finish_cancelled(job_id)
    else:
        queue.fail(job_id, "broken", retryable=state == "dead")
    if ack:
        queue.ack(job_id)
    return job_id


def _count(db, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar())


def test_prune_removes_settled_records_before_the_cutoff_and_keeps_every_measurement(databases, tmp_path):
    db = open_products_db(databases.new())
    _measure(db, 4)
    clock = Clock()
    queue = JobQueue(db, owner="A", clock=clock, max_interruptions=1)
    old_done = [_settle(queue, clock, f"d{i}", "done", OLD) for i in range(3)]
    old_cancelled = _settle(queue, clock, "c", "cancelled", OLD)
    old_failed_acked = _settle(queue, clock, "fa", "failed", OLD, ack=True)
    old_failed = _settle(queue, clock, "f", "failed", OLD)               # not acknowledged: kept
    new_done = _settle(queue, clock, "n", "done", NEW)
    pending = _settle(queue, clock, "p", "pending", OLD)                 # not settled: kept
    on_disk = tmp_path / "kept.fits"
    on_disk.write_bytes(b"x")
    replaced = tmp_path / "replaced.fits"
    replaced.write_bytes(b"new version")
    keys = {"kept": FileKey.of(on_disk), "gone": FileKey(str(tmp_path / "gone.fits"), 1, 1),
            "replaced": FileKey(str(replaced), 3, 3),
            "unmounted": FileKey("/no/such/mount/x.fits", 1, 1),
            "recent-gone": FileKey(str(tmp_path / "recent.fits"), 1, 1)}
    for name, key in keys.items():
        filestore.record_file(db, key, "queued" if name == "kept" else "skipped",
                              batch_id=old_done[0] if name == "kept" else None,
                              now=NEW if name.startswith("recent") else OLD)
    filestore.beat(db, "gone-daemon", started_at=OLD, workers=1, state="stopped", now=OLD)
    filestore.beat(db, "live-daemon", started_at=OLD, workers=1, state="running", now=OLD)
    n_measurements, n_images = _count(db, "measurements"), _count(db, "images")

    dry = prune(db, before=CUT, dry_run=True)
    assert _count(db, "batch_jobs") == 8 and _count(db, "files") == 5    # nothing removed
    report = prune(db, before=CUT)
    assert dry == report
    assert report.jobs == {"done": 3, "cancelled": 1, "failed": 1}
    assert report.items == 5 and report.files == 2 and report.heartbeats == 1
    assert report.kept_unacknowledged == 1 and report.measurements == n_measurements == 20
    left = {j["id"] for j in queue.list(limit=100)}
    assert left == {old_failed, new_done, pending}
    assert not left & {*old_done, old_cancelled, old_failed_acked}
    with db.engine.connect() as conn:
        paths = {r[0] for r in conn.execute(sa.text("SELECT path FROM files"))}
        items = {r[0] for r in conn.execute(sa.text("SELECT batch_id FROM batch_job_items"))}
        kept_batch = conn.execute(sa.text("SELECT batch_id FROM files WHERE path = :p"),
                                  {"p": str(on_disk)}).scalar()
    assert paths == {str(on_disk), "/no/such/mount/x.fits", str(tmp_path / "recent.fits")}
    assert kept_batch is None                    # its job is gone, the file stays decided
    assert items == {old_failed, new_done, pending}
    assert _count(db, "measurements") == n_measurements and _count(db, "images") == n_images
    with db.engine.connect() as conn:
        assert {r["owner"] for r in filestore.heartbeat_rows(conn)} == {"live-daemon"}
    assert prune(db, before=CUT).jobs == {}      # idempotent
    db.dispose()


def test_check_finds_damage_and_an_old_schema(tmp_path):
    from dsa110_contimg.store.engine import make_engine
    from dsa110_contimg.store.migrate import head_revision, upgrade

    path = tmp_path / "p.sqlite3"
    db = open_products_db(path)
    _measure(db, 30, n_sources=50)
    report = check_database(db, "products", full=True)
    assert report.ok and report.revision == head_revision("products"), report
    db.dispose()
    with open(path, "r+b") as fh:                # scribble over pages in the middle of the file
        size = os.path.getsize(path)
        fh.seek(size // 2)
        fh.write(os.urandom(8192))
    db = open_products_db(path, migrate=False, read_only=True)
    report = check_database(db, "products")
    db.dispose()
    assert not report.ok and ("quick_check" in report.problems[0] or "malformed" in report.problems[0])
    old = tmp_path / "old.sqlite3"
    engine = make_engine(old)
    upgrade(engine, "products", "0003")
    engine.dispose()
    db = open_products_db(old, migrate=False, read_only=True)
    report = check_database(db, "products")
    db.dispose()
    assert report.revision == "0003" and "db upgrade" in report.problems[0]


def test_check_finds_a_counted_table_without_its_count_triggers(databases):
    """A schema restored without the triggers of the maintained counts (store/counters.py)
    would show counts drifting from the rows: ``db check`` names the table."""
    db = open_products_db(databases.new())
    assert check_database(db, "products").ok
    with db.engine.begin() as conn:
        drop = ("DROP TRIGGER status_count_files ON files" if conn.dialect.name == "postgresql"
                else "DROP TRIGGER status_count_files_upd")
        conn.exec_driver_sql(drop)
    report = check_database(db, "products")
    db.dispose()
    assert report.problems == ["status count triggers missing on files (status and the web pages "
                               "would count them wrongly)"]
