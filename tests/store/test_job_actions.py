"""Operator actions on the queue (store/job_actions.py): acknowledging failed and dead jobs."""

from __future__ import annotations

import pytest

from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue
from dsa110_contimg.store.status import read_status_counts

from pgcluster import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def queue(databases):
    db = open_products_db(databases.new())
    yield JobQueue(db, owner="A", clock=lambda: 1_000_000.0, max_interruptions=1)
    db.dispose()


def _failed(queue, name: str, *, retryable: bool = False) -> int:
    job_id, _ = queue.enqueue({}, [(f"/x/{name}.fits", "image", None)], idempotency_key=name,
                              max_attempts=1)
    assert queue.claim().id == job_id
    queue.fail(job_id, f"{name} broke", retryable=retryable)
    return job_id


def test_ack_one_then_all_and_a_new_failure_is_unacknowledged(queue):
    failed, dead = _failed(queue, "a"), _failed(queue, "b", retryable=True)
    pending, _ = queue.enqueue({}, [("/x/c.fits", "image", None)], idempotency_key="c")
    assert [queue.get(j)["status"] for j in (failed, dead)] == ["failed", "dead"]
    unack = lambda: read_status_counts(queue.db, now=queue.clock())["unacknowledged"]  # noqa: E731
    assert unack() == {"failed": 1, "dead": 1}
    assert queue.ack(pending) == [] and queue.ack(failed) == [failed]
    assert queue.ack(failed) == []                    # already acknowledged: not again
    assert queue.get(failed)["acknowledged_at"] == 1_000_000.0
    assert unack() == {"dead": 1}
    assert queue.ack() == [dead] and unack() == {}
    assert queue.get(failed)["status"] == "failed"    # still listed as it was
    assert queue.retry(failed) and queue.get(failed)["acknowledged_at"] is None
    assert queue.claim().id == failed
    queue.fail(failed, "a broke again", retryable=False)
    assert unack() == {"failed": 1}
    assert queue.requeue(dead) and queue.get(dead)["acknowledged_at"] is None
