"""The layers import only downwards: the import-linter contract in pyproject.toml holds,
and it really fails on a back-edge (a copy of the package with one deliberate upward import)."""

from __future__ import annotations

import os
import re
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


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(?:def|class)\s+{name}\b|^{name}\s*[:=]", source, re.M) is not None


def test_architecture_names_only_modules_and_names_that_exist():
    """Every `path.py`, `path.py: name` and `folder/` that ARCHITECTURE.md names exists
    (paths under src/dsa110_contimg, or the repository root for tests/, bench/, docs/ ...)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    package = ROOT / "src" / "dsa110_contimg"

    def resolve(rel: str) -> Path:
        if "/" not in rel.rstrip("/"):                 # a bare name: at the root or in the package
            return ROOT / rel if (ROOT / rel).exists() else next(package.rglob(rel), package / rel)
        top = rel.split("/", 1)[0]
        return ROOT / rel if (ROOT / top).is_dir() and not (package / top).is_dir() else package / rel

    missing = []
    for rel, name in re.findall(r"`([\w./]+\.py)(?::\s+(\w+))?", text):
        if "NAME" in rel:                              # the placeholders of "How to add"
            continue
        path = resolve(rel)
        if not path.is_file():
            missing.append(rel)
        elif name and not _defines(path.read_text(), name):
            missing.append(f"{rel}: {name}")
    for rel in re.findall(r"`([\w./]+/)`", text):
        if not rel.startswith("../") and not resolve(rel).is_dir():
            missing.append(rel)
    assert not missing, f"ARCHITECTURE.md names what does not exist: {missing}"
