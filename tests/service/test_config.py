"""Service configuration: TOML loading, validation errors naming key + file, init, the documented defaults."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dsa110_contimg.cli.main import main
from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.config import (
    CONFIG_ENV, DaemonConfig, LoggingConfig, PathsConfig, find_config_path, load_config,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "config" / "photometry.toml"


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "photometry.toml"
    p.write_text(text)
    return p


def test_documented_config_lists_every_key_with_its_default():
    data = tomllib.loads(DOC.read_text())
    daemon_defaults = {name: f.default for name, f in DaemonConfig.model_fields.items()}
    assert data["daemon"] == daemon_defaults
    assert data["logging"] == {name: f.default for name, f in LoggingConfig.model_fields.items()}
    assert set(data["paths"]) == set(PathsConfig.model_fields)
    # every photometry field appears, set or as a commented example
    text = DOC.read_text()
    phot_defaults = PhotometryConfig().to_dict()
    for name, default in phot_defaults.items():
        assert f"{name} =" in text, name
        if default is not None and name in data["photometry"]:
            assert data["photometry"][name] == default, name
    # and the documented file itself loads
    cfg = load_config(DOC)
    assert cfg.daemon == DaemonConfig()
    assert cfg.paths.image_dirs == ((DOC.parent / "images").resolve(),)


def test_shipped_config_is_the_one_generated_from_the_schema():
    """config/photometry.toml is documented_toml(): regenerate it with
    ``PYTHONPATH=src python -m dsa110_contimg.service.config > config/photometry.toml``."""
    from dsa110_contimg.service.config import documented_toml

    text = documented_toml()
    assert DOC.read_text(encoding="utf-8") == text, \
        "config/photometry.toml is stale: run PYTHONPATH=src python -m dsa110_contimg.service.config " \
        "> config/photometry.toml"
    # every key of every section is there with its docstring as the comment above it
    assert "# Worker processes (spawned; 1..64). Each runs one job at a time.\nworkers = 2\n" in text
    assert "# radius_deg = 0.5\n" in text and "# token_file = \"state/web_token\"\n" in text
    # the documented command writes exactly that text
    r = subprocess.run([sys.executable, "-m", "dsa110_contimg.service.config"], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout == text, r.stderr


def test_documented_defaults_are_the_schema_defaults(tmp_path):
    """A file with every key at its documented value is the same configuration as an empty one."""
    p = write(tmp_path, "")
    empty = load_config(p)
    shipped = tmp_path / "shipped.toml"
    shipped.write_text(DOC.read_text())
    full = load_config(shipped)
    assert full.photometry == empty.photometry and full.daemon == empty.daemon
    assert full.logging == empty.logging and full.web == empty.web
    assert full.paths.state_dir == empty.paths.state_dir == tmp_path / "state"
    assert full.paths.products_db == empty.paths.products_db == tmp_path / "state" / "products.sqlite3"
    assert full.paths.registry_db == empty.paths.registry_db


@pytest.mark.parametrize("text, key, value, allowed", [
    # a bad type
    ("[daemon]\nworkers = \"2\"\n", "daemon.workers", "'2'", "an integer in [1, 64]"),
    ("[photometry]\nnormalize = \"yes\"\n", "photometry.normalize", "'yes'", "true or false"),
    ("[photometry]\nnbeam = \"3\"\n", "photometry.nbeam", "'3'", "a number > 0 and <= 50.0"),
    ("[paths]\nstate_dir = 7\n", "paths.state_dir", "7", "a non-empty path string"),
    ("[daemon]\nlease_s = true\n", "daemon.lease_s", "True", "a number of seconds > 0"),
    ("paths = 3\n", "paths", "3", "a [table]"),
    # a bad database URL (password masked)
    ("[paths]\nproducts_db = \"mysql://u:hunter2@h/db\"\n", "paths.products_db",
     "'mysql://u:***@h/db'", "unsupported database 'mysql'"),
    ("[paths]\nregistry_db = \"postgresql+psycopg://u:hunter2@h:port/db\"\n", "paths.registry_db",
     "'postgresql+psycopg://u:***@h:port/db'", "an SQLAlchemy URL such as"),
])
def test_one_clear_line_names_file_key_value_and_allowed(tmp_path, text, key, value, allowed):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert err.value.field == key and "\n" not in msg and "hunter2" not in msg
    assert msg.startswith(f"{p}: invalid value {value} for '{key}': expected "), msg
    assert allowed in msg
    assert "pydantic" not in msg and "validation error" not in msg


@pytest.mark.parametrize("text, key, message", [
    ("[daemon]\nwrokers = 2\n", "daemon.wrokers",
     "unknown key 'daemon.wrokers' (= 2): did you mean 'daemon.workers'? (every key: "
     "contimg-photometry config dump)"),
    ("[photometry]\ncatalogue = 'nvss'\n", "photometry.catalogue",
     "unknown key 'photometry.catalogue' (= 'nvss'): did you mean 'photometry.catalog'?"),
    ("[deamon]\nworkers = 2\nlease_s = 30.0\n", "deamon",
     "unknown section [deamon]: did you mean [daemon]? (every section: contimg-photometry config dump)"),
    ("[daemon]\nzzz = 2\n", "daemon.zzz",
     "unknown key 'daemon.zzz' (= 2): expected one of the keys backoff_base_s, backoff_cap_s"),
    ("[colours]\nred = 1\n", "colours",
     "unknown section [colours]: expected one of the sections alerts, daemon, logging, paths, photometry, web"),
])
def test_unknown_keys_and_sections_suggest_the_nearest_name(tmp_path, text, key, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert err.value.field == key and "\n" not in msg
    assert msg.startswith(f"{p}: {message}"), msg
    assert "{" not in msg                     # a section's table is never printed


def test_sections_are_immutable_and_replace_validates():
    cfg = DaemonConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 3
    assert cfg.replace(workers=3).workers == 3 and cfg.workers == 2
    with pytest.raises(ConfigError, match="'workers'.*\\[1, 64\\]"):
        cfg.replace(workers=65)
    with pytest.raises(ConfigError, match="less than"):
        DaemonConfig(lease_s=10.0)


def test_relative_paths_resolve_against_the_file(tmp_path):
    p = write(tmp_path, '[paths]\nimage_dirs = ["in"]\nstate_dir = "st"\n')
    cfg = load_config(p)
    assert cfg.paths.image_dirs == (tmp_path / "in",)
    assert cfg.paths.products_db == tmp_path / "st" / "products.sqlite3"
    assert cfg.paths.registry_db == tmp_path / "st" / "data_registry.sqlite3"
    assert cfg.source == p


@pytest.mark.parametrize("text, key, allowed", [
    ("[daemon]\nworkerz = 2\n", "daemon.workerz", "did you mean 'daemon.workers'?"),
    ("[daemon]\nworkers = 0\n", "daemon.workers", "[1, 64]"),
    ("[daemon]\nworkers = 'two'\n", "daemon.workers", "an integer"),
    ("[daemon]\npolling = 1\n", "daemon.polling", "true or false"),
    ("[daemon]\nlease_s = -1\n", "daemon.lease_s", "> 0"),
    ("[daemon]\ndrain_timeout_s = 400\nlease_s = 300\n", "daemon.drain_timeout_s", "less than"),
    ("[daemon]\nexecutor = 'nocolon'\n", "daemon.executor", "module:attribute"),
    ("[daemon]\nworker_memory_limit_mb = -1\n", "daemon.worker_memory_limit_mb", "[0, 16777216]"),
    ("[daemon]\nmax_interruptions = 0\n", "daemon.max_interruptions", "[1, 1000]"),
    ("[daemon]\nnode = 'a b'\n", "daemon.node", "node name"),
    ("[daemon]\nnode = 3\n", "daemon.node", "node name"),
    ("[photometry]\nmethod = 'psf'\n", "photometry.method", "forced"),
    ("[photometry]\ncatalogue = 'nvss'\n", "photometry.catalogue", "did you mean"),
    ("[logging]\nformat = 'xml'\n", "logging.format", "auto, json, console"),
    ("[paths]\nimage_dirs = 3\n", "paths.image_dirs", "list"),
    ("[pathz]\n", "pathz", "did you mean [paths]?"),
])
def test_bad_key_or_value_names_key_file_and_allowed(tmp_path, text, key, allowed):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert err.value.field == key
    assert str(p) in msg
    assert allowed in msg


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(write(tmp_path, "[daemon\n"))
    with pytest.raises(ConfigError, match="readable TOML"):
        load_config(tmp_path / "nope.toml")


def test_env_variable_names_the_file(tmp_path, monkeypatch):
    p = write(tmp_path, "[daemon]\nworkers = 3\n")
    monkeypatch.setenv(CONFIG_ENV, str(p))
    assert find_config_path(None) == p
    assert load_config().daemon.workers == 3
    assert find_config_path(str(tmp_path / "x.toml")) == tmp_path / "x.toml"
    monkeypatch.delenv(CONFIG_ENV)
    with pytest.raises(ConfigError, match="init"):
        load_config()


def test_init_writes_a_ready_configuration(tmp_path, capsys):
    root = tmp_path / "svc"
    assert main(["init", str(root)]) == 0
    cfg = load_config(root / "photometry.toml")
    assert cfg.paths.image_dirs == (root / "images",)
    assert cfg.paths.mosaic_dirs == (root / "mosaics",)
    assert cfg.paths.state_dir == root / "state"
    assert cfg.paths.catalog_dir == root / "catalogs"
    for sub in ("images", "mosaics", "state", "catalogs"):
        assert (root / sub).is_dir()
    # refuses to overwrite
    assert main(["init", str(root)]) == 1
    assert "photometry.toml" in capsys.readouterr().err
    assert main(["init", str(root), "--force"]) == 0
    # --config chooses where the file goes; its paths still point under DIR
    etc = tmp_path / "etc" / "contimg" / "photometry.toml"
    assert main(["init", str(tmp_path / "svc2"), "--config", str(etc)]) == 0
    assert load_config(etc).paths.state_dir == tmp_path / "svc2" / "state"
    assert main(["init", str(tmp_path / "svc2"), "--config", str(etc)]) == 1


def test_run_rejects_bad_config_before_anything_runs(tmp_path, capsys):
    p = write(tmp_path, f'[paths]\nstate_dir = "{tmp_path / "state"}"\n[daemon]\nworkers = 100\n')
    assert main(["run", "--config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "daemon.workers" in err and str(p) in err
    assert not (tmp_path / "state").exists()  # nothing was created


def test_run_rejects_an_executor_that_does_not_import(tmp_path, capsys):
    p = write(tmp_path, f'[paths]\nstate_dir = "{tmp_path / "state"}"\nimage_dirs = ["{tmp_path}"]\n'
                        '[daemon]\nexecutor = "dsa110_contimg.nope:run"\n')
    assert main(["run", "--config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "daemon.executor" in err and "ModuleNotFoundError" in err
    assert not (tmp_path / "state").exists()  # failed before opening the database


def test_executor_names_and_the_former_default_string(tmp_path):
    """``executor = "photometry"`` is the default; the former default string still loads
    (mapped to it); a module:attribute is kept as written."""
    from dsa110_contimg.service.config import load_config

    for value, expected in (("photometry", "photometry"),
                            ("dsa110_contimg.photometry.worker:execute_job", "photometry"),
                            ("fakes:FakePhotometryExecutor", "fakes:FakePhotometryExecutor")):
        p = write(tmp_path, f'[daemon]\nexecutor = "{value}"\nnode = "n-1.a_b"\n')
        cfg = load_config(p)
        assert cfg.daemon.executor == expected and cfg.daemon.node_name == "n-1.a_b"
    cfg = load_config(write(tmp_path, "[daemon]\nworkers = 1\n"))
    import socket

    assert cfg.daemon.node_name == socket.gethostname() and cfg.daemon.worker_memory_limit_mb == 4096


def test_instance_lock_refuses_the_same_node_and_allows_another(tmp_path):
    from dsa110_contimg.service.instance import InstanceLock, InstanceLocked

    a = InstanceLock(tmp_path / "state", "n1").acquire(owner="A")
    with pytest.raises(InstanceLocked, match=r"another daemon \(pid \d+, started .*\) already runs"):
        InstanceLock(tmp_path / "state", "n1").acquire(owner="B")
    b = InstanceLock(tmp_path / "state", "n2").acquire(owner="B")   # another node on purpose
    a.release()
    a2 = InstanceLock(tmp_path / "state", "n1").acquire(owner="C")  # free again after release
    a2.release()
    b.release()


def test_config_dump_and_check_commands(tmp_path, capsys):
    from dsa110_contimg.service.config import documented_toml

    assert main(["config", "dump"]) == 0
    assert capsys.readouterr().out == documented_toml()
    assert main(["config", "check", "--config", str(DOC)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{DOC.resolve()}: valid") and "catalog nvss" in out
    bad = write(tmp_path, '[paths]\nproducts_db = "mysql://u:hunter2@h/db"\n')
    assert main(["config", "check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "paths.products_db" in err and str(bad) in err
    assert "unsupported database 'mysql'" in err and "hunter2" not in err
