"""`status` and `jobs` commands: exit codes, JSON keys, read-only access, operator actions."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from dsa110_contimg.cli.main import main
from dsa110_contimg.store import files as filestore
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.files import FileKey
from dsa110_contimg.store.queue import JobQueue
from dsa110_contimg.store.schema import heartbeats


@pytest.fixture
def svc(tmp_path):
    assert main(["init", str(tmp_path / "svc")]) == 0
    cfg = tmp_path / "svc" / "photometry.toml"
    db = open_products_db(tmp_path / "svc" / "state" / "products.sqlite3")
    yield cfg, db
    db.dispose()


def status(cfg, capsys, *extra):
    capsys.readouterr()
    rc = main(["status", "--config", str(cfg), *extra])
    return rc, capsys.readouterr().out


def test_status_database_missing(tmp_path, capsys):
    assert main(["init", str(tmp_path / "s")]) == 0
    rc, out = status(tmp_path / "s" / "photometry.toml", capsys, "--json")
    assert rc == 4
    assert json.loads(out)["daemon"]["running"] is False


def test_status_exit_codes_and_json(svc, capsys):
    cfg, db = svc
    queue = JobQueue(db, owner="me")
    rc, out = status(cfg, capsys)
    assert rc == 3 and "not running" in out           # no heartbeat yet
    filestore.beat(db, "me", started_at=time.time(), workers=2, state="running", status_text="idle")
    for i in range(3):
        queue.enqueue({}, [(f"/img/{i}.fits", "image", None)], idempotency_key=f"k{i}")
    filestore.record_file(db, FileKey("/img/r.fits", 1, 1), "skipped", reason="residual")
    job = queue.claim()
    queue.update_item(job.items[0].id, "done")
    queue.complete(job.id)
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 0
    assert st["daemon"]["running"] is True and st["daemon"]["workers"] == 2
    assert (st["jobs"]["pending"], st["jobs"]["running"], st["jobs"]["done"], st["jobs"]["failed"],
            st["jobs"]["dead"]) == (2, 0, 1, 0, 0)
    assert st["jobs"]["done_last_hour"] == 1 and st["jobs"]["oldest_pending_age_s"] >= 0
    assert st["images"] == {"measured": 0, "skipped": 1, "queued": 0, "incomplete": 0}
    assert st["measurements"]["total"] == 0 and st["ese"]["candidates"] == 0
    # a permanent failure: degraded, with the reason listed
    job = queue.claim()
    queue.fail(job.id, "corrupt FITS: no SIMPLE card", retryable=False)
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 1 and st["failures"][0]["error"] == "corrupt FITS: no SIMPLE card"
    assert st["failures"][0]["path"] == "/img/1.fits"
    rc, text = status(cfg, capsys)
    assert rc == 1 and "corrupt FITS" in text and "pending 1" in text
    queue.retry(job.id)
    # stale heartbeat of a daemon that did not stop cleanly: degraded
    with db.engine.begin() as conn:
        conn.execute(heartbeats.update().values(beat_at=time.time() - 3600))
    rc, out = status(cfg, capsys, "--json")
    assert rc == 1 and json.loads(out)["daemon"]["state"] == "stale"
    filestore.beat(db, "me", started_at=time.time(), workers=2, state="stopped")
    rc, _ = status(cfg, capsys)
    assert rc == 3


def test_status_is_read_only_and_never_blocks(svc, capsys):
    cfg, db = svc
    filestore.beat(db, "me", started_at=time.time(), workers=1, state="running")
    with db.engine.begin() as conn:   # the daemon holds the write lock (BEGIN IMMEDIATE)
        conn.execute(sa.text("UPDATE heartbeats SET workers = 3"))
        t0 = time.monotonic()
        rc, out = status(cfg, capsys, "--json")
        assert time.monotonic() - t0 < 5
        assert rc == 0 and json.loads(out)["daemon"]["workers"] == 1   # sees the committed state


def test_jobs_commands(svc, capsys):
    cfg, db = svc
    queue = JobQueue(db, owner="me")
    ids = [queue.enqueue({"config": {}}, [(f"/img/{i}.fits", "image", None)], idempotency_key=f"k{i}")[0]
           for i in range(3)]
    job = queue.claim()
    queue.fail(job.id, "bad", retryable=False)
    capsys.readouterr()
    assert main(["jobs", "list", "--json", "--config", str(cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)["jobs"]
    assert [r["id"] for r in rows] == ids[::-1] and rows[-1]["status"] == "failed"
    assert main(["jobs", "list", "--state", "pending", "--json", "--config", str(cfg)]) == 0
    assert len(json.loads(capsys.readouterr().out)["jobs"]) == 2
    assert main(["jobs", "show", str(ids[0]), "--json", "--config", str(cfg)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["error"] == "bad" and shown["items"][0]["fits_path"] == "/img/0.fits"
    assert main(["jobs", "show", "999", "--config", str(cfg)]) == 1
    assert main(["jobs", "retry", str(ids[0]), "--config", str(cfg)]) == 0
    assert queue.get(ids[0])["status"] == "pending"
    assert main(["jobs", "retry", str(ids[1]), "--config", str(cfg)]) == 1   # pending: nothing to retry
    assert main(["jobs", "cancel", str(ids[2]), "--json", "--config", str(cfg)]) == 0
    assert queue.get(ids[2])["status"] == "cancelled"
    assert main(["jobs", "cancel", str(ids[2]), "--config", str(cfg)]) == 1


def test_status_watch_refreshes_until_interrupted(svc):
    import os
    import signal
    import subprocess
    import sys

    cfg, _db = svc
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "status", "--watch",
                          "--interval", "0.2", "--config", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline and seen.count("daemon:") < 3:
            seen += p.stdout.readline()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert seen.count("daemon:        not running") >= 3     # refreshed, one snapshot per period
    assert "Ctrl-C to stop" in seen and "Traceback" not in err
    assert p.returncode == 3                                 # the code of the last refresh
