"""systemd unit: `systemd-analyze verify` with no output at all, `security` exposure <= 2.0,
the settings the daemon relies on, and `init --systemd` writing only where the unit can write.

`systemd-analyze` is required (Debian: `apt-get install -y systemd`); these tests fail, not
skip, without it. Note for systemd 252: `security --threshold=` takes an integer in tenths
of the printed exposure (2.0 -> 20); "2.0" is rejected as unparsable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def test_security_exposure_at_most_2(analyze, tmp_path):
    unit = local_unit(tmp_path)
    r = subprocess.run([analyze, "security", "--offline=true", "--threshold=20", str(unit)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout[-3000:]
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


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_init_systemd_writes_what_the_unit_can_write(tmp_path, capsys):
    """`init --systemd`: the configuration where ExecStart reads it, the databases in the
    unit's StateDirectory, the watched folders under its ReadWritePaths."""
    from dsa110_contimg.cli import init as init_cmd
    from dsa110_contimg.cli.main import main
    from dsa110_contimg.service.config import load_config

    settings = _unit_settings()
    writable = [Path(p) for v in settings["ReadWritePaths"] for p in v.split()]
    state = Path("/var/lib") / settings["StateDirectory"][0]
    config = Path(settings["ExecStart"][0].split(" --config ")[1].split()[0])
    assert init_cmd.UNIT_CONFIG == config and init_cmd.UNIT_STATE_DIR == state
    assert set(init_cmd.UNIT_READ_WRITE_PATHS) == set(writable)

    dest = tmp_path / "root"
    assert main(["init", "--systemd", "--destdir", str(dest)]) == 0
    written = dest / config.relative_to("/")
    cfg = load_config(written)   # relative paths would resolve against /etc: there are none

    def allowed(p: Path, roots) -> bool:
        return any(p == r or r in p.parents for r in roots)

    assert allowed(Path(cfg.paths.products_db), [state]) and allowed(Path(cfg.paths.registry_db), [state])
    assert allowed(Path(cfg.paths.state_dir), [state]) and allowed(Path(cfg.paths.catalog_dir), [state])
    for d in cfg.paths.watched:
        assert allowed(Path(d), writable), d
        assert (dest / Path(d).relative_to("/")).is_dir()
    assert cfg.logging.format == "json" and cfg.daemon.metrics_listen == "127.0.0.1:9464"
    # the README documents this command, not a folder outside the unit's paths
    readme = (ROOT / "systemd" / "README.md").read_text()
    assert "init --systemd" in readme and "init /srv/contimg" not in readme
    # init DIR outside the unit's paths says so
    capsys.readouterr()
    assert main(["init", str(tmp_path / "elsewhere")]) == 0
    assert "init --systemd" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "x"), "--systemd"]) == 2    # usage: one of DIR/--systemd
