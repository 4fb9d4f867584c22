"""Shared fixtures: paths to the shared test data and small image generators."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data relative to the project root (never copied into the repository).
SHARED_DATA = Path(os.environ.get(
    "CONTIMG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared test-data folder; tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (fresh clone without ../shared)")
    return SHARED_DATA
