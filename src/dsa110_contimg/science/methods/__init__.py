"""Optional measurement methods beyond the fixed-beam ``forced`` estimator.

Each module exposes ``measure(image, ra_deg, dec_deg, **options) ->
MeasurementTable`` with the core columns of
:data:`dsa110_contimg.science.results.CORE_COLUMNS`, one row per requested
position in input order. :func:`dsa110_contimg.science.forced.measure_positions`
dispatches to them lazily by method name.

``adaptive``
    Per-plane forced photometry of a sub-band cube, then adjacent planes binned
    until each source reaches a target SNR (docs/science.md, Adaptive binning).
``aegean``
    AegeanTools' priorized (flux-only) fitting; needs the optional extra
    ``pip install 'dsa110-contimg-photometry[aegean]'``.

The modules are imported on demand (``importlib``), so importing this package
never imports AegeanTools.
"""

from __future__ import annotations

import importlib

#: The optional methods: name -> module under this package (the one registry;
#: ``core/enums.py: METHODS`` lists every method the configuration accepts).
MODULES = {"adaptive": "adaptive", "aegean": "aegean"}


def measure_function(name: str):
    """The ``measure`` function of the optional method ``name``, imported on demand.

    Raises
    ------
    KeyError
        ``name`` is not an optional method of this package.
    dsa110_contimg.core.errors.MethodUnavailable
        Only when the method itself is called without its optional dependency.
    """
    return importlib.import_module(f"{__name__}.{MODULES[name]}").measure


__all__ = ["MODULES", "measure_function"]
