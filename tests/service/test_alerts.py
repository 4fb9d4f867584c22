"""Alert delivery without a daemon or a server: a recording stand-in for the HTTP POST and a
controllable clock. Rate limit with the overflow in one summary, back-off per destination
through outages and restarts, refusals, filters, the lease, the VOEvent spool, the
``[alerts]`` configuration."""

from __future__ import annotations

import os

import pytest

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.alerts import AlertDelivery, Outcome, destinations_of
from dsa110_contimg.service.config import config_from_dict
from dsa110_contimg.store import alerts as outbox
from dsa110_contimg.store.alerts import AlertEvent, record_alerts
from dsa110_contimg.store.engine import open_products_db

URL = "http://127.0.0.1:9/hook?token=s3cret"


class Endpoint:
    """Stands in for ``post_webhook``: records every body, answers what ``answer`` says."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.answer = Outcome("ok", "HTTP 200")

    def __call__(self, url, body, *, key, timeout_s):
        assert url == URL and key == body["key"]
        self.bodies.append(body)
        return self.answer(body) if callable(self.answer) else self.answer

    def keys(self) -> list[str]:
        """Every alert key received, summaries opened."""
        out = []
        for b in self.bodies:
            out += [a["key"] for a in b["alerts"]] if b["event"] == "summary" else [b["key"]]
        return out


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path):
    d = open_products_db(tmp_path / "p.sqlite3")
    with d.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, "
                          "reference_ok) VALUES ('nvss', 'NVSS J100000+370000', 150.0, 37.0, 250.0, 0)")
    yield d
    d.dispose()


def alerts_cfg(tmp_path, **kw):
    kw.setdefault("webhooks", [URL])
    return config_from_dict({"alerts": kw}, base_dir=tmp_path).alerts


def record(db, n: int, *, event="ese_candidate", start=0, significance=6.0, now=None) -> list[str]:
    with db.engine.begin() as c:
        return record_alerts(c, [AlertEvent(event, 1, f"e{start + i}", significance=significance,
                                             fields={"confidence": "high"}) for i in range(n)], now=now)


def states(db) -> dict[str, tuple]:
    with db.engine.connect() as c:
        return {a["key"]: tuple((d["state"], d["attempts"]) for d in a["deliveries"])
                for a in outbox.find_alerts(c, limit=None)}


def test_rate_limit_sends_the_overflow_in_one_summary(db, tmp_path):
    cfg = alerts_cfg(tmp_path, rate_limit=10, rate_window_s=3600.0)
    ep, clock = Endpoint(), Clock()
    delivery = AlertDelivery(cfg, db, post=ep, clock=clock)
    keys = record(db, 25)
    counts = delivery.tick()
    assert counts["sent"] == 9 and counts["summarised"] == 16
    assert len(ep.bodies) == 10                                     # the window's limit
    assert [b["event"] for b in ep.bodies] == ["ese_candidate"] * 9 + ["summary"]
    summary = ep.bodies[-1]
    assert summary["count"] == 16 and "16 more alerts" in summary["text"]
    assert sorted(ep.keys()) == sorted(keys)                        # every key exactly once
    assert all(s == (("sent", 1),) for s in states(db).values())

    later = record(db, 3, start=100)
    clock.t += 60
    delivery.tick()
    assert len(ep.bodies) == 10                                     # window full: they wait
    assert {states(db)[k] for k in later} == {(("pending", 0),)}
    clock.t += 3600
    delivery.tick()
    assert [b["key"] for b in ep.bodies[10:]] == later             # the next window, one each


def test_outage_backs_off_per_destination_and_survives_a_restart(db, tmp_path):
    cfg = alerts_cfg(tmp_path, retry_base_s=10.0, retry_cap_s=40.0)
    ep, clock = Endpoint(), Clock()
    ep.answer = Outcome("retry", "URLError: [Errno 111] Connection refused")
    first = AlertDelivery(cfg, db, post=ep, clock=clock, rng=lambda: 1.0)
    keys = record(db, 3)
    delays = []
    for _ in range(5):
        first.tick()
        with db.engine.connect() as c:
            (dest,) = outbox.destinations(c)
        delays.append(dest["next_attempt_at"] - clock.t)
        first.tick()                                   # before the back-off ends: no attempt
        clock.t = dest["next_attempt_at"]
    assert delays == [10.0, 20.0, 40.0, 40.0, 40.0]  # base * 2**(failures-1), capped
    assert len(ep.bodies) == 5 and {b["key"] for b in ep.bodies} == {keys[0]}   # head of the line
    assert dest["failures"] == 5 and "Connection refused" in dest["last_error"]
    assert states(db)[keys[0]] == (("pending", 5),)

    ep.answer = Outcome("ok", "HTTP 200")              # the endpoint is back; a new process
    second = AlertDelivery(cfg, db, post=ep, clock=clock)
    assert second.owner != first.owner
    second.tick()
    assert ep.keys()[5:] == keys and all(states(db)[k][0][0] == "sent" for k in keys)
    with db.engine.connect() as c:
        (dest,) = outbox.destinations(c)
    assert dest["failures"] == 0 and dest["last_error"] is None
    assert dest["window_sent"] == 3                   # failed attempts use no rate-limit room


def test_jitter_keeps_the_back_off_between_half_and_full(db, tmp_path):
    cfg = alerts_cfg(tmp_path, retry_base_s=8.0, retry_cap_s=8.0)
    ep, clock = Endpoint(), Clock()
    ep.answer = Outcome("retry", "HTTP 503 Service Unavailable")
    record(db, 1)
    for u in (0.0, 0.25, 0.999):
        AlertDelivery(cfg, db, post=ep, clock=clock, rng=lambda u=u: u).tick()
        with db.engine.connect() as c:
            (dest,) = outbox.destinations(c)
        assert dest["next_attempt_at"] - clock.t == pytest.approx(8.0 * (0.5 + 0.5 * u))
        clock.t = dest["next_attempt_at"]


def test_a_refused_alert_fails_without_blocking_the_others(db, tmp_path):
    ep = Endpoint()
    keys = record(db, 3)
    ep.answer = lambda body: (Outcome("refused", "HTTP 400 Bad Request") if body["key"] == keys[1]
                              else Outcome("ok", "HTTP 204"))
    counts = AlertDelivery(alerts_cfg(tmp_path), db, post=ep).tick()
    assert counts["sent"] == 2 and counts["failed"] == 1
    got = states(db)
    assert got[keys[1]] == (("failed", 1),) and got[keys[0]] == got[keys[2]] == (("sent", 1),)
    with db.engine.connect() as c:
        (dest,) = outbox.destinations(c)
    assert dest["failures"] == 0 and dest["next_attempt_at"] == 0.0   # no back-off for a refusal


def test_filters_events_and_faint_new_sources(db, tmp_path):
    cfg = alerts_cfg(tmp_path, events=["ese_candidate", "new_source"], new_source_min_sigma=7.0)
    ep = Endpoint()
    sent = record(db, 1) + record(db, 1, event="new_source", significance=8.0, start=1)
    held = record(db, 1, event="new_source", significance=6.9, start=2) + \
        record(db, 1, event="ese_confidence", start=3)
    AlertDelivery(cfg, db, post=ep).tick()
    assert sorted(ep.keys()) == sorted(sent)
    with db.engine.connect() as c:
        notes = {a["key"]: a["note"] for a in outbox.find_alerts(c)}
    assert "new_source_min_sigma" in notes[held[0]] and "not in [alerts] events" in notes[held[1]]


def test_one_sender_per_destination(db, tmp_path):
    cfg = alerts_cfg(tmp_path)
    ep = Endpoint()
    record(db, 2)
    other = AlertDelivery(cfg, db, post=ep)
    (dest,) = other.destinations
    with db.engine.begin() as c:
        outbox.ensure_destinations(c, [(dest.name, dest.kind)])
        assert outbox.claim_destination(c, dest.name, "another-daemon", lease_s=60) is not None
    other.tick()
    assert ep.bodies == []                             # leased by another process
    with db.engine.begin() as c:
        outbox.release_destination(c, dest.name, "another-daemon")
    other.tick()
    assert len(ep.bodies) == 2


def test_the_url_is_never_stored(db, tmp_path):
    (dest,) = destinations_of(alerts_cfg(tmp_path))
    assert dest.name.startswith("webhook:127.0.0.1:") and "s3cret" not in dest.name
    record(db, 1)
    AlertDelivery(alerts_cfg(tmp_path), db, post=Endpoint()).tick()
    with open(db.url.removeprefix("sqlite:///"), "rb") as fh:
        assert b"s3cret" not in fh.read()


def test_voevent_spool_is_retried_until_writable(db, tmp_path):
    spool = tmp_path / "spool"
    spool.write_text("a file where the directory should be")
    cfg = alerts_cfg(tmp_path, webhooks=[], voevent_dir="spool")
    clock = Clock()
    delivery = AlertDelivery(cfg, db, clock=clock)
    keys = record(db, 2)
    assert delivery.tick()["retrying"] == 1
    with db.engine.connect() as c:
        (dest,) = outbox.destinations(c)
    assert "cannot write the VOEvent" in dest["last_error"] and dest["kind"] == "voevent"
    spool.unlink()
    clock.t = dest["next_attempt_at"]
    assert delivery.tick()["sent"] == 2
    assert sorted(p.name for p in spool.iterdir()) == sorted(f"{k}.xml" for k in keys)
    assert not [p for p in spool.iterdir() if p.name.startswith(".")]


def test_thread_delivers_when_woken(db, tmp_path):
    cfg = alerts_cfg(tmp_path, poll_interval_s=3600.0)
    ep = Endpoint()
    delivery = AlertDelivery(cfg, db, post=ep)
    delivery.start()
    try:
        keys = record(db, 1)
        delivery.wake()
        import time

        deadline = time.monotonic() + 60
        while not ep.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ep.keys() == keys
    finally:
        delivery.stop()
    assert not delivery.alive()


def test_alerts_configuration(tmp_path, monkeypatch):
    cfg = config_from_dict({}, base_dir=tmp_path).alerts
    assert cfg.webhooks == () and cfg.voevent_dir is None and not cfg.configured
    assert cfg.role == "test"
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.org/services/T/B/X")
    cfg = config_from_dict({"alerts": {"webhooks": "${HOOK_URL}", "voevent_dir": "spool"}},
                           base_dir=tmp_path).alerts
    assert cfg.webhooks == ("https://hooks.example.org/services/T/B/X",)
    assert cfg.voevent_dir == tmp_path / "spool" and cfg.configured
    for bad, key in (({"webhooks": ["ftp://x/y"]}, "alerts.webhooks"),
                     ({"webhooks": ["${UNSET_HOOK_VAR}"]}, "alerts.webhooks"),
                     ({"events": ["ese_candidate", "supernova"]}, "alerts.events"),
                     ({"role": "production"}, "alerts.role"),
                     ({"ivorn_base": "ivo://a/b#c"}, "alerts.ivorn_base"),
                     ({"rate_limit": 1}, "alerts.rate_limit"),
                     ({"retry_base_s": 100.0, "retry_cap_s": 10.0}, "alerts.retry_cap_s"),
                     ({"webhook": []}, "alerts.webhook")):
        os.environ.pop("UNSET_HOOK_VAR", None)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config_from_dict({"alerts": bad}, base_dir=tmp_path)
