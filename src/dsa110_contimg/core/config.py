"""``PhotometryConfig``: the parameters of the photometry workflow.

The fields follow the seed design (catalog, radius_deg, ra/dec radii for
elongated mosaics, min_flux_mjy, max_sources, method, normalize, detect_ese,
catalog_path, auto_compute_extent) plus the estimator, normalisation and ESE
settings the workflow needs. Every value is validated on construction; a bad
value raises :class:`~dsa110_contimg.core.errors.ConfigError` naming the
field and what is allowed.

Search region rule (see :meth:`PhotometryConfig.search_region`): explicit radii
first (an ellipse when both ``ra_radius_deg`` and ``dec_radius_deg`` are set,
else a circle of ``radius_deg``), else the image's pixel footprint when
``auto_compute_extent`` is on, else a 0.5 deg circle for images and 1.0 deg
for mosaics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dsa110_contimg.core.errors import ConfigError

CATALOGS = ("nvss", "first", "rax", "vlass", "master")
CATALOG_ALIASES = {"racs": "rax"}
METHODS = ("forced", "peak", "adaptive", "aegean")
ESE_PRESETS = ("conservative", "moderate", "sensitive")
DEFAULT_RADIUS_DEG = {"image": 0.5, "mosaic": 1.0}


@dataclass(frozen=True)
class PhotometryConfig:
    """Configuration of one photometry run.

    Parameters
    ----------
    catalog : str
        Source catalogue: ``nvss``, ``first``, ``rax`` (RACS; alias ``racs``),
        ``vlass`` or ``master``.
    radius_deg : float, optional
        Circular search radius (deg).
    ra_radius_deg, dec_radius_deg : float, optional
        Elliptical search semi-axes (deg on the sky, RA axis already times
        cos(dec)); both must be set together.
    min_flux_mjy : float, optional
        Catalogue flux floor (mJy).
    max_sources : int, optional
        Keep at most this many sources, brightest first.
    method : str
        ``forced`` (fixed-beam weighted fit, the default), ``peak`` (box
        maximum, biased high), ``adaptive`` (sub-band binning) or ``aegean``.
    normalize : bool
        Apply per-image ensemble normalisation (default on: the service exists to put
        images on a common flux scale; ``status`` says when it is off).
    detect_ese : bool
        Update variability statistics and evaluate ESE candidates (default on).
    catalog_path : Path, optional
        Catalogue directory (else the service configuration, else ``./catalogs``).
    auto_compute_extent : bool
        Without explicit radii, use the image's pixel footprint.
    nbeam : float
        Forced-photometry cutout width in beams.
    cluster_threshold : float
        Sources closer than this many BMAJ are fitted jointly.
    condon_errors : bool
        Also report Condon (1997) flux errors.
    beam_arcsec : tuple of 3 floats, optional
        (BMAJ, BMIN arcsec; BPA deg east of north) for images or mosaics whose
        header has no beam. Without it a mosaic is measured with ``peak``.
    ese_preset : str
        ``conservative``, ``moderate`` or ``sensitive`` thresholds.
    norm_min_snr, norm_max_refs, norm_baseline_epochs, norm_min_refs, norm_max_scatter
        Reference selection and correction settings (science.md section 7).
    norm_stability_days, norm_stability_chi2
        A reference whose normalised flux has chi2_nu above ``norm_stability_chi2``
        over the last ``norm_stability_days`` (>= 5 points) is no longer used.
    qc : bool
        Run image quality control before fluxes enter light curves.
    qc_max_rms_jyb : float, optional
        Absolute limit on the image's median rms (Jy/beam).
    allow_online : bool
        Allow astroquery/VizieR when a region is missing locally.
    """

    catalog: str = "nvss"
    radius_deg: float | None = None
    ra_radius_deg: float | None = None
    dec_radius_deg: float | None = None
    min_flux_mjy: float | None = None
    max_sources: int | None = None
    method: str = "forced"
    normalize: bool = True
    detect_ese: bool = True
    catalog_path: Path | None = None
    auto_compute_extent: bool = True
    nbeam: float = 3.0
    cluster_threshold: float = 1.5
    condon_errors: bool = False
    beam_arcsec: tuple[float, float, float] | None = None
    ese_preset: str = "moderate"
    norm_min_snr: float = 50.0
    norm_max_refs: int = 20
    norm_min_refs: int = 3
    norm_baseline_epochs: int = 10
    norm_max_scatter: float = 0.10
    norm_stability_days: float = 30.0
    norm_stability_chi2: float = 2.0
    qc: bool = True
    qc_max_rms_jyb: float | None = None
    allow_online: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        cat = str(self.catalog).lower()
        cat = CATALOG_ALIASES.get(cat, cat)
        if cat not in CATALOGS:
            raise ConfigError("catalog", self.catalog, "one of " + ", ".join(CATALOGS) + " (alias racs)")
        set_("catalog", cat)
        if self.method not in METHODS:
            raise ConfigError("method", self.method, "one of " + ", ".join(METHODS))
        if self.ese_preset not in ESE_PRESETS:
            raise ConfigError("ese_preset", self.ese_preset, "one of " + ", ".join(ESE_PRESETS))
        for name in ("radius_deg", "ra_radius_deg", "dec_radius_deg"):
            value = getattr(self, name)
            if value is not None:
                set_(name, _positive_float(name, value, upper=90.0))
        if (self.ra_radius_deg is None) != (self.dec_radius_deg is None):
            raise ConfigError("ra_radius_deg/dec_radius_deg",
                              (self.ra_radius_deg, self.dec_radius_deg), "both set or both unset")
        if self.min_flux_mjy is not None:
            set_("min_flux_mjy", _number("min_flux_mjy", self.min_flux_mjy, lower=0.0))
        if self.max_sources is not None:
            if isinstance(self.max_sources, bool) or not isinstance(self.max_sources, int) \
                    or self.max_sources < 1:
                raise ConfigError("max_sources", self.max_sources, "a positive integer or None")
        for name in ("normalize", "detect_ese", "auto_compute_extent", "condon_errors", "qc",
                     "allow_online"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "true or false")
        set_("nbeam", _positive_float("nbeam", self.nbeam, upper=50.0))
        set_("cluster_threshold", _number("cluster_threshold", self.cluster_threshold, lower=0.0))
        set_("norm_min_snr", _number("norm_min_snr", self.norm_min_snr, lower=0.0))
        set_("norm_max_scatter", _positive_float("norm_max_scatter", self.norm_max_scatter, upper=1.0))
        set_("norm_stability_days", _positive_float("norm_stability_days", self.norm_stability_days))
        set_("norm_stability_chi2", _positive_float("norm_stability_chi2", self.norm_stability_chi2))
        for name, low in (("norm_max_refs", 1), ("norm_min_refs", 3), ("norm_baseline_epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(name, value, f"an integer >= {low}")
        if self.qc_max_rms_jyb is not None:
            set_("qc_max_rms_jyb", _positive_float("qc_max_rms_jyb", self.qc_max_rms_jyb))
        if self.catalog_path is not None:
            set_("catalog_path", Path(self.catalog_path).expanduser())
        if self.beam_arcsec is not None:
            beam = tuple(self.beam_arcsec)
            if len(beam) != 3:
                raise ConfigError("beam_arcsec", self.beam_arcsec, "[BMAJ_arcsec, BMIN_arcsec, BPA_deg]")
            bmaj = _positive_float("beam_arcsec[0]", beam[0])
            bmin = _positive_float("beam_arcsec[1]", beam[1])
            if bmin > bmaj:
                raise ConfigError("beam_arcsec", self.beam_arcsec, "BMIN <= BMAJ")
            set_("beam_arcsec", (bmaj, bmin, _number("beam_arcsec[2]", beam[2])))

    # -- round trip ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PhotometryConfig":
        """Build from a plain mapping (TOML table, JSON params); unknown keys are errors."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(data) - known - {"extra"})
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], "one of the keys " + ", ".join(sorted(known)))
        if data.get("beam_arcsec") is not None:
            data["beam_arcsec"] = tuple(data["beam_arcsec"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict; ``from_dict(to_dict())`` gives an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def replace(self, **overrides: Any) -> "PhotometryConfig":
        """A copy with some fields changed (validated); unknown names are errors."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known:
                raise ConfigError(key, overrides[key], "one of the keys " + ", ".join(sorted(known - {"extra"})))
        return dataclasses.replace(self, **overrides)

    # -- derived --------------------------------------------------------------------
    def search_region(self, kind: str) -> tuple[str, tuple[float, ...]]:
        """How to query the catalogue for an image of ``kind`` (image/mosaic).

        Returns ``("ellipse", (ra_radius, dec_radius))``, ``("cone", (radius,))``
        or ``("footprint", ())``.
        """
        if self.ra_radius_deg is not None and self.dec_radius_deg is not None:
            return "ellipse", (self.ra_radius_deg, self.dec_radius_deg)
        if self.radius_deg is not None:
            return "cone", (self.radius_deg,)
        if self.auto_compute_extent:
            return "footprint", ()
        return "cone", (DEFAULT_RADIUS_DEG[kind],)


def _number(name: str, value: Any, *, lower: float | None = None, upper: float | None = None) -> float:
    if isinstance(value, bool):
        raise ConfigError(name, value, "a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ConfigError(name, value, "a finite number")
    if lower is not None and out < lower:
        raise ConfigError(name, value, f"a number >= {lower}")
    if upper is not None and out > upper:
        raise ConfigError(name, value, f"a number <= {upper}")
    return out


def _positive_float(name: str, value: Any, *, upper: float | None = None) -> float:
    out = _number(name, value, upper=upper)
    if out <= 0:
        raise ConfigError(name, value, "a number > 0" + (f" and <= {upper}" if upper else ""))
    return out
