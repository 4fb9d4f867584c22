"""Image quality control before any flux enters a light curve.

:func:`evaluate_image_qc` looks at one image (one plane) and returns a
:class:`QCResult` with a status (``"passed"``, ``"warning"`` or ``"failed"``),
human-readable reasons and the metrics it computed. It is a pure function: no
database, no files written. The caller stores ``status`` and ``reasons`` with
the image, keeps the fluxes of a failed image (flagged ``Flag.QC_FAILED`` with
:func:`mark_measurements`) but out of normalisation and variability, and
passes the ``metrics`` of the field's recent images back in as ``history``.

Checks
------
noise
    ``median_rms_jyb`` = median of the rms map (finite, > 0 pixels; docs/science.md,
    Noise and QC statistics), ``clipped_rms_jyb`` = 3-sigma, 5-iteration clipped standard
    deviation of the image. Each is compared with an absolute limit
    (:attr:`QCLimits.max_rms_jyb`) and with the median of the same metric over
    the field's history (ratio limits; a much *lower* noise than usual is a
    warning too: a model or a mis-scaled image looks like that).
beam
    present (a missing beam fails, except on a mosaic header with ``NIMAGES``,
    where it is expected and only a warning), not absurd (FWHM within
    ``[min_beam_arcsec, max_beam_arcsec]``, at least ``min_beam_pixels``
    pixels, axis ratio below ``max_beam_axis_ratio``), and not wildly
    different from the field's recent beams.
blanking
    fraction of non-finite pixels of the plane.
flux scale
    median of measured peak / catalogue flux over bright (catalogue flux in
    ``[flux_scale_min_mjy, flux_scale_max_mjy]``, SNR >= ``flux_scale_min_snr``),
    compact (``compact`` mask, when given), unblended, successful
    measurements (dsa110.md §1: SNR >= 5, 0.01-10 Jy). Fewer than
    ``flux_scale_min_sources`` such sources is a warning, not a failure.
dynamic range
    max |pixel| / median rms; below ``min_dynamic_range`` is a warning only.

Units: Jy/beam for maps and fluxes, mJy for catalogue fluxes, arcsec for beams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from dsa110_contimg.core.clipping import MEDIAN_EFFICIENCY, clipped_std, mad_sigma
from dsa110_contimg.core.enums import QC_VERDICTS, header_is_mosaic
from dsa110_contimg.core.config import QCLimits
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.science.image import finite_count_and_peak
from dsa110_contimg.science.results import Flag, MeasurementTable

PASSED, WARNING, FAILED = QC_VERDICTS
_RANK = {PASSED: 0, WARNING: 1, FAILED: 2}

#: The default thresholds (:class:`~dsa110_contimg.core.config.QCLimits`, part of the
#: configuration schema).
DEFAULT_LIMITS = QCLimits()

#: metrics keys compared against history
HISTORY_KEYS = ("median_rms_jyb", "clipped_rms_jyb", "beam_major_arcsec", "beam_minor_arcsec")


@dataclass
class QCResult:
    """Outcome of :func:`evaluate_image_qc`.

    Attributes
    ----------
    status : str
        ``"passed"``, ``"warning"`` or ``"failed"`` (the worst check).
    reasons : list of str
        One line per warning or failure, ``"<check>: <what> (<limit>)"``;
        empty when passed.
    metrics : dict
        Numbers computed (floats, NaN when not computable): ``median_rms_jyb``,
        ``clipped_rms_jyb``, ``beam_major_arcsec``, ``beam_minor_arcsec``,
        ``beam_pa_deg``, ``beam_pixels``, ``blanked_fraction``,
        ``dynamic_range``, ``flux_scale_ratio``, ``flux_scale_scatter``,
        ``n_flux_scale``, the history medians used (``history_*``) and ``checks``
        (check name -> status). Store them: they are the next image's history.
    """

    status: str
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _times(x: float) -> str:
    return f"{x:g}x"


def _percent(x: float) -> str:
    return f"{100 * x:g} %"


class _Collector:
    def __init__(self):
        self.reasons: list[str] = []
        self.checks: dict[str, str] = {}

    def ok(self, check: str):
        self.checks.setdefault(check, PASSED)

    def add(self, check: str, level: str, text: str):
        self.reasons.append(f"{check}: {text}")
        if _RANK[level] > _RANK[self.checks.get(check, PASSED)]:
            self.checks[check] = level

    def grade(self, check: str, value: float, warn: float, fail: float, what: str, limit) -> bool:
        """The one warn/fail rule: ``value > fail`` fails, else ``value > warn`` warns, the
        reason being ``what`` and the threshold as ``limit(threshold)``. True when graded."""
        if value > fail:
            self.add(check, FAILED, f"{what} (limit {limit(fail)})")
        elif value > warn:
            self.add(check, WARNING, f"{what} (warn at {limit(warn)})")
        else:
            return False
        return True

    @property
    def status(self) -> str:
        return max(self.checks.values(), key=_RANK.__getitem__, default=PASSED)


# --- statistics ---------------------------------------------------------------------
def _strided_sample(data, max_samples: int) -> np.ndarray:
    """Finite pixels on a regular stride (deterministic), at most about ``max_samples``, float64.

    Only the sampled rows are read (memory-map friendly); never a full-map copy.
    """
    if hasattr(data, "sampled"):          # a lazy GridMap
        v = np.asarray(data.sampled(max_samples), dtype=np.float64).ravel()
    else:
        arr = data if hasattr(data, "shape") and hasattr(data, "ndim") else np.asarray(data)
        if arr.ndim == 0:
            v = np.asarray([float(arr)])
        else:
            stride = max(1, int(np.ceil(np.sqrt(arr.size / max_samples))))
            sl = (slice(None, None, stride),) * arr.ndim
            v = np.asarray(arr[sl], dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def clipped_rms(data, *, sigma: float = 3.0, maxiters: int = 5, max_samples: int = 65_536) -> float:
    """Sigma-clipped standard deviation of the finite pixels, Jy/beam.

    Median-centred std clipping at ``sigma`` for up to ``maxiters`` rounds
    (:func:`dsa110_contimg.core.clipping.clipped_std`; docs/science.md, Noise and QC
    statistics) over at most about ``max_samples`` pixels taken on a
    regular stride (deterministic; the sample, not the map, is copied). NaN
    when no finite pixel.
    """
    return clipped_std(_strided_sample(data, max_samples), sigma=sigma, maxiters=maxiters)


def map_median(rms_map, *, max_samples: int = 262_144) -> float:
    """Median of the finite, positive values of an rms map (NaN if none), Jy/beam.

    A lazy :class:`~dsa110_contimg.science.noise.GridMap` is evaluated on a
    lattice of at most about ``max_samples`` pixels; an array is sampled on a
    regular stride. No full-map float64 copy is made.
    """
    grid = getattr(rms_map, "grid", None)
    if grid is not None:      # a GridMap varies on the box scale: 4 x 4 samples per box suffice
        max_samples = min(max_samples, 16 * grid.size)
    r = _strided_sample(rms_map, max_samples)
    r = r[r > 0]
    return float(np.median(r)) if r.size else float("nan")


def _history_median(history: Iterable[Mapping[str, Any]] | None, key: str, min_n: int) -> float:
    if not history:
        return float("nan")
    vals = []
    for h in history:
        v = h.get(key) if isinstance(h, Mapping) else None
        if isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0:
            vals.append(float(v))
    return float(np.median(vals)) if len(vals) >= min_n else float("nan")


# --- the checks ------------------------------------------------------------------------
def _check_noise(c: _Collector, m: dict, limits: QCLimits, history):
    for key, label in (("median_rms_jyb", "median rms"), ("clipped_rms_jyb", "clipped rms")):
        v = m[key]
        if not np.isfinite(v) or v <= 0:
            if key == "median_rms_jyb":  # the clipped rms always exists for a non-empty image
                continue
            c.add("rms", FAILED, f"{label} cannot be computed")
            continue
        c.ok("rms")
        if limits.max_rms_jyb is not None and v > limits.max_rms_jyb:
            c.add("rms", FAILED, f"{label} {v * 1e3:.4g} mJy/beam exceeds the limit "
                                 f"{limits.max_rms_jyb * 1e3:.4g} mJy/beam")
        ref = _history_median(history, key, limits.min_history)
        m[f"history_{key}"] = ref
        if np.isfinite(ref):
            ratio = v / ref
            c.ok("rms_history")
            high = c.grade("rms_history", ratio, limits.rms_history_warn, limits.rms_history_fail,
                           f"{label} {v * 1e3:.4g} mJy/beam is {ratio:.2f}x the field's recent "
                           f"median {ref * 1e3:.4g} mJy/beam", _times)
            if not high and ratio < 1.0 / limits.rms_history_fail:
                c.add("rms_history", WARNING, f"{label} {v * 1e3:.4g} mJy/beam is only {ratio:.2f}x "
                      f"the field's recent median {ref * 1e3:.4g} mJy/beam (model or mis-scaled "
                      f"image?)")


def _check_beam(c: _Collector, m: dict, image, limits: QCLimits, history):
    beam = image.beam
    if beam is None:
        if header_is_mosaic(image.header):
            c.add("beam", WARNING, "mosaic without a restoring beam (expected for DSA-110 "
                                   "mosaics; fluxes from the biased box-peak method)")
        elif limits.require_beam:
            c.add("beam", FAILED, "no restoring beam (no BMAJ/BMIN/BPA nor a HISTORY beam)")
        else:
            c.add("beam", WARNING, "no restoring beam")
        return
    major, minor = beam.major_arcsec, beam.minor_arcsec
    m["beam_major_arcsec"], m["beam_minor_arcsec"], m["beam_pa_deg"] = major, minor, beam.pa_deg
    pixels = min(major, minor) / image.pixel_scale_arcsec
    m["beam_pixels"] = pixels
    c.ok("beam")
    if not (limits.min_beam_arcsec <= minor and major <= limits.max_beam_arcsec):
        c.add("beam", FAILED, f"beam {major:.4g}\" x {minor:.4g}\" outside the plausible range "
                              f"{limits.min_beam_arcsec:g}-{limits.max_beam_arcsec:g}\" (BMAJ/BMIN "
                              f"written in arcsec instead of degrees?)")
    if pixels < limits.min_beam_pixels:
        c.add("beam", FAILED, f"beam minor axis spans only {pixels:.2f} pixels (limit "
                              f"{limits.min_beam_pixels:g}): undersampled")
    ratio = max(major, minor) / min(major, minor)
    if ratio > limits.max_beam_axis_ratio:
        c.add("beam", WARNING, f"beam axis ratio {ratio:.2f} exceeds {limits.max_beam_axis_ratio:g}")
    for key, v in (("beam_major_arcsec", major), ("beam_minor_arcsec", minor)):
        ref = _history_median(history, key, limits.min_history)
        m[f"history_{key}"] = ref
        if not np.isfinite(ref):
            continue
        c.ok("beam_history")
        r = max(v / ref, ref / v)
        axis = key.split("_")[1]
        c.grade("beam_history", r, limits.beam_history_warn, limits.beam_history_fail,
                f"beam {axis} axis {v:.4g}\" differs {r:.2f}x from the field's recent median "
                f"{ref:.4g}\"", _times)


def _check_blanking(c: _Collector, m: dict, limits: QCLimits):
    f = m["blanked_fraction"]
    c.ok("blanked")
    c.grade("blanked", f, limits.blanked_warn, limits.blanked_fail,
            f"{100 * f:.1f} % of pixels are blanked", _percent)


def flux_scale_ratio(measurements: MeasurementTable, catalog_flux_mjy, *, compact=None,
                     limits: QCLimits = DEFAULT_LIMITS) -> tuple[float, float, int]:
    """Median measured/catalogue flux ratio of bright, compact, unblended sources.

    Parameters
    ----------
    measurements : MeasurementTable
        Peak fluxes (Jy/beam) at catalogue positions.
    catalog_flux_mjy : array-like
        Catalogue flux of each row, mJy (NaN where unknown).
    compact : array-like of bool, optional
        Rows whose catalogue source is compact (unresolved); all when None.
    limits : QCLimits
        Flux band, SNR floor.

    Returns
    -------
    (ratio, scatter, n)
        Median ratio, its standard error (1.4826 MAD x sqrt(pi/2) / sqrt(n)) and the
        number of sources used (NaN, NaN, n when n is 0).
    """
    cat = np.asarray(catalog_flux_mjy, dtype=float).ravel()
    if cat.size != len(measurements):
        raise ConfigError("catalog_flux_mjy", f"{cat.size} values",
                          f"one per measurement ({len(measurements)})")
    peak_mjy = measurements["peak_jyb"] * 1e3
    with np.errstate(invalid="ignore"):
        sel = (measurements["success"] & np.isfinite(peak_mjy) & np.isfinite(cat)
               & (cat >= limits.flux_scale_min_mjy) & (cat <= limits.flux_scale_max_mjy)
               & (measurements["snr"] >= limits.flux_scale_min_snr)
               & ((measurements["flags"] & int(Flag.CLUSTERED)) == 0))
    if compact is not None:
        comp = np.asarray(compact, dtype=bool).ravel()
        if comp.size != cat.size:
            raise ConfigError("compact", f"{comp.size} values", f"one per measurement ({cat.size})")
        sel &= comp
    n = int(np.count_nonzero(sel))
    if n == 0:
        return float("nan"), float("nan"), 0
    r = peak_mjy[sel] / cat[sel]
    med = float(np.median(r))
    err = float(mad_sigma(r) * MEDIAN_EFFICIENCY / np.sqrt(n))
    return med, err, n


def _check_flux_scale(c: _Collector, m: dict, measurements, catalog_flux_mjy, compact,
                      limits: QCLimits):
    if measurements is None or catalog_flux_mjy is None:
        return
    ratio, err, n = flux_scale_ratio(measurements, catalog_flux_mjy, compact=compact, limits=limits)
    m["flux_scale_ratio"], m["flux_scale_scatter"], m["n_flux_scale"] = ratio, err, n
    if n < limits.flux_scale_min_sources:
        c.add("flux_scale", WARNING, f"only {n} bright compact catalogue source(s) measured "
                                     f"(need {limits.flux_scale_min_sources}): flux scale not "
                                     f"checked")
        return
    c.ok("flux_scale")
    dev = abs(ratio - 1.0)
    c.grade("flux_scale", dev, limits.flux_scale_warn, limits.flux_scale_fail,
            f"median measured/catalogue flux ratio {ratio:.3f} +/- {err:.3f} over {n} sources "
            f"is off by {100 * dev:.1f} %", _percent)


def image_statistics(image, *, maps=None, with_blanking: bool = False) -> dict[str, float]:
    """The image-wide statistics QC judges (pure: pixels only, no history).

    Returns ``median_rms_jyb`` (median of the rms map), ``clipped_rms_jyb``
    (sigma-clipped pixel rms, from a sample) and ``dynamic_range`` (peak |pixel| /
    median rms; NaN when the rms is not positive); Jy/beam. With ``with_blanking``
    also ``blanked_fraction``. The peak and the finite count come from one streamed
    pass over the data (no full-map temporaries); a fully blanked image gets NaN
    statistics. ``maps`` as in :func:`evaluate_image_qc`.
    """
    data = image.data
    own = getattr(image, "finite_count_and_peak", None)    # a RadioImage counts once
    n_finite, peak = own() if callable(own) else finite_count_and_peak(data)
    blanked = float(1.0 - n_finite / data.size) if data.size else 1.0
    out = {"median_rms_jyb": float("nan"), "clipped_rms_jyb": float("nan"),
           "dynamic_range": float("nan")}
    if with_blanking:
        out["blanked_fraction"] = blanked
    if blanked >= 1.0:
        return out
    if maps is None:
        from dsa110_contimg.science.noise import background_maps_for

        maps = background_maps_for(image)
    out["median_rms_jyb"] = map_median(maps.rms)
    out["clipped_rms_jyb"] = clipped_rms(data)
    if np.isfinite(out["median_rms_jyb"]) and out["median_rms_jyb"] > 0:
        out["dynamic_range"] = peak / out["median_rms_jyb"]
    return out


def evaluate_image_qc(image, measurements: MeasurementTable | None = None,
                      catalog_flux_mjy=None, history: Iterable[Mapping[str, Any]] | None = None,
                      limits: QCLimits = DEFAULT_LIMITS, *, maps=None, compact=None) -> QCResult:
    """Quality-control one image (its selected plane) before its fluxes are used.

    Parameters
    ----------
    image : RadioImage or str or Path or ImageSummary
        The image, or a :class:`~dsa110_contimg.pipeline.measure.ImageSummary`
        whose ``qc_stats`` were computed where it was measured (no pixels needed).
    measurements : MeasurementTable, optional
        Measurements on this image at catalogue positions (for the flux scale).
    catalog_flux_mjy : array-like, optional
        Catalogue flux of each measurement row, mJy.
    history : iterable of dict, optional
        ``metrics`` of recent QC results of the same field (most relevant:
        images that passed). Fewer than ``limits.min_history`` usable entries
        means no history comparison.
    limits : QCLimits
        Thresholds.
    maps : BackgroundMaps, optional
        Precomputed background/rms maps of this plane; otherwise
        :func:`dsa110_contimg.science.noise.background_maps_for` builds them (pass the
        maps the measurement used, so they are not built twice).
    compact : array-like of bool, optional
        Rows whose catalogue source is compact; all when None.

    Returns
    -------
    QCResult
    """
    from dsa110_contimg.science.image import as_image

    if not isinstance(limits, QCLimits):
        raise ConfigError("limits", limits, "a QCLimits instance")
    stats = getattr(image, "qc_stats", None)   # an ImageSummary measured elsewhere (no pixels)
    if stats is None:
        image = as_image(image)
    history = list(history) if history is not None else []
    m: dict[str, Any] = {
        "median_rms_jyb": float("nan"), "clipped_rms_jyb": float("nan"),
        "beam_major_arcsec": float("nan"), "beam_minor_arcsec": float("nan"),
        "beam_pa_deg": float("nan"), "beam_pixels": float("nan"),
        "blanked_fraction": float("nan"), "dynamic_range": float("nan"),
        "flux_scale_ratio": float("nan"), "flux_scale_scatter": float("nan"), "n_flux_scale": 0,
    }
    c = _Collector()
    if stats is not None:   # measured elsewhere: the summary carries the blanked fraction
        m["blanked_fraction"] = float(image.blanked_fraction)
        if m["blanked_fraction"] < 1.0:
            m.update(stats)
    else:
        m.update(image_statistics(image, maps=maps, with_blanking=True))
    _check_noise(c, m, limits, history)
    _check_beam(c, m, image, limits, history)
    _check_blanking(c, m, limits)
    if np.isfinite(m["dynamic_range"]):
        c.ok("dynamic_range")
        if m["dynamic_range"] < limits.min_dynamic_range:
            c.add("dynamic_range", WARNING, f"dynamic range {m['dynamic_range']:.1f} below "
                                            f"{limits.min_dynamic_range:g}")
    _check_flux_scale(c, m, measurements, catalog_flux_mjy, compact, limits)
    m["checks"] = dict(c.checks)
    return QCResult(c.status, c.reasons, m)


def mark_measurements(table: MeasurementTable, qc: QCResult) -> MeasurementTable:
    """Set ``Flag.QC_FAILED`` on every row when ``qc`` failed (fluxes are kept).

    ``QC_FAILED`` is informational (not in ``FAILURE_FLAGS``): the rows stay
    successful measurements, but normalisation and variability skip them.
    Also records ``qc_status``/``qc_reasons`` in ``table.meta``. Returns the table.
    """
    if qc.failed:
        table.columns["flags"] = table.columns["flags"] | int(Flag.QC_FAILED)
    table.meta["qc_status"] = qc.status
    table.meta["qc_reasons"] = list(qc.reasons)
    return table


__all__ = ["QCLimits", "QCResult", "evaluate_image_qc", "image_statistics", "flux_scale_ratio", "clipped_rms",
           "map_median", "finite_count_and_peak", "mark_measurements", "HISTORY_KEYS", "PASSED", "WARNING", "FAILED"]
