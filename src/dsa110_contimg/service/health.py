"""Liveness of the daemon, judged from outside its main loop.

A :class:`HealthMonitor` thread runs beside the main loop and, every
``interval_s``:

* measures how long ago the loop last completed a tick (``stall``);
* probes the products database for a write lock held by another process
  (SQLite: ``BEGIN IMMEDIATE`` with a zero timeout, on its own connection;
  a lock seen continuously for ``lock_grace_s`` (3 s) while the loop has not
  completed a tick for as long counts as held);
* checks the free space of the state directory (``ENOSPC``) and remembers a
  "disk full" error reported by the loop;
* asks the daemon's own checks (observer alive, pool healthy).

It then sends ``WATCHDOG=1`` + ``STATUS=...`` to systemd and writes
``health.json`` in the state directory (atomically). The verdict:

``ok``
    everything fine;
``degraded``
    alive, but held up by something outside the process: a database lock held
    by another process, a full disk, failing ticks. The watchdog is still
    pinged (restarting would not help), ``status`` says ``degraded`` with the
    reason;
``unhealthy``
    the loop stalled with no outside cause for longer than ``stall_s``, or the
    daemon's own checks fail: no watchdog ping, so systemd restarts the
    service.

The monitor never touches the daemon's database engine (its own short
``sqlite3`` connection only) and never raises.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import structlog

from dsa110_contimg.service.notify import sd_notify

log = structlog.get_logger("dsa110_contimg.service.health")

#: Free bytes below which the state directory counts as full.
MIN_FREE_BYTES = 1 << 20
HEALTH_FILE = "health.json"
HEALTH_FILE_BYTES = 4096


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT, or SQLite's "database or disk is full"."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "disk is full" in text or "no space left" in text:
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
    return False


def is_db_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "lock timeout" in text


def sqlite_lock_held(db_file: str | os.PathLike) -> bool:
    """True when another connection holds the write lock (probe: ``BEGIN IMMEDIATE``, no wait)."""
    try:
        con = sqlite3.connect(f"file:{os.fspath(db_file)}?mode=rw", uri=True, timeout=0,
                              isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return is_db_locked(exc)
    finally:
        con.close()


def free_bytes(path: str | os.PathLike) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class HealthMonitor:
    """The health thread (see the module docstring).

    Parameters
    ----------
    state_dir : Path
        Where ``health.json`` is written and free space is checked.
    db_file : Path or None
        The SQLite products database (None for a server database: no lock probe).
    stall_s : float
        A loop without a completed tick for this long is stalled (s).
    interval_s : float
        Period of the checks; the watchdog ping period when systemd asks for one.
    daemon_checks : callable
        ``() -> (ok, reason)``: the daemon's own checks.
    status_text : callable
        ``() -> str`` for ``STATUS=``.
    watchdog : bool
        Send ``WATCHDOG=1`` pings.
    """

    def __init__(self, *, state_dir, db_file=None, stall_s: float = 30.0, interval_s: float = 1.0,
                 daemon_checks: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
                 status_text: Callable[[], str] = lambda: "", watchdog: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.state_dir = Path(state_dir)
        self.db_file = None if db_file is None else Path(db_file)
        self.stall_s = float(stall_s)
        self.interval_s = float(interval_s)
        self.daemon_checks = daemon_checks
        self.status_text = status_text
        self.watchdog = watchdog
        self.clock = clock
        self.last_tick = clock()
        self.tick_error: str | None = None
        self.tick_failures = 0
        self.disk_full_at: float | None = None
        self._locked_since: float | None = None
        self.lock_grace_s = 3.0
        self.verdict = ("ok", [])
        self.paused = False           # True while starting up / draining (no stall judgement)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reports from the main loop ----------------------------------------------------
    def tick_ok(self) -> None:
        self.last_tick = self.clock()
        self.tick_failures = 0
        self.tick_error = None

    def progress(self) -> None:
        """The loop is making progress inside a long tick (a burst of events, a big scan)."""
        self.last_tick = self.clock()

    def tick_failed(self, exc: BaseException) -> None:
        self.last_tick = self.clock()
        self.tick_failures += 1
        if is_disk_full(exc):
            self.disk_full_at = self.clock()
            self.tick_error = "disk full (ENOSPC)"
        elif is_db_locked(exc):
            self.tick_error = "database locked"
        else:
            self.tick_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    # -- judgement -----------------------------------------------------------------------
    def assess(self) -> tuple[str, list[str]]:
        """``(verdict, reasons)`` with verdict ``ok``, ``degraded`` or ``unhealthy``."""
        now = self.clock()
        outside: list[str] = []
        age = now - self.last_tick
        if self.db_file is not None and self.db_file.exists():
            if sqlite_lock_held(self.db_file):
                self._locked_since = now if self._locked_since is None else self._locked_since
                # reported only when the loop is held up (not for our own workers' writes)
                if now - self._locked_since >= self.lock_grace_s and \
                        (age >= self.lock_grace_s or self.tick_failures):
                    outside.append(f"database write lock held for {now - self._locked_since:.0f} s")
            else:
                self._locked_since = None
        free = free_bytes(self.state_dir)
        if free is not None and free < MIN_FREE_BYTES:
            outside.append(f"disk full: {free} bytes free in {self.state_dir}")
        elif self.disk_full_at is not None and now - self.disk_full_at < 30.0:
            outside.append("disk full (ENOSPC) reported by the last ticks")
        if self.tick_failures:
            outside.append(f"{self.tick_failures} failing ticks ({self.tick_error})")
        ok, why = self.daemon_checks()
        if not ok:
            return "unhealthy", [why] + outside
        if age > self.stall_s and not self.paused:
            stalled = f"main loop stalled for {age:.0f} s"
            if outside:  # held up by something outside: alive, degraded
                return "degraded", [stalled] + outside
            return "unhealthy", [stalled]
        return ("degraded", outside) if outside else ("ok", [])

    def check_once(self) -> tuple[str, list[str]]:
        try:
            verdict, reasons = self.assess()
        except Exception as exc:  # noqa: BLE001 - the monitor never dies
            verdict, reasons = "degraded", [f"health check error: {exc}"]
        changed = verdict != self.verdict[0] or reasons[:1] != self.verdict[1][:1]
        self.verdict = (verdict, reasons)
        if changed:
            (log.info if verdict == "ok" else log.warning)("health", verdict=verdict, reasons=reasons)
        text = self._safe_status_text()
        if verdict == "ok":
            status = text
        elif verdict == "unhealthy":
            status = f"unhealthy: {'; '.join(reasons)}"
        else:
            status = f"degraded: {'; '.join(reasons)} ({text})"
        try:
            if verdict != "unhealthy" and self.watchdog:
                sd_notify("WATCHDOG=1", f"STATUS={status}")
            elif changed or self.watchdog:
                sd_notify(f"STATUS={status}")
        except OSError:
            pass
        self._write_file(verdict, reasons)
        return verdict, reasons

    def _safe_status_text(self) -> str:
        try:
            return self.status_text()
        except Exception:  # noqa: BLE001
            return ""

    def _write_file(self, verdict: str, reasons: list[str]) -> None:
        """``health.json``, padded to a fixed 4096 bytes and overwritten in place once it
        exists, so it can still be updated on a full disk (no new blocks needed)."""
        path = self.state_dir / HEALTH_FILE
        tmp = self.state_dir / f".{HEALTH_FILE}.{os.getpid()}"
        text = json.dumps({"pid": os.getpid(), "time": time.time(), "verdict": verdict,
                           "reasons": [r[:300] for r in reasons[:8]]})
        data = text.encode().ljust(HEALTH_FILE_BYTES)[:HEALTH_FILE_BYTES]
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                try:
                    if os.fstat(fd).st_size == HEALTH_FILE_BYTES:
                        os.pwrite(fd, data, 0)
                        return
                finally:
                    os.close(fd)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:   # ENOSPC: the status CLI sees an old file and a stale heartbeat
            try:
                tmp.unlink()
            except OSError:
                pass

    # -- thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def read_health_file(state_dir, *, max_age_s: float) -> dict | None:
    """The daemon's last ``health.json`` when written within ``max_age_s`` by a live process."""
    path = Path(state_dir) / HEALTH_FILE
    try:
        data = json.loads(path.read_bytes().decode().strip())
        if time.time() - float(data["time"]) > max_age_s:
            return None
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data
