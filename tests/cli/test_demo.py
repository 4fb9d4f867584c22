"""The demo end to end: catalogue ingest, the real daemon and workflow on 30 simulated epochs,
the injected ESE flagged, its light curve written, its alert written as a VOEvent; with JSON logging every line the daemon
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
    assert "<- injected source switching on" in text           # found as a new source
    assert "done 31, failed 0, dead 0" in text                 # 30 epochs and its backfill
    # the daemon's own status line agrees with the settled jobs (not a heartbeat behind)
    assert re.search(r"images/h, 0 pending, last [0-9]+ s ago; 0/[0-9]+ workers busy", text), text
    png = tmp_path / "demo" / "ese_candidate_lightcurve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "daemon exit code 0" in text
    # every image is named after its epoch (DATE-OBS)
    from astropy.io import fits

    images = sorted((tmp_path / "demo" / "images").glob("*.fits"))
    assert len(images) == 30
    for path in images:
        assert path.name == f"{fits.getheader(path)['DATE-OBS'][:19]}.img-image-pb.fits"
    # the alert of the injected ESE, written by the daemon into the demo's VOEvent spool
    assert "demo: the alert for the injected ESE" in text and 'role="test"' in text
    packets = list((tmp_path / "demo" / "alerts").glob("ese_candidate-*.xml"))
    assert packets and all(p.name in text for p in packets)

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
    assert {x["event"] for x in lines} >= {"startup", "ready", "job_finished", "stopped",
                                           "new_sources"}
    # the daemon end to end: `sources list --new --json` lists the source in no catalogue
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "sources", "list",
                             "--new", "--json", "--config", str(tmp_path / "demo" / "photometry.toml")],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    (new,) = json.loads(listed.stdout)
    assert {"id", "name", "kind", "ra_deg", "dec_deg", "first_detected_mjd", "new_high_sigma",
            "n_detections", "n_measurements"} <= set(new)
    assert new["kind"] == "new" and new["new_high_sigma"] > 10 and new["n_measurements"] == 30
