"""Alerts end to end with a webhook server on 127.0.0.1: exactly one alert per ESE candidate
event of a simulated season; every alert delivered after an endpoint outage during which the
daemon was killed and restarted."""

from __future__ import annotations

import json
import signal
import sqlite3
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest

from dsa110_contimg.core.enums import CONFIDENCE_LEVELS
from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
from dsa110_contimg.science.ese import ese_model
from dsa110_contimg.service.alerts import AlertDelivery
from dsa110_contimg.service.config import config_from_dict
from fields import SimulatedField
from harness import drop
from webhook import WebhookServer

pytestmark = pytest.mark.timeout(300)
RANK = {c: -i for i, c in enumerate(CONFIDENCE_LEVELS)}


def candidates(db_path) -> list[tuple]:
    with sqlite3.connect(db_path) as con:
        return con.execute("SELECT c.source_id, s.catalog_id, c.confidence, c.status, c.criteria, "
                           "c.stage FROM ese_candidates c JOIN sources s ON s.id = c.source_id").fetchall()


def test_webhook_receives_one_alert_per_candidate_event(tmp_path):
    """30 epochs, 4 % gain jitter, a 45 % ESE dip on one source; delivery after every epoch.
    The expected events are read from the candidate table epoch by epoch: a new candidate,
    a confidence level reached for the first time above the one stored before, and entry
    into an alerted stage (dip in progress, confirmed)."""
    field = SimulatedField(tmp_path, n_sources=30, seed=4, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    n = 30
    mjds = 60000.0 + np.sort(np.random.default_rng(5).uniform(0, 150, n))
    gains = 1.0 + np.random.default_rng(9).normal(0, 0.04, n)
    target = int(np.argsort(field.flux_mjy)[len(field.flux_mjy) // 2])
    scales = np.ones((n, field.flux_mjy.size))
    scales[:, target] = ese_model(mjds, 60075.0, 40.0, 0.45, 0.0)
    db_path = tmp_path / "p.sqlite3"
    manager = PhotometryManager(db_path, catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig(normalize=True, detect_ese=True,
                                                                norm_min_snr=30.0))
    server = WebhookServer().start()
    cfg = config_from_dict({"alerts": {"webhooks": [server.url], "voevent_dir": "spool",
                                       "rate_limit": 1000, "site_url": "https://example.org/p"}},
                           base_dir=tmp_path).alerts
    delivery = AlertDelivery(cfg, manager.products)
    expected: Counter = Counter()
    stored: dict[int, str] = {}
    stages: dict[int, str | None] = {}
    told: dict[int, set] = {}
    try:
        for k in range(n):
            path = tmp_path / f"epoch{k:03d}.fits"
            field.image(path, mjd=float(mjds[k]), gain=gains[k], seed=100 + k, scale=scales[k])
            manager.measure_for_fits(path, create_batch_job=False)
            delivery.tick()
            for sid, name, conf, status, criteria, stage in candidates(db_path):
                if stage != stages.get(sid) and stage in ("dip_in_progress", "confirmed") and status != "dismissed":
                    expected[("ese_stage", name, conf)] += 1
                stages[sid] = stage
                if sid not in stored:
                    expected[("ese_candidate", name, conf)] += 1
                    told[sid] = set()
                elif RANK[conf] > RANK[stored[sid]] and json.loads(criteria) and \
                        status != "dismissed" and conf not in told[sid]:
                    expected[("ese_confidence", name, conf)] += 1
                    told[sid].add(conf)
                stored[sid] = conf
    finally:
        server.stop()
    bodies = [b for _, b in server.received]
    got = Counter((b["event"], b["source"]["name"], b["details"]["confidence"]) for b in bodies)
    assert got == expected and sum(expected.values()) >= 1
    assert ("ese_candidate", field.names[target]) in {(e, name) for e, name, _ in expected}
    assert len(set(server.keys())) == len(bodies)
    for headers, b in server.received:
        assert headers["Idempotency-Key"] == b["key"] and headers["Content-Type"] == "application/json"
        assert b["role"] == "test" and b["text"].startswith("[TEST] ") and b["source"]["name"] in b["text"]
        assert {"ra_deg", "dec_deg", "ra_hms", "dec_dms", "position_error_arcsec"} <= set(b["source"])
        assert b["flux"]["unit"] == "mJy/beam" and b["flux"]["value"] > 0 and b["flux"]["error"] > 0
        assert b["baseline"]["unit"] == "mJy" and b["baseline"]["catalog"] == "NVSS"
        assert b["significance"] is not None and b["details"]["score"] is not None
        assert b["links"]["page"].startswith("https://example.org/p/sources/")
        assert "DSA-110" in b["observatory"] and b["created_at"].endswith("Z")
    ese = next(b for b in bodies if b["event"] == "ese_candidate" and b["source"]["name"] == field.names[target])
    packet = ET.parse(tmp_path / "spool" / f"{ese['key']}.xml").getroot()
    assert packet.get("role") == "test"
    assert {p.get("name"): p.get("unit") for p in packet.iter("Param")}["peak_flux"] == "mJy/beam"
    assert sorted(p.stem for p in (tmp_path / "spool").iterdir()) == sorted(server.keys())


def test_alerts_survive_an_outage_and_a_daemon_restart(service):
    """The endpoint is down while alerts are recorded; the daemon is killed and restarted
    meanwhile; once the endpoint is back every key arrives (at least once), none missing."""
    server = WebhookServer()                              # not listening yet: connection refused
    svc = service(alerts={"webhooks": [server.url], "voevent_dir": "spool", "retry_base_s": 0.2,
                          "retry_cap_s": 1.0, "poll_interval_s": 0.2})

    def deliveries(kind):
        return svc.sql("SELECT a.key, d.state, d.attempts FROM alerts a JOIN alert_deliveries d "
                       "ON d.alert_id = a.id WHERE d.kind = ?", kind)

    proc = svc.start()
    for i in range(5):
        drop(svc.images / f"ALERT{i:02d}.fits", seed=i)
    def tried():   # the oldest pending alert is retried first (head of the line)
        rows = deliveries("webhook")
        return sum(attempts for _, _, attempts in rows) if rows and \
            all(state == "pending" for _, state, _ in rows) else 0

    svc.wait_for(lambda: len(deliveries("webhook")) == 5 and tried() >= 2, 120, "five alerts, tried")
    proc.kill()
    proc.wait(10)
    before = tried()
    for i in range(5, 8):
        drop(svc.images / f"ALERT{i:02d}.fits", seed=i)
    proc = svc.start()
    svc.wait_for(lambda: len(deliveries("webhook")) == 8 and tried() >= before + 2, 120,
                 "eight alerts, tried again after the restart")
    assert not server.received
    server.start()
    try:
        svc.wait_for(lambda: all(state == "sent" for _, state, _ in deliveries("webhook")), 120,
                     "every alert sent")
    finally:
        server.stop()
    keys = {k for (k,) in svc.sql("SELECT key FROM alerts")}
    assert len(keys) == 8 and set(server.keys()) == keys          # none missing, nothing else
    assert all(n >= 1 for n in Counter(server.keys()).values())
    spool = svc.root / "spool"
    assert sorted(p.stem for p in spool.iterdir()) == sorted(keys)
    assert {state for _, state, _ in deliveries("voevent")} == {"sent"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
