"""The alert outbox: alerts recorded in the transaction of their event, and their delivery state.

A producer (a pipeline step that finds something worth telling) calls
:func:`record_alerts` with :class:`AlertEvent` values **inside its own write
transaction**: the alert exists exactly when the event does (a rolled-back image leaves
neither). Recording is idempotent: an event is identified by ``(event, source_id,
dedupe)``, so a re-run of the same step records nothing twice.

The delivery side (:mod:`dsa110_contimg.service.alerts`) then, in short transactions of
its own:

1. :func:`fan_out` gives each new alert one ``alert_deliveries`` row per destination
   configured at that time (or a ``note`` saying why it has none);
2. :func:`claim_destination` takes a destination's lease (one sender per destination
   across daemons and CLI commands), :func:`due_deliveries` reads what to send,
   :func:`mark_sent` / :func:`mark_attempt_failed` record each outcome and
   :func:`set_destination` the destination's back-off and rate-limit window.

Alert rows hold a flat JSON ``payload`` of the event's facts at recording time
(documented in docs/alerts.md): the producer's ``fields``, completed from the source
row (name, survey, position and its error, catalogue flux), the image row (epoch,
frequency, path) and the source's measurement in that image (flux density and error,
mJy/beam). Units are in the key names.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store import bulk
from dsa110_contimg.store.engine import dialect_insert
from dsa110_contimg.store.schema import SNR_SQL, alert_deliveries, alert_destinations, alerts
from dsa110_contimg.store.values import clean

#: Events pipeline steps record (docs/alerts.md).
PRODUCER_EVENTS = ("ese_candidate", "ese_confidence", "ese_stage", "new_source")
#: Every event of the outbox; ``test`` comes from ``alerts test``.
ALERT_EVENTS = PRODUCER_EVENTS + ("test",)
#: Alerts fanned out per call of :func:`fan_out` (the rest wait for the next call).
FAN_OUT_BATCH = 500


@dataclass(frozen=True)
class AlertEvent:
    """One event for the outbox.

    Attributes
    ----------
    event : str
        One of :data:`ALERT_EVENTS`.
    source_id : int or None
        ``sources.id`` of the source concerned.
    dedupe : str
        What distinguishes this event from other events of the same kind and source
        (e.g. ``"new"``, ``"confidence-high"``, ``"stage-dip-image-12"``): the alert is
        recorded once per ``(event, source_id, dedupe)``.
    image_id : int or None
        The image whose processing raised the event (its epoch, frequency and the
        source's measurement in it complete the payload).
    significance : float or None
        The event's significance in sigma (kept as a column: ``[alerts]
        new_source_min_sigma`` filters on it); its meaning goes in
        ``fields["significance_kind"]``.
    fields : mapping
        Facts of the event, flat, units in the names (``flux_mjy``, ``depth``,
        ``t_min_mjd`` ...; docs/alerts.md); they win over the completed values.
    """

    event: str
    source_id: int | None
    dedupe: str
    image_id: int | None = None
    significance: float | None = None
    fields: Mapping = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.event}:{'' if self.source_id is None else int(self.source_id)}:{self.dedupe}"


def new_key(event: str) -> str:
    """A fresh idempotency key, ``EVENT-<32 hex digits>``: unique across databases, so a
    receiver that deduplicates never drops the alert of another installation or season."""
    return f"{event}-{uuid.uuid4().hex}"


def record_alerts(conn: Connection, events: Sequence[AlertEvent], *,
                  now: float | None = None) -> list[str]:
    """Put alerts in the outbox, in the caller's transaction; returns the keys of those
    recorded now (an event already recorded, same :attr:`AlertEvent.dedupe_key`, is
    skipped). Reads the source, image and measurement rows of the events (a few rows); a
    source or image id without a row is not linked (the alert is still recorded)."""
    events = [e for e in events if e.event in ALERT_EVENTS]
    if not events:
        return []
    now = time.time() if now is None else now
    done = {r[0] for r in bulk.fetch_in(conn, "SELECT dedupe_key FROM alerts WHERE dedupe_key IN ({in})",
                                        [e.dedupe_key for e in events])}
    events = [e for e in {e.dedupe_key: e for e in events}.values() if e.dedupe_key not in done]
    if not events:
        return []
    context = _context(conn, events)
    rows = []
    for e in events:
        given = {k: clean(v) for k, v in e.fields.items()}
        payload = {"event": e.event, **context.get((e.source_id, e.image_id), {}),
                   **{k: v for k, v in given.items() if v is not None}}
        if e.significance is not None:
            payload.setdefault("significance", clean(e.significance))
        known = context.get((e.source_id, e.image_id), {})
        rows.append({"key": new_key(e.event), "dedupe_key": e.dedupe_key, "event": e.event,
                     "source_id": known.get("source_id"), "image_id": known.get("image_id"),
                     "significance": clean(e.significance), "created_at": now,
                     "payload": json.dumps(payload, sort_keys=True, allow_nan=False)})
    conn.execute(dialect_insert(conn, alerts).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    return [r["key"] for r in rows]


def _context(conn: Connection, events: Sequence[AlertEvent]) -> dict[tuple, dict]:
    """Per (source_id, image_id): the source, image and measurement facts of the payload."""
    from dsa110_contimg.science.condon import SURVEY_SYSTEMATICS_ARCSEC

    source_ids = sorted({int(e.source_id) for e in events if e.source_id is not None})
    image_ids = sorted({int(e.image_id) for e in events if e.image_id is not None})
    sources = {r[0]: r for r in bulk.fetch_in(
        conn, "SELECT id, survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy FROM sources "
              "WHERE id IN ({in})", source_ids)}
    images = {r[0]: r for r in bulk.fetch_in(
        conn, "SELECT id, path, mjd, freq_hz FROM images WHERE id IN ({in})", image_ids)}
    measured = {}
    for image_id in image_ids:
        for r in bulk.fetch_in(conn, "SELECT source_id, peak_jyb, peak_err_jyb, norm_flux_jyb, "
                                     f"norm_err_jyb, {SNR_SQL} FROM measurements WHERE image_id = ? AND "
                                     "source_id IN ({in})", source_ids, params=(image_id,)):
            measured[(r[0], image_id)] = r
    out: dict[tuple, dict] = {}
    for e in events:
        facts: dict = {}
        src = sources.get(e.source_id)
        if src is not None:
            survey = str(src[1])
            facts.update(source_id=src[0], source_name=src[2], survey=survey, ra_deg=src[3],
                         dec_deg=src[4], baseline_flux_mjy=clean(src[5]),
                         baseline_catalog=_survey_label(survey),
                         position_error_arcsec=SURVEY_SYSTEMATICS_ARCSEC.get(
                             {"rax": "racs"}.get(survey, survey), SURVEY_SYSTEMATICS_ARCSEC["default"]))
        img = images.get(e.image_id)
        if img is not None:
            facts.update(image_id=img[0], image_path=img[1], mjd=clean(img[2]), freq_hz=clean(img[3]))
        m = measured.get((e.source_id, e.image_id))
        if m is not None:
            normalised = m[3] is not None
            flux, err = (m[3], m[4]) if normalised else (m[1], m[2])
            facts.update(flux_mjy=_mjy(flux), flux_err_mjy=_mjy(err), snr=clean(m[5]),
                         flux_kind="normalised" if normalised else "raw")
        out[(e.source_id, e.image_id)] = {k: v for k, v in facts.items() if v is not None}
    return out


def _mjy(jyb) -> float | None:
    """Jy/beam -> mJy/beam, to 0.1 uJy/beam."""
    value = clean(jyb)
    return None if value is None else round(float(value) * 1000.0, 4)


def _survey_label(survey: str) -> str:
    return {"nvss": "NVSS", "first": "FIRST", "rax": "RACS", "vlass": "VLASS",
            "master": "master (NVSS-based)"}.get(survey, survey.upper())


def new_source_events(conn: Connection, rows: Sequence[Mapping]) -> list[AlertEvent]:
    """The ``new_source`` alerts of ``new_sources`` rows (:func:`dsa110_contimg.store.
    detections.record_new_sources`): significance ``new_high_sigma``, the first detection's
    peak (mJy/beam) and, from its ``detections`` row, the fitted position error (the radius
    sqrt(sigma_ra^2 + sigma_dec^2), arcsec)."""
    import math

    pairs = {(int(r["image_id"]), int(r["source_id"])) for r in rows}
    errors: dict[tuple, tuple] = {}
    for image_id in {i for i, _ in pairs}:
        for sid, ra_err, dec_err in bulk.fetch_in(
                conn, "SELECT source_id, ra_err_arcsec, dec_err_arcsec FROM detections "
                      "WHERE image_id = ? AND source_id IN ({in})",
                sorted(s for i, s in pairs if i == image_id), params=(image_id,)):
            errors[(image_id, sid)] = (ra_err, dec_err)
    events = []
    for r in rows:
        key = (int(r["image_id"]), int(r["source_id"]))
        ra_err, dec_err = errors.get(key, (None, None))
        fields = {"flux_mjy": _mjy(r.get("peak_jyb")), "flux_err_mjy": _mjy(r.get("peak_err_jyb")),
                  "flux_kind": "raw", "mjd": r.get("mjd"), "significance_kind": "new_high_sigma",
                  "sigma_rms_min": r.get("sigma_rms_min"),
                  "likely_transient": bool(r.get("likely_transient")),
                  "n_earlier_images": r.get("n_earlier_images")}
        if ra_err is not None and dec_err is not None:
            fields["position_error_arcsec"] = math.hypot(ra_err, dec_err)
        events.append(AlertEvent("new_source", key[1], "new", image_id=key[0],
                                 significance=r.get("new_high_sigma"), fields=fields))
    return events


# -- fan-out ---------------------------------------------------------------------------------
def ensure_destinations(conn: Connection, destinations: Iterable[tuple[str, str]]) -> None:
    """Create the ``alert_destinations`` rows of ``(destination, kind)`` pairs not yet known."""
    rows = [{"destination": d, "kind": k, "failures": 0, "next_attempt_at": 0.0, "window_start": 0.0,
             "window_sent": 0} for d, k in destinations]
    if rows:
        conn.execute(dialect_insert(conn, alert_destinations)
                     .on_conflict_do_nothing(index_elements=["destination"]), rows)


def fan_out(conn: Connection, destinations: Sequence[tuple[str, str]],
            skip_reason: Callable[[str, float | None], str | None], *,
            now: float | None = None, limit: int = FAN_OUT_BATCH) -> int:
    """Give alerts not fanned out yet (oldest first, at most ``limit``) a pending delivery per
    ``(destination, kind)``, unless ``skip_reason(event, significance)`` returns why not
    (kept as the alert's ``note``; so is "no destination configured"). Returns how many
    alerts were fanned out."""
    now = time.time() if now is None else now
    rows = conn.execute(sa.select(alerts.c.id, alerts.c.event, alerts.c.significance)
                        .where(alerts.c.fanned_out_at.is_(None))
                        .order_by(alerts.c.id).limit(limit)).all()
    if not rows:
        return 0
    ensure_destinations(conn, destinations)
    deliveries, notes = [], []
    for alert_id, event, significance in rows:
        reason = skip_reason(event, significance)
        if reason is None and not destinations:
            reason = "no destination configured ([alerts] webhooks, voevent_dir)"
        if reason is None:
            deliveries += [(alert_id, d, k, "pending", 0, now) for d, k in destinations]
        notes.append((now, reason, alert_id))
    bulk.executemany(conn, bulk.insert_sql("alert_deliveries", (
        "alert_id", "destination", "kind", "state", "attempts", "updated_at")) +
        " ON CONFLICT (alert_id, destination) DO NOTHING", deliveries)
    bulk.executemany(conn, "UPDATE alerts SET fanned_out_at = ?, note = ? WHERE id = ?", notes)
    return len(rows)


# -- sending ------------------------------------------------------------------------------
def claim_destination(conn: Connection, destination: str, owner: str, *, lease_s: float,
                      now: float | None = None) -> dict | None:
    """Take the lease of ``destination`` for ``owner`` when it is due (past its back-off)
    and not leased by another live sender; returns its row, or None."""
    now = time.time() if now is None else now
    t = alert_destinations.c
    res = conn.execute(alert_destinations.update().where(
        t.destination == destination, t.next_attempt_at <= now,
        sa.or_(t.lease_owner.is_(None), t.lease_owner == owner, t.lease_until < now))
        .values(lease_owner=owner, lease_until=now + lease_s))
    if res.rowcount != 1:
        return None
    row = conn.execute(sa.select(alert_destinations).where(t.destination == destination)).mappings().one()
    return dict(row)


def lease_owner(conn: Connection, destination: str) -> str | None:
    """Who holds the lease of ``destination`` (None when free; the lease may have expired)."""
    return conn.execute(sa.select(alert_destinations.c.lease_owner)
                        .where(alert_destinations.c.destination == destination)).scalar()


def release_destination(conn: Connection, destination: str, owner: str) -> None:
    t = alert_destinations.c
    conn.execute(alert_destinations.update().where(t.destination == destination, t.lease_owner == owner)
                 .values(lease_owner=None, lease_until=None))


def set_destination(conn: Connection, destination: str, **values) -> None:
    """Update a destination's sending state (failures, next_attempt_at, last_error,
    last_attempt_at, last_success_at, window_start, window_sent)."""
    conn.execute(alert_destinations.update()
                 .where(alert_destinations.c.destination == destination).values(**values))


def due_deliveries(conn: Connection, destination: str, limit: int) -> list[dict]:
    """Pending deliveries of ``destination``, oldest alert first: alert id, key, event,
    created_at, attempts and the decoded payload."""
    d, a = alert_deliveries.c, alerts.c
    rows = conn.execute(
        sa.select(a.id, a.key, a.event, a.created_at, a.source_id, a.payload, d.attempts)
        .join(alerts, a.id == d.alert_id)
        .where(d.destination == destination, d.state == "pending")
        .order_by(d.alert_id).limit(limit)).mappings().all()
    return [{**r, "payload": json.loads(r["payload"])} for r in rows]


def pending_count(conn: Connection, destination: str) -> int:
    d = alert_deliveries.c
    return int(conn.execute(sa.select(sa.func.count()).select_from(alert_deliveries)
                            .where(d.destination == destination, d.state == "pending")).scalar())


def mark_sent(conn: Connection, destination: str, alert_ids: Sequence[int], *,
              summary_key: str | None = None, now: float | None = None) -> None:
    """The deliveries of ``alert_ids`` to ``destination`` were sent (in a summary when
    ``summary_key`` is given); each counts one more attempt."""
    now = time.time() if now is None else now
    bulk.executemany(conn, "UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, "
                           "sent_at = ?, summary_key = ?, last_error = NULL, updated_at = ? "
                           "WHERE alert_id = ? AND destination = ? AND state = 'pending'",
                     [(now, summary_key, now, int(i), destination) for i in alert_ids])


def mark_attempt_failed(conn: Connection, destination: str, alert_ids: Sequence[int], error: str, *,
                        permanent: bool = False, now: float | None = None) -> None:
    """An attempt to send ``alert_ids`` to ``destination`` failed with ``error``; the
    deliveries stay pending (retried after the destination's back-off) unless
    ``permanent`` (the endpoint refused them: ``failed``, re-sent only by a replay)."""
    now = time.time() if now is None else now
    state = "failed" if permanent else "pending"
    bulk.executemany(conn, "UPDATE alert_deliveries SET state = ?, attempts = attempts + 1, "
                           "last_error = ?, updated_at = ? "
                           "WHERE alert_id = ? AND destination = ? AND state = 'pending'",
                     [(state, error[:2000], now, int(i), destination) for i in alert_ids])


def give_up(conn: Connection, created_before: float, *, now: float | None = None) -> int:
    """Pending deliveries of alerts created before ``created_before`` become ``failed``
    (``[alerts] give_up_after_s``); returns how many."""
    now = time.time() if now is None else now
    d = alert_deliveries.c
    old = sa.select(alerts.c.id).where(alerts.c.created_at < created_before).scalar_subquery()
    res = conn.execute(alert_deliveries.update().where(d.state == "pending", d.alert_id.in_(old))
                       .values(state="failed", updated_at=now,
                               last_error=sa.func.coalesce(d.last_error + "; ", "") +
                               "given up: undelivered for longer than [alerts] give_up_after_s"))
    return int(res.rowcount or 0)


# -- operator views -------------------------------------------------------------------------
def find_alerts(conn: Connection, *, ident: str | None = None, since: float | None = None,
                event: str | None = None, limit: int | None = 50) -> list[dict]:
    """Alerts, newest first: by id or key (``ident``), created at or after ``since`` (Unix
    s) and/or of one ``event``; each with its ``deliveries`` (destination, kind, state,
    attempts, last_error, sent_at, summary_key) and the source's name."""
    from dsa110_contimg.store.schema import sources

    a = alerts.c
    q = (sa.select(alerts, sources.c.catalog_id.label("source_name"))
         .outerjoin(sources, sources.c.id == a.source_id).order_by(a.id.desc()))
    if ident is not None:
        q = q.where(a.id == int(ident)) if str(ident).isdigit() else q.where(a.key == str(ident))
    if since is not None:
        q = q.where(a.created_at >= since)
    if event is not None:
        q = q.where(a.event == event)
    if limit is not None:
        q = q.limit(limit)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        r["payload"] = json.loads(r["payload"])
        r["deliveries"] = []
    d = alert_deliveries.c
    for chunk in range(0, len(rows), bulk.CHUNK):
        ids = [r["id"] for r in rows[chunk:chunk + bulk.CHUNK]]
        for dl in conn.execute(sa.select(alert_deliveries).where(d.alert_id.in_(ids))
                               .order_by(d.alert_id, d.destination)).mappings():
            by_id[dl["alert_id"]]["deliveries"].append(
                {k: dl[k] for k in ("destination", "kind", "state", "attempts", "last_error",
                                    "sent_at", "summary_key")})
    return rows


def destinations(conn: Connection) -> list[dict]:
    """Every destination's sending state, with its pending/sent/failed delivery counts."""
    d = alert_deliveries.c
    counts: dict[str, dict] = {}
    for dest, state, n in conn.execute(sa.select(d.destination, d.state, sa.func.count())
                                       .group_by(d.destination, d.state)):
        counts.setdefault(dest, {})[state] = int(n)
    out = []
    for row in conn.execute(sa.select(alert_destinations).order_by(alert_destinations.c.destination)).mappings():
        out.append({**row, "deliveries": counts.get(row["destination"], {})})
    return out


def replay(conn: Connection, alert_ids: Sequence[int], destinations_now: Sequence[tuple[str, str]], *,
           now: float | None = None) -> int:
    """Send ``alert_ids`` again to the destinations configured now: their deliveries there
    become pending (a summary key is cleared), created where they never had one.
    Returns the number of deliveries made pending."""
    now = time.time() if now is None else now
    ids = [int(i) for i in alert_ids]
    if not ids:
        return 0
    ensure_destinations(conn, destinations_now)
    bulk.executemany(conn, "UPDATE alerts SET fanned_out_at = COALESCE(fanned_out_at, ?), note = NULL "
                           "WHERE id = ?", [(now, i) for i in ids])
    bulk.executemany(conn, bulk.insert_sql("alert_deliveries", (
        "alert_id", "destination", "kind", "state", "attempts", "updated_at")) +
        " ON CONFLICT (alert_id, destination) DO NOTHING",
        [(i, dest, kind, "pending", 0, now) for i in ids for dest, kind in destinations_now])
    d = alert_deliveries.c
    names = [dest for dest, _ in destinations_now]
    n = 0
    for start in range(0, len(ids), bulk.CHUNK):
        res = conn.execute(alert_deliveries.update().where(
            d.alert_id.in_(ids[start:start + bulk.CHUNK]), d.destination.in_(names))
            .values(state="pending", summary_key=None, sent_at=None, updated_at=now))
        n += int(res.rowcount or 0)
    return n


def delivery_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """``{(kind, state): n}`` over every delivery (the ``contimg_alerts`` gauge), from the
    maintained counters."""
    from dsa110_contimg.store.counters import read_counts

    return read_counts(conn).deliveries()


def event_counts(conn: Connection) -> dict[str, int]:
    """``{event: n}`` of every alert ever recorded (never decreases: alerts are kept), from
    the maintained counters."""
    from dsa110_contimg.store.counters import read_counts

    return read_counts(conn).alert_events()
