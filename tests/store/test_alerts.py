"""The alert outbox: recorded in the event's transaction (or not at all), once per event,
completed from the source, image and measurement rows; fan-out, leases, replay, give-up."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dsa110_contimg.store import alerts as outbox
from dsa110_contimg.store.alerts import AlertEvent, record_alerts
from dsa110_contimg.store.engine import open_products_db
from pgcluster import BACKENDS


def seed(db) -> None:
    """One NVSS source (250 mJy), one image (MJD 60075.5, 1405 MHz), its measurement."""
    with db.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, "
                          "reference_ok) VALUES ('nvss', 'NVSS J100000+370000', 150.0, 37.0, 250.0, false)")
        c.exec_driver_sql("INSERT INTO images (path, content_id, kind, mjd, freq_hz, method, catalog, "
                          "n_sources, n_success, qc_status, norm_status, measured_at) VALUES "
                          "('/d/x.fits', 'c', 'image', 60075.5, 1.405e9, 'forced', 'nvss', 1, 1, "
                          "'passed', 'ok', 0)")
        c.exec_driver_sql("INSERT INTO measurements (image_id, source_id, ra_deg, dec_deg, peak_jyb, "
                          "peak_err_jyb, flags, success) VALUES "
                          "(1, 1, 150.0, 37.0, 0.12, 0.0015, 0, true)")


@pytest.fixture
def db(databases):
    d = open_products_db(databases.new("products"))
    seed(d)
    yield d
    d.dispose()


EVENT = AlertEvent("ese_candidate", 1, "new", image_id=1, significance=6.2,
                   fields={"depth": 0.45, "t_min_mjd": 60075.0, "confidence": "high"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_recorded_once_with_the_facts_of_source_image_and_measurement(db):
    with db.engine.begin() as c:
        keys = record_alerts(c, [EVENT, EVENT])
        assert record_alerts(c, [EVENT]) == []          # same (event, source, dedupe): once
    with db.engine.begin() as c:
        assert record_alerts(c, [EVENT]) == []
        other = record_alerts(c, [AlertEvent("ese_confidence", 1, "confidence-high", image_id=1)])
    assert len(keys) == 1 and keys[0].startswith("ese_candidate-") and len(keys[0]) == 14 + 32
    with db.engine.connect() as c:
        rows = outbox.find_alerts(c)
    assert [r["event"] for r in rows] == ["ese_confidence", "ese_candidate"]   # newest first
    p = rows[1]["payload"]
    assert p["source_name"] == "NVSS J100000+370000" and (p["ra_deg"], p["dec_deg"]) == (150.0, 37.0)
    assert p["baseline_flux_mjy"] == 250.0 and p["baseline_catalog"] == "NVSS"
    assert p["flux_mjy"] == pytest.approx(120.0) and p["flux_err_mjy"] == pytest.approx(1.5)
    assert p["flux_kind"] == "raw" and p["mjd"] == 60075.5 and p["freq_hz"] == 1.405e9
    assert p["position_error_arcsec"] == 1.0          # NVSS astrometric systematic
    assert p["depth"] == 0.45 and p["significance"] == 6.2 and rows[1]["significance"] == 6.2
    assert other and rows[0]["key"] == other[0]


def test_an_alert_exists_only_if_its_transaction_commits(db):
    with pytest.raises(RuntimeError):
        with db.engine.begin() as c:
            record_alerts(c, [EVENT])
            raise RuntimeError("the image's transaction fails")
    with db.engine.connect() as c:
        assert outbox.find_alerts(c) == []
    with db.engine.begin() as c:
        assert record_alerts(c, [EVENT])                # the retried step records it


def test_producer_fields_win_and_missing_values_are_left_out(db):
    with db.engine.begin() as c:
        record_alerts(c, [AlertEvent("new_source", 1, "image-1", image_id=1, significance=9.0,
                                     fields={"flux_mjy": 33.3, "position_error_arcsec": 2.5,
                                             "flux_err_mjy": float("nan")})])
    with db.engine.connect() as c:
        p = outbox.find_alerts(c)[0]["payload"]
    assert p["flux_mjy"] == 33.3 and p["position_error_arcsec"] == 2.5
    assert p["flux_err_mjy"] == pytest.approx(1.5)      # NaN given: the measured value stays


@pytest.mark.parametrize("backend", BACKENDS)
def test_fan_out_leases_replay_and_give_up(db):
    dests = [("webhook:h:1", "webhook"), ("voevent:/s", "voevent")]
    with db.engine.begin() as c:
        record_alerts(c, [EVENT], now=1000.0)
        record_alerts(c, [AlertEvent("new_source", 1, "faint", significance=3.0)], now=1001.0)
    with db.engine.begin() as c:
        n = outbox.fan_out(c, dests, lambda e, s: "too faint" if e == "new_source" else None, now=1002.0)
        assert n == 2 and outbox.fan_out(c, dests, lambda e, s: None, now=1003.0) == 0
    with db.engine.connect() as c:
        new_source, candidate = outbox.find_alerts(c)
    assert new_source["note"] == "too faint" and new_source["deliveries"] == []
    assert {(d["destination"], d["state"], d["attempts"]) for d in candidate["deliveries"]} == \
        {("webhook:h:1", "pending", 0), ("voevent:/s", "pending", 0)}

    with db.engine.begin() as c:
        assert outbox.claim_destination(c, "webhook:h:1", "a", lease_s=60, now=1010.0) is not None
        assert outbox.claim_destination(c, "webhook:h:1", "b", lease_s=60, now=1011.0) is None
        assert outbox.claim_destination(c, "webhook:h:1", "b", lease_s=60, now=1071.0) is not None
        outbox.release_destination(c, "webhook:h:1", "b")
        outbox.set_destination(c, "voevent:/s", next_attempt_at=2000.0)        # backing off
        assert outbox.claim_destination(c, "voevent:/s", "a", lease_s=60, now=1500.0) is None
        due = outbox.due_deliveries(c, "webhook:h:1", 10)
        assert [d["key"] for d in due] == [candidate["key"]] and due[0]["payload"]["depth"] == 0.45
        outbox.mark_attempt_failed(c, "webhook:h:1", [candidate["id"]], "HTTP 503", now=1012.0)
        outbox.mark_sent(c, "webhook:h:1", [candidate["id"]], now=1013.0)
        assert outbox.replay(c, [candidate["id"]], [("webhook:h:2", "webhook")], now=1014.0) == 1
        assert outbox.give_up(c, created_before=1000.5, now=1015.0) == 2   # voevent:/s, webhook:h:2
        assert outbox.delivery_counts(c) == {("webhook", "sent"): 1, ("webhook", "failed"): 1,
                                             ("voevent", "failed"): 1}
        assert outbox.event_counts(c) == {"ese_candidate": 1, "new_source": 1}
    with db.engine.connect() as c:
        by_dest = {d["destination"]: d for d in outbox.find_alerts(c, ident=candidate["key"])[0]["deliveries"]}
        states = {d["destination"]: d["deliveries"] for d in outbox.destinations(c)}
    assert by_dest["webhook:h:1"]["state"] == "sent" and by_dest["webhook:h:1"]["attempts"] == 2
    assert "given up" in by_dest["webhook:h:2"]["last_error"]
    assert states == {"webhook:h:1": {"sent": 1}, "webhook:h:2": {"failed": 1}, "voevent:/s": {"failed": 1}}


def test_a_refused_delivery_is_failed_at_once(db):
    with db.engine.begin() as c:
        record_alerts(c, [EVENT])
        outbox.fan_out(c, [("webhook:h:1", "webhook")], lambda e, s: None)
        (alert,) = outbox.due_deliveries(c, "webhook:h:1", 10)
        outbox.mark_attempt_failed(c, "webhook:h:1", [alert["id"]], "HTTP 400 Bad Request", permanent=True)
        assert outbox.due_deliveries(c, "webhook:h:1", 10) == []
        state = c.execute(sa.text("SELECT state, attempts, last_error FROM alert_deliveries")).one()
    assert tuple(state) == ("failed", 1, "HTTP 400 Bad Request")


def test_ids_without_rows_are_not_linked_but_the_alert_is_kept(db):
    with db.engine.begin() as c:
        (key,) = record_alerts(c, [AlertEvent("ese_stage", 99, "x", image_id=99, fields={"stage": "dip"})])
    with db.engine.connect() as c:
        (a,) = outbox.find_alerts(c)
    assert (a["key"], a["source_id"], a["image_id"], a["payload"]["stage"]) == (key, None, None, "dip")
    assert a["dedupe_key"] == "ese_stage:99:x"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_source_records_its_alert_in_the_same_write(db):
    from dsa110_contimg.store import detections as ds
    from dsa110_contimg.store.schema import sources

    with db.engine.begin() as c:
        c.execute(sources.insert().values(survey="dsa110", catalog_id="DSA110 J100100+370100",
                                          ra_deg=150.25, dec_deg=37.02, reference_ok=False, kind="new"))
        sid = c.execute(sa.select(sources.c.id).where(sources.c.kind == "new")).scalar_one()
        cols = {k: [None] for k in ds.DETECTION_COLUMNS}
        cols.update(source_id=[sid], ra_deg=[150.25], dec_deg=[37.02], ra_err_arcsec=[3.0],
                    dec_err_arcsec=[4.0], flags=[0], status=["new_source"], n_candidates=[0],
                    peak_jyb=[0.05])
        ds.replace_detections(c, 1, cols)
        row = {"source_id": sid, "image_id": 1, "mjd": 60075.5, "peak_jyb": 0.05, "peak_err_jyb": 0.002,
               "new_high_sigma": 12.5, "sigma_rms_min": 20.0, "likely_transient": True,
               "n_earlier_images": 4}
        ds.record_new_sources(c, [row])
        ds.record_new_sources(c, [{**row, "new_high_sigma": 9.0}])      # a source is new once
    with db.engine.connect() as c:
        (a,) = outbox.find_alerts(c, event="new_source")
    p = a["payload"]
    assert a["significance"] == 12.5 and p["significance_kind"] == "new_high_sigma"
    assert p["source_name"] == "DSA110 J100100+370100" and p["position_error_arcsec"] == 5.0
    assert p["flux_mjy"] == 50.0 and p["flux_err_mjy"] == 2.0 and p["likely_transient"] is True
    assert "baseline_flux_mjy" not in p and a["image_id"] == 1
