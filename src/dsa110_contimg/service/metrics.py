"""Prometheus metrics of the daemon (``[daemon] metrics_listen = "127.0.0.1:9464"``).

Served on ``http://HOST:PORT/metrics`` by :mod:`prometheus_client`'s HTTP server
thread inside the daemon process; an empty ``metrics_listen`` disables it. No
multiprocess mode: the workers report their stage timings in their job result
and the daemon updates the metrics when it settles the job
(:meth:`Metrics.on_settled`) and on every loop iteration (:meth:`Metrics.on_tick`, given
the loop's :class:`~dsa110_contimg.service.snapshot.DaemonSnapshot`).

Metrics (all prefixed ``contimg_``):

===========================================  =========  =====================================
name                                         type       meaning
===========================================  =========  =====================================
``jobs{state}``                              gauge      jobs by state (the products database,
                                                        read at scrape time: equal to
                                                        ``status --json``)
``queue_depth``                              gauge      pending jobs
``oldest_pending_age_seconds``               gauge      age of the oldest pending job (its
                                                        file was queued then); 0 when none
``files_waiting``                            gauge      files seen but not queued or skipped
                                                        yet (being written or settling, or a
                                                        restored image waiting for its
                                                        primary-beam-corrected partner)
``stage_duration_seconds{stage}``            histogram  per image: open, noise, catalog,
                                                        measure, qc, store, normalise,
                                                        variability, ese
``job_duration_seconds``                     histogram  worker time per job
``images_measured_total``                    counter    images measured (since start)
``images_per_minute``                        gauge      images measured per minute over the
                                                        last 5 minutes
``job_outcomes_total{outcome}``              counter    settled jobs: done, failed, dead,
                                                        retried, cancelled, lease_lost
``job_failures_total{reason_class}``         counter    failures by class: invalid_image,
                                                        catalog, config, database, timeout,
                                                        crashed, other
``workers_live`` / ``workers_busy``          gauge      worker processes ready or running a
                                                        job / running a job
``ese_candidates{confidence}``               gauge      active ESE candidates by confidence
``detections``                               gauge      blind detections stored (per image:
                                                        its rate over the images' rate)
``sources{kind}``                            gauge      new, blind and monitor sources
``alerts{kind,state}``                       gauge      alert deliveries by destination kind
                                                        (webhook, voevent) and state
                                                        (pending, sent, failed)
``alert_events_total{event}``                counter    alerts recorded by event
                                                        (ese_candidate, ese_confidence,
                                                        ese_stage, new_source, test; the
                                                        outbox count, kept across restarts)
``last_success_timestamp_seconds``           gauge      Unix time of the last image measured
                                                        (from the database at start-up)
``daemon_healthy``                           gauge      1 while the watchdog health checks pass
===========================================  =========  =====================================
"""

from __future__ import annotations

import collections
import threading
import time

import structlog

from dsa110_contimg.core.enums import CONFIDENCE_LEVELS
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.snapshot import DaemonSnapshot

log = structlog.get_logger("dsa110_contimg.service.metrics")

#: Workflow stages reported by :meth:`PhotometryManager.run_image` (``step_seconds``).
STAGES = ("open", "noise", "catalog", "measure", "detect", "duplicate", "associate", "qc", "store",
          "detections", "normalise", "variability", "ese")
#: Histogram buckets (s): from a few ms (small images, a store) to minutes (4096² mosaics).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
           600.0, 1800.0)
#: Window of ``images_per_minute`` (s).
RATE_WINDOW_S = 300.0
FAILURE_CLASSES = ("invalid_image", "catalog", "config", "database", "timeout", "crashed", "other")


def parse_listen(value: str, source=None) -> tuple[str, int] | None:
    """``"HOST:PORT"`` (``[::1]:PORT`` for IPv6, ``:PORT`` for every interface) ->
    ``(host, port)``; ``""`` -> None (disabled). Raises ConfigError naming the key."""
    if value is None or value == "":
        return None
    allowed = "'' (disabled) or 'HOST:PORT' such as '127.0.0.1:9464' (port 0-65535)"
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError("daemon.metrics_listen", value, allowed, source)
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError("daemon.metrics_listen", value, allowed, source) from None
    if not 0 <= port <= 65535:
        raise ConfigError("daemon.metrics_listen", value, allowed, source)
    return host, port


