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


def test_status_before_the_first_run_says_not_started(tmp_path, capsys):
    """`init` then `status`: no database yet is not an error but a daemon not started
    (exit 3, like not running); a database path in a folder that does not exist is (4)."""
    assert main(["init", str(tmp_path / "s")]) == 0
    cfg = tmp_path / "s" / "photometry.toml"
    rc, out = status(cfg, capsys)
    assert rc == 3 and "not started yet" in out and "products.sqlite3" in out, out
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 3 and st["daemon"]["state"] == "not_started" and st["daemon"]["running"] is False
    assert st["health"]["verdict"] == "not_started" and st["health"]["exit_code"] == 3
    assert st["jobs"]["total"] == 0
    capsys.readouterr()
    assert main(["status", "--products-db", str(tmp_path / "nowhere" / "p.sqlite3")]) == 4
    assert "does not exist" in capsys.readouterr().err
    # a database created by another command (db upgrade), no daemon run yet: the same
    assert main(["db", "upgrade", "--config", str(cfg)]) == 0
    rc, out = status(cfg, capsys, "--json")
    assert rc == 3 and json.loads(out)["health"]["verdict"] == "not_started"


def test_status_exit_codes_and_json(svc, capsys):
    cfg, db = svc
    queue = JobQueue(db, owner="me")
    rc, out = status(cfg, capsys)
    assert rc == 3 and "not started yet" in out       # no heartbeat yet
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
    assert st["images"] == {"measured": 0, "skipped": 1, "queued": 0, "incomplete": 0,
                            "duplicates": 0, "excluded": 0, "recently_excluded": []}
    assert st["measurements"]["total"] == 0 and st["ese"]["candidates"] == 0
    # a permanent failure: degraded, with the reason listed
    job = queue.claim()
    queue.fail(job.id, "corrupt FITS: no SIMPLE card", retryable=False)
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 1 and st["failures"][0]["error"] == "corrupt FITS: no SIMPLE card"
    assert st["failures"][0]["path"] == "/img/1.fits"
    assert st["health"] == {"verdict": "degraded", "exit_code": 1, "reasons": [
        "1 failed and 0 dead job(s) not acknowledged (contimg-photometry jobs list --state failed; "
        "jobs retry ID or jobs ack --all)"]}
    assert st["jobs"]["unacknowledged"] == {"failed": 1, "dead": 0}
    assert st["last_hour"] == {"done": 1, "failed": 1}
    rc, text = status(cfg, capsys)
    assert rc == 1 and "corrupt FITS" in text and "pending 1" in text
    # every count names its window
    assert "jobs, all time: " in text and "failed 1 (1 not acknowledged)" in text
    assert "last hour:     1 jobs done, 1 failed or dead" in text and "since start:   idle" in text
    assert "images, all time: " in text
    # acknowledged: still listed, no longer degraded; exit code and verdict agree
    capsys.readouterr()
    assert main(["jobs", "ack", str(job.id), "--config", str(cfg)]) == 0
    assert "acknowledged" in capsys.readouterr().out
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 0 == st["health"]["exit_code"] and st["health"]["verdict"] == "ok", st["health"]
    assert st["jobs"]["failed"] == 1 and st["failures"] == []
    assert main(["jobs", "list", "--state", "failed", "--config", str(cfg)]) == 0
    assert "(acknowledged)" in capsys.readouterr().out
    # retried and failed again: a new failure, degraded until acknowledged again
    assert queue.retry(job.id)
    assert queue.claim().id == job.id
    queue.fail(job.id, "corrupt again", retryable=False)
    rc, _ = status(cfg, capsys)
    assert rc == 1
    assert main(["jobs", "ack", "--all", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["acknowledged"] == [job.id]
    assert status(cfg, capsys)[0] == 0
    queue.retry(job.id)
    # stale heartbeat of a daemon that did not stop cleanly: degraded
    with db.engine.begin() as conn:
        conn.execute(heartbeats.update().values(beat_at=time.time() - 3600))
    rc, out = status(cfg, capsys, "--json")
    st = json.loads(out)
    assert rc == 1 and st["daemon"]["state"] == "stale" and st["health"]["verdict"] == "degraded"
    assert "heartbeat" in st["health"]["reasons"][0]
    filestore.beat(db, "me", started_at=time.time(), workers=2, state="stopped")
    rc, out = status(cfg, capsys, "--json")
    assert rc == 3 and json.loads(out)["health"]["verdict"] == "not_running"


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
    capsys.readouterr()
    assert main(["jobs", "ack", str(ids[1]), "--config", str(cfg)]) == 1   # pending: nothing to ack
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("contimg-photometry jobs: error: job ") and "pending" in err
    assert main(["jobs", "retry", str(ids[0]), "--config", str(cfg)]) == 0
    assert queue.get(ids[0])["status"] == "pending"
    assert "job 1: retried" in capsys.readouterr().out
    assert main(["jobs", "retry", str(ids[1]), "--config", str(cfg)]) == 1   # pending: nothing to retry
    out, err = capsys.readouterr()
    assert out == "" and "error: job" in err and "only a failed, dead or cancelled" in err
    assert main(["jobs", "cancel", str(ids[2]), "--json", "--config", str(cfg)]) == 0
    assert queue.get(ids[2])["status"] == "cancelled"
    capsys.readouterr()
    assert main(["jobs", "cancel", str(ids[2]), "--config", str(cfg)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "error: job" in err and "is cancelled" in err


def test_files_list_shows_skipped_and_waiting_files_with_reasons(svc, capsys):
    cfg, db = svc
    filestore.record_file(db, FileKey("/img/a-residual.fits", 10, 1), "skipped",
                          reason="residual image (-residual.fits)", now=100.0)
    filestore.record_file(db, FileKey("/img/b-image.fits", 20, 2), "incomplete",
                          reason="waiting for the primary-beam-corrected sibling", now=200.0)
    filestore.record_file(db, FileKey("/img/c.fits", 30, 3), "queued", kind="image", now=300.0)
    capsys.readouterr()
    assert main(["files", "list", "--config", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("waiting ") and "/img/b-image.fits" in lines[1] and \
        "[waiting for the primary-beam-corrected sibling]" in lines[1]
    assert lines[2].startswith("skipped ") and "[residual image (-residual.fits)]" in lines[2]
    assert len(lines) == 3                                   # the queued file is in `jobs list`
    assert main(["files", "list", "--skipped", "--json", "--config", str(cfg)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["count"] == 1 and doc["files"][0]["path"] == "/img/a-residual.fits"
    assert doc["files"][0]["state"] == "skipped" and doc["files"][0]["reason"].startswith("residual")
    assert main(["files", "list", "--waiting", "--limit", "0", "--json", "--config", str(cfg)]) == 0
    assert [f["state"] for f in json.loads(capsys.readouterr().out)["files"]] == ["waiting"]


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
    assert seen.count("daemon:        not started yet") >= 3     # refreshed, one snapshot per period
    assert "Ctrl-C to stop" in seen and "Traceback" not in err
    assert p.returncode == 3                                 # the code of the last refresh
