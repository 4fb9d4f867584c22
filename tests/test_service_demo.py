"""The demo end to end: catalogue ingest, the real daemon and workflow on 30 simulated epochs,
the injected ESE flagged, its light curve written."""

from __future__ import annotations

import io

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_demo_flags_the_injected_ese(tmp_path):
    from dsa110_contimg.service.demo import run_demo

    out = io.StringIO()
    rc = run_demo(workdir=tmp_path / "demo", epochs=30, workers=2, timeout_s=150, out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "<- injected ESE" in text
    assert "done 30, failed 0, dead 0" in text
    png = tmp_path / "demo" / "ese_candidate_lightcurve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "daemon exit code 0" in text