def failure_class(worker_status: str, error: str | None) -> str:
    """The reason class of a failure: the worker outcome (``timeout``, ``crashed``) or the
    error text's exception family."""
    if worker_status in ("timeout", "crashed"):
        return worker_status
    text = (error or "").lower()
    rules = (("invalid_image", ("fits", "truncated", "corrupt", "wcs", "beam", "blank", "image",
                                "nan", "empty")),
             ("catalog", ("catalog", "catalogue", "survey", "vizier", "column")),
             ("config", ("invalid value", "config")),
             ("database", ("database", "sqlite", "locked", "operationalerror", "integrityerror",
                           "psycopg")))
    for name, words in rules:
        if any(w in text for w in words):
            return name
    return "other"


class Metrics:
    """The daemon's metrics; every method is a cheap no-op when disabled.

    Parameters
    ----------
    listen : str
        ``daemon.metrics_listen``.
    products_db : str
        Database read (read-only) at scrape time for the job and ESE gauges.
    source : Path, optional
        Configuration file (for error messages).
    """

    def __init__(self, listen: str, products_db, *, source=None):
        self.address = parse_listen(listen, source)
        self.enabled = self.address is not None
        self.products_db = str(products_db)
        self.source = source
        self.server = None
        self.thread = None
        self.port: int | None = None
        self._db = None
        self._db_lock = threading.Lock()
        self._done_times: collections.deque[float] = collections.deque()
        self.last_success_at: float | None = None
        if not self.enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = reg = CollectorRegistry(auto_describe=True)
        self.stage = Histogram("contimg_stage_duration_seconds", "Workflow stage duration per image",
                               ["stage"], buckets=BUCKETS, registry=reg)
        self.job_duration = Histogram("contimg_job_duration_seconds", "Worker time per job",
                                      buckets=BUCKETS, registry=reg)
        self.images = Counter("contimg_images_measured", "Images measured since the daemon started",
                              registry=reg)
        self.outcomes = Counter("contimg_job_outcomes", "Settled jobs by outcome", ["outcome"],
                                registry=reg)
        self.failures = Counter("contimg_job_failures", "Failed job attempts by reason class",
                                ["reason_class"], registry=reg)
        self.rate = Gauge("contimg_images_per_minute",
                          f"Images measured per minute over the last {RATE_WINDOW_S:g} s", registry=reg)
        self.live = Gauge("contimg_workers_live", "Worker processes ready or running a job", registry=reg)
        self.busy = Gauge("contimg_workers_busy", "Worker processes running a job", registry=reg)
        self.waiting = Gauge("contimg_files_waiting", "Files seen but not queued or skipped yet",
                             registry=reg)
        self.last_success = Gauge("contimg_last_success_timestamp_seconds",
                                  "Unix time of the last image measured", registry=reg)
        self.healthy = Gauge("contimg_daemon_healthy", "1 while the health checks pass", registry=reg)
        for s in STAGES:
            self.stage.labels(stage=s)
        for c in FAILURE_CLASSES:
            self.failures.labels(reason_class=c)
        for o in ("done", "failed", "dead", "retried", "cancelled", "lease_lost"):
            self.outcomes.labels(outcome=o)
        reg.register(_DatabaseCollector(self))

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Open the read-only database view and serve ``/metrics``; a port that cannot be
        bound stops the start-up with a ConfigError naming ``daemon.metrics_listen``."""
        self._init_last_success()
        if not self.enabled:
            return
        from prometheus_client import start_http_server

        host, port = self.address
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError("daemon.metrics_listen", f"{host}:{port}",
                              f"an address this host can listen on ({exc.strerror or exc})",
                              self.source) from None
        self.port = self.server.server_address[1]
        log.info("metrics_listening", url=f"http://{host}:{self.port}/metrics")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self._db_lock:
            if self._db is not None:
                self._db.dispose()
                self._db = None

    # -- hooks called by the daemon ------------------------------------------------------
    def on_settled(self, *, state: str, worker_status: str, result, error: str | None,
                   duration_s: float, now: float | None = None) -> None:
        """A job was settled: outcome, failure class, stage timings, throughput."""
        now = time.time() if now is None else now
        n_done = 0
        if worker_status == "ok" and isinstance(result, dict):
            n_done = int(result.get("done") or 0)
        if n_done:   # tracked even without Prometheus: the systemd STATUS= line uses it
            self._done_times.extend([now] * n_done)
            self.last_success_at = now
        if not self.enabled:
            return
        outcome = {"pending": "retried"}.get(state, state or "lease_lost")
        self.outcomes.labels(outcome=outcome).inc()
        if worker_status == "ok" and isinstance(result, dict):
            self.job_duration.observe(max(float(duration_s), 0.0))
            for stage, seconds in (result.get("stages") or {}).items():
                self.stage.labels(stage=stage).observe(max(float(seconds), 0.0))
        if n_done:
            self.images.inc(n_done)
            self.last_success.set(now)
        failed_attempt = worker_status != "ok" or (state in ("failed", "dead", "pending") and error)
        if failed_attempt:
            self.failures.labels(reason_class=failure_class(worker_status, error)).inc()

    def on_tick(self, snap: DaemonSnapshot, now: float | None = None) -> None:
        """Loop iteration: workers, waiting files, health, images/min, from the daemon's snapshot."""
        now = time.time() if now is None else now
        while self._done_times and self._done_times[0] < now - RATE_WINDOW_S:
            self._done_times.popleft()
        if not self.enabled:
            return
        self.busy.set(snap.busy)
        if snap.idle is not None:   # None while the pool is replaced: keep the last value
            self.live.set(snap.busy + snap.idle)
        self.waiting.set(snap.files_waiting)
        self.healthy.set(1 if snap.healthy else 0)
        self.rate.set(len(self._done_times) * 60.0 / RATE_WINDOW_S)

    def status_line(self, snap: DaemonSnapshot, now: float | None = None) -> str:
        """The systemd ``STATUS=`` text from the daemon's snapshot, e.g. ``42 images/h, 0 pending,
        last 12 s ago; 1/2 workers busy, 0 failed, 0 files waiting`` (pending and failed: jobs
        in the queue, as ``status`` counts them)."""
        now = time.time() if now is None else now
        last = ("no image yet" if self.last_success_at is None
                else f"last {max(0.0, now - self.last_success_at):.0f} s ago")
        pending = "?" if snap.pending is None else snap.pending
        failed = "?" if snap.failed is None else snap.failed
        return (f"{self.images_per_hour(now):.0f} images/h, {pending} pending, {last}; "
                f"{snap.busy}/{snap.workers} workers busy, {failed} failed, "
                f"{snap.files_waiting} files waiting")

    def images_per_hour(self, now: float | None = None) -> float:
        """Images measured per hour, extrapolated from the last ``RATE_WINDOW_S``."""
        now = time.time() if now is None else now
        n = sum(1 for t in self._done_times if t >= now - RATE_WINDOW_S)
        return n * 3600.0 / RATE_WINDOW_S

    # -- database-derived gauges -----------------------------------------------------
    def _database(self):
        if self._db is None:
            from dsa110_contimg.store.engine import open_products_db

            self._db = open_products_db(self.products_db, read_only=True)
        return self._db

    def _init_last_success(self) -> None:
        try:
            from dsa110_contimg.store.status import last_success_at

            with self._db_lock, self._database().engine.connect() as conn:
                last = last_success_at(conn)
                conn.rollback()
            if last:
                self.last_success_at = float(last)
                if self.enabled:
                    self.last_success.set(float(last))
        except Exception as exc:  # noqa: BLE001 - a metric, never a reason not to start
            log.warning("metrics_db_unavailable", error=f"{type(exc).__name__}: {exc}")

    def database_snapshot(self, now: float | None = None) -> dict:
        """``{"jobs": {state: n}, "oldest_pending_age_s": s, "ese": {confidence: n},
        "transients": counts (:func:`~dsa110_contimg.store.detections.detection_counts`),
        "alerts": {(kind, state): n}, "alert_events": {event: n}}``."""
        from dsa110_contimg.store.counters import read_counts
        from dsa110_contimg.store.detections import detection_counts
        from dsa110_contimg.store.schema import JOB_STATES
        from dsa110_contimg.store.status import active_candidates_by_confidence, oldest_pending_at

        now = time.time() if now is None else now
        with self._db_lock, self._database().engine.connect() as conn:
            got = read_counts(conn)     # the maintained counters: jobs, detections, alerts
            counts = got.jobs()
            oldest = oldest_pending_at(conn)
            ese = active_candidates_by_confidence(conn)
            transients = detection_counts(conn, got)
            deliveries = got.deliveries()
            events = got.alert_events()
            conn.rollback()
        return {"jobs": {s: int(counts.get(s, 0)) for s in JOB_STATES},
                "oldest_pending_age_s": 0.0 if oldest is None else max(0.0, now - float(oldest)),
                "ese": {str(k): int(v) for k, v in ese.items()}, "transients": transients,
                "alerts": deliveries, "alert_events": events}


