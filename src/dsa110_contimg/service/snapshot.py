"""What the daemon's loop looks like, as one immutable value for metrics and the status line.

The main loop builds a :class:`DaemonSnapshot` at the end of every iteration and
publishes it by replacing one attribute; :mod:`~dsa110_contimg.service.metrics`
(the gauges, the systemd ``STATUS=`` line) and the health thread read the last one.
Nobody reads the daemon's own fields from another thread, and the status line and
the gauges always agree, coming from the same value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

#: Counters kept by the daemon since it started.
COUNTERS = ("queued", "skipped", "claimed", "done", "failed", "retried", "dead")
#: Seconds after which the queue's counts are read again even when this daemon did nothing.
QUEUE_REFRESH_S = 5.0


@dataclass(frozen=True)
class DaemonSnapshot:
    """The daemon at the end of one loop iteration.

    Attributes
    ----------
    busy : int
        Jobs running in this daemon's workers.
    workers : int
        Size of the worker pool.
    idle : int or None
        Idle workers (None: the pool could not say, e.g. while being replaced).
    files_waiting : int
        Files seen but not queued or skipped yet: still being written or settling, or a
        restored image waiting for its primary-beam-corrected partner.
    healthy : bool
        The daemon's own checks (observer, pool) pass.
    pending, failed : int or None
        Jobs pending, and failed or dead, in the queue (every daemon's; the same counts as
        ``status``); None until first read.
    counters : mapping
        :data:`COUNTERS` since this daemon started.
    """

    busy: int = 0
    workers: int = 0
    idle: int | None = None
    files_waiting: int = 0
    healthy: bool = True
    pending: int | None = None
    failed: int | None = None
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(COUNTERS, 0)))


class QueueCounts:
    """The queue's pending and failed counts, read again at once when this daemon's
    counters changed (it queued, claimed or settled a job) and otherwise every
    ``refresh_s`` (other daemons, operator actions); a failed read keeps the last values.

    Parameters
    ----------
    read : callable
        ``read() -> {state: count}`` (:meth:`JobQueue.counts`).
    """

    def __init__(self, read: Callable[[], Mapping[str, int]], *, refresh_s: float = QUEUE_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic):
        self.read = read
        self.refresh_s = refresh_s
        self.clock = clock
        self._at: float | None = None
        self._seen: tuple | None = None
        self.pending: int | None = None
        self.failed: int | None = None

    def get(self, counters: Mapping[str, int]) -> tuple[int | None, int | None]:
        """``(pending, failed)``, failed counting failed and dead jobs."""
        now, seen = self.clock(), tuple(counters.get(k, 0) for k in COUNTERS)
        if self._at is None or seen != self._seen or now - self._at >= self.refresh_s:
            try:
                counts = self.read()
            except Exception:  # noqa: BLE001 - a locked database: the last values stand
                return self.pending, self.failed
            self._at, self._seen = now, seen
            self.pending = int(counts.get("pending", 0))
            self.failed = int(counts.get("failed", 0)) + int(counts.get("dead", 0))
        return self.pending, self.failed


__all__ = ["COUNTERS", "DaemonSnapshot", "QueueCounts"]
