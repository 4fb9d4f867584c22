"""The demo end to end: catalogue ingest, the real daemon and workflow on 30 simulated epochs,
the injected ESE flagged, its light curve written; with JSON logging every line the daemon
and its workers wrote on stdout and stderr is a JSON object."""

from __future__ import annotations

import io
import json
import re

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_demo_flags_the_injected_ese(tmp_path):
    from dsa110_contimg.cli.demo_run import run_demo

    out = io.StringIO()
    rc = run_demo(workdir=tmp_path / "demo", epochs=30, workers=2, timeout_s=150, out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "<- injected ESE" in text
    assert "done 30, failed 0, dead 0" in text
    # the daemon's own status line agrees with the settled jobs (not a heartbeat behind)
    assert re.search(r"images/h, 0 pending, last [0-9]+ s ago; 0/[0-9]+ workers busy", text), text
    png = tmp_path / "demo" / "ese_candidate_lightcurve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "daemon exit code 0" in text

    # the daemon ran with logging.format = "json", stdout and stderr into daemon.log
    raw = (tmp_path / "demo" / "daemon.log").read_text().splitlines()
    assert len(raw) > 50
    lines = []
    for n, line in enumerate(raw, 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"daemon.log line {n} is not JSON: {line[:300]}")
    assert all(isinstance(x, dict) and x.get("event") and x.get("level") and x.get("node")
               for x in lines)
    # worker processes log JSON too, with the job id and path bound
    measured = [x for x in lines if x["event"] == "image_measured"]
    assert len(measured) == 30
    assert all(isinstance(x.get("job_id"), int) and x["path"].endswith(".fits") for x in measured)
    assert {x["event"] for x in lines} >= {"startup", "ready", "job_finished", "stopped"}
