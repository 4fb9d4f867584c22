"""systemd unit: `systemd-analyze verify` with no output at all, `security` exposure <= 4.0,
and the settings the daemon relies on.

`systemd-analyze` is required (Debian: `apt-get install -y systemd`); these tests fail, not
skip, without it. Note for systemd 252: `security --threshold=` takes an integer in tenths
of the printed exposure (4.0 -> 40); "4.0" is rejected as unparsable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "contimg-photometry.service"
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture(scope="module")
def analyze():
    if ANALYZE is None:
        pytest.fail("systemd-analyze not found: install systemd (apt-get install -y systemd) "
                    "to check the unit file")
    return ANALYZE


def local_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this environment's real executable
    (verify fails hard when the ExecStart binary does not exist)."""
    text = UNIT.read_text() if text is None else text
    exe = Path(sys.executable).parent / "contimg-photometry"
    assert exe.exists(), exe
    text = text.replace("/opt/contimg/venv/bin/contimg-photometry", str(exe))
    out = tmp_path / "contimg-photometry.service"
    out.write_text(text)
    return out


def verify_output(analyze, unit: Path) -> tuple[int, str]:
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       cwd=unit.parent)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_verify_is_silent(analyze, tmp_path):
    rc, out = verify_output(analyze, local_unit(tmp_path))
    assert rc == 0 and out == "", out


def test_verify_check_catches_warnings(analyze, tmp_path):
    """The check above can fail: verify exits 0 on unknown keys and bad values, but prints."""
    for bad in ("WatchdogSec=60\nWatchdgSec=60", "Restart=on-failure\nRestart=sometimes"):
        good, typo = bad.split("\n")
        text = UNIT.read_text().replace(good, typo)
        rc, out = verify_output(analyze, local_unit(tmp_path, text))
        assert out != "", bad


def test_security_exposure_at_most_4(analyze, tmp_path):
    unit = local_unit(tmp_path)
    r = subprocess.run([analyze, "security", "--offline=true", "--threshold=40", str(unit)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 4.0, r.stdout[-3000:]
    assert r.returncode == 0, r.stderr


def test_unit_has_the_settings_the_daemon_relies_on():
    text = UNIT.read_text()
    settings = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
            assert " #" not in value and " ;" not in value, f"inline comment: {line}"
    expect = {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "KillMode": "mixed",
              "OOMPolicy": "continue", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
              "PrivateTmp": "yes"}
    for key, value in expect.items():
        assert settings[key] == [value], key
    assert int(settings["WatchdogSec"][0]) >= 10
    assert settings["ReadWritePaths"] and settings["StateDirectory"]
    from dsa110_contimg.service.config import DaemonConfig
    assert int(settings["TimeoutStopSec"][0]) > DaemonConfig().drain_timeout_s
    assert " run --config " in settings["ExecStart"][0]
