"""The durable job queue (store/queue.py): idempotent enqueue, atomic claims, leases,
fencing, back-off, dead letters, reaper, hand-back, operator actions, multi-process claims."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import sqlalchemy as sa

from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue
from dsa110_contimg.store.schema import batch_jobs


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


from pgcluster import BACKENDS  # noqa: E402


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every queue test runs on SQLite and on the session's PostgreSQL."""
    return request.param


@pytest.fixture
def db(databases):
    d = open_products_db(databases.new())
    yield d
    d.dispose()


def q(db, owner="A", clock=None, **kw):
    return JobQueue(db, owner=owner, clock=clock or Clock(), lease_s=60, backoff_base_s=10,
                    backoff_cap_s=100, **kw)


def add(queue, name, key=None, **kw):
    return queue.enqueue({"config": {}}, [(f"/x/{name}.fits", "image", None)],
                         idempotency_key=key, origin="daemon", **kw)


def test_enqueue_is_idempotent_on_the_key(db):
    queue = q(db)
    a = add(queue, "a", "a:1:2")
    b = add(queue, "a", "a:1:2")
    c = add(queue, "a", "a:1:3")  # new file version -> new job
    assert a == (a[0], True) and b == (a[0], False) and c[1] and c[0] != a[0]
    assert queue.counts()["pending"] == 2
    assert queue.get(a[0])["items"][0]["fits_path"] == "/x/a.fits"


def test_claim_fifo_lease_and_fenced_complete(db):
    clock = Clock()
    qa, qb = q(db, "A", clock), q(db, "B", clock)
    j1, _ = add(qa, "1")
    j2, _ = add(qa, "2")
    c1 = qa.claim()
    assert c1.id == j1 and c1.attempts == 1 and c1.items[0].fits_path == "/x/1.fits"
    c2 = qb.claim()
    assert c2.id == j2
    assert qa.claim() is None
    job = qa.get(j1)
    assert job["status"] == "running" and job["lease_owner"] == "A" and job["lease_until"] == clock.t + 60
    # B cannot complete A's job (fencing)
    assert not qb.complete(j1)
    qa.update_item(c1.items[0].id, "done", n_measurements=3)
    assert qa.complete(j1)
    assert qa.get(j1)["status"] == "done" and qa.get(j1)["completed_items"] >= 1


def test_retryable_failure_backs_off_then_dies(db):
    clock = Clock()
    queue = q(db, clock=clock)
    jid, _ = add(queue, "x", max_attempts=3)
    for attempt in (1, 2):
        job = queue.claim()
        assert job.id == jid and job.attempts == attempt
        assert queue.fail(jid, "io error", retryable=True) == "pending"
        nb = queue.get(jid)["not_before"]
        delay = nb - clock.t
        assert 10 * 2 ** (attempt - 1) * 0.5 <= delay <= 10 * 2 ** (attempt - 1)
        assert queue.claim() is None  # not due yet
        clock.t = nb + 0.001
    queue.claim()
    assert queue.fail(jid, "io error", retryable=True) == "dead"
    assert queue.get(jid)["status"] == "dead"
    assert queue.retry(jid)
    job = queue.get(jid)
    assert job["status"] == "pending" and job["attempts"] == 0


def test_permanent_failure_marks_items_failed(db):
    queue = q(db)
    jid, _ = add(queue, "bad")
    queue.claim()
    assert queue.fail(jid, "corrupt FITS", retryable=False) == "failed"
    job = queue.get(jid)
    assert job["status"] == "failed" and job["error"] == "corrupt FITS"
    assert job["items"][0]["status"] == "failed"


def test_reaper_requeues_expired_leases_and_dead_owners(db):
    clock = Clock()
    qa, qb = q(db, "A", clock), q(db, "B", clock)
    j1, _ = add(qa, "1")
    j2, _ = add(qa, "2", max_attempts=1)
    j3, _ = add(qa, "3")
    qa.claim(), qa.claim()
    qb.claim()
    assert qa.reap_expired() == {"pending": 0, "dead": 0, "cancelled": 0}
    clock.t += 61  # A's and B's leases expire
    qb.heartbeat(j3)  # B is alive and extends its lease
    # an expired lease means the daemon holding it died: the attempt is not counted,
    # even on a job's last attempt
    assert qa.reap_expired() == {"pending": 2, "dead": 0, "cancelled": 0}
    for jid in (j1, j2):
        job = qa.get(jid)
        assert (job["status"], job["attempts"], job["interruptions"]) == ("pending", 0, 1)
        assert job["items"][0]["status"] == "pending"
    assert qa.get(j3)["status"] == "running"
    # the old owner lost its lease: its late completion and item writes are discarded
    assert not qa.complete(j1)
    assert not qa.update_item(qa.get(j1)["items"][0]["id"], "done")
    # a dead owner is reaped at once, lease or not
    assert qa.reap_expired(owners_gone=["B"])["pending"] == 1
    assert qa.get(j3)["status"] == "pending"


