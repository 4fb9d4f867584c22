"""``contimg-photometry catalog``: exit codes and outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.cli.main import main


@pytest.fixture()
def nvss_file(tmp_path):
    rng = np.random.default_rng(2)
    n = 80
    t = Table({"NVSS": [f"0{i:05d}+100000" for i in range(n)],
               "_RAJ2000": np.mod(rng.uniform(-1, 1, n), 360), "_DEJ2000": rng.uniform(9, 11, n),
               "S1.4": np.arange(n, dtype=float) + 3.0, "e_S1.4": np.full(n, 0.5)})
    t["S1.4"].unit = t["e_S1.4"].unit = "mJy"
    path = tmp_path / "nvss.fits"
    t.write(path)
    return path, t


def run(capsys, *argv):
    code = main(["catalog", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_list_cone(tmp_path, capsys, nvss_file):
    path, t = nvss_file
    cat = tmp_path / "cat"
    code, out, _ = run(capsys, "ingest", "nvss", path, "--catalog-dir", cat)
    assert code == 0 and "80 rows" in out
    code, out, _ = run(capsys, "list", "--catalog-dir", cat)
    assert code == 0 and "nvss" in out and "80" in out and str(path) in out
    code, out, _ = run(capsys, "list", "--json", "--catalog-dir", cat)
    info = json.loads(out)
    assert info[0]["survey"] == "nvss" and info[0]["n_rows"] == 80
    code, out, err = run(capsys, "cone", "nvss", 0.0, 10.0, 0.5, "--max-sources", 3,
                         "--catalog-dir", cat)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["source_id", "ra_deg", "dec_deg", "flux_mjy"]
    fluxes = [float(x.split()[-1]) for x in lines[1:]]
    assert len(fluxes) == 3 and fluxes == sorted(fluxes, reverse=True)
    code, out, _ = run(capsys, "cone", "nvss", 0.0, 10.0, 0.5, "--min-flux", 40, "--json",
                       "--catalog-dir", cat)
    rows = json.loads(out)
    sep = np.degrees(np.arccos(np.clip(
        np.sin(np.radians(10)) * np.sin(np.radians(t["_DEJ2000"])) + np.cos(np.radians(10))
        * np.cos(np.radians(t["_DEJ2000"])) * np.cos(np.radians(t["_RAJ2000"])), -1, 1)))
    assert len(rows) == int(((sep <= 0.5) & (t["S1.4"] >= 40)).sum())
    assert all(r["flux_mjy"] >= 40 and r["source_id"].startswith("NVSS J0") for r in rows)


@pytest.mark.parametrize("ext", [".csv", ".ecsv", ".fits", ".vot"])
def test_cone_output_files(tmp_path, capsys, nvss_file, ext):
    path, _ = nvss_file
    cat = tmp_path / "cat"
    assert run(capsys, "ingest", "nvss", path, "--catalog-dir", cat)[0] == 0
    out = tmp_path / f"cone{ext}"
    code, stdout, _ = run(capsys, "cone", "nvss", 0.0, 10.0, 2.0, "-o", out,
                          "--catalog-dir", cat)
    assert code == 0 and out.exists() and "80 sources" in stdout
    back = Table.read(out)
    assert {"source_id", "ra_deg", "dec_deg", "flux_mjy"} <= set(back.colnames)
    assert len(back) == 80
    assert float(back["flux_mjy"][0]) == 82.0


def test_build_master_command(tmp_path, capsys, nvss_file):
    path, _ = nvss_file
    cat = tmp_path / "cat"
    run(capsys, "ingest", "nvss", path, "--catalog-dir", cat)
    code, out, _ = run(capsys, "build-master", "--match-radius", 5, "--catalog-dir", cat)
    assert code == 0 and "master: 80 rows" in out
    code, out, _ = run(capsys, "cone", "master", 0, 10, 2, "--json", "--catalog-dir", cat)
    rows = json.loads(out)
    assert len(rows) == 80 and "reference_ok" in rows[0] and "alpha" in rows[0]


def test_errors_exit_1_with_one_line(tmp_path, capsys, nvss_file):
    path, _ = nvss_file
    cat = tmp_path / "cat"
    code, _, err = run(capsys, "cone", "sumss", 0, 0, 1, "--catalog-dir", cat)
    assert code == 1 and "unknown catalogue 'sumss'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "cone", "nvss", 0, 0, 1, "--catalog-dir", cat)
    assert code == 1 and "never ingested" in err
    bad = tmp_path / "bad.csv"
    Table({"x": [1.0], "y": [2.0]}).write(bad)
    code, _, err = run(capsys, "ingest", "vlass", bad, "--catalog-dir", cat)
    assert code == 1 and "Total_flux" in err and "--ra-column" in err
    code, _, err = run(capsys, "ingest", "vlass", bad, "--ra-column", "x", "--dec-column", "y",
                       "--flux-column", "nope", "--catalog-dir", cat)
    assert code == 1 and "'nope' not found" in err
    run(capsys, "ingest", "nvss", path, "--catalog-dir", cat)
    code, _, err = run(capsys, "cone", "nvss", 0, 10, 1, "-o", tmp_path / "x.txt",
                       "--catalog-dir", cat)
    assert code == 1 and "unknown output format" in err


@pytest.mark.parametrize("argv", [["cone", "nvss", "0", "0", "-1"], ["cone", "nvss", "0", "0"],
                                  ["cone", "nvss", "a", "0", "1"], ["build-master", "--match-radius", "0"],
                                  ["ingest", "nvss"], ["cone", "nvss", "0", "0", "1", "--max-sources", "-2"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(["catalog", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


def test_default_catalog_dir_from_config_then_environment(tmp_path, monkeypatch, capsys, nvss_file):
    monkeypatch.delenv("CONTIMG_PHOTOMETRY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    path, _ = nvss_file
    monkeypatch.setenv("CONTIMG_CATALOG_DIR", str(tmp_path / "envcat"))
    assert run(capsys, "ingest", "nvss", path)[0] == 0
    assert (tmp_path / "envcat" / "nvss.sqlite3").exists()
    # a service configuration wins over the environment variable
    assert main(["init", str(tmp_path / "site")]) == 0
    assert run(capsys, "ingest", "nvss", path, "--config", str(tmp_path / "site" / "photometry.toml"))[0] == 0
    assert (tmp_path / "site" / "catalogs" / "nvss.sqlite3").exists()
    monkeypatch.delenv("CONTIMG_CATALOG_DIR")
    monkeypatch.setenv("CONTIMG_PHOTOMETRY_CONFIG", str(tmp_path / "site" / "photometry.toml"))
    assert run(capsys, "list", "--json")[0] == 0


def test_console_script_end_to_end(tmp_path, nvss_file):
    path, _ = nvss_file
    exe = Path(sys.executable).with_name("contimg-photometry")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dsa110_contimg.cli.main"]
    r = subprocess.run(cmd + ["catalog", "ingest", "nvss", str(path), "--catalog-dir",
                              str(tmp_path / "c")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["catalog", "cone", "nvss", "0", "10", "0.1", "--catalog-dir",
                              str(tmp_path / "c"), "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and isinstance(json.loads(r.stdout), list)
