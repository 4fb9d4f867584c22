"""``PhotometryConfig``: the parameters of the photometry workflow.

The fields follow the seed design (catalog, radius_deg, ra/dec radii for
elongated mosaics, min_flux_mjy, max_sources, method, normalize, detect_ese,
catalog_path, auto_compute_extent) plus the estimator, normalisation and ESE
settings the workflow needs, and :class:`QCLimits`, the quality-control
thresholds. Both are sections of the configuration schema
(:class:`~dsa110_contimg.core.schema.ConfigModel`, pydantic v2): every value is
validated on construction; a bad value raises
:class:`~dsa110_contimg.core.errors.ConfigError` naming the field, the value and
what is allowed. The docstring under each field is its documentation and its
comment in the generated ``config/photometry.toml``.

Search region rule (see :meth:`PhotometryConfig.search_region`): explicit radii
first (an ellipse when both ``ra_radius_deg`` and ``dec_radius_deg`` are set,
else a circle of ``radius_deg``), else the image's pixel footprint when
``auto_compute_extent`` is on, else a 0.5 deg circle for images and 1.0 deg
for mosaics.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

from pydantic import BeforeValidator, Field, field_validator, model_validator

from dsa110_contimg.core.enums import ESE_PRESETS, METHODS
from dsa110_contimg.core.enums import SURVEY_ALIASES as CATALOG_ALIASES
from dsa110_contimg.core.enums import CATALOG_SURVEYS as CATALOGS
from dsa110_contimg.core.errors import ConfigError  # noqa: F401 (raised through the schema)
from dsa110_contimg.core.schema import Allowed, ConfigModel, Directory, invalid, one_of

DEFAULT_RADIUS_DEG = {"image": 0.5, "mosaic": 1.0}

Catalog = one_of(CATALOGS, CATALOG_ALIASES, fold_case=True, suffix=" (alias racs)")
Method = one_of(METHODS)
ESEPreset = one_of(ESE_PRESETS)
_Radius = Annotated[float | None, Field(gt=0, le=90.0)]
_BEAM_ALLOWED = "[BMAJ_arcsec, BMIN_arcsec, BPA_deg] with 0 < BMIN <= BMAJ"


def _listed(value):
    return tuple(value) if isinstance(value, list) else value


class QCLimits(ConfigModel):
    """Thresholds of image quality control (:func:`dsa110_contimg.science.qc.evaluate_image_qc`;
    warn / fail pairs). Units: Jy/beam for noise, arcsec for beams, mJy for catalogue fluxes.
    The workflow builds them from ``PhotometryConfig.qc_max_rms_jyb`` and the image kind."""

    max_rms_jyb: float | None = Field(None, gt=0)
    """Absolute limit on the median and the clipped rms, Jy/beam (None: not checked)."""
    rms_history_warn: float = Field(1.3, gt=1.0)
    """Ratio of this image's rms to the field's recent median above which the image gets a
    warning (> 1 and <= rms_history_fail)."""
    rms_history_fail: float = Field(1.6, gt=1.0)
    """Same ratio above which the image fails; its reciprocal bounds a suspiciously low rms
    (warning)."""
    min_history: int = Field(3, ge=1)
    """Recent images needed before history comparisons are made."""
    min_beam_arcsec: float = Field(1.0, gt=0)
    """Smallest plausible beam FWHM (arcsec; outside the range: failed)."""
    max_beam_arcsec: float = Field(600.0, gt=0)
    """Largest plausible beam FWHM (arcsec)."""
    min_beam_pixels: float = Field(1.5, gt=0)
    """Minimum beam minor FWHM in pixels (undersampled below: failed)."""
    max_beam_axis_ratio: float = Field(5.0, ge=1.0)
    """Maximum BMAJ/BMIN (above: warning)."""
    beam_history_warn: float = Field(1.2, gt=1.0)
    """Ratio (either way) of the beam axes to the field's recent median beyond which the image
    gets a warning (> 1 and <= beam_history_fail)."""
    beam_history_fail: float = Field(1.5, gt=1.0)
    """Same ratio beyond which the image fails."""
    blanked_warn: float = Field(0.2, ge=0.0, le=1.0)
    """Fraction of blanked pixels for a warning (<= blanked_fail)."""
    blanked_fail: float = Field(0.5, ge=0.0, le=1.0)
    """Fraction of blanked pixels for a failure."""
    flux_scale_warn: float = Field(0.10, gt=0)
    """|median(measured/catalogue) - 1| for a warning (<= flux_scale_fail)."""
    flux_scale_fail: float = Field(0.15, gt=0)
    """|median(measured/catalogue) - 1| for a failure."""
    flux_scale_min_snr: float = Field(5.0, gt=0)
    """Minimum measured SNR of a flux-scale source."""
    flux_scale_min_mjy: float = Field(10.0, gt=0)
    """Catalogue flux band of flux-scale sources: lower end (mJy)."""
    flux_scale_max_mjy: float = Field(10_000.0, gt=0)
    """Catalogue flux band of flux-scale sources: upper end (mJy)."""
    flux_scale_min_sources: int = Field(3, ge=1)
    """Fewest sources to judge the flux scale (fewer: warning)."""
    min_dynamic_range: float = Field(10.0, gt=0)
    """max|pixel| / median rms below which a warning is given."""
    require_beam: bool = True
    """Fail images without a beam (mosaics with NIMAGES only warn)."""

    @model_validator(mode="after")
    def _ordered(self):
        for lo, hi in (("rms_history_warn", "rms_history_fail"),
                       ("beam_history_warn", "beam_history_fail"),
                       ("blanked_warn", "blanked_fail"), ("flux_scale_warn", "flux_scale_fail"),
                       ("min_beam_arcsec", "max_beam_arcsec"),
                       ("flux_scale_min_mjy", "flux_scale_max_mjy")):
            a, b = getattr(self, lo), getattr(self, hi)
            strict = lo.startswith(("min_", "flux_scale_min"))
            if a > b or (strict and a == b):
                raise invalid(f"{'<' if strict else '<='} {hi} ({b})", field=lo, value=a)
        return self


class PhotometryConfig(ConfigModel):
    """Configuration of one photometry run (the ``[photometry]`` table).

    Build it with keywords (``PhotometryConfig(catalog="nvss", method="forced")``), from
    a mapping (:meth:`from_dict`, unknown keys are errors) or from another one
    (:meth:`replace`). It is immutable and validated on construction: a bad value raises
    :class:`~dsa110_contimg.core.errors.ConfigError` naming the key, the value and what
    is allowed. Each field is documented by the docstring under it (the same text is the
    comment of the key in ``config/photometry.toml``).
    """

    toml_comment = ("Parameters of the photometry workflow (PhotometryConfig in "
                    "dsa110_contimg.core.config). Keys without a default are shown commented out "
                    "(TOML has no null): leave them out to keep them unset.")

    catalog: Catalog = "nvss"
    """Source catalogue: nvss | first | rax (RACS; alias racs) | vlass | master."""
    method: Method = "forced"
    """Measurement method: forced (fixed-beam weighted fit) | peak (box maximum, biased high) |
    adaptive (sub-band binning) | aegean."""
    radius_deg: _Radius = Field(None, json_schema_extra={"example": 0.5})
    """Search region: a circle of this radius (deg). Without radius_deg and the ellipse below,
    the region is the image footprint when auto_compute_extent, else 0.5 deg (images) /
    1.0 deg (mosaics)."""
    ra_radius_deg: _Radius = Field(None, json_schema_extra={"example": 1.0})
    """Elliptical search region: semi-axis along RA (deg on the sky, already times cos(dec));
    set together with dec_radius_deg."""
    dec_radius_deg: _Radius = Field(None, json_schema_extra={"example": 0.5})
    """Elliptical search region: semi-axis along Dec (deg); set together with ra_radius_deg."""
    auto_compute_extent: bool = True
    """Without explicit radii, use the image's pixel footprint as the search region."""
    min_flux_mjy: float | None = Field(None, ge=0.0, json_schema_extra={"example": 10.0})
    """Catalogue flux floor (mJy); unset = no limit."""
    max_sources: Annotated[int | None, Field(ge=1), Allowed("a positive integer (or leave the key out)")] \
        = Field(None, json_schema_extra={"example": 1000})
    """Keep at most this many catalogue sources, brightest first; unset = no limit."""
    normalize: bool = True
    """Per-image ensemble normalisation (on by default: the service exists to put images on a
    common flux scale; 'status' warns when a deployment turns it off)."""
    detect_ese: bool = True
    """Update variability statistics and evaluate ESE candidates (on by default; 'status'
    warns when it is off)."""
    ese_preset: ESEPreset = "moderate"
    """ESE detection thresholds: conservative | moderate | sensitive."""
    variable_eta_v_sigma: float = Field(3.0, gt=0)
    """Variables (sources list --variable): eta and V thresholds in sigma of the Gaussian fits
    to the field's log10 eta and log10 V (Rowlinson et al. 2019)."""
    variable_clip_sigma: float = Field(3.0, gt=0)
    """Variables: iterative sigma clip of log10 eta and log10 V before the Gaussian fits."""
    variable_vs_min: float = Field(4.3, gt=0)
    """Variables, two-epoch criterion (Mooley et al. 2016): smallest |Vs| of the most
    significant consecutive pair."""
    variable_m_min: float = Field(0.26, gt=0)
    """Variables, two-epoch criterion: smallest |m| of that pair."""
    variable_min_epochs: int = Field(5, ge=2)
    """Variables: fewest epochs of a source to be selected or to enter its field's fit."""
    catalog_path: Directory | None = Field(None, json_schema_extra={"example": "catalogs"})
    """Catalogue directory override (else [paths] catalog_dir, else ./catalogs)."""
    nbeam: float = Field(3.0, gt=0, le=50.0)
    """Forced-photometry cutout width (beams)."""
    cluster_threshold: float = Field(1.5, ge=0.0)
    """Sources closer than this many BMAJ are fitted jointly."""
    condon_errors: bool = False
    """Also report Condon (1997) flux errors."""
    beam_arcsec: Annotated[tuple[float, float, float] | None, BeforeValidator(_listed),
                           Allowed(_BEAM_ALLOWED)] = Field(None, json_schema_extra={"example": [15.0, 10.0, 0.0]})
    """Beam for images or mosaics whose header has none: [BMAJ_arcsec, BMIN_arcsec, BPA_deg
    east of north]. Without it a mosaic without a beam is measured with 'peak'."""
    norm_min_snr: float = Field(50.0, ge=0.0)
    """Normalisation references: minimum SNR."""
    norm_max_refs: int = Field(20, ge=1)
    """Normalisation references: at most this many per image."""
    norm_min_refs: int = Field(3, ge=3)
    """Normalisation references: fewest usable for a correction (else the image stays raw and
    flagged)."""
    norm_baseline_epochs: int = Field(10, ge=1)
    """Epochs that define a reference's baseline flux."""
    norm_max_scatter: float = Field(0.10, gt=0, le=1.0)
    """Largest fractional scatter of the reference ratios for a trusted correction."""
    norm_stability_days: float = Field(30.0, gt=0)
    """A reference whose reduced chi^2 about its baseline exceeds norm_stability_chi2 over the
    last norm_stability_days (>= 5 points) is no longer used as a reference (days)."""
    norm_stability_chi2: float = Field(2.0, gt=0)
    """Reduced chi^2 limit of a stable reference (see norm_stability_days)."""
    field_window_days: float = Field(600.0, gt=0)
    """Days of a field's history before each new image that its per-image steps read: the QC
    comparison images, the images waiting for references, the images normalised again when
    a reference becomes an ESE candidate, the fallback-ensemble light curves and the ESE
    window (at least norm_stability_days; a field whose latest earlier epoch lies more than
    field_window_days - 540 days back is read whole). Recomputations read every epoch."""
    qc: bool = True
    """Image quality control before fluxes enter light curves."""
    qc_max_rms_jyb: float | None = Field(None, gt=0, json_schema_extra={"example": 0.01})
    """Quality control: absolute limit on the image's median rms (Jy/beam); unset = only the
    comparison with the field's history."""
    allow_online: bool = False
    """Allow online (VizieR) catalogue queries when a region is missing locally."""
    detect: bool = True
    """Blind source detection on every image (docs/science.md §15): islands above
    detect_sigma x the local rms, deblended, measured with the forced estimator; detections
    are associated with known sources and unmatched ones tested as new sources."""
    detect_sigma: float = Field(5.0, gt=0)
    """Blind detection: a component's brightest pixel reaches this many local rms."""
    detect_analysis_sigma: float = Field(3.0, gt=0)
    """Blind detection: islands are the connected pixels above this many local rms
    (<= detect_sigma)."""
    detect_systematic_arcsec: float = Field(1.0, ge=0)
    """Astrometric systematic added in quadrature to each detection's Condon position
    error (arcsec)."""
    association_precut_beams: float = Field(1.5, gt=0)
    """Association: candidate sources within this many BMAJ/2 of a detection."""
    association_max_r: float = Field(5.68, gt=0)
    """Association: largest de Ruiter radius of a match (dimensionless)."""
    new_source_min_sigma: float = Field(6.0, gt=0)
    """A detection that matches nothing is new when peak / (an earlier covering image's rms
    at the position) reaches this (new_high_sigma)."""
    new_source_edge_beams: float = Field(1.8, ge=0)
    """Detections (and earlier images' depths) closer than this many BMAJ to an image edge
    are not used for new sources."""
    artefact_radius_beams: float = Field(5.0, ge=0)
    """A detection within this many BMAJ of a much brighter one is an artefact candidate."""
    artefact_flux_ratio: float = Field(0.1, gt=0, le=1.0)
    """... when its peak is below this fraction of the brighter detection's peak."""
    backfill_new_sources: bool = True
    """Measure a new source's position in the earlier images that cover it (a batch job
    through the queue), so its light curve starts before it appeared."""

    @field_validator("beam_arcsec")
    @classmethod
    def _beam(cls, beam):
        if beam is not None and not 0 < beam[1] <= beam[0]:
            raise invalid("BMIN <= BMAJ and BMIN > 0 (" + _BEAM_ALLOWED + ")")
        return beam

    @model_validator(mode="after")
    def _detection_thresholds(self):
        if self.detect_analysis_sigma > self.detect_sigma:
            raise invalid(f"<= detect_sigma ({self.detect_sigma})", field="detect_analysis_sigma",
                          value=self.detect_analysis_sigma)
        return self

    @model_validator(mode="after")
    def _ellipse(self):
        if (self.ra_radius_deg is None) != (self.dec_radius_deg is None):
            raise invalid("both set or both unset", field="ra_radius_deg/dec_radius_deg",
                          value=(self.ra_radius_deg, self.dec_radius_deg))
        return self

    # -- round trip ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PhotometryConfig":
        """Build from a plain mapping (TOML table, JSON params); unknown keys are errors."""
        return cls.validate_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict; ``from_dict(to_dict())`` gives an equal config."""
        return super().to_dict()

    def replace(self, **overrides: Any) -> "PhotometryConfig":
        """A copy with some fields changed (validated); unknown names are errors."""
        return super().replace(**overrides)

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

