"""The photometry daemon: watch, classify, queue, run, settle; resume after restarts.

One process, one thread doing the work (the main loop); watchdog's observer
threads only put paths on a queue. Each loop iteration (:meth:`Daemon.tick`):

1. take filesystem events and consider each file (classification, completeness);
2. rescan the watched trees when due (start-up, every ``rescan_interval_s``,
   after an inotify overflow, a full event queue, a handler error, a restarted
   observer);
3. re-check files still incomplete (or waiting for a PB-corrected sibling);
4. reap expired leases when due;
5. claim jobs while workers are idle and hand them to the pool;
6. settle finished jobs (done / failed / retried / dead);
7. extend the leases of running jobs, beat the heartbeat row, ping the systemd
   watchdog if the health checks pass.

Durability: every decision is in the products database (``files``,
``batch_jobs``); the in-memory state is only a cache rebuilt from the DB and a
scan at start-up. Order at start-up: reap jobs of dead local daemons, start the
workers, start the observer, then scan (so nothing falls between scan and
watch), then ``READY=1``.

Signals: SIGTERM/SIGINT -> graceful stop (``STOPPING=1``, stop watching and
claiming, running jobs get ``drain_timeout_s`` to finish, the rest are killed
and handed back to ``pending`` without counting the attempt; exit 0).
SIGHUP -> rescan.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from dsa110_contimg.photometry.errors import ConfigError, InvalidImage, StoreError
from dsa110_contimg.service import classify
from dsa110_contimg.service.config import ServiceConfig
from dsa110_contimg.service.notify import sd_notify, watchdog_interval_s
from dsa110_contimg.service.dask_pool import make_pool
from dsa110_contimg.service.pool import Outcome, WorkerPool, resolve_task  # noqa: F401
from dsa110_contimg.service.watcher import Watcher, is_fits_name, scan_tree
from dsa110_contimg.store import files as filestore
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.urls import mask_url
from dsa110_contimg.store.files import FileKey
from dsa110_contimg.store.queue import ClaimedJob, JobQueue, default_owner

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Test hook: environment variable naming an injected fault (see :func:`_fault_from_env`).
FAULT_ENV = "CONTIMG_PHOTOMETRY_TEST_FAULT"
#: Observer restarts allowed per 10 minutes before the daemon stops pinging the watchdog.
MAX_OBSERVER_RESTARTS = 3


class _InjectedDeath(BaseException):
    """Raised by the test fault to kill the observer's dispatcher thread."""


