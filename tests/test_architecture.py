"""The layers import only downwards: the import-linter contract in pyproject.toml holds,
and it really fails on a back-edge (a copy of the package with one deliberate upward import)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_layers_import_only_downwards():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "src" / "dsa110_contimg" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport dsa110_contimg.cli.main  # deliberate back-edge\n")
    res = lint(tmp_path)
    assert res.returncode != 0
    assert "dsa110_contimg.core is not allowed to import dsa110_contimg.cli" in res.stdout, res.stdout
