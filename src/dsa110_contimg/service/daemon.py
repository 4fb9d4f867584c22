"""The photometry daemon: a thin loop wiring intake, queue, pool and health.

One process, one thread doing the work (the main loop); watchdog's observer
threads only put paths on a queue; the health thread
(:class:`~dsa110_contimg.service.health.HealthMonitor`) judges the loop from
outside and pings systemd. Each loop iteration (:meth:`Daemon.tick`):

1. take filesystem events and give each path to the intake
   (:class:`~dsa110_contimg.service.intake.Intake`: candidate -> stable ->
   complete -> queued; every probe bounded in bytes and, in a worker thread,
   in time);
2. rescan the watched trees when due (start-up, every ``rescan_interval_s``,
   after an inotify overflow, a full event queue, a handler error, a restarted
   observer, a failed tick);
3. re-examine undecided files and PB waits;
4. reap expired leases when due;
5. claim jobs while workers are idle and hand them to the pool;
6. settle finished jobs (done / failed / retried / dead);
7. extend the leases of running jobs, beat the heartbeat row.

Durability: every decision is in the products database (``files``,
``batch_jobs``); the in-memory state is only a cache rebuilt from the DB and a
scan at start-up. A tick that fails (database locked, disk full) keeps nothing
half-done in memory that the database does not have, and asks for an immediate
rescan so the events it had taken are found again. Order at start-up: reap
jobs of dead local daemons, start the workers, start the observer, then scan
(so nothing falls between scan and watch), then ``READY=1``.

Signals: SIGTERM/SIGINT -> graceful stop (``STOPPING=1``, stop watching and
claiming, running jobs get ``drain_timeout_s`` to finish, the rest are killed
and handed back to ``pending`` without counting the attempt; exit 0), from any
state: start-up, a failing database, a full disk. Every shutdown step runs even
when an earlier one fails, the worker processes are always killed and reaped,
and a hard deadline (``drain_timeout_s`` + 5 s after the signal) ends the
process regardless. SIGHUP -> rescan (``RELOADING=1`` ... ``READY=1``).

Alerts: :class:`~dsa110_contimg.service.alerts.AlertDelivery` delivers the alert outbox
from its own thread (started with the metrics, woken when a job settles, stopped at
shutdown).

Observability hooks (:mod:`dsa110_contimg.service.metrics`): ``self.metrics`` is told
about every settled job and every loop iteration; it serves Prometheus metrics when
``daemon.metrics_listen`` is set and composes the systemd ``STATUS=`` line. The
health thread (:mod:`dsa110_contimg.service.health`) pings the watchdog.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import structlog

from dsa110_contimg.core.errors import ConfigError, StoreError
from dsa110_contimg.service import classify
from dsa110_contimg.service.alerts import AlertDelivery
from dsa110_contimg.service.config import ServiceConfig
from dsa110_contimg.service.health import HealthMonitor
from dsa110_contimg.service.instance import InstanceLock
from dsa110_contimg.service.intake import (
    BoundedRunner, Decision, Intake, db_path, is_fits_name, printable, probe_file, scan_tree)
from dsa110_contimg.service.dask_pool import make_pool
from dsa110_contimg.service.metrics import Metrics
from dsa110_contimg.service.notify import notify_reloading, sd_notify, watchdog_interval_s
from dsa110_contimg.service.pool import Outcome
from dsa110_contimg.service.preflight import check_folders
from dsa110_contimg.service.snapshot import COUNTERS, DaemonSnapshot, QueueCounts
from dsa110_contimg.service.runtime import JobContext, JobSummary, load_executor, settle, settle_error
from dsa110_contimg.service.watcher import Watcher
from dsa110_contimg.store import files as filestore
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.urls import mask_url
from dsa110_contimg.store.files import FileKey
from dsa110_contimg.store.queue import ClaimedJob, JobQueue, default_owner

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Observer restarts allowed per 10 minutes before the daemon stops pinging the watchdog.
MAX_OBSERVER_RESTARTS = 3
#: Seconds beyond ``drain_timeout_s`` after which a stopping daemon exits regardless.
HARD_EXIT_GRACE_S = 5.0
#: Seconds after a SIGTERM received during start-up (before READY) after which the daemon exits.
STARTUP_EXIT_S = 3.0
#: Seconds of event handling per tick (the rest waits for the next tick).
EVENT_BUDGET_S = 1.0


@dataclass
class _PBWait:
    """A restored image waiting for its primary-beam-corrected sibling."""

    key: FileKey
    until: float
    cards: dict | None


class Daemon:
    """The long-running service.

    Parameters
    ----------
    cfg : ServiceConfig
        Validated configuration.
    """

    def __init__(self, cfg: ServiceConfig):
        self.cfg = cfg
        d = cfg.daemon
        for warning in check_folders(cfg):   # every missing/unwritable folder at once, now
            log.warning("preflight", problem=warning)
        self.owner = default_owner()
        self.node = d.node_name
        try:  # fail at start-up, naming the key, rather than in every worker
            load_executor(d.task)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError("daemon.executor", d.executor,
                              f"an importable executor ({exc})", cfg.source) from None
        if sqlite3.sqlite_version_info < (3, 35):
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: the queue needs >= 3.35 "
                             "(UPDATE ... RETURNING)")
        self.stopping = False
        self._hard_exit: threading.Timer | None = None
        self._ready = False
        self._workers_warm = False
        # SIGTERM from here on (even while opening a locked database) ends the process
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_rescan)
        self._watch_signals_from_a_thread()
        log.info("starting", pid=os.getpid(), config=str(cfg.source) if cfg.source else None)
        self.started_at = time.time()
        self.db = None
        self.pool = None
        self.watcher = None
        self.mosaic_roots = [Path(p) for p in cfg.paths.mosaic_dirs]
        self.params = cfg.photometry_params()
        self.known: set[tuple[str, int, int]] = set()
        self.pb_waits: dict[str, _PBWait] = {}
        self.inflight: dict[int, tuple[ClaimedJob, float]] = {}
        self.stats = dict.fromkeys(COUNTERS, 0)
        self.snapshot = DaemonSnapshot()
        self._rescan_request: str | None = None
        self._observer_restarts: list[float] = []
        self._db_ok = True
        now = time.monotonic()
        self._next = {"rescan": now + d.rescan_interval_s, "recheck": now, "reap": now + d.reap_interval_s,
                      "lease": now + d.lease_s / 4, "beat": now, "claim": now}
        roots = [str(r) for r in cfg.paths.watched]
        self.runner = BoundedRunner(d.check_timeout_s)
        self.intake = Intake(
            roots, settle_s=d.settle_s if not d.polling else max(d.settle_s, 2 * d.poll_interval_s),
            polling=d.polling, symlinks=d.symlinks,
            probe=lambda p: self.runner.call(probe_file, p, roots=roots, symlinks=d.symlinks,
                                             max_header_bytes=d.max_header_bytes))
        self.metrics = Metrics(d.metrics_listen, cfg.paths.products_db, source=cfg.source)
        wd = watchdog_interval_s()
        db_file = cfg.paths.products_db
        is_file = "://" not in str(db_file)
        self.health = HealthMonitor(
            state_dir=Path(db_file).parent if is_file else Path(cfg.paths.state_dir),
            db_file=Path(db_file) if is_file else None, stall_s=d.loop_stall_s,
            interval_s=min(wd or 1.0, 1.0), daemon_checks=self.healthy, status_text=self._status_text,
            watchdog=wd is not None)
        self.health.paused = True
        # one daemon per state directory and node (released by the kernel when we die)
        self.instance_lock = InstanceLock(cfg.paths.state_dir, self.node).acquire(owner=self.owner)
        self.db = open_products_db(cfg.paths.products_db)
        self.alerts = AlertDelivery(cfg.alerts, self.db, owner=self.owner)
        self.queue = JobQueue(self.db, owner=self.owner, lease_s=d.lease_s,
                              backoff_base_s=d.backoff_base_s, backoff_cap_s=d.backoff_cap_s,
                              max_interruptions=d.max_interruptions)
        self.queue_counts = QueueCounts(self.queue.counts)
        self.watcher = Watcher(cfg.paths.watched, polling=d.polling, poll_interval_s=d.poll_interval_s,
                               max_queue=d.max_event_queue)
        self.pool = make_pool(d)   # local worker processes, or a Dask cluster (dask_pool.py)

    # -- life cycle --------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        if not self.stopping:
            self.stopping = True
            self._arm_hard_exit()

    def _watch_signals_from_a_thread(self) -> None:
        """SIGTERM must work while the main thread is stuck in C (SQLite's busy wait on a
        lock held by another process, a hung read): the C-level handler writes the signal
        number to a wakeup pipe at once, and this thread arms the hard exit."""
        try:
            r, w = os.pipe()
            os.set_blocking(w, False)
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):   # not the main thread (tests): Python handlers only
            return
        stops = {int(signal.SIGTERM), int(signal.SIGINT)}

        def watch():
            while True:
                try:
                    data = os.read(r, 64)
                except OSError:
                    return
                if not data:
                    return
                if stops & set(data):
                    self.stopping = True
                    self._arm_hard_exit()

        threading.Thread(target=watch, name="signal-watch", daemon=True).start()

    def _arm_hard_exit(self) -> None:
        """Whatever happens, the process ends ``drain_timeout_s`` + 5 s after the signal, or
        3 s when it arrives before READY (jobs left running are re-queued by the next
        daemon: their owner is gone)."""
        if self._hard_exit is not None:
            return
        delay = self.cfg.daemon.drain_timeout_s + HARD_EXIT_GRACE_S
        if not self._ready:   # still starting: no job of ours runs, nothing to drain
            delay = min(delay, STARTUP_EXIT_S)
        self._hard_exit = threading.Timer(delay, self._force_exit)
        self._hard_exit.daemon = True
        self._hard_exit.start()

    def _force_exit(self) -> None:
        try:
            log.error("forced_exit", reason="the process did not end within the stop deadline",
                      drain_timeout_s=self.cfg.daemon.drain_timeout_s, ready=self._ready)
            import faulthandler
            import sys

            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where it was stuck
        finally:
            _kill_children()
            os._exit(0)

    def request_rescan(self, *_args) -> None:
        self._rescan_request = "SIGHUP"

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0 after a stop on request)."""
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
                    self._db_ok = False
                    self.health.tick_failed(exc)
                    self._rescan_request = "tick failed"   # re-discover the events it had taken
                    log.exception("tick_failed", error=f"{type(exc).__name__}: {exc}",
                                  consecutive=failures)
                    self._sleep(min(1.0 * failures, 5.0))
        finally:
            self.health.paused = True
            self.shutdown()
        return 0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def startup(self) -> None:
        # 1. jobs of daemons on this host that died: re-queue now (no worker of ours runs yet)
        gone = self._retry_until_stopped(
            lambda: filestore.dead_local_owners(self.db, exclude=self.owner), "startup_reap")
        if self.stopping:
            return
        reaped = self._retry_until_stopped(lambda: self.queue.reap_expired(owners_gone=gone), "startup_reap")
        self._retry_until_stopped(lambda: filestore.forget_owners(self.db, gone), "startup_reap")
        log.info("startup", owner=self.owner, node=self.node, pid=os.getpid(), products_db=mask_url(self.cfg.paths.products_db),
                 roots=[str(r) for r in self.cfg.paths.watched], workers=self.pool.size,
                 polling=self.cfg.daemon.polling, reaped=reaped, dead_owners=len(gone or ()))
        if self.stopping:
            return
        self.metrics.start()   # a port that cannot be bound stops the start-up here
        self.alerts.start()    # its own thread: a slow webhook never holds up this loop
        # 2. workers, 3. observer, 4. scan
        self.pool.start()
        self._start_watcher()
        known = self._retry_until_stopped(lambda: filestore.decided_keys(self.db), "startup_known")
        self.known = known or set()
        if self.stopping:
            return
        try:
            self.scan_all("startup")
        except Exception as exc:  # noqa: BLE001 - e.g. ENOSPC: the loop retries with a rescan
            self._rescan_request = "startup scan failed"
            log.error("startup_scan_failed", error=f"{type(exc).__name__}: {exc}")
        self._beat()
        self._ready = True
        sd_notify("READY=1", f"STATUS={self._status_text()}")
        log.info("ready", known_files=len(self.known), pending_files=len(self.intake))

    def _retry_until_stopped(self, fn, what: str):
        """Run a start-up database step; retry (database locked, disk full) until stopped."""
        delay = 0.5
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if self.stopping:
                    return None
                self.health.tick_failed(exc)
                log.warning(f"{what}_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                self._sleep(delay)
                if self.stopping:
                    return None
                delay = min(delay * 2, 5.0)

    def _start_watcher(self, timeout_s: float = 60.0) -> None:
        """Start the observer; a missing root (not mounted yet) is retried with back-off."""
        delay, deadline = 1.0, time.monotonic() + timeout_s
        while True:
            try:
                self.watcher.start()
                return
            except FileNotFoundError as exc:
                self.watcher.stop()
                if time.monotonic() + delay > deadline or self.stopping:
                    raise ConfigError("paths.image_dirs/mosaic_dirs", exc.filename or str(exc),
                                      "existing directories (or a parent in which to create them)",
                                      self.cfg.source) from None
                log.warning("watch_root_missing", error=str(exc), retry_in_s=delay)
                self._sleep(delay)

                delay = min(delay * 2, 10.0)

    def shutdown(self) -> None:
        """Drain: finish running jobs within ``drain_timeout_s``, hand back the rest.

        Every step is attempted even when an earlier one fails (a full disk, a
        locked database); the worker processes are always killed and reaped.
        """
        self._arm_hard_exit()
        unfinished: list[int] = []
        try:
            _quiet(sd_notify, "STOPPING=1", "STATUS=draining")
            log.info("stopping", running=len(self.inflight), drain_timeout_s=self.cfg.daemon.drain_timeout_s)
            _quiet(self._beat, state="draining")
            _quiet(self.watcher.stop)
            deadline = time.monotonic() + self.cfg.daemon.drain_timeout_s
            while self.inflight and time.monotonic() < deadline:
                try:
                    for outcome in self.pool.poll(0.2):
                        self._settle(outcome)
                    if time.monotonic() >= self._next["lease"]:
                        self._extend_leases()
                except Exception as exc:  # noqa: BLE001 - the database is failing: stop draining
                    log.error("drain_failed", error=f"{type(exc).__name__}: {exc}")
                    break
            unfinished = list(self.inflight)
        finally:
            _quiet(self.pool.shutdown, kill=True)
            _kill_children()
        for job_id in unfinished:
            try:
                handed = self.queue.release(job_id)
            except Exception as exc:  # noqa: BLE001 - its lease expires; a later daemon reaps it
                handed = False
                log.error("hand_back_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            log.warning("job_handed_back", job_id=job_id, path=self._job_path(job_id), released=handed)
            self.inflight.pop(job_id, None)
        _quiet(self._beat, state="stopped")
        _quiet(self.runner.close)
        _quiet(self.health.stop)
        _quiet(self.alerts.stop)
        _quiet(self.db.dispose)
        _quiet(self.metrics.stop)
        _quiet(self.instance_lock.release)
        log.info("stopped", handed_back=len(unfinished), **self.stats)
        # the hard-exit timer stays armed (a daemon thread): should interpreter exit hang
        # (a non-daemon thread stuck in a hung filesystem call), it still ends the process

    # -- the loop ------------------------------------------------------------------------
    def tick(self) -> None:
        d = self.cfg.daemon
        now = time.monotonic()
        # events in small batches within a time budget, so that a burst never keeps the
        # loop from dispatching, settling and beating; the rest stay queued for the next tick
        budget_end = time.monotonic() + EVENT_BUDGET_S
        for kind, path, event_type, _t in self._events(budget_end):
            self.health.progress()
            if kind == "dir":
                if is_fits_name(path):
                    self.consider(path, event=event_type)   # recorded as skipped (a directory)
                self.scan_dir(path, f"new directory ({event_type})")
            else:
                self.consider(path, event=event_type)
        reason = self.watcher.rescan.take() or self._rescan_request
        self._rescan_request = None
        if reason is None and now >= self._next["rescan"]:
            reason = "periodic"
        if reason is not None:
            self._rescan_request = reason   # kept until the scan succeeded
            if reason == "SIGHUP":
                notify_reloading(f"STATUS=reloading: {self._status_text()}")
            self.scan_all(reason)
            self._rescan_request = None
            self._next["rescan"] = time.monotonic() + d.rescan_interval_s
            if reason == "SIGHUP":
                sd_notify("READY=1", f"STATUS={self._status_text()}")
        if now >= self._next["recheck"]:
            self.recheck_pending()
            self._next["recheck"] = now + d.recheck_interval_s
        if now >= self._next["reap"]:
            reaped = self.queue.reap_expired()
            if reaped["pending"] or reaped["dead"]:
                log.warning("leases_expired", **reaped)
            self._next["reap"] = now + d.reap_interval_s
        self.dispatch()
        for outcome in self.pool.poll(0.02 if self.watcher.events.qsize() else 0.1):
            self._settle(outcome)
        if not self._workers_warm and self.pool.idle() + len(self.inflight) >= self.pool.size:
            self._workers_warm = True
            log.info("workers_ready", workers=self.pool.size,
                     after_s=round(time.time() - self.started_at, 1))
        if time.monotonic() >= self._next["lease"]:
            self._extend_leases()
        if time.monotonic() >= self._next["beat"]:
            self._beat()
            self._next["beat"] = time.monotonic() + d.heartbeat_interval_s
        self._check_watcher()
        self._publish_snapshot()
        self.metrics.on_tick(self.snapshot)

    def _events(self, budget_end: float):
        while not self.stopping and time.monotonic() < budget_end:
            batch = self.watcher.drain(50)
            if not batch:
                return
            yield from batch

    # -- files -------------------------------------------------------------------------
    def scan_all(self, reason: str) -> int:
        """Reconciliation scan of every watched tree; returns the number of new entries."""
        t0 = time.perf_counter()
        n = 0
        for root in self.cfg.paths.watched:
            n += self.scan_dir(root, None)
        log.info("rescan", reason=reason, new_files=n, duration_s=round(time.perf_counter() - t0, 3))
        return n

    def scan_dir(self, root, reason: str | None) -> int:
        n = 0
        for path, size, mtime_ns in scan_tree(root, stop=lambda: self.stopping):
            self.health.progress()
            if (db_path(path), size, mtime_ns) in self.known:
                continue
            entry = self.intake.waiting(path)
            if entry is not None and entry.key is not None and \
                    (entry.key.size, entry.key.mtime_ns) == (size, mtime_ns):
                continue   # undecided and unchanged: the re-check owns it
            if path in self.pb_waits:
                continue
            n += 1
            self.consider(path, event=None)
        if reason is not None and n:
            log.info("scanned_directory", path=printable(str(root)), reason=reason, new_files=n)
        return n

    def consider(self, path: str, *, event: str | None) -> None:
        """Give a candidate path (event or scan) to the intake and act on its decisions."""
        path = os.path.abspath(path)
        if not is_fits_name(path) or os.path.basename(path).startswith("."):
            return  # not a FITS name, or a hidden temporary/canary file (not even recorded)
        name = classify.classify_name(path)
        if name.role == "skip":
            try:
                st = os.lstat(path)
            except OSError:
                return
            key = FileKey(db_path(path), int(st.st_size), int(st.st_mtime_ns))
            if (key.path, key.size, key.mtime_ns) not in self.known:
                self._decide(key, "skipped", reason=name.reason)
            return
        self._apply(self.intake.observe(path, event))

    def recheck_pending(self) -> None:
        """Re-examine undecided files and PB waits."""
        self._apply(self.intake.poll())
        now = time.monotonic()
        for path, wait in list(self.pb_waits.items()):
            if now >= wait.until:
                self.pb_waits.pop(path, None)
                self.accept(path, wait.key, classify.classify_name(path), wait.cards, pb_waited=True)

    def _apply(self, decisions: list[Decision]) -> None:
        for dec in decisions:
            if dec.action == "forget":
                filestore.forget_incomplete(self.db, db_path(dec.path))
                continue
            key = FileKey(db_path(dec.path), dec.key.size, dec.key.mtime_ns)
            if (key.path, key.size, key.mtime_ns) in self.known:
                continue
            if dec.action == "skip":
                self._decide(key, "skipped", reason=dec.reason)
            elif dec.action == "waiting":
                filestore.record_file(self.db, key, "incomplete", reason=dec.reason)
            elif dec.action == "queue":
                if dec.reason:
                    log.warning("file_queued_unchecked", path=printable(dec.path), reason=dec.reason,
                                settle_s=self.intake.settle_s)
                self.accept(dec.path, key, classify.classify_name(dec.path), dec.cards,
                            reason=dec.reason or None)

    def accept(self, path: str, key: FileKey, name: classify.NameClass, cards: dict | None = None, *,
               pb_waited: bool = False, reason: str | None = None) -> None:
        """Queue a file (or skip it when a PB-corrected sibling supersedes it). ``reason``:
        why it was queued unchecked (kept on its ``files`` row; its job will say more)."""
        if name.role == "restored":
            sibling = classify.pb_sibling(path)
            if sibling is not None:
                self._decide(key, "skipped", reason=f"{name.reason}; superseded by the primary-beam-"
                                                   f"corrected {sibling.name}")
                return
            if self.cfg.daemon.pbcor_wait_s > 0 and not pb_waited:
                reason = (f"{name.reason}: waiting {self.cfg.daemon.pbcor_wait_s:g} s for a "
                          "primary-beam-corrected sibling")
                filestore.record_file(self.db, key, "incomplete", reason=reason)
                self.pb_waits[path] = _PBWait(key, time.monotonic() + self.cfg.daemon.pbcor_wait_s, cards)
                return
        kind = self._kind(path, cards)
        job_id, created = self.queue.enqueue(
            self.params, [(key.path, kind, None)], origin="daemon", idempotency_key=key.idempotency_key,
            max_attempts=self.cfg.daemon.max_attempts)
        self._decide(key, "queued", kind=kind, batch_id=job_id, reason=reason)
        if created:
            self.stats["queued"] += 1
            self._next["claim"] = 0.0
            log.info("file_queued", path=printable(path), kind=kind, job_id=job_id, size=key.size)
        if name.role == "pbcor":
            for restored in classify.restored_counterparts(path):
                wait = self.pb_waits.pop(str(restored), None)
                if wait is not None:
                    self._decide(wait.key, "skipped",
                                 reason=f"superseded by the primary-beam-corrected {Path(path).name}")

    def _kind(self, path: str, cards: dict | None) -> str:
        """``mosaic`` under a mosaic root or by its header (parsed by the bounded intake probe;
        no header is read here)."""
        if classify.under_any(path, self.mosaic_roots):
            return "mosaic"
        if cards is None:
            return "image"   # unreadable header: the job fails with the reason
        return classify.header_kind(cards)

    def _decide(self, key: FileKey, decision: str, *, kind=None, reason=None, batch_id=None) -> None:
        filestore.record_file(self.db, key, decision, kind=kind, reason=reason, batch_id=batch_id)
        self.known.add((key.path, key.size, key.mtime_ns))
        if decision == "skipped":
            self.stats["skipped"] += 1
            log.info("file_skipped", path=key.path, reason=reason)

    # -- jobs --------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Claim jobs while workers are idle."""
        if self.stopping or not self.pool.healthy() or time.monotonic() < self._next["claim"]:
            return
        while self.pool.idle() > 0:
            job = self.queue.claim()
            if job is None:
                # nothing due: poll the queue again in 1 s (or at once after a local enqueue)
                self._next["claim"] = time.monotonic() + 1.0
                return
            ctx = JobContext.from_claim(job, products_db=self.cfg.paths.products_db,
                                        registry_db=self.cfg.paths.registry_db,
                                        catalog_dir=self.cfg.paths.catalog_dir, lease_s=self.queue.lease_s)
            self.pool.submit(job.id, ctx)
            self.inflight[job.id] = (job, time.time())
            self.stats["claimed"] += 1
            log.info("job_started", job_id=job.id, attempt=job.attempts,
                     path=ctx.items[0]["fits_path"] if ctx.items else None, n_items=len(ctx.items))

    def _settle(self, o: Outcome) -> None:
        self._next["claim"] = 0.0   # a worker is free
        self.alerts.wake()          # the job may have recorded alerts
        entry = self.inflight.pop(o.job_id, None)
        if entry is None:
            return
        job, started = entry
        path = job.items[0].fits_path if job.items else None
        if o.status == "ok":
            try:
                summary = JobSummary.coerce(o.result)
            except TypeError as exc:
                summary = JobSummary(failed=1, permanent=False, error=str(exc))
            state = settle(self.queue, o.job_id, summary)
            error, durations = summary.error, summary.durations
            result = dataclasses.asdict(summary)
        elif o.status == "error":
            state = settle_error(self.queue, o.job_id, o.error, permanent=o.permanent)
            error, durations, result = o.error, None, None
        else:  # crashed, timeout: the worker died under a live daemon; the attempt counts
            state = settle_error(self.queue, o.job_id, o.error, permanent=False)
            error, durations, result = o.error, None, None
        key = {"done": "done", "failed": "failed", "dead": "dead", "pending": "retried"}.get(state)
        if key:
            self.stats[key] += 1
        self.metrics.on_settled(state=state, worker_status=o.status, result=result, error=error,
                                duration_s=o.duration_s)
        logf = log.info if state == "done" else log.warning
        logf("job_finished", job_id=o.job_id, path=path, outcome=state, worker_status=o.status,
             attempt=job.attempts, duration_s=round(o.duration_s, 3),
             wall_s=round(time.time() - started, 3), error=error, durations=durations,
             exitcode=o.exitcode)

    def _extend_leases(self) -> None:
        for job_id in list(self.inflight):
            if not self.queue.heartbeat(job_id):
                log.warning("lease_lost", job_id=job_id)
        self._next["lease"] = time.monotonic() + self.cfg.daemon.lease_s / 4

    def _job_path(self, job_id: int) -> str | None:
        entry = self.inflight.get(job_id)
        if entry and entry[0].items:
            return entry[0].items[0].fits_path
        return None

    # -- health ------------------------------------------------------------------------
    def files_waiting(self) -> int:
        """Files seen but not yet queued (still being written, or waiting for a PB sibling)."""
        return len(self.intake) + len(self.pb_waits)

    def _publish_snapshot(self) -> None:
        """Replace :attr:`snapshot` (read by metrics, the status line and the health thread)."""
        try:
            idle = int(self.pool.idle())
        except Exception:  # noqa: BLE001 - a pool being replaced
            idle = None
        try:
            ok, _ = self.healthy()
        except Exception:  # noqa: BLE001
            ok = False
        counters = dict(self.stats)
        pending, failed = self.queue_counts.get(counters)
        self.snapshot = DaemonSnapshot(
            busy=len(self.inflight), workers=self.pool.size, idle=idle,
            files_waiting=self.files_waiting(), healthy=ok, pending=pending, failed=failed,
            counters=MappingProxyType(counters))

    def _status_text(self) -> str:
        return self.metrics.status_line(self.snapshot)

    def _beat(self, state: str = "running") -> None:
        self._publish_snapshot()
        verdict, reasons = self.health.verdict
        text = self._status_text()
        if state == "running" and verdict != "ok":
            state, text = "degraded", f"{'; '.join(reasons)} ({text})"
        try:
            filestore.beat(self.db, self.owner, started_at=self.started_at, workers=self.pool.size,
                           state=state, status_text=text, node=self.node)
            self._db_ok = True
        except Exception as exc:  # noqa: BLE001 - reported through health
            self._db_ok = False
            log.error("heartbeat_failed", error=str(exc))

    def _check_watcher(self) -> None:
        if self.watcher.alive():
            return
        now = time.monotonic()
        self._observer_restarts = [t for t in self._observer_restarts if now - t < 600]
        if len(self._observer_restarts) >= MAX_OBSERVER_RESTARTS:
            return  # unhealthy: the watchdog pings stop and systemd restarts the service
        self._observer_restarts.append(now)
        log.error("observer_dead", restarts=len(self._observer_restarts))
        try:
            self.watcher.restart()
        except Exception as exc:  # noqa: BLE001
            log.error("observer_restart_failed", error=str(exc))
            return
        self.scan_all("observer restarted")

    def healthy(self) -> tuple[bool, str]:
        """The daemon's own checks (called by the health thread): observer and pool.

        Database and disk trouble is judged by the health monitor (degraded, not
        unhealthy: restarting would not help)."""
        if self.stopping:
            return True, "draining"
        if self.watcher.observer is None:
            return True, "starting"
        if not self.watcher.alive():
            now = time.monotonic()
            recent = [t for t in self._observer_restarts if now - t < 600]
            if len(recent) >= MAX_OBSERVER_RESTARTS:
                return False, "observer thread dead"
        if not self.pool.healthy():
            return False, self.pool.broken_reason or "pool broken"
        return True, "ok"


def _quiet(fn, *args, **kw):
    """Run one shutdown step; log and swallow its failure."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001
        log.error("shutdown_step_failed", step=getattr(fn, "__name__", str(fn)),
                  error=f"{type(exc).__name__}: {exc}")
        return None


def _kill_children() -> None:
    """SIGKILL and reap every multiprocessing child, so ``multiprocessing``'s atexit
    handler (which joins daemonic children after a SIGTERM they may ignore) never waits."""
    try:
        children = multiprocessing.active_children()
    except Exception:  # noqa: BLE001
        return
    for p in children:
        try:
            p.kill()
        except Exception:  # noqa: BLE001
            pass
    for p in children:
        try:
            p.join(2)
        except Exception:  # noqa: BLE001
            pass
