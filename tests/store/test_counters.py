"""The maintained status counts (store/counters.py, migration 0018's triggers) are exactly the
GROUP BY counts of the rows, after any sequence of the writes the service makes: jobs
enqueued, claimed, done, failed (retried with back-off, dead, failed for good), retried by an
operator, cancelled, acknowledged, reaped, pruned (``db prune``); images stored, excluded and
included, their QC and normalisation changed, deleted (with their depth rows); detection
totals replaced; file decisions recorded and replaced; sources of every kind added,
re-kinded and deleted; alerts and their deliveries recorded, re-stated and deleted. Compactions at random moments change
no count; old done-hour buckets fold into the all-time total. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa

from dsa110_contimg.store import counters
from dsa110_contimg.store.detections import store_image_depth
from dsa110_contimg.store.engine import open_products_db, read_connection
from dsa110_contimg.store.files import FileKey, record_file
from dsa110_contimg.store.images import set_exclusion
from dsa110_contimg.store.maintenance import prune
from dsa110_contimg.store.queue import JobQueue
from dsa110_contimg.store.alerts import ALERT_EVENTS
from dsa110_contimg.store.schema import (
    DELIVERY_STATES, SOURCE_KINDS, alert_deliveries, alerts, images, sources, status_count_deltas,
    status_counts,
)

from pgcluster import BACKENDS
from status_truth import check_counters_match, truth


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


REASONS = (None, "", "too few references: 2 < 3", "  too few references : 1", "no catalogue",
           "fit diverged:\tnan")


def _image_values(rng: random.Random) -> dict:
    norm = rng.choice(("not_requested", "ok", "failed"))
    return {"qc_status": rng.choice(("pending", "passed", "warning", "failed")), "norm_status": norm,
            "norm_method": rng.choice((None, "catalogue", "ensemble")),
            "norm_reason": rng.choice(REASONS) if norm == "failed" else None,
            "n_sources": rng.randrange(0, 5000)}


class Workload:
    """Random writes through the store's own functions (and plain SQL where the service has
    no function: an image row's insert, update and delete)."""

    def __init__(self, db, rng: random.Random, clock: Clock):
        self.db, self.rng, self.clock = db, rng, clock
        self.queue = JobQueue(db, owner="A", clock=clock, lease_s=600, backoff_base_s=1,
                              backoff_cap_s=2)
        self.n_jobs = self.n_images = self.n_sources = self.n_alerts = 0

    def _ids(self, table: str, where: str = "1 = 1") -> list[int]:
        with read_connection(self.db.engine) as conn:
            return [int(r[0]) for r in conn.execute(sa.text(f"SELECT id FROM {table} WHERE {where}"))]

    def enqueue(self):
        self.n_jobs += 1
        self.queue.enqueue({"config": {}}, [(f"/x/{self.n_jobs}.fits", "image", None)],
                           idempotency_key=f"k{self.n_jobs}", origin="daemon", max_attempts=2)

    def run_one(self):
        job = self.queue.claim()
        if job is None:
            return
        outcome = self.rng.random()
        if outcome < 0.5:
            self.queue.complete(job.id)
        elif outcome < 0.8:
            self.queue.fail(job.id, "boom", retryable=True)
        elif outcome < 0.9:
            self.queue.fail(job.id, "bad input", retryable=False)
        # else: left running (reaped later)

    def operator(self):
        ids = self._ids("batch_jobs")
        if not ids:
            return
        action = self.rng.choice(("retry", "cancel", "ack", "ack_all", "reap"))
        if action == "retry":
            self.queue.retry(self.rng.choice(ids))
        elif action == "cancel":
            self.queue.cancel(self.rng.choice(ids))
        elif action == "ack":
            self.queue.ack(self.rng.choice(ids))
        elif action == "ack_all":
            self.queue.ack()
        else:
            self.clock.t += 700.0
            self.queue.reap_expired()

    def prune(self):
        prune(self.db, before=self.clock.t - self.rng.uniform(0, 30 * 3600))

    def add_image(self):
        self.n_images += 1
        dup = self.rng.choice(self._ids("images") or [None]) if self.rng.random() < 0.2 else None
        with self.db.engine.begin() as conn:
            conn.execute(images.insert().values(
                path=f"/img/{self.n_images}.fits", content_id="c", kind="image", method="forced",
                catalog="nvss", n_success=0, measured_at=self.clock.t, duplicate_of=dup,
                **_image_values(self.rng)))

    def change_image(self):
        ids = self._ids("images")
        if not ids:
            return
        image_id, what = self.rng.choice(ids), self.rng.random()
        with self.db.engine.begin() as conn:
            if what < 0.3:
                excluded = self.rng.random() < 0.6
                set_exclusion(conn, image_id, excluded=excluded, reason="bad epoch" if excluded else None,
                              at=self.clock.t)
            elif what < 0.6:
                values = _image_values(self.rng)
                keep = self.rng.sample(sorted(values), self.rng.randrange(1, len(values) + 1))
                conn.execute(images.update().where(images.c.id == image_id)
                             .values(**{k: values[k] for k in keep}))
            elif what < 0.85:
                store_image_depth(conn, image_id, b"fp", 1e-3, 2e-3, self.rng.randrange(0, 50))
            else:
                conn.execute(images.update().where(images.c.duplicate_of == image_id)
                             .values(duplicate_of=None))
                conn.execute(images.delete().where(images.c.id == image_id))

    def record_file(self):
        k = self.rng.randrange(8)
        key = FileKey(f"/w/{k}.fits", self.rng.choice((10, 20)), k)
        record_file(self.db, key, self.rng.choice(("queued", "skipped", "incomplete")),
                    reason="why", now=self.clock.t)

    def own_source(self):
        ids, what = self._ids("sources"), self.rng.random()
        with self.db.engine.begin() as conn:
            if what < 0.5 or not ids:
                self.n_sources += 1
                conn.execute(sources.insert().values(
                    survey="dsa110", catalog_id=f"S{self.n_sources}", ra_deg=1.0, dec_deg=2.0,
                    reference_ok=False, kind=self.rng.choice(SOURCE_KINDS)))
            elif what < 0.85:
                conn.execute(sources.update().where(sources.c.id == self.rng.choice(ids))
                             .values(kind=self.rng.choice(SOURCE_KINDS)))
            else:
                conn.execute(sources.delete().where(sources.c.id == self.rng.choice(ids)))

    def alert(self):
        ids, what = self._ids("alerts"), self.rng.random()
        with self.db.engine.begin() as conn:
            if what < 0.4 or not ids:
                self.n_alerts += 1
                event = self.rng.choice(ALERT_EVENTS)
                alert_id = conn.execute(alerts.insert().values(
                    key=f"{event}-{self.n_alerts:032d}", dedupe_key=f"{event}:{self.n_alerts}",
                    event=event, payload="{}", created_at=self.clock.t)).inserted_primary_key[0]
                for dest in self.rng.sample(("webhook:a", "webhook:b", "voevent:/s"), self.rng.randrange(3)):
                    conn.execute(alert_deliveries.insert().values(
                        alert_id=alert_id, destination=dest, kind=dest.split(":")[0],
                        state="pending", attempts=0, updated_at=self.clock.t))
            elif what < 0.85:
                conn.execute(alert_deliveries.update()
                             .where(alert_deliveries.c.alert_id == self.rng.choice(ids))
                             .values(state=self.rng.choice(DELIVERY_STATES)))
            else:
                conn.execute(alerts.delete().where(alerts.c.id == self.rng.choice(ids)))

    def compact(self):
        with self.db.engine.begin() as conn:
            counters.compact(conn, now=self.clock.t)

    def step(self):
        self.clock.t += self.rng.uniform(0, 3 * 3600)
        op = self.rng.choices(
            (self.enqueue, self.run_one, self.operator, self.prune, self.add_image,
             self.change_image, self.record_file, self.own_source, self.alert, self.compact),
            weights=(5, 6, 3, 1, 4, 5, 2, 3, 3, 2))[0]
        op()


