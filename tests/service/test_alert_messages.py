"""The webhook payload: one readable text line and the documented structured fields;
sexagesimal positions and UTC dates; the rate-limit summary lists every key."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.service.alert_messages import (
    mjd_to_iso, sexagesimal, summary_payload, webhook_payload,
)

PAYLOAD = {"source_id": 7, "source_name": "NVSS J100000+370000", "survey": "nvss", "ra_deg": 150.0,
           "dec_deg": 37.0, "position_error_arcsec": 1.0, "flux_mjy": 120.0, "flux_err_mjy": 1.5,
           "flux_kind": "normalised", "mjd": 60075.5, "freq_hz": 1.405e9, "baseline_flux_mjy": 250.0,
           "baseline_catalog": "NVSS", "significance": 6.2, "significance_kind": "ese_template_sigma",
           "depth": 0.45, "duration_days": 40.0, "t_min_mjd": 60075.0, "confidence": "high",
           "score": 7.8, "candidate_id": 3, "previous_confidence": None}
ALERT = {"key": "ese_candidate-abc", "event": "ese_candidate", "created_at": 1_790_000_000.0,
         "payload": PAYLOAD}


def test_webhook_payload_fields_and_text():
    body = webhook_payload(ALERT, role="test", site_url="https://example.org/phot/")
    json.dumps(body, allow_nan=False)
    assert body["key"] == "ese_candidate-abc" and body["event"] == "ese_candidate"
    assert body["role"] == "test" and body["created_at"] == "2026-09-21T14:13:20Z"
    assert body["source"] == {"id": 7, "name": "NVSS J100000+370000", "survey": "nvss", "ra_deg": 150.0,
                              "dec_deg": 37.0, "position_error_arcsec": 1.0,
                              "ra_hms": "10:00:00.00", "dec_dms": "+37:00:00.0"}
    assert body["flux"] == {"value": 120.0, "error": 1.5, "unit": "mJy/beam", "kind": "normalised",
                            "snr": None, "mjd": 60075.5, "utc": "2023-05-11T12:00:00Z", "freq_mhz": 1405.0}
    assert body["baseline"] == {"value": 250.0, "unit": "mJy", "catalog": "NVSS"}
    assert body["significance"] == 6.2 and body["details"]["depth"] == 0.45
    assert body["details"]["t_min_utc"] == "2023-05-11T00:00:00Z"
    assert "DSA-110" in body["observatory"] and body["links"]["page"] == "https://example.org/phot/sources/7"
    text = body["text"]
    assert text.startswith("[TEST] New ESE candidate NVSS J100000+370000 at 10:00:00.00 +37:00:00.0")
    for part in ("120.0 +/- 1.5 mJy/beam", "NVSS 250.0 mJy", "dip 45% over 40 d", "minimum MJD 60075.0",
                 "6.2 sigma", "confidence high", "https://example.org/phot/sources/7"):
        assert part in text, part
    raised = webhook_payload({**ALERT, "event": "ese_confidence",
                              "payload": {**PAYLOAD, "previous_confidence": "medium"}}, role="observation")
    assert raised["text"].startswith("ESE candidate confidence raised NVSS J100000+370000")
    assert "confidence medium -> high" in raised["text"] and raised["links"]["page"] is None


def test_summary_lists_every_key():
    alerts = [{**ALERT, "key": f"k{i}", "event": e} for i, e in
              enumerate(["ese_candidate"] * 3 + ["new_source"] * 2)]
    body = summary_payload("summary-1", alerts, role="observation", rate_limit=10, window_s=3600.0,
                           now=1_790_000_000.0)
    assert body["event"] == "summary" and body["count"] == 5
    assert [a["key"] for a in body["alerts"]] == ["k0", "k1", "k2", "k3", "k4"]
    assert body["counts"] == {"ese_candidate": 3, "new_source": 2}
    assert body["text"].startswith("5 more alerts (rate limit 10 messages per 1 h): 3 new ESE candidates, "
                                   "2 new sources; sources NVSS J100000+370000;")


def _parse(ra: str, dec: str) -> tuple[float, float]:
    h, m, s = (float(x) for x in ra.split(":"))
    d, dm, ds = (float(x) for x in dec[1:].split(":"))
    return 15.0 * (h + m / 60 + s / 3600), (-1 if dec[0] == "-" else 1) * (d + dm / 60 + ds / 3600)


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 360.0, exclude_max=True), st.floats(-90.0, 90.0))
def test_sexagesimal_round_trips(ra, dec):
    text_ra, text_dec = sexagesimal(ra, dec)
    back_ra, back_dec = _parse(text_ra, text_dec)
    assert min(abs(back_ra - ra), 360.0 - abs(back_ra - ra)) * 3600 <= 0.0051 * 15 + 1e-9
    assert abs(back_dec - dec) * 3600 <= 0.0501 + 1e-9
    assert 0 <= int(text_ra[:2]) < 24 and int(text_ra[3:5]) < 60 and float(text_ra[6:]) < 60
    assert int(text_dec[4:6]) < 60 and float(text_dec[7:]) < 60


def test_rounding_carries_and_dates():
    assert sexagesimal(359.9999999, -0.0000001) == ("00:00:00.00", "-00:00:00.0")
    assert sexagesimal(15.0 - 1e-9, 89.99999999) == ("01:00:00.00", "+90:00:00.0")
    assert mjd_to_iso(51544.5) == "2000-01-01T12:00:00Z" and mjd_to_iso(None) is None
