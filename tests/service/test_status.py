"""service/status.py: the daemon section's own verdict and the one verdict built from it."""

import time

from dsa110_contimg.service import health as health_mod
from dsa110_contimg.service import status


def _beat(now):
    return {"owner": "h:1:a", "host": "h", "pid": 1, "workers": 2, "state": "running",
            "beat_at": now - 1.0, "started_at": now - 60.0, "status_text": "idle", "node": "n"}


def test_a_full_state_disk_is_the_daemons_health_and_a_reason_of_the_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(health_mod, "free_bytes", lambda path: 4096)
    now = time.time()
    d = status._daemon({"heartbeats": [_beat(now)], "running_by_owner": {}}, now=now,
                       stale_after_s=30.0, state_dir=tmp_path)
    assert d["state"] == "degraded"
    assert d["health"]["verdict"] == "degraded"
    assert d["health"]["reasons"] == [f"disk full: 4096 bytes free in {tmp_path}"]
    verdict = status.assess({"daemon": d, "jobs": {"unacknowledged": {"failed": 0, "dead": 0}}})
    assert verdict["exit_code"] == 1
    assert verdict["reasons"] == [f"daemon degraded: disk full: 4096 bytes free in {tmp_path}"]


def test_enough_free_space_and_no_health_file_is_no_verdict_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(health_mod, "free_bytes", lambda path: 10 * health_mod.MIN_FREE_BYTES)
    now = time.time()
    d = status._daemon({"heartbeats": [_beat(now)], "running_by_owner": {}}, now=now,
                       stale_after_s=30.0, state_dir=tmp_path)
    assert d["state"] == "running" and d["health"] is None
    verdict = status.assess({"daemon": d, "jobs": {"unacknowledged": {"failed": 0, "dead": 0}}})
    assert verdict == {"verdict": "ok", "exit_code": 0, "reasons": []}