@pytest.mark.parametrize("seed", [1, 2])
def test_counters_equal_the_group_by_counts_after_random_writes(databases, seed):
    db = open_products_db(databases.new())
    clock = Clock(time.time() - 200 * 3600)
    work = Workload(db, random.Random(seed), clock)
    for i in range(200):
        work.step()
        if i % 8 == 7:
            with read_connection(db.engine) as conn:
                check_counters_match(conn, clock.t)
    with read_connection(db.engine) as conn:
        seen = truth(conn)
    # the workload reached the states the counts distinguish
    assert {"done", "failed"} <= set(seen["jobs"]) and seen["done_hours"]
    assert seen["images"]["excluded"] and seen["images"]["norm_reasons"] and seen["files"]
    assert seen["own_sources"] and seen["alert_events"] and seen["deliveries"]
    db.dispose()


def test_compaction_folds_the_deltas_and_old_hours_and_changes_no_count(databases, monkeypatch):
    monkeypatch.setattr(counters, "CHUNK", 7)      # a backlog folded in transactions of 7
    db = open_products_db(databases.new())
    clock = Clock(time.time())
    work = Workload(db, random.Random(3), clock)
    for _ in range(30):
        work.enqueue()
        work.run_one()
    with db.engine.connect() as conn:
        before = counters.read_counts(conn)
    assert before.pending_deltas > 30
    with db.engine.begin() as conn:
        assert counters.compact(conn, now=clock.t, limit=5) == 5
    with db.engine.connect() as conn:
        assert counters.read_counts(conn).pending_deltas == before.pending_deltas - 5
    assert counters.try_compact(db, now=clock.t)
    with db.engine.connect() as conn:
        after = counters.read_counts(conn)
        assert conn.execute(sa.select(sa.func.count()).select_from(status_count_deltas)).scalar() == 0
    assert after.pending_deltas == 0 and after.rows == before.rows
    # three days later the done hours are folded into the all-time bucket 0
    assert counters.try_compact(db, now=clock.t + 72 * 3600)
    with db.engine.connect() as conn:
        folded = counters.read_counts(conn)
        buckets = {b for (t, _, b) in folded.rows if t == "batch_jobs"}
        base = conn.execute(sa.select(sa.func.count()).select_from(status_counts)).scalar()
    assert buckets == {0} and folded.jobs() == after.jobs() and base <= 10
    db.dispose()


def test_a_reader_compacts_when_too_many_deltas_wait(databases):
    db = open_products_db(databases.new())
    work = Workload(db, random.Random(4), Clock(time.time()))
    for _ in range(12):
        work.add_image()
    assert counters.counts(db, compact_above=100).pending_deltas == 12
    got = counters.counts(db, compact_above=10)
    assert got.pending_deltas == 0 and got.images()["images"] == 12
    db.dispose()
