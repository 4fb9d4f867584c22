"""Benchmark modules the tests reuse (``bench/`` is not a package), and the skip for the
astropy test image the Aegean studies paint on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str):
    """Import ``bench/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


inj = load_bench("aegean_injection")


def _have_azp_map() -> bool:
    try:
        inj.azp_path()
        return True
    except FileNotFoundError:
        return False


#: skip where astropy's 1904-66_AZP.fits test image is not installed
needs_azp_map = pytest.mark.skipif(not _have_azp_map(),
                                   reason="astropy's 1904-66_AZP.fits test data absent")
