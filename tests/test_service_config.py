"""Service configuration: TOML loading, validation errors naming key + file, init, the documented defaults."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from dsa110_contimg.cli.main import main
from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.config import (
    CONFIG_ENV, DaemonConfig, LoggingConfig, PathsConfig, find_config_path, load_config,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "config" / "photometry.toml"


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "photometry.toml"
    p.write_text(text)
    return p


def test_documented_config_lists_every_key_with_its_default():
    data = tomllib.loads(DOC.read_text())
    daemon_defaults = {f.name: f.default for f in dataclasses.fields(DaemonConfig)}
    assert data["daemon"] == daemon_defaults
    assert data["logging"] == {f.name: f.default for f in dataclasses.fields(LoggingConfig)}
    assert set(data["paths"]) == {f.name for f in dataclasses.fields(PathsConfig)}
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


def test_relative_paths_resolve_against_the_file(tmp_path):
    p = write(tmp_path, '[paths]\nimage_dirs = ["in"]\nstate_dir = "st"\n')
    cfg = load_config(p)
    assert cfg.paths.image_dirs == (tmp_path / "in",)
    assert cfg.paths.products_db == tmp_path / "st" / "products.sqlite3"
    assert cfg.paths.registry_db == tmp_path / "st" / "data_registry.sqlite3"
    assert cfg.source == p


@pytest.mark.parametrize("text, key, allowed", [
    ("[daemon]\nworkerz = 2\n", "daemon.workerz", "one of the keys"),
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
    ("[photometry]\ncatalogue = 'nvss'\n", "photometry.catalogue", "one of the keys"),
    ("[logging]\nformat = 'xml'\n", "logging.format", "auto, json, console"),
    ("[paths]\nimage_dirs = 3\n", "paths.image_dirs", "list"),
    ("[pathz]\n", "pathz", "one of the keys"),
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
