"""Typed exceptions of the photometry service.

Every error names *what* went wrong, *which* file (or field) it concerns and
*why*, so that a daemon can record it against a job and an operator can act on
it without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class PhotometryError(Exception):
    """Base class of every error raised by :mod:`dsa110_contimg`.

    Parameters
    ----------
    reason : str
        Human-readable reason.
    path : str or Path, optional
        The file the error concerns, when there is one.
    """

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


# --- images -----------------------------------------------------------------
class InvalidImage(PhotometryError):
    """A FITS image cannot be used for photometry."""


class TruncatedImage(InvalidImage):
    """The file is shorter than its header says (partial write or damage)."""


class CorruptImage(InvalidImage):
    """The file is not a readable FITS file (garbage, damaged header)."""


class NoCelestialWCS(InvalidImage):
    """The header has no usable celestial (RA/Dec) world coordinate system."""


class MissingBeam(InvalidImage):
    """The restoring beam is needed but neither the header nor the caller gives one."""


class EmptyImage(InvalidImage):
    """The image holds no finite pixel (all NaN / blanked)."""


class ImplausibleHeader(InvalidImage):
    """A header value is unparsable or outside any physically plausible range (NaN beam,
    BMAJ of 1e300 deg, sub-milliarcsecond pixels, MJD-OBS of 1e300): the image geometry or
    epoch cannot be trusted, and retrying cannot help."""


class MapMismatch(InvalidImage):
    """A background or noise map does not match its image (shape, missing file)."""


# --- catalogues -------------------------------------------------------------
class CatalogError(PhotometryError):
    """Base class of catalogue errors."""


class UnknownCatalog(CatalogError):
    """A survey name that the service does not know."""


class CatalogMissing(CatalogError):
    """The catalogue (or the sky region asked for) is not available locally."""


class ColumnError(CatalogError):
    """A required column is missing or ambiguous in an input table."""


class OnlineCatalogError(CatalogError):
    """An online catalogue query failed (network unreachable, time-out)."""


# --- configuration, storage ---------------------------------------------------
class ConfigError(PhotometryError):
    """A configuration value is invalid.

    Parameters
    ----------
    field : str
        Name of the offending field or key.
    value : object
        The value given.
    allowed : str
        What would have been accepted.
    path : str or Path, optional
        The configuration file, if the value came from one.
    """

    def __init__(self, field: str, value: object, allowed: str, path: str | Path | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid value {value!r} for '{field}': expected {allowed}", path)


class UnknownKey(ConfigError):
    """A configuration key or ``[section]`` the schema does not have, with the nearest
    known spelling when one is close (``wrokers`` -> ``workers``).

    Parameters
    ----------
    field : str
        The dotted key as written (``daemon.wrokers``, or ``deamon`` for a section).
    value : object
        The value given (a section's table is not repeated in the message).
    known : sequence of str
        The keys (or sections) allowed where it was found.
    path : str or Path, optional
        The configuration file.
    section : bool
        The unknown name is a ``[section]``, not a key.
    """

    def __init__(self, field: str, value: object, known, path: str | Path | None = None, *,
                 section: bool = False):
        import difflib

        known = sorted(known)
        name = field.rsplit(".", 1)[-1]
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        prefix = field[: len(field) - len(name)]
        kind = "sections" if section else "keys"
        self.field, self.value = field, value
        self.allowed = f"one of the {kind} " + ", ".join(known)
        self.suggestion = guess[0] if guess else None
        what = f"unknown section [{field}]" if section else f"unknown key '{field}' (= {value!r})"
        if guess:   # the list of every key only when no known name is close
            hint = (f"did you mean [{guess[0]}]?" if section else f"did you mean '{prefix}{guess[0]}'?")
            text = f"{what}: {hint} (every {kind[:-1]}: contimg-photometry config dump)"
        else:
            text = f"{what}: expected {self.allowed}"
        PhotometryError.__init__(self, text, path)


class StoreError(PhotometryError):
    """A database could not be opened, migrated or written."""


# --- measurement methods ------------------------------------------------------
class MethodUnavailable(PhotometryError):
    """A measurement method needs an optional dependency that is not installed
    (e.g. ``aegean`` without ``pip install 'dsa110-contimg-photometry[aegean]'``)."""


class ExternalToolError(PhotometryError):
    """An external tool (BANE, Aegean) failed or exceeded its wall-clock time-out."""


# --- light curves, normalisation, variability ---------------------------------
class InvalidLightCurve(PhotometryError):
    """Light-curve arrays are malformed (shape mismatch, wrong dimensions,
    duplicate sources in one update, too few sources for a population fit)."""


class OutOfOrderEpoch(InvalidLightCurve):
    """A measurement is older than the latest one in a source's running sums;
    the statistics must be recomputed from the full light curve."""


class NotNormalisable(PhotometryError):
    """An image's flux-scale correction cannot be trusted (too few references,
    scatter too large); its fluxes must stay raw and be flagged."""


__all__ = [name for name in dir() if name[0].isupper()]
