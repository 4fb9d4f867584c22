"""The health monitor (service/health.py) without subprocesses: an injected clock, a real
SQLite file locked by another connection, a notify socket nobody reads."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import time

from dsa110_contimg.service.health import (
    HealthMonitor, is_disk_full, read_health_file, sqlite_lock_held)
from dsa110_contimg.service.notify import sd_notify


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def monitor(tmp_path, **kw):
    clock = Clock()
    db = tmp_path / "p.sqlite3"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.close()
    kw.setdefault("stall_s", 5.0)
    return HealthMonitor(state_dir=tmp_path, db_file=db, clock=clock, **kw), clock, db


def test_ok_then_stalled_loop_is_unhealthy(tmp_path):
    m, clock, _ = monitor(tmp_path)
    assert m.assess() == ("ok", [])
    clock.t += 6
    verdict, reasons = m.assess()
    assert verdict == "unhealthy" and "stalled for 6 s" in reasons[0]
    m.paused = True                       # start-up / drain: not judged
    assert m.assess()[0] == "ok"
    m.paused = False
    m.tick_ok()
    assert m.assess() == ("ok", [])


def test_foreign_lock_makes_a_stall_degraded_not_unhealthy(tmp_path):
    m, clock, db = monitor(tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert sqlite_lock_held(db)
        assert m.assess()[0] == "ok"          # a brief lock is not reported
        clock.t += 6                           # held for 6 s and the loop is stuck on it
        verdict, reasons = m.assess()
        assert verdict == "degraded"
        assert any("stalled" in r for r in reasons) and any("lock held for 6 s" in r for r in reasons)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not sqlite_lock_held(db)
    m.tick_ok()
    assert m.assess() == ("ok", [])


def test_disk_full_tick_failures_are_degraded_and_written_to_the_health_file(tmp_path):
    m, clock, _ = monitor(tmp_path)
    exc = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(exc) and is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(RuntimeError("other"))
    m.tick_failed(exc)
    verdict, reasons = m.check_once()
    assert verdict == "degraded" and any("disk full" in r for r in reasons)
    data = read_health_file(tmp_path, max_age_s=60)
    assert data["verdict"] == "degraded" and data["pid"] == os.getpid()
    assert (tmp_path / "health.json").stat().st_size == 4096   # fixed size: rewritten in place
    clock.t += 31
    m.tick_ok()
    assert m.check_once() == ("ok", [])
    assert read_health_file(tmp_path, max_age_s=60)["verdict"] == "ok"
    assert read_health_file(tmp_path / "nowhere", max_age_s=60) is None


def test_daemon_checks_failing_is_unhealthy(tmp_path):
    m, _, _ = monitor(tmp_path, daemon_checks=lambda: (False, "pool broken"))
    assert m.assess() == ("unhealthy", ["pool broken"])


def test_watchdog_ping_only_when_not_unhealthy(tmp_path, monkeypatch):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "n.sock")
    srv.bind(path)
    srv.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    m, clock, _ = monitor(tmp_path, watchdog=True, status_text=lambda: "2/2 busy")
    m.check_once()
    assert srv.recv(4096).decode().split("\n") == ["WATCHDOG=1", "STATUS=2/2 busy"]
    clock.t += 10
    m.check_once()
    msg = srv.recv(4096).decode()
    assert "WATCHDOG=1" not in msg and msg.startswith("STATUS=unhealthy: main loop stalled")
    srv.close()


def test_sd_notify_never_blocks_on_a_full_socket(tmp_path, monkeypatch):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "full.sock")
    srv.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    t0 = time.monotonic()
    results = [sd_notify("STATUS=" + "x" * 1000) for _ in range(5000)]   # nobody reads
    assert time.monotonic() - t0 < 30
    assert results[0] is True and results[-1] is False
    srv.close()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert sd_notify("WATCHDOG=1") is False