def _fault_from_env():
    """``handler`` faults for tests: a file named ``RAISE-IN-HANDLER*.fits`` raises an
    ordinary exception in the event handler (must be survived); ``KILL-WATCHER*.fits``
    raises a BaseException that kills the dispatcher thread (must be detected)."""
    if os.environ.get(FAULT_ENV) != "handler":
        return None

    def fault(event):
        name = os.path.basename(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        if name.startswith("RAISE-IN-HANDLER"):
            raise RuntimeError("injected handler error")
        if name.startswith("KILL-WATCHER"):
            raise _InjectedDeath("injected dispatcher death")

    return fault


def check_fits_complete(path) -> int:
    """Completeness check: :func:`dsa110_contimg.photometry.image.check_fits_complete`."""
    from dsa110_contimg.photometry.image import check_fits_complete as check

    return check(path)


@dataclass
class _Candidate:
    """A file not decided yet: incomplete, not quiescent, or waiting for a PB sibling."""

    key: FileKey
    changed_at: float
    reason: str
    wait_until: float = 0.0
    waited_pb: bool = False
    recorded: bool = False


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
        self.owner = default_owner()
        try:  # fail at start-up, naming the key, rather than in every worker
            resolve_task(d.task)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError("daemon.executor", d.executor,
                              f"an importable 'module:function' ({type(exc).__name__}: {exc})",
                              cfg.source) from None
        if sqlite3.sqlite_version_info < (3, 35):
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: the queue needs >= 3.35 "
                             "(UPDATE ... RETURNING)")
        self.db = open_products_db(cfg.paths.products_db)
        self.queue = JobQueue(self.db, owner=self.owner, lease_s=d.lease_s,
                              backoff_base_s=d.backoff_base_s, backoff_cap_s=d.backoff_cap_s)
        self.mosaic_roots = [Path(p) for p in cfg.paths.mosaic_dirs]
        self.watcher = Watcher(cfg.paths.watched, polling=d.polling, poll_interval_s=d.poll_interval_s,
                               max_queue=d.max_event_queue, fault=_fault_from_env())
        self.pool = make_pool(d)   # local worker processes, or a Dask cluster (dask_pool.py)
        self.params = cfg.photometry_params()
        self.known: set[tuple[str, int, int]] = set()
        self.pending: dict[str, _Candidate] = {}
        self.inflight: dict[int, tuple[ClaimedJob, float]] = {}
        self.stopping = False
        self.started_at = time.time()
        self.stats = {"done": 0, "failed": 0, "retried": 0, "dead": 0, "queued": 0, "skipped": 0}
        self._rescan_request: str | None = None
        self._observer_restarts: list[float] = []
        self._db_ok = True
        now = time.monotonic()
        self._next = {"rescan": now + d.rescan_interval_s, "recheck": now, "reap": now + d.reap_interval_s,
                      "lease": now + d.lease_s / 4, "beat": now, "watchdog": now, "claim": now}
        self._wd_interval = watchdog_interval_s()

    # -- life cycle --------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        self.stopping = True

    def request_rescan(self, *_args) -> None:
        self._rescan_request = "SIGHUP"

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_rescan)
        self.startup()
        failures = 0
        try:
            while not self.stopping:
                try:
                    self.tick()
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - e.g. a database locked for too long
                    failures += 1
                    self._db_ok = False   # no watchdog ping until a tick succeeds again
                    log.exception("tick_failed", error=f"{type(exc).__name__}: {exc}",
                                  consecutive=failures)
                    if failures >= 30:
                        raise
                    time.sleep(min(1.0 * failures, 5.0))
        finally:
            self.shutdown()
        return 0

    def startup(self) -> None:
        # 1. jobs of daemons on this host that died: re-queue now (no worker of ours runs yet)
        gone = filestore.dead_local_owners(self.db, exclude=self.owner)
        reaped = self.queue.reap_expired(owners_gone=gone)
        filestore.forget_owners(self.db, gone)
        log.info("startup", owner=self.owner, pid=os.getpid(), products_db=mask_url(self.cfg.paths.products_db),
                 roots=[str(r) for r in self.cfg.paths.watched], workers=self.pool.size,
                 polling=self.cfg.daemon.polling, reaped=reaped, dead_owners=len(gone))
        # 2. workers, 3. observer, 4. scan
        self.pool.start()
        self._start_watcher()
        self.known = filestore.decided_keys(self.db)
        self.scan_all("startup")
        self._beat()
        sd_notify("READY=1", f"STATUS={self._status_text()}")
        log.info("ready", known_files=len(self.known), pending_files=len(self.pending))

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
                    self.pool.shutdown(kill=True)
                    raise ConfigError("paths.image_dirs/mosaic_dirs", exc.filename or str(exc),
                                      "existing directories (or a parent in which to create them)",
                                      self.cfg.source) from None
                log.warning("watch_root_missing", error=str(exc), retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def shutdown(self) -> None:
        """Drain: finish running jobs within ``drain_timeout_s``, hand back the rest."""
        sd_notify("STOPPING=1", "STATUS=draining")
        log.info("stopping", running=len(self.inflight), drain_timeout_s=self.cfg.daemon.drain_timeout_s)
        self._beat(state="draining")
        self.watcher.stop()
        deadline = time.monotonic() + self.cfg.daemon.drain_timeout_s
        while self.inflight and time.monotonic() < deadline:
            for outcome in self.pool.poll(0.2):
                self._settle(outcome)
            self._extend_leases()
            self._ping_watchdog(force_health=True)
        unfinished = list(self.inflight)
        self.pool.shutdown(kill=True)
        for job_id in unfinished:
            handed = self.queue.release(job_id)
            log.warning("job_handed_back", job_id=job_id, path=self._job_path(job_id), released=handed)
            self.inflight.pop(job_id, None)
        self._beat(state="stopped")
        self.db.dispose()
        log.info("stopped", handed_back=len(unfinished), **self.stats)

    # -- the loop ------------------------------------------------------------------------
    def tick(self) -> None:
        d = self.cfg.daemon
        now = time.monotonic()
        for kind, path, event_type, _t in self.watcher.drain(5000):
            if kind == "dir":
                self.scan_dir(path, f"new directory ({event_type})")
            else:
                self.consider(path, event=event_type)
        reason = self.watcher.rescan.take() or self._rescan_request
        self._rescan_request = None
        if reason is None and now >= self._next["rescan"]:
            reason = "periodic"
        if reason is not None:
            self.scan_all(reason)
            self._next["rescan"] = time.monotonic() + d.rescan_interval_s
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
        if time.monotonic() >= self._next["lease"]:
            self._extend_leases()
        if time.monotonic() >= self._next["beat"]:
            self._beat()
            self._next["beat"] = time.monotonic() + d.heartbeat_interval_s
        self._check_watcher()
        self._ping_watchdog()

    # -- files -------------------------------------------------------------------------
    def scan_all(self, reason: str) -> int:
        """Reconciliation scan of every watched tree; returns the number of new files."""
        t0 = time.perf_counter()
        n = 0
        for root in self.cfg.paths.watched:
            n += self.scan_dir(root, None)
        log.info("rescan", reason=reason, new_files=n, duration_s=round(time.perf_counter() - t0, 3))
        return n

    def scan_dir(self, root, reason: str | None) -> int:
        n = 0
        for path, size, mtime_ns in scan_tree(root):
            if (path, size, mtime_ns) in self.known:
                continue
            cand = self.pending.get(path)
            if cand is not None and (cand.key.size, cand.key.mtime_ns) == (size, mtime_ns):
                continue
            n += 1
            self.consider(path, event=None)
        if reason is not None and n:
            log.info("scanned_directory", path=str(root), reason=reason, new_files=n)
        return n

    def consider(self, path: str, *, event: str | None) -> None:
        """Decide what to do with a candidate file (event or scan)."""
        path = os.path.abspath(path)
        if not is_fits_name(path):
            return
        try:
            key = FileKey.of(path)
        except FileNotFoundError:
            self.pending.pop(path, None)
            return
        except OSError as exc:
            log.warning("stat_failed", path=path, error=str(exc))
            return
        triple = (key.path, key.size, key.mtime_ns)
        if triple in self.known or os.path.basename(path).startswith("."):
            return  # decided already, or a hidden temporary/canary file (not even recorded)
        name = classify.classify_name(path)
        if name.role == "skip":
            self._decide(key, "skipped", reason=name.reason)
            return
        now = time.monotonic()
        old = self.pending.get(path)
        if self.cfg.daemon.polling:
            # no close events: wait for (size, mtime) to be stable for settle_s
            if old is None or old.key != key:
                self.pending[path] = _Candidate(key, now, "waiting for the file to be quiescent",
                                                waited_pb=old.waited_pb if old else False)
            return
        try:
            check_fits_complete(path)
        except InvalidImage as exc:
            if old is None or old.key != key:
                # recorded in the DB by recheck_pending if still undecided a moment later
                # (most files being written in place are complete at their close event)
                self.pending[path] = _Candidate(key, now, exc.reason)
            return
        except OSError as exc:
            log.warning("check_failed", path=path, error=str(exc))
            return
        if old is not None and old.key == key and (event is None or old.wait_until):
            return  # undecided (scan hit, or waiting for a PB sibling): the re-check loop owns it
        self.accept(path, key, name)

    def recheck_pending(self) -> None:
        """Re-examine undecided files: changed, quiescent, PB wait over."""
        now = time.monotonic()
        settle = self.cfg.daemon.settle_s
        if self.cfg.daemon.polling:
            settle = max(settle, 2 * self.cfg.daemon.poll_interval_s)
        for path, cand in list(self.pending.items()):
            try:
                key = FileKey.of(path)
            except OSError:
                gone = self.pending.pop(path, None)
                if gone is not None and gone.recorded:
                    filestore.forget_incomplete(self.db, path)
                continue
            if key != cand.key:
                cand.key, cand.changed_at, cand.recorded = key, now, False
                continue
            if not cand.recorded and now - cand.changed_at >= 1.0 and not cand.wait_until:
                filestore.record_file(self.db, key, "incomplete", reason=cand.reason)
                cand.recorded = True
            if cand.wait_until and now < cand.wait_until:
                continue
            name = classify.classify_name(path)
            if cand.wait_until:  # PB wait over
                self.accept(path, key, name, pb_waited=True)
                continue
            if now - cand.changed_at < settle:
                continue
            try:
                check_fits_complete(path)
            except InvalidImage as exc:
                log.warning("file_incomplete_after_settle", path=path, reason=exc.reason, settle_s=settle)
            self.accept(path, key, name, pb_waited=cand.waited_pb)

    def accept(self, path: str, key: FileKey, name: classify.NameClass, *, pb_waited: bool = False) -> None:
        """Queue a file (or skip it when a PB-corrected sibling supersedes it)."""
        if name.role == "restored":
            sibling = classify.pb_sibling(path)
            if sibling is not None:
                self._decide(key, "skipped", reason=f"{name.reason}; superseded by the primary-beam-"
                                                   f"corrected {sibling.name}")
                return
            if self.cfg.daemon.pbcor_wait_s > 0 and not pb_waited:
                reason = (f"{name.reason}: waiting {self.cfg.daemon.pbcor_wait_s:g} s for a "
                          "primary-beam-corrected sibling")
                self.pending[path] = _Candidate(key, time.monotonic(), reason, waited_pb=True,
                                                wait_until=time.monotonic() + self.cfg.daemon.pbcor_wait_s,
                                                recorded=True)
                filestore.record_file(self.db, key, "incomplete", reason=reason)
                return
        kind = self._kind(path)
        job_id, created = self.queue.enqueue(
            self.params, [(path, kind, None)], origin="daemon", idempotency_key=key.idempotency_key,
            max_attempts=self.cfg.daemon.max_attempts)
        self._decide(key, "queued", kind=kind, batch_id=job_id)
        if created:
            self.stats["queued"] += 1
            self._next["claim"] = 0.0
            log.info("file_queued", path=path, kind=kind, job_id=job_id, size=key.size)
        if name.role == "pbcor":
            for restored in classify.restored_counterparts(path):
                cand = self.pending.pop(str(restored), None)
                if cand is not None:
                    self._decide(cand.key, "skipped",
                                 reason=f"superseded by the primary-beam-corrected {Path(path).name}")

    def _kind(self, path: str) -> str:
        if classify.under_any(path, self.mosaic_roots):
            return "mosaic"
        try:
            from astropy.io import fits

            return classify.header_kind(fits.getheader(path, 0))
        except Exception:  # noqa: BLE001 - an unreadable header fails in the job, with its reason
            return "image"

    def _decide(self, key: FileKey, decision: str, *, kind=None, reason=None, batch_id=None) -> None:
        filestore.record_file(self.db, key, decision, kind=kind, reason=reason, batch_id=batch_id)
        self.known.add((key.path, key.size, key.mtime_ns))
        self.pending.pop(key.path, None)
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
            items = [dict(id=i.id, fits_path=i.fits_path, kind=i.kind, data_id=i.data_id, status=i.status)
                     for i in job.items]
            args = (str(self.cfg.paths.products_db), str(self.cfg.paths.registry_db), job.id,
                    job.lease_owner, job.params, items, str(self.cfg.paths.catalog_dir))
            self.pool.submit(job.id, args)
            self.inflight[job.id] = (job, time.time())
            log.info("job_started", job_id=job.id, attempt=job.attempts,
                     path=items[0]["fits_path"] if items else None, n_items=len(items))

    def _settle(self, o: Outcome) -> None:
        self._next["claim"] = 0.0   # a worker is free
        entry = self.inflight.pop(o.job_id, None)
        if entry is None:
            return
        job, started = entry
        path = job.items[0].fits_path if job.items else None
        if o.status == "ok":
            from dsa110_contimg.photometry.worker import settle

            state = settle(self.queue, o.job_id, o.result)
            error = o.result.get("error") if isinstance(o.result, dict) else None
            durations = o.result.get("durations") if isinstance(o.result, dict) else None
        elif o.status == "error":
            state = self.queue.fail(o.job_id, o.error, retryable=not o.permanent) or "lease_lost"
            error, durations = o.error, None
        else:  # crashed, timeout
            state = self.queue.fail(o.job_id, o.error, retryable=True) or "lease_lost"
            error, durations = o.error, None
        key = {"done": "done", "failed": "failed", "dead": "dead", "pending": "retried"}.get(state)
        if key:
            self.stats[key] += 1
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
    def _status_text(self) -> str:
        return (f"{len(self.inflight)}/{self.pool.size} busy, {self.stats['done']} done, "
                f"{self.stats['failed'] + self.stats['dead']} failed, {len(self.pending)} files waiting")

    def _beat(self, state: str = "running") -> None:
        try:
            filestore.beat(self.db, self.owner, started_at=self.started_at, workers=self.pool.size,
                           state=state, status_text=self._status_text())
            self._db_ok = True
        except Exception as exc:  # noqa: BLE001 - reported through health (no watchdog ping)
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
        """Health checks gating the watchdog ping."""
        if not self.watcher.alive():
            return False, "observer thread dead"
        if not self.pool.healthy():
            return False, self.pool.broken_reason or "pool broken"
        if not self._db_ok:
            return False, "database not writable"
        return True, "ok"

    def _ping_watchdog(self, *, force_health: bool = False) -> None:
        if self._wd_interval is None or time.monotonic() < self._next["watchdog"]:
            return
        if not force_health and not self.watcher.alive():
            self._check_watcher()   # restart it now if the budget allows (it may have just died)
        ok, why = (True, "draining") if force_health and self.pool.healthy() else self.healthy()
        if ok:
            sd_notify("WATCHDOG=1", f"STATUS={self._status_text()}")
        else:
            log.error("unhealthy", reason=why)
            sd_notify(f"STATUS=unhealthy: {why}")
        self._next["watchdog"] = time.monotonic() + self._wd_interval
