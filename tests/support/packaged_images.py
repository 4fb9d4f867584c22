"""Real radio images shipped inside installed dependencies (astropy, astroquery test data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _pkg_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin, f"{package} is a declared dependency"
    return Path(spec.origin).parent.joinpath(*parts)


#: astropy's real 192x192 Parkes 1.4 GHz map
AZP = _pkg_file("astropy", "modeling", "tests", "data", "1904-66_AZP.fits")
#: astroquery's real FIRST 33x33 cutout (BMAJ 5.4")
FIRST = _pkg_file("astroquery", "image_cutouts", "first", "tests", "data", "image.fits")
#: astroquery's real MAGPIS 20 cm 300x300 map (galactic SIN)
MAGPIS = _pkg_file("astroquery", "magpis", "tests", "data", "image.fits")
#: astroquery's real VLA 4-axis image without BMAJ
NVAS = _pkg_file("astroquery", "nvas", "tests", "data", "image.imfits")