class _DatabaseCollector:
    """Gauges read from the products database when Prometheus scrapes."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            snap = self.metrics.database_snapshot()
        except Exception as exc:  # noqa: BLE001 - the scrape shows contimg_database_up 0
            log.warning("metrics_db_read_failed", error=f"{type(exc).__name__}: {exc}")
            up = GaugeMetricFamily("contimg_database_up", "1 when the products database was readable")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("contimg_database_up", "1 when the products database was readable")
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("contimg_jobs", "Jobs by state", labels=["state"])
        for state, n in snap["jobs"].items():
            jobs.add_metric([state], n)
        yield jobs
        depth = GaugeMetricFamily("contimg_queue_depth", "Pending jobs")
        depth.add_metric([], snap["jobs"].get("pending", 0))
        yield depth
        age = GaugeMetricFamily("contimg_oldest_pending_age_seconds",
                                "Age of the oldest pending job (0 when none)")
        age.add_metric([], snap["oldest_pending_age_s"])
        yield age
        ese = GaugeMetricFamily("contimg_ese_candidates", "Active ESE candidates by confidence",
                                labels=["confidence"])
        for conf in sorted(set(snap["ese"]) | set(CONFIDENCE_LEVELS[:-1])):
            ese.add_metric([conf], snap["ese"].get(conf, 0))
        yield ese
        tr = snap.get("transients", {})
        det = GaugeMetricFamily("contimg_detections", "Blind detections stored (all images; "
                                "per image: rate(contimg_detections) / rate of images measured)")
        det.add_metric([], tr.get("detections", 0))
        yield det
        kinds = GaugeMetricFamily("contimg_sources", "Sources not from the catalogue, by kind "
                                  "(new: passed the new-source test)", labels=["kind"])
        for kind in ("new", "blind", "monitor"):
            kinds.add_metric([kind], tr.get(f"{kind}_sources", 0))
        yield kinds
        yield from _alert_families(snap)


def _alert_families(snap: dict):
    """``contimg_alerts{kind,state}`` and ``contimg_alert_events_total{event}``, every label
    combination present (0 when none) so rules can use them from the start."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from dsa110_contimg.store.alerts import ALERT_EVENTS
    from dsa110_contimg.store.schema import DELIVERY_STATES, DESTINATION_KINDS

    alerts = GaugeMetricFamily("contimg_alerts", "Alert deliveries by destination kind and state",
                               labels=["kind", "state"])
    for kind in DESTINATION_KINDS:
        for state in DELIVERY_STATES:
            alerts.add_metric([kind, state], snap["alerts"].get((kind, state), 0))
    yield alerts
    events = CounterMetricFamily("contimg_alert_events", "Alerts recorded by event", labels=["event"])
    for event in ALERT_EVENTS:
        events.add_metric([event], snap["alert_events"].get(event, 0))
    yield events
