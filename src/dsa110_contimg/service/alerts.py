"""Alert delivery: from the outbox in the products database to webhooks and a VOEvent spool.

:class:`AlertDelivery` is the one component that sends. Each :meth:`~AlertDelivery.tick`:

1. **fan-out** -- alerts recorded since the last tick get one pending delivery per
   destination configured now (``[alerts] webhooks`` and ``voevent_dir``), unless their
   event is not in ``[alerts] events`` or a new source is below ``new_source_min_sigma``;
2. per destination that is due (past its back-off), under its lease (one sender per
   destination across daemons and CLI commands):

   * **webhook** -- POST each due alert's JSON (:mod:`~dsa110_contimg.service.alert_messages`)
     with an ``Idempotency-Key`` header, oldest first, at most ``rate_limit`` messages per
     ``rate_window_s``; when more are due than the window has room for, the last message
     of the window is one summary carrying all the others (each key listed);
   * **voevent** -- write each due alert as ``<key>.xml`` into the spool, atomically
     (:mod:`~dsa110_contimg.service.voevent`);

3. deliveries of alerts older than ``give_up_after_s`` become ``failed``.

Outcomes: a 2xx answer or a written file marks the delivery ``sent``; a connection error,
a timeout, HTTP 5xx/408/425/429 or an unwritable spool keeps it ``pending`` and backs the
whole destination off for ``min(retry_cap_s, retry_base_s * 2**(failures-1)) * U(0.5, 1)``
seconds; any other HTTP status (the endpoint refuses the alert, a redirect) marks it
``failed`` (``alerts replay`` re-sends). Every state is in the database, written right
after each send, so deliveries survive restarts and outages; a crash between a send and
its record re-sends that alert: delivery is at least once and receivers deduplicate on
the key.

Runs in its own thread in the daemon (:meth:`~AlertDelivery.start`, woken early by
:meth:`~AlertDelivery.wake` when a job finishes); ``contimg-photometry alerts test|replay``
run ticks in the foreground.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from dsa110_contimg.service.alert_messages import summary_payload, webhook_payload
from dsa110_contimg.service.config import AlertsConfig
from dsa110_contimg.service.voevent import (build_voevent, spool_file, temporary_writer,
                                             write_atomically)
from dsa110_contimg.store import alerts as outbox
from dsa110_contimg.store.engine import Database, read_connection

log = structlog.get_logger("dsa110_contimg.service.alerts")

#: Alerts one summary message carries at most (the rest wait for the next window).
SUMMARY_MAX = 500
#: Packets written to the spool per destination and tick.
SPOOL_BATCH = 200
#: HTTP statuses after which the same request may succeed later.
RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))
#: How often old undelivered alerts are given up (s).
GIVE_UP_EVERY_S = 60.0


@dataclass(frozen=True)
class Destination:
    """A configured destination: ``name`` is its database key (a webhook's URL, which may
    hold a secret, appears only as host and hash), ``target`` the URL or directory."""

    name: str
    kind: str
    target: str

    @property
    def label(self) -> str:
        return self.name


def destinations_of(cfg: AlertsConfig) -> list[Destination]:
    """The destinations of an ``[alerts]`` section, webhooks first."""
    out = []
    for url in cfg.webhooks:
        digest = hashlib.sha256(url.encode()).hexdigest()[:10]
        out.append(Destination(f"webhook:{urlsplit(url).hostname}:{digest}", "webhook", url))
    if cfg.voevent_dir is not None:
        out.append(Destination(f"voevent:{Path(cfg.voevent_dir)}", "voevent", str(cfg.voevent_dir)))
    return out


@dataclass(frozen=True)
class Outcome:
    """The result of one send: ``ok``, ``retry`` (try again later) or ``refused``."""

    status: str
    detail: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a GET without the body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def post_webhook(url: str, body: dict, *, key: str, timeout_s: float) -> Outcome:
    """POST ``body`` as JSON to ``url`` with an ``Idempotency-Key`` header."""
    data = json.dumps(body, allow_nan=False).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key,
        "User-Agent": "contimg-photometry-alerts"})
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            resp.read(65536)
            return Outcome("ok", f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        where = f" to {exc.headers.get('Location')}" if 300 <= exc.code < 400 else ""
        detail = f"HTTP {exc.code} {exc.reason}{where}"
        return Outcome("retry" if exc.code in RETRYABLE_STATUS else "refused", detail)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Outcome("retry", f"{type(exc).__name__}: {reason}")


class AlertDelivery:
    """Deliver the outbox to the destinations of ``cfg``.

    Parameters
    ----------
    cfg : AlertsConfig
    db : Database
        The products database (its engine is shared with the caller; each step is its
        own short transaction, never held across a send).
    owner : str, optional
        Lease owner name (default: host:pid:random).
    post : callable, optional
        ``post(url, body, key=, timeout_s=) -> Outcome`` (tests inject failures).
    clock, rng : callable, optional
        Time (Unix s) and U(0, 1) for the back-off jitter.
    """

    def __init__(self, cfg: AlertsConfig, db: Database, *, owner: str | None = None,
                 post=post_webhook, clock=time.time, rng=random.random):
        from dsa110_contimg.store.queue import default_owner

        self.cfg = cfg
        self.db = db
        self.owner = owner or default_owner()
        self.post = post
        self.clock = clock
        self.rng = rng
        self.destinations = destinations_of(cfg)
        self.lease_s = 30.0 + cfg.timeout_s   # renewed after each send
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_give_up = 0.0

    # -- thread --------------------------------------------------------------------------
    def start(self) -> None:
        """Deliver in a background thread every ``poll_interval_s`` (and on :meth:`wake`)."""
        if self._thread is not None:
            return
        for dest in self.destinations:
            if dest.kind != "webhook":
                remove_dead_temporaries(Path(dest.target))
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="alert-delivery", daemon=True)
        self._thread.start()
        log.info("alert_delivery_started", destinations=[d.label for d in self.destinations],
                 role=self.cfg.role)

    def wake(self) -> None:
        """Look for due alerts now (a job just finished)."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread; a send in progress finishes first (bounded by ``timeout_s``,
        default the webhook timeout + 1 s)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.cfg.timeout_s + 1.0 if timeout_s is None else timeout_s)
            self._thread = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.tick()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a locked database: the next tick retries
                failures += 1
                log.error("alert_tick_failed", error=f"{type(exc).__name__}: {exc}",
                          consecutive=failures)
            self._wake.wait(self.cfg.poll_interval_s * min(failures + 1, 6))
            self._wake.clear()

    # -- one pass ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> dict:
        """Fan out new alerts, send what is due, give up what is too old. Returns counts of
        this pass: ``{"fanned_out", "sent", "summarised", "failed", "retrying"}``."""
        now = self.clock() if now is None else now
        counts = {"fanned_out": 0, "sent": 0, "summarised": 0, "failed": 0, "retrying": 0}
        pairs = [(d.name, d.kind) for d in self.destinations]
        while True:
            with self.db.engine.begin() as conn:
                n = outbox.fan_out(conn, pairs, self._skip_reason, now=now)
            counts["fanned_out"] += n
            if n < outbox.FAN_OUT_BATCH:
                break
        if self.cfg.give_up_after_s > 0 and now >= self._next_give_up:
            with self.db.engine.begin() as conn:
                counts["failed"] += outbox.give_up(conn, now - self.cfg.give_up_after_s, now=now)
            self._next_give_up = now + GIVE_UP_EVERY_S
        for dest in self.destinations:
            if self._stop.is_set() and self._thread is not None:
                break
            with self.db.engine.begin() as conn:
                row = outbox.claim_destination(conn, dest.name, self.owner, lease_s=self.lease_s, now=now)
                if row is None and _dead_local_owner(outbox.lease_owner(conn, dest.name)):
                    # a killed process on this host held it: take it now, not after the lease
                    outbox.release_destination(conn, dest.name, outbox.lease_owner(conn, dest.name))
                    row = outbox.claim_destination(conn, dest.name, self.owner, lease_s=self.lease_s,
                                                   now=now)
            if row is None:
                continue
            try:
                if dest.kind == "webhook":
                    self._serve_webhook(dest, row, now, counts)
                else:
                    self._serve_spool(dest, row, now, counts)
            finally:
                with self.db.engine.begin() as conn:
                    outbox.release_destination(conn, dest.name, self.owner)
        return counts

    def _skip_reason(self, event: str, significance: float | None) -> str | None:
        if event == "test":
            return None
        if event not in self.cfg.events:
            return f"event {event} is not in [alerts] events"
        if event == "new_source" and (significance is None or significance < self.cfg.new_source_min_sigma):
            sig = "unknown" if significance is None else f"{significance:.1f}"
            return f"significance {sig} sigma below [alerts] new_source_min_sigma " \
                   f"({self.cfg.new_source_min_sigma:g})"
        return None

    def _serve_webhook(self, dest: Destination, row: dict, now: float, counts: dict) -> None:
        window_start, sent = float(row["window_start"]), int(row["window_sent"])
        if now - window_start >= self.cfg.rate_window_s:
            window_start, sent = now, 0
        room = self.cfg.rate_limit - sent
        if room <= 0:
            return
        with read_connection(self.db.engine) as conn:
            due = outbox.due_deliveries(conn, dest.name, room + SUMMARY_MAX)
        if not due:
            return
        singles, overflow = (due, []) if len(due) <= room else (due[:room - 1], due[room - 1:])
        failures = int(row["failures"])
        for alert in singles:
            body = webhook_payload(alert, role=self.cfg.role, site_url=self.cfg.site_url)
            outcome = self.post(dest.target, body, key=alert["key"], timeout_s=self.cfg.timeout_s)
            sent += outcome.status != "retry"     # what reached the endpoint counts
            failures = self._record(dest, [alert], outcome, now, failures, window=(window_start, sent))
            counts[_count_key(outcome)] += 1
            if outcome.status == "retry":
                return
        if overflow:
            key = outbox.new_key("summary")
            body = summary_payload(key, overflow, role=self.cfg.role, rate_limit=self.cfg.rate_limit,
                                   window_s=self.cfg.rate_window_s, now=now)
            outcome = self.post(dest.target, body, key=key, timeout_s=self.cfg.timeout_s)
            sent += outcome.status != "retry"
            self._record(dest, overflow, outcome, now, failures, window=(window_start, sent),
                         summary_key=key)
            counts["summarised" if outcome.status == "ok" else _count_key(outcome)] += len(overflow)
            if outcome.status == "ok":
                log.warning("alerts_summarised", destination=dest.label, count=len(overflow),
                            summary_key=key, rate_limit=self.cfg.rate_limit,
                            window_s=self.cfg.rate_window_s)

    def _serve_spool(self, dest: Destination, row: dict, now: float, counts: dict) -> None:
        with read_connection(self.db.engine) as conn:
            due = outbox.due_deliveries(conn, dest.name, SPOOL_BATCH)
        failures = int(row["failures"])
        for alert in due:
            try:
                data = build_voevent(alert, role=self.cfg.role, ivorn_base=self.cfg.ivorn_base,
                                     author_ivorn=self.cfg.author_ivorn, author=self.cfg.author,
                                     contact_email=self.cfg.contact_email, site_url=self.cfg.site_url,
                                     now=now)
                Path(dest.target).mkdir(parents=True, exist_ok=True)
                path = write_atomically(spool_file(dest.target, alert["key"]), data)
                outcome = Outcome("ok", str(path))
            except OSError as exc:
                outcome = Outcome("retry", f"cannot write the VOEvent into {dest.target}: "
                                           f"{exc.strerror or exc}")
            failures = self._record(dest, [alert], outcome, now, failures)
            counts[_count_key(outcome)] += 1
            if outcome.status == "retry":
                return

    def _record(self, dest: Destination, sent: list[dict], outcome: Outcome, now: float,
                failures: int, *, window: tuple[float, int] | None = None,
                summary_key: str | None = None) -> int:
        """Store one send's outcome (deliveries and destination state); returns the
        destination's consecutive failures after it."""
        now = max(now, self.clock())   # a tick's sends take time: the lease runs from now
        ids = [a["id"] for a in sent]
        values = {"last_attempt_at": now, "lease_until": now + self.lease_s}
        if window is not None:
            values.update(window_start=window[0], window_sent=window[1])
        with self.db.engine.begin() as conn:
            if outcome.status == "ok":
                outbox.mark_sent(conn, dest.name, ids, summary_key=summary_key, now=now)
                failures = 0
                values.update(failures=0, last_success_at=now, last_error=None)
            elif outcome.status == "refused":
                outbox.mark_attempt_failed(conn, dest.name, ids, outcome.detail, permanent=True, now=now)
                values.update(last_error=outcome.detail)
            else:
                failures += 1
                delay = min(self.cfg.retry_cap_s, self.cfg.retry_base_s * 2 ** (failures - 1))
                delay *= 0.5 + 0.5 * self.rng()
                outbox.mark_attempt_failed(conn, dest.name, ids, outcome.detail, now=now)
                values.update(failures=failures, next_attempt_at=now + delay, last_error=outcome.detail)
            outbox.set_destination(conn, dest.name, **values)
        keys = [a["key"] for a in sent]
        if outcome.status == "ok":
            log.info("alert_sent", destination=dest.label, keys=keys if summary_key else keys[0],
                     summary_key=summary_key)
        elif outcome.status == "refused":
            log.error("alert_refused", destination=dest.label, keys=keys, error=outcome.detail)
        else:
            log.warning("alert_delivery_failed", destination=dest.label, error=outcome.detail,
                        failures=failures, retry_in_s=round(values["next_attempt_at"] - now, 1))
        return failures


def _dead_local_owner(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid:random``) names a process of this host that is gone."""
    if not owner or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_dead_temporaries(spool: Path) -> int:
    """Delete the hidden temporary packets in ``spool`` left by a writer of this host that
    is gone (killed while writing); returns how many. A live writer's, another host's and
    any other file stay."""
    removed = 0
    try:
        entries = list(spool.iterdir())
    except OSError:
        return 0
    for tmp in entries:
        if _dead_local_owner(temporary_writer(tmp)):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        log.info("spool_temporaries_removed", spool=str(spool), removed=removed)
    return removed


def _count_key(outcome: Outcome) -> str:
    return {"ok": "sent", "refused": "failed", "retry": "retrying"}[outcome.status]
