"""The systemd handshake and the health-gated watchdog of a real daemon process
(service/notify.py, service/health.py)."""

from __future__ import annotations

import signal
import time

import pytest

from harness import NotifySocket, Service, drop

pytestmark = pytest.mark.timeout(180)

def _observer_deaths(proc) -> int:
    return proc.logfile.read_text().count('"event": "observer_dead"')


def test_daemon_handshake_and_health_gated_watchdog(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    svc = Service(tmp_path / "svc", workers=1)
    try:
        proc = svc.start(wait=False, NOTIFY_SOCKET=sock.path, WATCHDOG_USEC=1_000_000,
                         entry="faulty_daemon")
        t_ready = sock.wait_for("READY=1", 60)
        ready_msg = [m for t, m in sock.messages if t == t_ready][0]
        assert "STATUS=" in ready_msg
        sock.pump(2.5)
        pings = [t for t in sock.times("WATCHDOG=1") if t >= t_ready]
        assert len(pings) >= 3
        assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0   # every half WATCHDOG_USEC
        # an ordinary exception in the event handler is survived; the file is found by a rescan
        raised = drop(svc.images / "RAISE-IN-HANDLER.img-image-pb.fits", 1)
        svc.wait_for(lambda: str(raised) in svc.jobs_by_path(), 20, "file found after handler error")
        # a dead dispatcher thread is detected, the observer restarted and the pings resume
        drop(svc.images / "KILL-WATCHER-1.img-image-pb.fits", 11)
        svc.wait_for(lambda: _observer_deaths(proc) >= 1, 20, "observer restart")
        after = drop(svc.images / "after-restart.img-image-pb.fits", 12)
        svc.wait_for(lambda: str(after) in svc.jobs_by_path(), 20, "events flow after the restart")
        if _observer_deaths(proc) < 3:  # (watchdog's shared inotify fd may re-deliver an event)
            sock.pump(1.5)
            assert sock.times("WATCHDOG=1")[-1] > time.monotonic() - 1.2   # healthy again
        # after MAX_OBSERVER_RESTARTS the pings stop, so systemd restarts the whole service
        for i in range(2, 8):
            if any("STATUS=unhealthy: observer thread dead" in m for _, m in sock.messages):
                break
            drop(svc.images / f"KILL-WATCHER-{i}.img-image-pb.fits", 10 + i)
            sock.pump(1.0)
        t_unhealthy = sock.wait_for("STATUS=unhealthy: observer thread dead", 10)
        assert _observer_deaths(proc) == 3
        sock.pump(2.5)
        assert not [t for t in sock.times("WATCHDOG=1") if t > t_unhealthy + 0.1]
        # SIGTERM: STOPPING=1 and a clean exit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        sock.pump(0.3)
        assert sock.times("STOPPING=1")
    finally:
        svc.stop_all()
        sock.close()
