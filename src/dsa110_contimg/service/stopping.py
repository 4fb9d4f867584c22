"""How the daemon process stops: signals, the hard exit, the worker processes reaped.

SIGTERM/SIGINT ask for a graceful stop (:attr:`StopControl.stopping`) from any state
(start-up, a failing database, a full disk) and arm a hard exit: whatever happens, the
process ends ``drain_timeout_s`` + :data:`HARD_EXIT_GRACE_S` after the signal, or after
:data:`STARTUP_EXIT_S` when it arrives before READY (no job of ours runs yet; jobs left
running are re-queued by the next daemon, their owner being gone). SIGHUP asks for a
rescan. The signal also reaches a thread through a wakeup pipe, so it works while the
main thread is stuck in C (SQLite's busy wait on a lock another process holds, a hung
read).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import Callable

import structlog

log = structlog.get_logger("dsa110_contimg.service.daemon")

#: Seconds beyond ``drain_timeout_s`` after which a stopping daemon exits regardless.
HARD_EXIT_GRACE_S = 5.0
#: Seconds after a SIGTERM received during start-up (before READY) after which the daemon exits.
STARTUP_EXIT_S = 3.0


class StopControl:
    """The stop request, the hard-exit timer and the signal handlers of one daemon.

    Parameters
    ----------
    drain_timeout_s : float
        Seconds running jobs get to finish after a stop request.
    on_rescan : callable
        Called (in the signal handler) on SIGHUP.
    """

    def __init__(self, drain_timeout_s: float, on_rescan: Callable[[], None]):
        self.drain_timeout_s = float(drain_timeout_s)
        self.on_rescan = on_rescan
        self.stopping = False
        self.ready = False     # set at READY: a later stop drains instead of exiting quickly
        self._hard_exit: threading.Timer | None = None

    def install(self) -> None:
        """Signal handlers, and the thread that sees SIGTERM while the main thread is in C."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.on_rescan())
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
                    self.request_stop()

        threading.Thread(target=watch, name="signal-watch", daemon=True).start()

    def request_stop(self, *_args) -> None:
        self.stopping = True
        self.arm_hard_exit()

    def arm_hard_exit(self) -> None:
        """Start the timer that ends the process (see the module docstring); once."""
        if self._hard_exit is not None:
            return
        delay = self.drain_timeout_s + HARD_EXIT_GRACE_S
        if not self.ready:
            delay = min(delay, STARTUP_EXIT_S)
        self._hard_exit = threading.Timer(delay, self._force_exit)
        self._hard_exit.daemon = True
        self._hard_exit.start()

    def _force_exit(self) -> None:
        try:
            log.error("forced_exit", reason="the process did not end within the stop deadline",
                      drain_timeout_s=self.drain_timeout_s, ready=self.ready)
            import faulthandler
            import sys

            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where it was stuck
        finally:
            kill_children()
            os._exit(0)


def quiet(fn, *args, **kw):
    """Run one shutdown step; log and swallow its failure."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001
        log.error("shutdown_step_failed", step=getattr(fn, "__name__", str(fn)),
                  error=f"{type(exc).__name__}: {exc}")
        return None


def kill_children() -> None:
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


__all__ = ["HARD_EXIT_GRACE_S", "STARTUP_EXIT_S", "StopControl", "kill_children", "quiet"]
