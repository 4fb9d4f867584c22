"""The daemon's /metrics and its systemd STATUS= line against `status`, with a real daemon
process (service/metrics.py, service/snapshot.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import NotifySocket, Service, drop, fits_bytes

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """``{(name, frozenset(labels)): value}`` from the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def status_json(svc) -> dict:
    r = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "status", "--json",
                        "--config", str(svc.config)], capture_output=True, text=True, env=svc.env(),
                       timeout=60)
    return json.loads(r.stdout)


def waiting_deltas(svc) -> int:
    con = sqlite3.connect(f"file:{svc.db_path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM status_count_deltas").fetchone()[0]
    finally:
        con.close()


def test_daemon_metrics_match_status(tmp_path):
    port = free_port()
    svc = Service(tmp_path / "svc", workers=2, max_attempts=1, metrics_listen=f"127.0.0.1:{port}")
    sock = NotifySocket(tmp_path / "notify.sock")
    try:
        p = svc.start(NOTIFY_SOCKET=sock.path, WATCHDOG_USEC=1_000_000)
        for i in range(4):
            drop(svc.images / f"good{i}.img-image-pb.fits", i)
        (svc.images / "garbage.img-image-pb.fits").write_bytes(os.urandom(5000))
        (svc.images / "trunc.img-image-pb.fits").write_bytes(fits_bytes(9)[:2880 + 100])
        svc.wait_for(svc.idle_with(6), 90, "six jobs settled")
        # the heartbeat and the metrics come from the same database: poll until both agree
        deadline = time.monotonic() + 60
        while True:
            m = scrape(port)
            st = status_json(svc)
            jobs = {state: m[("contimg_jobs", frozenset({("state", state)}))]
                    for state in ("pending", "running", "done", "failed", "dead", "cancelled")}
            warm = m[("contimg_workers_live", frozenset())] == 2   # both workers done importing
            if (jobs == {k: st["jobs"][k] for k in jobs} and warm) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert jobs == {k: st["jobs"][k] for k in jobs}, (jobs, st["jobs"])
        assert jobs["done"] == 4 and jobs["failed"] == 2
        assert m[("contimg_queue_depth", frozenset())] == st["jobs"]["pending"] == 0
        assert m[("contimg_oldest_pending_age_seconds", frozenset())] == 0
        assert m[("contimg_images_measured_total", frozenset())] == 4
        assert m[("contimg_images_per_minute", frozenset())] == pytest.approx(4 * 60 / 300)
        assert m[("contimg_job_outcomes_total", frozenset({("outcome", "done")}))] == 4
        assert m[("contimg_job_outcomes_total", frozenset({("outcome", "failed")}))] == 2
        assert m[("contimg_job_failures_total", frozenset({("reason_class", "invalid_image")}))] == 2
        assert m[("contimg_workers_busy", frozenset())] == 0
        assert m[("contimg_workers_live", frozenset())] == 2
        assert m[("contimg_daemon_healthy", frozenset())] == 1
        assert m[("contimg_ese_candidates", frozenset({("confidence", "high")}))] == 0
        assert time.time() - 120 < m[("contimg_last_success_timestamp_seconds", frozenset())] <= time.time()
        for stage in ("open", "store"):
            assert m[("contimg_stage_duration_seconds_count", frozenset({("stage", stage)}))] == 4
        assert m[("contimg_stage_duration_seconds_count", frozenset({("stage", "ese")}))] == 0
        # the systemd STATUS= line, and RELOADING=1 ... READY=1 around a SIGHUP rescan
        def received(pred, timeout=30):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                hits = [m for _, m in sock.messages if pred(m)]
                if hits:
                    return hits
                sock.pump(0.3)
            raise AssertionError(f"not received; got {[m for _, m in sock.messages][-5:]}")

        # 4 images in the 5-minute window -> 48 images/h
        received(lambda m: "STATUS=48 images/h, 0 pending, last " in m
                 and "s ago; 0/2 workers busy, 2 failed, 0 files waiting" in m)
        n_ready = len(received(lambda m: "READY=1" in m.split("\n")))
        p.send_signal(signal.SIGHUP)
        reload = received(lambda m: "RELOADING=1" in m.split("\n"))[0]
        assert "MONOTONIC_USEC=" in reload
        usec = int(reload.split("MONOTONIC_USEC=")[1].split("\n")[0])
        assert abs(usec / 1e6 - time.monotonic()) < 60    # CLOCK_MONOTONIC, microseconds
        received(lambda m: len([x for _, x in sock.messages if "READY=1" in x.split("\n")]) > n_ready)
        # the daemon's housekeeping (every reaper pass) folds the counters' deltas into their
        # totals: once idle, none waits, and the counts are the same
        svc.wait_for(lambda: waiting_deltas(svc) == 0, 30, "the counters' deltas compacted")
        assert {k: status_json(svc)["jobs"][k] for k in jobs} == jobs
    finally:
        svc.stop_all()
        sock.close()
