"""Forced photometry of catalogue sources on DSA-110 images and mosaics.

Public API
----------
PhotometryManager, PhotometryConfig, PhotometryResult
    The workflow (catalogue query -> measure -> store -> normalise -> ESE ->
    link), synchronous or as a batch job.
measure_positions
    Measure the flux at given sky positions on one image.
RadioImage
    The FITS image model (squeezed 2-D data, celestial WCS, beam, epoch).
MeasurementTable, Flag
    The columnar result every method returns and its bit flags.

Names are imported lazily so that ``import dsa110_contimg.photometry`` stays
cheap for processes that only need one part of it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PhotometryManager": "dsa110_contimg.pipeline.manager",
    "PhotometryResult": "dsa110_contimg.pipeline.manager",
    "PhotometryConfig": "dsa110_contimg.core.config",
    "measure_positions": "dsa110_contimg.science.forced",
    "RadioImage": "dsa110_contimg.science.image",
    "Beam": "dsa110_contimg.science.image",
    "MeasurementTable": "dsa110_contimg.science.results",
    "Flag": "dsa110_contimg.science.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsa110_contimg.photometry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
