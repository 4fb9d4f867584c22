"""systemd notification protocol (``sd_notify``) without libsystemd.

One ``AF_UNIX``/``SOCK_DGRAM`` datagram of newline-separated ``KEY=VALUE``
lines to ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
Without the variable every call is a no-op and returns False. Keys used by the
daemon: ``READY=1``, ``STATUS=<text>``, ``WATCHDOG=1``, ``STOPPING=1``,
``RELOADING=1`` with ``MONOTONIC_USEC`` (:func:`notify_reloading`).
"""

from __future__ import annotations

import os
import socket
import time


def sd_notify(*lines: str) -> bool:
    """Send ``lines`` to systemd; True when a datagram was sent (never blocks: False when
    the socket's queue is full or nobody listens)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    # non-blocking: a receiver that does not read (full socket queue) must never stall the
    # daemon's loop or its shutdown; the datagram is dropped instead
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
        try:
            sock.connect(addr)
            sock.send("\n".join(lines).encode("utf-8"))
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (the ping period), or None when not enabled.

    ``$WATCHDOG_PID``, when set, must be this process.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


def notify_reloading(*extra: str) -> bool:
    """``RELOADING=1`` with ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, as systemd requires for
    ``Type=notify-reload``); send ``READY=1`` when the reload is done."""
    return sd_notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", *extra)
