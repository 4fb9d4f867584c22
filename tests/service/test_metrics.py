"""Prometheus metrics in process: listen addresses, failure classes, the STATUS= line's rate,
queue counts from the daemon's snapshot, the deploy rules against served metrics, alert gauges
(a real daemon's /metrics against `status`: tests/system/test_metrics.py)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.metrics import Metrics, failure_class, parse_listen
from dsa110_contimg.service.snapshot import DaemonSnapshot, QueueCounts

pytestmark = pytest.mark.timeout(240)


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
