"""Prometheus metrics: the daemon serves /metrics, the job counts equal `status --json`,
stage histograms, failures by class, workers, the systemd STATUS= line and RELOADING/READY."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.metrics import Metrics, failure_class, parse_listen
from dsa110_contimg.service.snapshot import DaemonSnapshot, QueueCounts
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


def test_parse_listen_and_failure_classes():
    assert parse_listen("") is None
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    for bad in ("9464", "localhost:http", "127.0.0.1:70000", 9464):
        with pytest.raises(ConfigError, match="metrics_listen"):
            parse_listen(bad)
    assert failure_class("timeout", "job exceeded the time limit") == "timeout"
    assert failure_class("crashed", "worker process died") == "crashed"
    assert failure_class("ok", "x.fits: not a FITS file") == "invalid_image"
    assert failure_class("error", "OperationalError: database is locked") == "database"
    assert failure_class("error", "ValueError: boom") == "other"


def test_bad_metrics_listen_is_a_config_error(tmp_path):
    from dsa110_contimg.service.config import config_from_dict

    with pytest.raises(ConfigError, match="daemon.metrics_listen"):
        config_from_dict({"daemon": {"metrics_listen": "nope"}}, base_dir=tmp_path)
    cfg = config_from_dict({"daemon": {"metrics_listen": "127.0.0.1:9464"}}, base_dir=tmp_path)
    assert cfg.daemon.metrics_listen == "127.0.0.1:9464"


def test_status_line_counts_images_per_hour():
    m = Metrics("", "/nonexistent.sqlite3")
    now = 1_000_000.0
    for _ in range(7):
        m.on_settled(state="done", worker_status="ok", result={"done": 1}, error=None, duration_s=0.1,
                     now=now - 30)
    snap = DaemonSnapshot(busy=1, workers=2, idle=1, files_waiting=3, pending=4, failed=2)
    line = m.status_line(snap, now=now)
    assert line == ("84 images/h, 4 pending, last 30 s ago; 1/2 workers busy, 2 failed, "
                    "3 files waiting"), line                   # 7 in 5 min -> 84/h
    assert ", ? pending," in m.status_line(DaemonSnapshot(workers=2), now=now)


def test_queue_counts_are_read_when_this_daemon_changed_them_or_every_few_seconds():
    counts = {"pending": 2, "failed": 1, "dead": 1}
    reads, clock = [], [0.0]

    def read():
        reads.append(clock[0])
        return dict(counts)

    qc = QueueCounts(read, refresh_s=5.0, clock=lambda: clock[0])
    idle = {"queued": 1, "claimed": 0}
    assert qc.get(idle) == (2, 2)                    # failed + dead
    counts["pending"] = 1
    clock[0] = 1.0
    assert qc.get(idle) == (2, 2) and len(reads) == 1   # nothing changed here: not read again
    claimed = {"queued": 1, "claimed": 1}            # this daemon claimed a job: read at once
    assert qc.get(claimed) == (1, 2) and len(reads) == 2
    counts["pending"] = 0                            # another daemon's claim: within refresh_s
    clock[0] = 7.0
    assert qc.get(claimed) == (0, 2)

    def locked():
        raise RuntimeError("database is locked")

    qc.read = locked
    clock[0] = 20.0
    assert qc.get(claimed) == (0, 2)                 # the last values stand


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
    finally:
        svc.stop_all()
        sock.close()


def test_deploy_files_use_only_served_metrics(tmp_path):
    """Every contimg_* series named in the alert rules and the Grafana dashboard is served."""
    import re
    from pathlib import Path

    import yaml
    from prometheus_client import generate_latest

    from dsa110_contimg.store.engine import open_products_db

    open_products_db(tmp_path / "p.sqlite3").dispose()
    m = Metrics("127.0.0.1:0", tmp_path / "p.sqlite3")
    served = {s.name for fam in text_string_to_metric_families(generate_latest(m.registry).decode())
              for s in fam.samples}
    m.stop()
    assert {"contimg_jobs", "contimg_queue_depth", "contimg_stage_duration_seconds_bucket",
            "contimg_ese_candidates", "contimg_database_up", "contimg_alerts",
            "contimg_alert_events_total"} <= served
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    rules = yaml.safe_load((deploy / "prometheus-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((deploy / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\bcontimg_[a-z_]+", e)}
    assert used and used <= served, used - served
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"ContimgNoImagesMeasured", "ContimgHighFailureRate", "ContimgOldPendingFile",
            "ContimgNewESECandidate", "ContimgAlertsUndelivered"} <= names


def test_alert_gauges_count_deliveries_by_kind_and_state(tmp_path):
    from prometheus_client import generate_latest

    from dsa110_contimg.store import alerts as outbox
    from dsa110_contimg.store.alerts import AlertEvent, record_alerts
    from dsa110_contimg.store.engine import open_products_db

    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as c:
        record_alerts(c, [AlertEvent("ese_candidate", None, str(i)) for i in range(3)] +
                      [AlertEvent("new_source", None, "n")])
        outbox.fan_out(c, [("webhook:h:1", "webhook"), ("voevent:/s", "voevent")], lambda e, s: None)
        outbox.mark_sent(c, "voevent:/s", [1, 2])
        outbox.mark_attempt_failed(c, "webhook:h:1", [3], "HTTP 400", permanent=True)
    db.dispose()
    m = Metrics("127.0.0.1:0", tmp_path / "p.sqlite3")
    got = {(s.name, frozenset(s.labels.items())): s.value
           for fam in text_string_to_metric_families(generate_latest(m.registry).decode())
           for s in fam.samples}
    m.stop()

    def alerts(kind, state):
        return got[("contimg_alerts", frozenset({("kind", kind), ("state", state)}))]

    assert (alerts("webhook", "pending"), alerts("webhook", "failed"), alerts("webhook", "sent")) == (3, 1, 0)
    assert (alerts("voevent", "pending"), alerts("voevent", "sent")) == (2, 2)
    assert got[("contimg_alert_events_total", frozenset({("event", "ese_candidate")}))] == 3
    assert got[("contimg_alert_events_total", frozenset({("event", "ese_stage")}))] == 0
