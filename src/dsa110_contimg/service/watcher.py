"""Filesystem watching: watchdog observers feeding a bounded in-memory queue.

Events are *hints*; the database is the source of truth and the daemon
reconciles by scanning (:func:`scan_tree`) at start-up, periodically and after
any sign of lost events (inotify queue overflow, a full event queue, an
observer that died).

* Ready events (watchdog 7.x): ``FileClosedEvent`` (written in place),
  ``FileMovedEvent`` (its ``dest_path``: renamed into place) and
  ``FileCreatedEvent`` (moved in from another directory, hard-linked). Files
  must match ``**/*.fits`` (watchdog >= 7 uses ``PurePath.full_match``; a bare
  ``*.fits`` matches nothing).
* The handler runs in the observer thread under its lock: it only puts a tuple
  on a :class:`queue.Queue` and is wrapped so that no exception can kill the
  dispatcher thread (watchdog#427/#793: an exception there silences every watch).
* A ``logging.Handler`` on ``watchdog.observers.inotify_c`` turns the
  "Inotify queue overflowed" warning into a rescan request.
* A new directory gets a ``("dir", path)`` item: files created in it before its
  watch was added are found by scanning it.
* A dead observer is restarted (:meth:`Watcher.revive`) at most
  :data:`MAX_OBSERVER_RESTARTS` times in :data:`RESTART_WINDOW_S`; after that the daemon
  reports itself unhealthy.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import structlog
from watchdog.events import (
    DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent,
    FileSystemEventHandler,
)

from dsa110_contimg.core.enums import is_fits_name  # noqa: F401 - the one FITS-name rule, re-exported

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Observer restarts allowed per :data:`RESTART_WINDOW_S` before the daemon gives up (it then
#: stops pinging the watchdog and systemd restarts the service).
MAX_OBSERVER_RESTARTS = 3
RESTART_WINDOW_S = 600.0


class RescanFlag:
    """A thread-safe "events were lost, rescan" flag with the reason."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reason: str | None = None

    def set(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def take(self) -> str | None:
        with self._lock:
            reason, self._reason = self._reason, None
            return reason


class _OverflowLogHandler(logging.Handler):
    """Sets the rescan flag when watchdog logs an inotify queue overflow."""

    def __init__(self, flag: RescanFlag):
        super().__init__(level=logging.WARNING)
        self.flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self.flag.set("inotify queue overflow")
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            pass


class EnqueueHandler(FileSystemEventHandler):
    """Puts ``(kind, path, event_type, monotonic time)`` on a bounded queue.

    O(1) work only; any exception is caught and counted (``errors``) so the
    dispatcher thread survives. A full queue drops the event and sets the
    rescan flag.
    """

    def __init__(self, events: queue.Queue, flag: RescanFlag):
        super().__init__()
        self.events = events
        self.flag = flag
        self.errors = 0
        self.last_event = time.monotonic()

    def dispatch(self, event) -> None:  # replaces the per-type dispatch: one guarded entry point
        try:
            self.last_event = time.monotonic()
            item = self._item(event)
            if item is not None:
                try:
                    self.events.put_nowait(item)
                except queue.Full:
                    self.flag.set("event queue full")
        except Exception:  # noqa: BLE001 - never let an exception kill the dispatcher
            self.errors += 1
            self.flag.set("event handler error")

    @staticmethod
    def _item(event):
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            path = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            return ("dir", os.fsdecode(path), event.event_type, time.monotonic())
        if isinstance(event, FileMovedEvent):
            dest = os.fsdecode(event.dest_path)
            if dest and is_fits_name(dest):
                return ("file", dest, "moved", time.monotonic())
            return None
        if isinstance(event, (FileClosedEvent, FileCreatedEvent)):
            src = os.fsdecode(event.src_path)
            if is_fits_name(src):
                return ("file", src, event.event_type, time.monotonic())
        return None


class Watcher:
    """Observers on the watched roots (inotify, or polling for network filesystems).

    Parameters
    ----------
    roots : list of Path
        Directories to watch recursively. A missing root is created when its
        parent exists; otherwise :meth:`start` raises FileNotFoundError.
    polling : bool
        Use ``PollingObserver`` (no Closed events; the daemon applies
        quiescence instead).
    poll_interval_s : float
        Polling interval.
    max_queue : int
        Bound of the event queue.
    """

    def __init__(self, roots, *, polling: bool = False, poll_interval_s: float = 5.0,
                 max_queue: int = 100_000):
        self.roots = [Path(r) for r in roots]
        self.polling = polling
        self.poll_interval_s = poll_interval_s
        self.events: queue.Queue = queue.Queue(maxsize=max_queue)
        self.rescan = RescanFlag()
        self.handler = EnqueueHandler(self.events, self.rescan)
        self.observer = None
        self._log_handler = _OverflowLogHandler(self.rescan)
        self.restarts = 0
        self._restart_times: list[float] = []

    def _make_observer(self):
        if self.polling:
            from watchdog.observers.polling import PollingObserver
            return PollingObserver(timeout=self.poll_interval_s)
        from watchdog.observers import Observer
        return Observer(timeout=0.5)

    def start(self) -> None:
        """Schedule every root and start the observer thread."""
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._log_handler)
        observer = self._make_observer()
        for root in self.roots:
            if not root.exists() and root.parent.is_dir():
                root.mkdir(exist_ok=True)
            observer.schedule(self.handler, str(root), recursive=True)
        observer.start()
        self.observer = observer

    def stop(self, timeout: float = 5.0) -> None:
        if self.observer is not None:
            try:
                self.observer.stop()
                self.observer.join(timeout)
            except Exception:  # noqa: BLE001 - stopping a broken observer must not raise
                pass
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._log_handler)

    def restart(self) -> None:
        """Replace a dead observer (the caller rescans afterwards)."""
        self.stop()
        self.restarts += 1
        self.start()

    def start_when_mounted(self, timeout_s: float, sleep: Callable[[float], None],
                           stopping: Callable[[], bool]) -> None:
        """:meth:`start`, retrying with back-off while a root is missing (not mounted yet);
        FileNotFoundError after ``timeout_s`` or when ``stopping()``."""
        delay, deadline = 1.0, time.monotonic() + timeout_s
        while True:
            try:
                self.start()
                return
            except FileNotFoundError as exc:
                self.stop()
                if time.monotonic() + delay > deadline or stopping():
                    raise
                log.warning("watch_root_missing", error=str(exc), retry_in_s=delay)
                sleep(delay)
                delay = min(delay * 2, 10.0)

    def _recent_restarts(self) -> list[float]:
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < RESTART_WINDOW_S]
        return self._restart_times

    def revive(self) -> bool:
        """Restart a dead observer, at most :data:`MAX_OBSERVER_RESTARTS` times per
        :data:`RESTART_WINDOW_S`; True when it was restarted (the caller rescans)."""
        if self.alive() or len(self._recent_restarts()) >= MAX_OBSERVER_RESTARTS:
            return False   # alive, or given up: unhealthy, systemd restarts the service
        self._restart_times.append(time.monotonic())
        log.error("observer_dead", restarts=len(self._restart_times))
        try:
            self.restart()
        except Exception as exc:  # noqa: BLE001
            log.error("observer_restart_failed", error=str(exc))
            return False
        return True

    def gave_up(self) -> bool:
        """The observer is dead and was restarted too often to try again."""
        return not self.alive() and len(self._recent_restarts()) >= MAX_OBSERVER_RESTARTS

    def alive(self) -> bool:
        """Observer thread and every emitter thread alive."""
        obs = self.observer
        if obs is None or not obs.is_alive():
            return False
        try:
            emitters = list(obs.emitters)
        except Exception:  # noqa: BLE001
            return False
        return all(e.is_alive() for e in emitters)

    def drain(self, limit: int = 10_000) -> list[tuple]:
        """Take up to ``limit`` queued events without blocking."""
        out = []
        for _ in range(limit):
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out


def scan_tree(root: str | os.PathLike):
    """Yield ``(path, size, mtime_ns)`` of every FITS-named regular file under ``root``
    (:func:`dsa110_contimg.service.intake.scan_tree` with ``regular_only``)."""
    from dsa110_contimg.service.intake import scan_tree as _scan

    return _scan(root, regular_only=True)
