"""Logging: JSON lines (journald) with the bound fields; a readable console format."""

from __future__ import annotations

import io
import json
import logging

import structlog

import pytest

from dsa110_contimg.service.logging import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_job_fields():
    buf = io.StringIO()
    configure_logging("json", "info", stream=buf)
    log = structlog.get_logger("dsa110_contimg.service.daemon")
    log.info("job_finished", job_id=7, path="/img/a.fits", outcome="done", duration_s=1.25,
             durations={"measure": 0.5})
    log.debug("hidden")
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[0]["event"] == "job_finished" and lines[0]["job_id"] == 7
    assert lines[0]["path"] == "/img/a.fits" and lines[0]["outcome"] == "done"
    assert lines[0]["level"] == "info" and lines[0]["timestamp"].endswith("Z")
    assert lines[1]["event"] == "Inotify queue overflowed" and lines[1]["level"] == "warning"
    assert len(lines) == 2  # debug filtered


def test_console_format_is_not_json():
    buf = io.StringIO()
    configure_logging("console", "debug", stream=buf)
    structlog.get_logger("x").info("ready", workers=2)
    out = buf.getvalue()
    assert "ready" in out and "workers=2" in out
    assert not out.lstrip().startswith("{")


def test_auto_picks_json_when_not_a_tty():
    buf = io.StringIO()
    configure_logging("auto", "info", stream=buf)
    structlog.get_logger("x").info("ready")
    assert json.loads(buf.getvalue().splitlines()[0])["event"] == "ready"
