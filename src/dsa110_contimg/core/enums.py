"""The domain's enumerations and the small rules attached to them, each defined once.

Every other layer imports these names; none re-spells the lists.

* :data:`METHODS` -- the measurement methods (``forced`` is the default).
* :data:`SURVEYS`, :data:`SURVEY_ALIASES`, :func:`canonical_survey` -- the
  catalogue keys the catalogue store and :class:`PhotometryConfig` accept.
* :data:`ESE_PRESETS` -- the named ESE threshold presets (their thresholds:
  :data:`ESE_PRESET_THRESHOLDS`, docs/science.md, ESE criteria).
* :data:`CONFIDENCE_LEVELS`, :func:`confidence_level` -- the ESE candidate
  confidence of a composite score (0-10).
* :data:`QC_VERDICTS`, :data:`QC_STATES` -- image quality-control outcomes.
* :data:`FITS_SUFFIXES`, :func:`is_fits_name` -- which file names are images.
* :data:`MOSAIC_KEYWORDS`, :func:`header_is_mosaic` -- the mosaic rule for FITS
  headers (the daemon's classifier, the manager and QC all use it).
"""

from __future__ import annotations

import os

from dsa110_contimg.core.errors import UnknownCatalog

#: Measurement methods: ``forced`` (fixed-beam weighted fit, the default), ``peak``
#: (box maximum, biased high), ``adaptive`` (sub-band binning), ``aegean`` (Aegean
#: priorised fit).
METHODS: tuple[str, ...] = ("forced", "peak", "adaptive", "aegean")
DEFAULT_METHOD = "forced"

#: Survey (catalogue) keys, in display order; ``monitor`` holds monitor lists (positions
#: measured in every covering image besides the deployment's catalogue, never references).
SURVEYS: tuple[str, ...] = ("nvss", "first", "rax", "vlass", "master", "monitor")
#: The survey key of monitor lists.
MONITOR_SURVEY = "monitor"
#: Surveys a deployment can use as its catalogue (``[photometry] catalog``).
CATALOG_SURVEYS: tuple[str, ...] = tuple(s for s in SURVEYS if s != MONITOR_SURVEY)
#: Accepted aliases of survey keys (RACS is stored as ``rax``).
SURVEY_ALIASES: dict[str, str] = {"racs": "rax"}


def canonical_survey(name: str) -> str:
    """The canonical survey key of ``name`` (case-insensitive; ``racs`` -> ``rax``).

    Raises :class:`~dsa110_contimg.core.errors.UnknownCatalog` naming the accepted keys.
    """
    key = str(name).strip().lower()
    key = SURVEY_ALIASES.get(key, key)
    if key not in SURVEYS:
        raise UnknownCatalog(f"unknown catalogue {name!r}: expected one of {', '.join(SURVEYS)} "
                             f"(alias: racs = rax)")
    return key


#: ESE presets: name -> (sigma_deviation, chi2_nu, eta) minimum values
#: (docs/science.md, ESE criteria).
ESE_PRESET_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "conservative": (5.0, 4.0, 3.0),
    "moderate": (3.5, 2.5, 2.0),
    "sensitive": (2.5, 1.5, 1.0),
}
ESE_PRESETS: tuple[str, ...] = tuple(ESE_PRESET_THRESHOLDS)

#: Confidence levels of an ESE candidate, most confident first; ``none`` marks a
#: NaN (not computable) score.
CONFIDENCE_LEVELS: tuple[str, ...] = ("high", "medium", "low", "none")
#: Lowest composite score (0-10) of each level above ``low``.
CONFIDENCE_THRESHOLDS: dict[str, float] = {"high": 7.0, "medium": 4.0}


def confidence_level(score):
    """Confidence of composite ESE scores (0-10): ``high`` (>= 7), ``medium`` (>= 4),
    ``low`` (any other finite score) or ``none`` (NaN). Vectorised; returns an
    array of str with the shape of ``score``."""
    import numpy as np   # here: the daemon's main loop imports this module, not numpy

    s = np.asarray(score, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(s >= CONFIDENCE_THRESHOLDS["high"], "high",
                        np.where(s >= CONFIDENCE_THRESHOLDS["medium"], "medium",
                                 np.where(np.isfinite(s), "low", "none")))


#: Verdicts of image quality control, best first.
QC_VERDICTS: tuple[str, ...] = ("passed", "warning", "failed")
#: Stored QC states of an image: ``pending`` until QC ran, then a verdict.
QC_STATES: tuple[str, ...] = ("pending",) + QC_VERDICTS


#: File-name suffixes of FITS images the service considers (case-insensitive).
FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fts")


def is_fits_name(path) -> bool:
    """True when the name of ``path`` (str or bytes, undecodable bytes allowed) ends with
    one of :data:`FITS_SUFFIXES`, case-insensitively."""
    return os.fsencode(path).lower().endswith(tuple(s.encode() for s in FITS_SUFFIXES))


#: Header keywords that mark a mosaic (the DSA-110 mosaic builder writes NIMAGES).
MOSAIC_KEYWORDS: tuple[str, ...] = ("NIMAGES",)


def header_is_mosaic(header) -> bool:
    """The one mosaic rule for headers, shared by the daemon's classifier, the manager and QC.

    A file is a mosaic when it lies under a configured mosaic directory (decided by the
    caller) **or** its header (any mapping) has one of :data:`MOSAIC_KEYWORDS`. A
    missing BMAJ is not a mosaic marker.
    """
    return any(k in header for k in MOSAIC_KEYWORDS)


__all__ = ["METHODS", "DEFAULT_METHOD", "SURVEYS", "SURVEY_ALIASES", "MONITOR_SURVEY",
           "CATALOG_SURVEYS",
           "canonical_survey", "ESE_PRESETS", "ESE_PRESET_THRESHOLDS", "CONFIDENCE_LEVELS",
           "CONFIDENCE_THRESHOLDS", "confidence_level", "MOSAIC_KEYWORDS", "header_is_mosaic", "FITS_SUFFIXES", "is_fits_name",
           "QC_VERDICTS", "QC_STATES"]
