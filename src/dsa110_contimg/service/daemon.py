"""The photometry daemon: a thin loop over admission, queue, pool and health.

One process, one thread doing the work (the main loop); watchdog's observer
threads only put paths on a queue; the health thread
(:class:`~dsa110_contimg.service.health.HealthMonitor`) judges the loop from
outside and pings systemd; the alert thread
(:class:`~dsa110_contimg.service.alerts.AlertDelivery`) delivers the alert outbox
(woken when a job settles). Each loop iteration (:meth:`Daemon.tick`):

1. take filesystem events and give each path to admission
   (:class:`~dsa110_contimg.service.admission.Admission`: classify the name once,
   intake candidate -> stable -> complete, primary-beam waits, queue or skip; every
   probe bounded in bytes and, in a worker thread, in time);
2. rescan the watched trees when due (start-up, every ``rescan_interval_s``,
   after an inotify overflow, a full event queue, a handler error, a restarted
   observer, a failed tick, SIGHUP);
3. re-examine undecided files and primary-beam waits;
4. reap expired leases when due;
5. claim jobs while workers are idle and hand them to the pool;
6. settle finished jobs (done / failed / retried / dead);
7. extend the leases of running jobs, publish the
   :class:`~dsa110_contimg.service.snapshot.DaemonSnapshot` (metrics, the systemd
   ``STATUS=`` line), beat the heartbeat row.

Durability: every decision is in the products database (``files``,
``batch_jobs``); the in-memory state is only a cache rebuilt from the DB and a
scan at start-up. A tick that fails (database locked, disk full) keeps nothing
half-done in memory that the database does not have, and asks for an immediate
rescan so the events it had taken are found again.

Start-up (:meth:`Daemon.run`; constructing a :class:`Daemon` does no I/O): check the
folders, the executor and SQLite; install the signal handlers; take the instance lock
(one daemon per state directory and node) and open the database; reap jobs of dead
local daemons, start the workers, start the observer, then scan (so nothing falls
between scan and watch), then ``READY=1``.

Stopping (:mod:`~dsa110_contimg.service.stopping`): SIGTERM/SIGINT -> graceful stop
(``STOPPING=1``, stop watching and claiming, running jobs get ``drain_timeout_s`` to
finish, the rest are killed and handed back to ``pending`` without counting the
attempt; exit 0), from any state. Every shutdown step runs even when an earlier one
fails, the worker processes are always killed and reaped, and a hard deadline ends
the process regardless. SIGHUP -> rescan (``RELOADING=1`` ... ``READY=1``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import MappingProxyType

import structlog

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.admission import Admission
from dsa110_contimg.service.alerts import AlertDelivery
from dsa110_contimg.service.config import ServiceConfig
from dsa110_contimg.service.dask_pool import make_pool
from dsa110_contimg.service.health import HealthMonitor
from dsa110_contimg.service.instance import InstanceLock
from dsa110_contimg.service.intake import BoundedRunner, Intake, is_fits_name, printable, probe_file, scan_tree
from dsa110_contimg.service.metrics import Metrics
from dsa110_contimg.service.notify import notify_reloading, sd_notify, watchdog_interval_s
from dsa110_contimg.service.dispatch import Dispatcher
from dsa110_contimg.service.preflight import check_startup
from dsa110_contimg.service.snapshot import DaemonSnapshot, QueueCounts
from dsa110_contimg.service.stopping import StopControl, kill_children, quiet
from dsa110_contimg.service.watcher import Watcher
from dsa110_contimg.store import counters
from dsa110_contimg.store import files as filestore
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue, default_owner
from dsa110_contimg.store.urls import mask_url

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Seconds of event handling per tick (the rest waits for the next tick).
EVENT_BUDGET_S = 1.0


class Daemon:
    """The long-running service (see the module docstring); :meth:`run` does the work.

    Parameters
    ----------
    cfg : ServiceConfig
        Validated configuration.
    """

    def __init__(self, cfg: ServiceConfig):
        self.cfg = cfg
        d = cfg.daemon
        self.owner, self.node = default_owner(), d.node_name
        self.stop = StopControl(d.drain_timeout_s, on_rescan=self.request_rescan)
        self.metrics = Metrics(d.metrics_listen, cfg.paths.products_db, source=cfg.source)
        db_file, wd = cfg.paths.products_db, watchdog_interval_s()
        is_file = "://" not in str(db_file)
        self.health = HealthMonitor(
            state_dir=Path(db_file).parent if is_file else Path(cfg.paths.state_dir),
            db_file=Path(db_file) if is_file else None, stall_s=d.loop_stall_s,
            interval_s=min(wd or 1.0, 1.0), daemon_checks=self.healthy,
            status_text=lambda: self.metrics.status_line(self.snapshot), watchdog=wd is not None)
        self.health.paused = True
        self.started_at = time.time()
        self.snapshot = DaemonSnapshot()
        self._rescan_request: str | None = None
        self._workers_warm = False
        now = time.monotonic()
        self._next = {"rescan": now + d.rescan_interval_s, "recheck": now, "reap": now + d.reap_interval_s,
                      "beat": now}

    @property
    def stopping(self) -> bool:
        return self.stop.stopping

    def request_rescan(self) -> None:
        self._rescan_request = "SIGHUP"

    # -- start-up ----------------------------------------------------------------------
    def _open(self) -> None:
        """The instance lock (released by the kernel when we die), the database and the
        parts over it; the pool and the observer are built, not started."""
        cfg, d = self.cfg, self.cfg.daemon
        self.instance_lock = InstanceLock(cfg.paths.state_dir, self.node).acquire(owner=self.owner)
        self.db = open_products_db(cfg.paths.products_db)
        self.alerts = AlertDelivery(cfg.alerts, self.db, owner=self.owner)
        self.queue = JobQueue(self.db, owner=self.owner, lease_s=d.lease_s,
                              backoff_base_s=d.backoff_base_s, backoff_cap_s=d.backoff_cap_s,
                              max_interruptions=d.max_interruptions)
        self.queue_counts = QueueCounts(self.queue.counts)
        roots = [str(r) for r in cfg.paths.watched]
        self.runner = BoundedRunner(d.check_timeout_s)
        intake = Intake(
            roots, settle_s=d.settle_s if not d.polling else max(d.settle_s, 2 * d.poll_interval_s),
            polling=d.polling, symlinks=d.symlinks,
            probe=lambda p: self.runner.call(probe_file, p, roots=roots, symlinks=d.symlinks,
                                             max_header_bytes=d.max_header_bytes))
        self.pool = make_pool(d)   # local worker processes, or a Dask cluster (dask_pool.py)
        self.jobs = Dispatcher(self.queue, self.pool, paths=cfg.paths, on_settled=self.metrics.on_settled,
                               on_finished=self.alerts.wake)
        self.admission = Admission(intake, self.db, self.queue, params=cfg.photometry_params(),
                                   mosaic_roots=cfg.paths.mosaic_dirs, pbcor_wait_s=d.pbcor_wait_s,
                                   max_attempts=d.max_attempts, on_queued=self.jobs.claim_now)
        self.watcher = Watcher(cfg.paths.watched, polling=d.polling, poll_interval_s=d.poll_interval_s,
                               max_queue=d.max_event_queue)

    def run(self) -> int:
        """Start, loop until SIGTERM/SIGINT, drain; returns the exit code (0 after a stop)."""
        for warning in check_startup(self.cfg):   # every missing/unwritable folder at once
            log.warning("preflight", problem=warning)
        self.stop.install()   # from here on SIGTERM ends the process (even in a locked database)
        log.info("starting", pid=os.getpid(), config=str(self.cfg.source) if self.cfg.source else None)
        self._open()
        failures = 0
        self.health.start()
        try:
            self.startup()
            self.health.paused = False
            while not self.stopping:
                try:
                    self.tick()
                    failures = 0
                    self.health.tick_ok()
                except Exception as exc:  # noqa: BLE001 - a database locked for too long, ENOSPC
                    failures += 1
                    self.health.tick_failed(exc)
                    self._rescan_request = "tick failed"   # re-discover the events it had taken
                    log.exception("tick_failed", error=f"{type(exc).__name__}: {exc}",
                                  consecutive=failures)
                    self._sleep(min(1.0 * failures, 5.0))
        finally:
            self.health.paused = True
            self.shutdown()
        return 0

    def startup(self) -> None:
        # 1. jobs of daemons on this host that died: re-queue now (no worker of ours runs yet)
        retry = self._retry_until_stopped
        gone = retry(lambda: filestore.dead_local_owners(self.db, exclude=self.owner), "startup_reap")
        if self.stopping:
            return
        reaped = retry(lambda: self.queue.reap_expired(owners_gone=gone), "startup_reap")
        retry(lambda: filestore.forget_owners(self.db, gone), "startup_reap")
        log.info("startup", owner=self.owner, node=self.node, pid=os.getpid(),
                 products_db=mask_url(self.cfg.paths.products_db), roots=[str(r) for r in self.cfg.paths.watched],
                 workers=self.pool.size, polling=self.cfg.daemon.polling, reaped=reaped,
                 dead_owners=len(gone or ()))
        if self.stopping:
            return
        self.metrics.start()   # a port that cannot be bound stops the start-up here
        self.alerts.start()    # its own thread: a slow webhook never holds up this loop
        # 2. workers, 3. observer, 4. scan
        self.pool.start()
        try:   # a missing root (not mounted yet) is retried with back-off for a minute
            self.watcher.start_when_mounted(60.0, self._sleep, lambda: self.stopping)
        except FileNotFoundError as exc:
            raise ConfigError("paths.image_dirs/mosaic_dirs", exc.filename or str(exc),
                              "existing directories (or a parent in which to create them)",
                              self.cfg.source) from None
        retry(self.admission.load_known, "startup_known")
        if self.stopping:
            return
        try:
            self.scan_all("startup")
        except Exception as exc:  # noqa: BLE001 - e.g. ENOSPC: the loop retries with a rescan
            self._rescan_request = "startup scan failed"
            log.error("startup_scan_failed", error=f"{type(exc).__name__}: {exc}")
        self._beat()
        self.stop.ready = True
        sd_notify("READY=1", f"STATUS={self.metrics.status_line(self.snapshot)}")
        log.info("ready", known_files=len(self.admission.known), pending_files=self.admission.waiting())

    def _retry_until_stopped(self, fn, what: str):
        """Run a start-up database step; retry (database locked, disk full) until stopped."""
        delay = 0.5
        while not self.stopping:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if self.stopping:
                    return None
                self.health.tick_failed(exc)
                log.warning(f"{what}_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                self._sleep(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def shutdown(self) -> None:
        """Drain: finish running jobs within ``drain_timeout_s``, hand back the rest.

        Every step is attempted even when an earlier one fails (a full disk, a
        locked database); the worker processes are always killed and reaped.
        """
        self.stop.arm_hard_exit()
        try:
            quiet(sd_notify, "STOPPING=1", "STATUS=draining")
            log.info("stopping", running=len(self.jobs.inflight),
                     drain_timeout_s=self.cfg.daemon.drain_timeout_s)
            quiet(self._beat, state="draining")
            quiet(self.watcher.stop)
            deadline = time.monotonic() + self.cfg.daemon.drain_timeout_s
            while self.jobs.inflight and time.monotonic() < deadline:
                try:
                    self.jobs.settle_finished(0.2)
                except Exception as exc:  # noqa: BLE001 - the database is failing: stop draining
                    log.error("drain_failed", error=f"{type(exc).__name__}: {exc}")
                    break
        finally:
            quiet(self.pool.shutdown, kill=True)
            kill_children()
        handed_back = self.jobs.hand_back()
        for step in (lambda: self._beat(state="stopped"), self.runner.close, self.health.stop,
                     self.alerts.stop, self.db.dispose, self.metrics.stop, self.instance_lock.release):
            quiet(step)
        log.info("stopped", handed_back=handed_back, **self.jobs.stats, queued=self.admission.queued,
                 skipped=self.admission.skipped)
        # the hard-exit timer stays armed (a daemon thread): should interpreter exit hang
        # (a non-daemon thread stuck in a hung filesystem call), it still ends the process

    # -- the loop ------------------------------------------------------------------------
    def tick(self) -> None:
        d, now = self.cfg.daemon, time.monotonic()
        # events in small batches within a time budget, so that a burst never keeps the
        # loop from dispatching, settling and beating; the rest stay queued for the next tick
        budget_end = now + EVENT_BUDGET_S
        while not self.stopping and time.monotonic() < budget_end:
            batch = self.watcher.drain(50)
            if not batch:
                break
            for kind, path, event_type, _t in batch:
                self.health.progress()
                if kind == "file" or is_fits_name(path):   # a FITS-named directory: skipped
                    self.admission.consider(path, event=event_type)
                if kind == "dir":
                    self.scan_dir(path, f"new directory ({event_type})")
        self._rescan_if_due(now)
        if now >= self._next["recheck"]:
            self.admission.recheck()
            self._next["recheck"] = now + d.recheck_interval_s
        if now >= self._next["reap"]:
            reaped = self.queue.reap_expired()
            if reaped["pending"] or reaped["dead"]:
                log.warning("leases_expired", **reaped)
            # the status counters' deltas folded into their totals (one short transaction)
            counters.try_compact(self.db)
            self._next["reap"] = now + d.reap_interval_s
        if not self.stopping:
            self.jobs.dispatch()
        self.jobs.settle_finished(0.02 if self.watcher.events.qsize() else 0.1)
        if not self._workers_warm and self.pool.idle() + len(self.jobs.inflight) >= self.pool.size:
            self._workers_warm = True
            log.info("workers_ready", workers=self.pool.size, after_s=round(time.time() - self.started_at, 1))
        if time.monotonic() >= self._next["beat"]:
            self._beat()
            self._next["beat"] = time.monotonic() + d.heartbeat_interval_s
        if self.watcher.revive():
            self.scan_all("observer restarted")
        self._publish_snapshot()
        self.metrics.on_tick(self.snapshot)

    def _rescan_if_due(self, now: float) -> None:
        reason = self.watcher.rescan.take() or self._rescan_request
        self._rescan_request = None
        if reason is None and now >= self._next["rescan"]:
            reason = "periodic"
        if reason is None:
            return
        self._rescan_request = reason   # kept until the scan succeeded
        if reason == "SIGHUP":
            notify_reloading(f"STATUS=reloading: {self.metrics.status_line(self.snapshot)}")
        self.scan_all(reason)
        self._rescan_request = None
        self._next["rescan"] = time.monotonic() + self.cfg.daemon.rescan_interval_s
        if reason == "SIGHUP":
            sd_notify("READY=1", f"STATUS={self.metrics.status_line(self.snapshot)}")

    def scan_all(self, reason: str) -> int:
        """Reconciliation scan of every watched tree; returns the number of new entries."""
        t0 = time.perf_counter()
        n = sum(self.scan_dir(root, None) for root in self.cfg.paths.watched)
        log.info("rescan", reason=reason, new_files=n, duration_s=round(time.perf_counter() - t0, 3))
        return n

    def scan_dir(self, root, reason: str | None) -> int:
        n = 0
        for path, size, mtime_ns in scan_tree(root, stop=lambda: self.stopping):
            self.health.progress()
            if not self.admission.owns(path, size, mtime_ns):
                n += 1
                self.admission.consider(path, event=None)
        if reason is not None and n:
            log.info("scanned_directory", path=printable(str(root)), reason=reason, new_files=n)
        return n

    # -- health ------------------------------------------------------------------------
    def _publish_snapshot(self) -> None:
        """Replace :attr:`snapshot` (read by metrics, the status line and the health thread)."""
        try:
            idle = int(self.pool.idle())
        except Exception:  # noqa: BLE001 - a pool being replaced
            idle = None
        try:
            ok = self.healthy()[0]
        except Exception:  # noqa: BLE001
            ok = False
        counters = {**self.jobs.stats, "queued": self.admission.queued, "skipped": self.admission.skipped}
        pending, failed = self.queue_counts.get(counters)
        self.snapshot = DaemonSnapshot(
            busy=len(self.jobs.inflight), workers=self.pool.size, idle=idle,
            files_waiting=self.admission.waiting(), healthy=ok, pending=pending, failed=failed,
            counters=MappingProxyType(counters))

    def _beat(self, state: str = "running") -> None:
        self._publish_snapshot()
        verdict, reasons = self.health.verdict
        text = self.metrics.status_line(self.snapshot)
        if state == "running" and verdict != "ok":
            state, text = "degraded", f"{'; '.join(reasons)} ({text})"
        try:
            filestore.beat(self.db, self.owner, started_at=self.started_at, workers=self.pool.size,
                           state=state, status_text=text, node=self.node)
        except Exception as exc:  # noqa: BLE001 - reported through health
            log.error("heartbeat_failed", error=str(exc))

    def healthy(self) -> tuple[bool, str]:
        """The daemon's own checks (called by the health thread): observer and pool.

        Database and disk trouble is judged by the health monitor (degraded, not
        unhealthy: restarting would not help)."""
        if self.stopping:
            return True, "draining"
        if self.watcher.observer is None:
            return True, "starting"
        if self.watcher.gave_up():
            return False, "observer thread dead"
        if not self.pool.healthy():
            return False, self.pool.broken_reason or "pool broken"
        return True, "ok"