def test_interruptions_are_bounded(db):
    """A file that kills the daemon itself every time cannot loop forever."""
    clock = Clock()
    queue = q(db, "A", clock, max_interruptions=3)
    jid, _ = add(queue, "x", max_attempts=1)
    for n in range(3):
        assert queue.claim().id == jid
        clock.t += 61
        reaped = queue.reap_expired()
        assert reaped == ({"pending": 1, "dead": 0, "cancelled": 0} if n < 2
                          else {"pending": 0, "dead": 1, "cancelled": 0})
    job = queue.get(jid)
    assert job["status"] == "dead" and "interrupted 3 times" in job["error"]
    assert job["items"][0]["status"] == "failed"
    assert queue.retry(jid) and queue.get(jid)["interruptions"] == 0


def test_item_and_result_writes_are_fenced_on_the_lease(db):
    from dsa110_contimg.store.queue import LeaseLost

    clock = Clock()
    qa, qb = q(db, "A", clock), q(db, "B", clock)
    jid, _ = add(qa, "x")
    job = qa.claim()
    item = job.items[0].id
    assert qa.update_item(item, "running")
    assert not qb.update_item(item, "done")                 # B never held the lease
    clock.t += 61
    qb.reap_expired()
    assert qb.claim().id == jid                             # B takes over
    assert not qa.update_item(item, "done", n_measurements=5)   # A's late write is refused
    with pytest.raises(LeaseLost):
        with db.engine.begin() as conn:                     # A's result transaction rolls back
            conn.execute(batch_jobs.update().where(batch_jobs.c.id == jid).values(error="A was here"))
            qa.fence(conn, jid)
    assert qa.get(jid)["error"] is None
    with db.engine.begin() as conn:
        qb.fence(conn, jid)                                 # the owner passes
    assert qb.update_item(item, "done", n_measurements=1)
    assert qb.complete(jid)
    got = qb.get(jid)
    assert got["status"] == "done" and got["items"][0]["n_measurements"] == 1


def test_release_hands_back_without_counting_the_attempt(db):
    queue = q(db)
    jid, _ = add(queue, "x")
    queue.claim()
    assert queue.release(jid)
    job = queue.get(jid)
    assert job["status"] == "pending" and job["attempts"] == 0 and job["lease_owner"] is None


def test_cancel_pending_and_running(db):
    queue = q(db)
    j1, _ = add(queue, "1")
    j2, _ = add(queue, "2")
    assert queue.cancel(j2)
    assert queue.get(j2)["status"] == "cancelled"
    queue.claim()
    assert queue.cancel(j1)
    assert queue.cancel_requested(j1)
    job = queue.get(j1)
    assert job["status"] == "running" and job["cancel_requested"] and job["error"] is None
    assert queue.finish_cancelled(j1)
    assert queue.get(j1)["status"] == "cancelled"
    assert not queue.cancel(j1)
    assert queue.retry(j1)
    assert not queue.cancel_requested(j1) and queue.get(j1)["status"] == "pending"


@pytest.mark.parametrize("outcome", ["retryable", "release", "lease_expired"])
def test_cancel_wins_over_retryable_failure_release_and_expiry(db, outcome):
    """A cancelled running job never runs again, whatever its worker reports."""
    clock = Clock()
    queue = q(db, "A", clock)
    jid, _ = add(queue, "x")
    queue.claim()
    assert queue.cancel(jid)
    if outcome == "retryable":
        assert queue.fail(jid, "OSError: disk full", retryable=True) == "cancelled"
    elif outcome == "release":
        assert queue.release(jid)
    else:
        clock.t += 61
        assert queue.reap_expired()["cancelled"] == 1
    job = queue.get(jid)
    assert job["status"] == "cancelled" and job["items"][0]["status"] == "cancelled"
    assert "cancelled by an operator" in job["error"]
    clock.t += 10_000
    assert queue.claim() is None


def test_list_and_bad_state(db):
    queue = q(db)
    for i in range(3):
        add(queue, str(i))
    assert [j["id"] for j in queue.list()] == [3, 2, 1]
    with pytest.raises(Exception, match="unknown job state"):
        queue.list(state="nope")


def _claimer(path, owner, out):
    d = open_products_db(path, migrate=False)
    queue = JobQueue(d, owner=owner)
    got = []
    while True:
        job = queue.claim()
        if job is None:
            break
        got.append(job.id)
        queue.complete(job.id)
    d.dispose()
    out.put((owner, got))


def test_concurrent_claims_from_four_processes_never_duplicate(databases):
    path = databases.new()
    d = open_products_db(path)
    queue = JobQueue(d)
    n = 400
    for i in range(n):
        queue.enqueue({}, [(f"/x/{i}.fits", "image", None)], idempotency_key=f"k{i}")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(path), f"P{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    ids = [i for _, got in results for i in got]
    assert len(ids) == n and len(set(ids)) == n
    with d.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(batch_jobs.c.status == "done")).scalar() == n
        if conn.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
    d.dispose()
