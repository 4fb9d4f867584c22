"""What a webhook receives: the JSON payload of an alert, its one-line text, and the
summary that carries the overflow of a rate-limit window (docs/alerts.md).

The input is an outbox row (:func:`dsa110_contimg.store.alerts.due_deliveries`): its
``key``, ``event``, ``created_at`` (Unix s) and the flat ``payload`` of facts recorded with
the event (units in the key names: ``flux_mjy`` mJy/beam, ``baseline_flux_mjy`` mJy,
``ra_deg``/``dec_deg`` deg, ``position_error_arcsec``, ``mjd``/``t_min_mjd`` MJD (UTC),
``duration_days``, ``depth`` a fraction of the baseline flux, ``freq_hz``).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter

#: The observatory every alert names.
OBSERVATORY = "DSA-110 (Deep Synoptic Array), Owens Valley Radio Observatory, California"
#: Payload fields presented in the ``source``, ``flux`` and ``baseline`` groups; the rest
#: of an event's facts go in ``details``.
_GROUPED = {"event", "source_id", "source_name", "survey", "ra_deg", "dec_deg",
            "position_error_arcsec", "flux_mjy", "flux_err_mjy", "flux_kind", "snr", "mjd",
            "freq_hz", "baseline_flux_mjy", "baseline_catalog", "significance",
            "significance_kind", "image_id", "image_path"}
#: How each event's text starts.
_TITLES = {"ese_candidate": "New ESE candidate", "ese_confidence": "ESE candidate confidence raised",
           "ese_stage": "ESE stage change", "new_source": "New source", "test": "Test alert"}
#: How the summary counts each event.
_PLURALS = {"ese_candidate": "new ESE candidates", "ese_confidence": "raised ESE confidences",
            "ese_stage": "ESE stage changes", "new_source": "new sources", "test": "test alerts"}
_MJD0 = _dt.datetime(1858, 11, 17, tzinfo=_dt.timezone.utc)


def iso_utc(unix_s: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-01-02T03:04:05Z``)."""
    if unix_s is None:
        return None
    return _dt.datetime.fromtimestamp(float(unix_s), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def mjd_to_iso(mjd: float | None) -> str | None:
    """MJD (UTC) as ISO 8601 UTC, to the second."""
    if mjd is None or not math.isfinite(float(mjd)):
        return None
    t = _MJD0 + _dt.timedelta(days=float(mjd))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    """(``HH:MM:SS.ss``, ``+DD:MM:SS.s``) of a position in deg."""
    cs = round((float(ra_deg) % 360.0) / 15.0 * 360000.0)   # hundredths of a second of time
    cs %= 24 * 360000
    h, rest = divmod(cs, 360000)
    m, rest = divmod(rest, 6000)
    ra = f"{h:02d}:{m:02d}:{rest // 100:02d}.{rest % 100:02d}"
    sign = "-" if dec_deg < 0 else "+"
    ds = round(abs(float(dec_deg)) * 36000.0)             # tenths of an arcsecond
    d, rest = divmod(ds, 36000)
    m, rest = divmod(rest, 600)
    return ra, f"{sign}{d:02d}:{m:02d}:{rest // 10:02d}.{rest % 10}"


def source_url(site_url: str, payload: dict) -> str | None:
    """Link to the source's page of the review site (light curve, candidate review), or None."""
    if not site_url or payload.get("source_id") is None:
        return None
    return f"{site_url.rstrip('/')}/sources/{int(payload['source_id'])}"


def alert_text(event: str, p: dict, *, role: str) -> str:
    """The one line a chat channel shows: what, which source, where, the numbers."""
    parts = [("[TEST] " if role == "test" else "") + _TITLES.get(event, event)]
    if p.get("source_name"):
        where = ""
        if p.get("ra_deg") is not None and p.get("dec_deg") is not None:
            ra, dec = sexagesimal(p["ra_deg"], p["dec_deg"])
            where = f" at {ra} {dec}"
        parts[0] += f" {p['source_name']}{where}"
    facts = []
    if event == "ese_confidence" and p.get("previous_confidence"):
        facts.append(f"confidence {p['previous_confidence']} -> {p.get('confidence')}")
    if event == "ese_stage" and p.get("stage"):
        facts.append(f"stage {p.get('previous_stage') or 'none'} -> {p['stage']}")
    if p.get("flux_mjy") is not None:
        err = f" +/- {p['flux_err_mjy']:.1f}" if p.get("flux_err_mjy") is not None else ""
        when = f" on {mjd_to_iso(p['mjd'])[:10]}" if p.get("mjd") is not None else ""
        facts.append(f"{p['flux_mjy']:.1f}{err} mJy/beam{when}")
    if p.get("baseline_flux_mjy") is not None:
        facts.append(f"{p.get('baseline_catalog') or 'catalogue'} {p['baseline_flux_mjy']:.1f} mJy")
    if p.get("depth") is not None:
        dip = f"dip {p['depth']:.0%}"
        if p.get("duration_days") is not None:
            dip += f" over {p['duration_days']:.0f} d"
        if p.get("t_min_mjd") is not None:
            dip += f", minimum MJD {p['t_min_mjd']:.1f} ({mjd_to_iso(p['t_min_mjd'])[:10]})"
        facts.append(dip)
    if p.get("significance") is not None:
        facts.append(f"{p['significance']:.1f} sigma")
    if p.get("likely_transient"):
        facts.append("likely transient (above the brightest limit of the earlier images)")
    if p.get("confidence") and event != "ese_confidence":
        score = f", score {p['score']:.1f}" if p.get("score") is not None else ""
        facts.append(f"confidence {p['confidence']}{score}")
    if event == "test" and p.get("message"):
        facts.append(str(p["message"]))
    text = parts[0] + (": " + "; ".join(facts) if facts else "")
    return text


def webhook_payload(alert: dict, *, role: str, site_url: str = "") -> dict:
    """The JSON body POSTed for one alert (fields: docs/alerts.md)."""
    p, event = alert["payload"], alert["event"]
    role = "test" if event == "test" else role
    source = None
    if p.get("source_name") is not None or p.get("ra_deg") is not None:
        source = {"id": p.get("source_id"), "name": p.get("source_name"), "survey": p.get("survey"),
                  "ra_deg": p.get("ra_deg"), "dec_deg": p.get("dec_deg"),
                  "position_error_arcsec": p.get("position_error_arcsec")}
        if p.get("ra_deg") is not None and p.get("dec_deg") is not None:
            source["ra_hms"], source["dec_dms"] = sexagesimal(p["ra_deg"], p["dec_deg"])
    flux = None
    if p.get("flux_mjy") is not None:
        flux = {"value": p["flux_mjy"], "error": p.get("flux_err_mjy"), "unit": "mJy/beam",
                "kind": p.get("flux_kind"), "snr": p.get("snr"), "mjd": p.get("mjd"),
                "utc": mjd_to_iso(p.get("mjd")),
                "freq_mhz": None if p.get("freq_hz") is None else p["freq_hz"] / 1e6}
    baseline = None
    if p.get("baseline_flux_mjy") is not None:
        baseline = {"value": p["baseline_flux_mjy"], "unit": "mJy", "catalog": p.get("baseline_catalog")}
    details = {k: v for k, v in p.items() if k not in _GROUPED}
    if details.get("t_min_mjd") is not None:
        details["t_min_utc"] = mjd_to_iso(details["t_min_mjd"])
    link = source_url(site_url, p)
    return {"key": alert["key"], "event": event, "role": role,
            "text": alert_text(event, p, role=role) + (f" {link}" if link else ""),
            "created_at": iso_utc(alert["created_at"]), "created_at_unix": alert["created_at"],
            "source": source, "flux": flux, "baseline": baseline,
            "significance": p.get("significance"), "significance_kind": p.get("significance_kind"),
            "details": details, "observatory": OBSERVATORY,
            "image": None if p.get("image_id") is None else {"id": p["image_id"], "path": p.get("image_path")},
            "links": {"page": link}}


def summary_payload(key: str, alerts: list[dict], *, role: str, rate_limit: int,
                    window_s: float, now: float) -> dict:
    """One message for the alerts a rate-limit window has no room for: how many of each
    event, the sources, and every alert's key and text."""
    counts = Counter(a["event"] for a in alerts)
    what = ", ".join(f"{n} {_PLURALS.get(e, e)}" for e, n in counts.most_common())
    names = [a["payload"].get("source_name") for a in alerts if a["payload"].get("source_name")]
    shown = ", ".join(dict.fromkeys(names[:10])) + (" ..." if len(set(names)) > 10 else "")
    text = (("[TEST] " if role == "test" else "") +
            f"{len(alerts)} more alerts (rate limit {rate_limit} messages per {_duration(window_s)}): "
            f"{what}" + (f"; sources {shown}" if shown else "") +
            "; 'contimg-photometry alerts list' shows them all")
    entries = [{"key": a["key"], "event": a["event"], "created_at": iso_utc(a["created_at"]),
                "source": a["payload"].get("source_name"),
                "text": alert_text(a["event"], a["payload"], role=role)} for a in alerts]
    return {"key": key, "event": "summary", "role": role, "text": text, "created_at": iso_utc(now),
            "created_at_unix": now, "count": len(alerts), "counts": dict(counts), "alerts": entries,
            "observatory": OBSERVATORY}


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
