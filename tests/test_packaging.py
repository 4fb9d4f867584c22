"""pyproject.toml says what the package really uses and ships."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SRC = ROOT / "src" / "dsa110_contimg"
#: distribution name -> import name, where they differ
IMPORT_NAMES = {"SQLAlchemy": "sqlalchemy", "prometheus_client": "prometheus_client",
                "AegeanTools": "AegeanTools", "psycopg[binary]": "psycopg",
                "dask[distributed]": "dask"}


def _imported_modules() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", path.read_text(), re.M):
            names.add(m.group(1))
    return names


def test_every_package_data_pattern_matches_a_file():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["dsa110_contimg"]
    empty = [p for p in patterns if not list(SRC.glob(p))]
    assert not empty, f"package-data patterns matching nothing: {empty}"


def test_every_required_dependency_is_imported():
    imported = _imported_modules()
    unused = []
    for req in PYPROJECT["project"]["dependencies"]:
        dist = re.split(r"[<>=!~ ]", req, maxsplit=1)[0]
        name = IMPORT_NAMES.get(dist, dist.lower().replace("-", "_"))
        if name not in imported:
            unused.append(dist)
    assert not unused, f"required dependencies never imported: {unused}"
