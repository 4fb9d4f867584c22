"""ESE events in the outbox: a new candidate once, a confidence raised once per level, none
for a dismissed candidate; recorded by the ESE step's own write."""

from __future__ import annotations

import json

import pytest

from dsa110_contimg.pipeline.ese_alerts import ese_alert_events, record_ese_alerts
from dsa110_contimg.store import alerts as outbox
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.lightcurves import upsert_ese_candidates
from dsa110_contimg.store.review_log import review


def row(source_id: int, confidence: str, score: float, **kw) -> dict:
    return {"source_id": source_id, "criteria": json.dumps(kw.pop("criteria", ["preset"])),
            "preset": "moderate", "score": score, "confidence": confidence, "sigma_deviation": 4.0,
            "chi2_nu": 3.0, "eta": 2.5, "v": 0.1, "n_epochs": 12, **kw}


@pytest.fixture
def db(tmp_path):
    d = open_products_db(tmp_path / "p.sqlite3")
    with d.engine.begin() as c:
        for i in (1, 2):
            c.exec_driver_sql("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, "
                              f"reference_ok) VALUES ('nvss', 'NVSS S{i}', 150.0, {37.0 + i}, 100.0, 0)")
    yield d
    d.dispose()


def evaluate(db, rows) -> list[str]:
    """What the ESE step does in its transaction: upsert, then record the alerts."""
    with db.engine.begin() as c:
        return record_ese_alerts(c, None, rows, upsert_ese_candidates(c, rows))


def events(db) -> list[tuple]:
    with db.engine.connect() as c:
        return [(a["event"], a["payload"]["source_name"], a["payload"].get("confidence"),
                 a["payload"].get("previous_confidence")) for a in reversed(outbox.find_alerts(c))]


def test_new_candidate_and_each_raised_level_alert_once(db):
    assert len(evaluate(db, [row(1, "low", 2.0)])) == 1
    assert evaluate(db, [row(1, "low", 2.5)]) == []                          # refreshed, same level
    assert len(evaluate(db, [row(1, "medium", 5.0), row(2, "high", 8.0)])) == 2
    assert evaluate(db, [row(1, "low", 3.0)]) == []                          # lower: nothing
    assert evaluate(db, [row(1, "medium", 5.5)]) == []                       # medium already told
    assert len(evaluate(db, [row(1, "high", 9.0, shape_significance=6.5, depth=0.4)])) == 1
    assert evaluate(db, [row(2, "high", 8.0, criteria=[])]) == []            # no longer flagged
    assert events(db) == [("ese_candidate", "NVSS S1", "low", None),
                          ("ese_confidence", "NVSS S1", "medium", "low"),
                          ("ese_candidate", "NVSS S2", "high", None),
                          ("ese_confidence", "NVSS S1", "high", "medium")]
    with db.engine.connect() as c:
        last = outbox.find_alerts(c, limit=1)[0]
    assert last["significance"] == 6.5 and last["payload"]["significance_kind"] == "ese_template_sigma"
    assert last["payload"]["sigma"] == 6.5 and last["payload"]["max_deviation"] == 4.0
    assert "shape_significance" not in last["payload"] and "sigma_deviation" not in last["payload"]
    assert last["payload"]["depth"] == 0.4 and last["payload"]["criteria"] == ["preset"]
    assert last["payload"]["candidate_id"] == 1 and last["payload"]["status"] == "active"


def test_a_dismissed_candidate_does_not_alert(db):
    evaluate(db, [row(1, "low", 2.0)])
    with db.engine.begin() as c:
        review(c, 1, "dismissed", reviewer="alice", note="sidelobe")
    assert evaluate(db, [row(1, "high", 9.0)]) == []
    assert [e[0] for e in events(db)] == ["ese_candidate"]


def test_no_significance_without_a_template_detection():
    (event,) = ese_alert_events(4, [row(1, "low", 2.0, shape_significance=float("nan"))],
                                [{"source_id": 1, "candidate_id": 9, "change": "new",
                                  "previous_confidence": None, "status": "active"}])
    assert (event.event, event.dedupe, event.image_id) == ("ese_candidate", "new", 4)
    # the light curve's largest deviation is another statistic, never called the significance
    assert event.significance is None and event.fields["significance_kind"] == "ese_template_sigma"
    assert event.fields["max_deviation"] == 4.0
