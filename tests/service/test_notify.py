"""sd_notify: the protocol on a datagram socket and the watchdog interval (a real daemon's
handshake: tests/system/test_notify.py)."""

from __future__ import annotations

import pytest

from dsa110_contimg.service.notify import sd_notify, watchdog_interval_s
from harness import NotifySocket

pytestmark = pytest.mark.timeout(180)


def test_sd_notify_protocol(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False          # no socket: no-op
    sock = NotifySocket(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    assert sd_notify("READY=1", "STATUS=hello world")
    sock.pump(0.3)
    assert sock.messages[0][1] == "READY=1\nSTATUS=hello world"
    sock.close()


def test_sd_notify_abstract_socket(monkeypatch):
    import socket
    import os

    name = f"contimg-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert sd_notify("WATCHDOG=1")
    assert s.recv(100) == b"WATCHDOG=1"
    s.close()


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")   # meant for another process
    assert watchdog_interval_s() is None
