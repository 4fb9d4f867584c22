"""Start-up check: every missing or unwritable folder is named at once, before anything starts."""

from __future__ import annotations

import pytest

from dsa110_contimg.cli.main import main
from dsa110_contimg.service.config import render_config
from dsa110_contimg.service.preflight import PreflightError, check_folders


def test_run_names_every_missing_or_unwritable_folder_at_once(tmp_path, capsys):
    root = tmp_path / "svc"
    root.mkdir()
    (root / "afile").write_text("not a folder")
    text = render_config(root).replace(f'state_dir = "{root / "state"}"',
                                       f'state_dir = "{root / "afile" / "state"}"')
    text = text.replace(f'products_db = "{root / "state" / "products.sqlite3"}"',
                        f'products_db = "{root / "afile" / "state" / "products.sqlite3"}"')
    cfg = root / "photometry.toml"
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert "3 folder problem(s)" in line
    assert f"paths.image_dirs: {root / 'images'} does not exist" in line
    assert f"paths.mosaic_dirs: {root / 'mosaics'} does not exist" in line
    assert f"paths.products_db folder {root / 'afile' / 'state'}" in line
    assert not (root / "afile" / "state").exists()      # nothing was created


def test_check_folders_passes_a_ready_layout_and_warns_on_missing_catalogs(tmp_path):
    from dsa110_contimg.service.config import config_from_dict
    import tomllib

    for sub in ("images", "mosaics"):
        (tmp_path / sub).mkdir()
    cfg = config_from_dict(tomllib.loads(render_config(tmp_path)), base_dir=tmp_path)
    warnings = check_folders(cfg)
    assert len(warnings) == 1 and "paths.catalog_dir" in warnings[0]
    (tmp_path / "catalogs").mkdir()
    assert check_folders(cfg) == []
    (tmp_path / "images").rmdir()
    with pytest.raises(PreflightError) as exc:
        check_folders(cfg)
    assert exc.value.problems == [f"paths.image_dirs: {tmp_path / 'images'} does not exist"]


def test_network_filesystem_of_a_path_from_the_mount_table():
    from dsa110_contimg.service.preflight import network_filesystem

    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              "server:/export /data nfs4 rw,relatime 0 0\n"
              "/dev/sdb1 /data/local xfs rw 0 0\n"
              "mds@tcp:/lustre /lustre lustre rw 0 0\n")
    assert network_filesystem("/data/state/products.sqlite3", mounts) == "nfs4"
    assert network_filesystem("/data/local/state", mounts) is None         # the longest match
    assert network_filesystem("/lustre/a/b/c", mounts) == "lustre"
    assert network_filesystem("/home/x", mounts) is None


def test_run_refuses_sqlite_state_on_a_network_filesystem(tmp_path, capsys, monkeypatch):
    from dsa110_contimg.service import preflight

    root = tmp_path / "svc"
    for sub in ("images", "mosaics", "state"):
        (root / sub).mkdir(parents=True)
    cfg = root / "photometry.toml"
    cfg.write_text(render_config(root))
    state = root / "state"
    mounts = f"/dev/sda1 / ext4 rw 0 0\nserver:/export {state} nfs4 rw 0 0\n"
    real = preflight.network_filesystem
    monkeypatch.setattr(preflight, "network_filesystem", lambda path, m=None: real(path, mounts))
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "paths.products_db" in err[0] and "network filesystem (nfs4" in err[0], err
    assert not (state / "products.sqlite3").exists()          # refused before anything was opened
