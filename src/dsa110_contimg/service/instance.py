"""One daemon per configuration, or many on purpose: the instance lock.

A daemon takes an advisory lock (``fcntl.flock``, exclusive, non-blocking) on
``<state_dir>/daemon-<node>.lock`` before it opens the databases and holds it
for its whole life; the kernel releases it when the process dies, however it
dies, so a stale lock file never blocks a restart. A second daemon started on
the same state directory with the same node name is refused with a one-line
reason naming the running one (pid, node, start time from the lock file).

Running several daemons against the same products database on purpose is
allowed: give each its own ``[daemon] node`` (or its own ``state_dir``). Each
instance writes its own heartbeat row (``heartbeats.node``), and ``status``
lists every live instance.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import time
from pathlib import Path

from dsa110_contimg.core.errors import PhotometryError


class InstanceLocked(PhotometryError):
    """Another daemon already runs with this state directory and node name."""


class InstanceLock:
    """The advisory lock of one daemon instance (see the module docstring).

    Parameters
    ----------
    state_dir : path
        The configuration's ``paths.state_dir`` (created when missing).
    node : str
        The instance's node name (``[daemon] node``, default the host name).
    """

    def __init__(self, state_dir, node: str):
        self.state_dir = Path(state_dir)
        self.node = node
        self.path = self.state_dir / f"daemon-{node}.lock"
        self.fd: int | None = None

    def acquire(self, *, owner: str = "") -> "InstanceLock":
        """Take the lock or raise :class:`InstanceLocked` naming the holder."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._describe(fd)
            os.close(fd)
            raise InstanceLocked(
                f"another daemon ({holder}) already runs on this state directory as node "
                f"'{self.node}': stop it first, or give this one another [daemon] node to run "
                "a second instance on purpose", self.path) from None
        except OSError:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "node": self.node, "owner": owner, "started_at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    @staticmethod
    def _describe(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        started = info.get("started_at")
        when = (_dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds")
                if isinstance(started, (int, float)) else "?")
        return f"pid {info.get('pid', '?')}, started {when}"

    def release(self) -> None:
        """Drop the lock (also done by the kernel when the process exits)."""
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
