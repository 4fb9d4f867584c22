"""The job runtime with real processes: an operator's cancel wins over a later retryable
failure; daemon deaths during a job do not cost its attempts; one daemon per state directory
and node, several on purpose, and ``status`` listing every live instance.

The executor is ``fakes.FakePhotometryExecutor`` (tests/support/fakes.py): file names ``WAITFAIL``
and ``SLOW`` are its fault hooks.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness import Service, drop

pytestmark = pytest.mark.timeout(240)


def cli(svc: Service, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", *args, "--config",
                           str(svc.config)], capture_output=True, text=True, env=svc.env(), timeout=60)


def job_starts(proc, job_id: int) -> int:
    n = 0
    for line in proc.logfile.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "job_started" and rec.get("job_id") == job_id:
            n += 1
    return n


def test_cancel_of_a_running_job_wins_over_its_retryable_failure(service):
    """`jobs cancel` while the job runs; the worker then reports a retryable failure (disk
    full): the job ends cancelled and is never claimed again."""
    svc = service(workers=1, backoff_base_s=0.2, backoff_cap_s=0.5)
    proc = svc.start()
    name = "c.WAITFAIL.img-image-pb.fits"
    drop(svc.images / name, 1)
    svc.wait_for(lambda: (svc.out / (name + ".started")).exists(), 60, "the job to start")
    (job_id, status), = svc.sql("SELECT id, status FROM batch_jobs")
    assert status == "running"
    res = cli(svc, "jobs", "cancel", str(job_id), "--json")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert (answer["cancelled"], answer["id"]) == (True, job_id)
    assert svc.sql("SELECT status, cancel_requested FROM batch_jobs") == [("running", 1)]
    (svc.out / (name + ".release")).write_text("go")      # the worker now fails, retryably
    svc.wait_for(lambda: svc.job_states() == {"cancelled": 1}, 30, "the job cancelled")
    time.sleep(3.0)                                        # several back-off periods
    (status, attempts, error), = svc.sql("SELECT status, attempts, error FROM batch_jobs")
    assert status == "cancelled" and attempts == 1
    assert "cancelled by an operator" in error and "No space left" in error
    assert svc.sql("SELECT status FROM batch_job_items") == [("cancelled",)]
    assert job_starts(proc, job_id) == 1                  # never ran again
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_three_daemon_kills_during_one_job_do_not_cost_attempts(service):
    """SIGKILL the daemon three times while the same job runs (default max_attempts = 3):
    each interruption is refunded; the job still ends done, executed to completion once."""
    svc = service(workers=1)
    path = drop(svc.images / "k.SLOW.img-image-pb.fits", 2)
    for kill in range(3):
        proc = svc.start(CONTIMG_FAKE_SLOW_S=4)
        svc.wait_for(lambda: svc.job_states().get("running") == 1, 60, f"the job running ({kill})")
        time.sleep(0.5)
        proc.kill()
        proc.wait(10)
        (status, attempts, interruptions), = svc.sql(
            "SELECT status, attempts, interruptions FROM batch_jobs")
        assert status == "running"          # as the killed daemon left it
    proc = svc.start(CONTIMG_FAKE_SLOW_S=0.2)
    svc.wait_for(svc.idle_with(1), 60, "the job done")
    (status, attempts, interruptions, error), = svc.sql(
        "SELECT status, attempts, interruptions, error FROM batch_jobs")
    assert (status, attempts, interruptions) == ("done", 1, 3)
    assert error is None
    assert svc.executions() == {str(path): 1}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_one_daemon_per_state_and_node_and_status_lists_instances(service):
    svc = service(workers=1)
    a = svc.start()
    # the same configuration again: refused at once, naming the running daemon
    dup = svc.start(wait=False)
    assert dup.wait(60) == 1
    text = dup.logfile.read_text()
    assert "already runs on this state directory" in text and f"pid {a.pid}" in text
    assert a.poll() is None
    # another node on purpose: allowed
    b = svc.start(node="second")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = json.loads(cli(svc, "status", "--json").stdout)
        if st["daemon"]["instances"] == 2:
            break
        time.sleep(0.3)
    assert st["daemon"]["instances"] == 2
    nodes = {n["node"]: n for n in st["daemon"]["nodes"]}
    assert set(nodes) == {socket.gethostname(), "second"}
    assert {nodes[socket.gethostname()]["pid"], nodes["second"]["pid"]} == {a.pid, b.pid}
    human = cli(svc, "status")
    assert "instances:     2 live" in human.stdout and "second: running" in human.stdout
    # one stops: the other is still reported running
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0
    res = cli(svc, "status", "--json")
    st = json.loads(res.stdout)
    assert res.returncode == 0 and st["daemon"]["running"] and st["daemon"]["state"] == "running"
    assert st["daemon"]["instances"] == 1 and st["daemon"]["node"] == "second"
    assert st["daemon"]["pid"] == b.pid
    # and it still works
    drop(svc.images / "after.img-image-pb.fits", 3)
    svc.wait_for(svc.idle_with(1), 60, "the file measured by the other daemon")
    assert svc.job_states() == {"done": 1}
    # the first daemon restarts on its lock (released by the kernel / at exit)
    a2 = svc.start()
    for p in (a2, b):
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
