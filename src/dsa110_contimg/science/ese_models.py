"""Simulated light curves for ESE tests and benchmarks (no detection code here).

Physical ESE light curves
-------------------------
* :func:`gaussian_lens_gain`: the one-dimensional Gaussian plasma lens of
  Clegg, Fey & Lazio (1998, ApJ 496, 253). A lens of electron column
  N_e(x) = N_0 exp(-(x/a)**2) maps a ray at lens-plane position u = x/a to the
  observer-plane position u' = u (1 + alpha exp(-u**2)), with
  alpha = lambda**2 r_e N_0 D / (pi a**2) the lens strength. The flux gain at u'
  is the density of rays there (sum over all images of 1 / |du'/du|): a minimum
  in the centre (gain 1 / (1 + alpha) for a point source) and, for
  alpha > 2 exp(1.5) / 4 ~ 2.24, caustic brightenings either side.
* :func:`axisymmetric_lens_gain`: the two-dimensional axisymmetric Gaussian lens
  of Dong, Petropoulou & Giannios (2018, MNRAS 481, 2685): the same radial
  mapping r' = r (1 + alpha exp(-r**2)), gain = ray density per unit area; an
  observer crossing at impact parameter b (lens radii) sees the classical U-shaped
  dip for small b and, for larger b, curves without a U-shaped dip (a shallow
  dip, a single or double brightening).

Both gains are computed by ray shooting (rays uniform in the lens plane, their
mapped positions histogrammed) and smoothed by a Gaussian source of width
``source_size`` (lens radii), which softens the caustics.

Negative classes (light curves that are *not* ESEs): a short flare, a permanent
step down, a slow monotonic fade and a run of three bad-calibration epochs
(:func:`negative_shape`).

Times are MJD (days); fluxes are fractions of the source's baseline unless
stated otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.science.ese import ese_model

#: Half-extent (lens radii) and resolution of the ray-shooting grids.
_U_MAX = 8.0
_N_RAYS = 200_000
_N_BINS = 3200


def _smooth(profile, du, source_size):
    """Gaussian smoothing of a sampled profile (source FWHM-free sigma in lens radii)."""
    sig = max(float(source_size), 1e-6) / du
    half = int(np.ceil(4 * sig))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sig) ** 2)
    k /= k.sum()
    padded = np.pad(profile, half, mode="edge")
    return np.convolve(padded, k, mode="valid")


def gaussian_lens_gain(u_obs, alpha: float, source_size: float = 0.1):
    """Flux gain of a 1-D Gaussian plasma lens (Clegg, Fey & Lazio 1998).

    Parameters
    ----------
    u_obs : array-like
        Observer positions in lens radii (0 = lens centre).
    alpha : float
        Lens strength (> 0: over-dense, diverging lens).
    source_size : float
        Gaussian sigma of the background source projected on the lens plane
        (lens radii); 0.05-0.5 are typical.

    Returns
    -------
    ndarray
        Gain (1 far from the lens), same shape as ``u_obs``.
    """
    u = np.linspace(-_U_MAX * 1.5, _U_MAX * 1.5, _N_RAYS)
    up = u * (1.0 + alpha * np.exp(-u * u))
    edges = np.linspace(-_U_MAX, _U_MAX, _N_BINS + 1)
    counts, _ = np.histogram(up, edges)
    du = edges[1] - edges[0]
    density = counts / (du * (_N_RAYS - 1) / (u[-1] - u[0]))
    centres = 0.5 * (edges[1:] + edges[:-1])
    gain = _smooth(density, du, source_size)
    return np.interp(np.asarray(u_obs, float), centres, gain, left=1.0, right=1.0)


def axisymmetric_lens_gain(r_obs, alpha: float, source_size: float = 0.1):
    """Flux gain of a 2-D axisymmetric Gaussian plasma lens (Dong et al. 2018).

    Radial mapping r' = r (1 + alpha exp(-r**2)); gain = rays per unit observer-plane
    area / rays per unit lens-plane area, smoothed radially by the source.

    Parameters
    ----------
    r_obs : array-like
        Observer distance from the lens axis (lens radii, >= 0).
    alpha, source_size : float
        As :func:`gaussian_lens_gain`.
    """
    r = np.linspace(0.0, _U_MAX * 1.5, _N_RAYS)
    rp = r * (1.0 + alpha * np.exp(-r * r))
    edges = np.linspace(0.0, _U_MAX, _N_BINS + 1)
    dr = r[1] - r[0]
    counts, _ = np.histogram(rp, edges, weights=2 * np.pi * r * dr)      # lens-plane area
    area = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)                    # observer-plane area
    density = counts / area
    centres = 0.5 * (edges[1:] + edges[:-1])
    # radial smoothing: mirror about r = 0 so the profile stays flat at the axis
    full = np.concatenate([density[::-1], density])
    fc = np.concatenate([-centres[::-1], centres])
    gain = _smooth(full, edges[1] - edges[0], source_size)
    return np.interp(np.abs(np.asarray(r_obs, float)), fc, gain, right=1.0)


def lens_light_curve(mjd, t0: float, crossing_days: float, alpha: float, *,
                     source_size: float = 0.1, impact: float | None = None):
    """Fractional light curve of a source crossing a Gaussian plasma lens.

    Parameters
    ----------
    mjd : array-like
        Times (MJD).
    t0 : float
        Time of closest approach to the lens axis (MJD).
    crossing_days : float
        Time to cross one lens radius (days); the event lasts ~3-6 of these.
    alpha, source_size : float
        Lens strength and source size (see :func:`gaussian_lens_gain`).
    impact : float, optional
        None for the 1-D lens (Clegg et al. 1998); otherwise the impact
        parameter b (lens radii) of a straight path across the 2-D axisymmetric
        lens (Dong et al. 2018).
    """
    x = (np.asarray(mjd, float) - t0) / crossing_days
    if impact is None:
        return gaussian_lens_gain(x, alpha, source_size)
    return axisymmetric_lens_gain(np.hypot(x, impact), alpha, source_size)


def lens_curve_type(gain, dip: float = 0.1, bump: float = 0.1) -> str:
    """Phenomenological type of a noiseless lens light curve (gain samples on a fine grid).

    ``u-dip``: a dip deeper than ``dip`` reaching its minimum between brightenings or
    at the centre (the classical ESE); ``shallow-dip``: a dip of less than ``dip``
    with brightening(s) above ``bump``; ``brightening``: no dip below 1 - dip/2
    and a peak above 1 + bump; ``weak``: neither.
    """
    g = np.asarray(gain, float)
    lo, hi = g.min(), g.max()
    if lo <= 1 - dip:
        return "u-dip"
    if hi >= 1 + bump and lo <= 1 - dip / 2:
        return "shallow-dip"
    if hi >= 1 + bump:
        return "brightening"
    return "weak"


def dsa110_cadence(n_days: float = 365.0, *, gap_frac: float = 0.25, rng=None,
                   start_mjd: float = 60000.0):
    """Daily transit epochs (MJD) with a random ``gap_frac`` of the days missing.

    DSA-110 sees each field once per sidereal day; the time of day is jittered
    by +-0.05 d, and missing days model down time, flagged data and QC rejects.
    """
    rng = np.random.default_rng(rng)
    days = np.arange(int(n_days), dtype=float)
    keep = rng.random(days.size) >= gap_frac
    return start_mjd + days[keep] + rng.uniform(-0.05, 0.05, int(keep.sum()))


#: ESE classes of :func:`simulate_classes`: 1-D lens (Clegg et al. 1998) and 2-D
#: axisymmetric lens crossed at impact parameter 0-3 lens radii (Dong et al. 2018).
LENS_CLASSES = ("clegg", "2d-lens")

#: Negative (non-ESE) classes of :func:`negative_shape`.
NEGATIVE_CLASSES = ("flare", "step", "fade", "badcal3")


def negative_shape(kind: str, mjd, rng) -> np.ndarray:
    """Fractional light curve of a non-ESE class on epochs ``mjd`` (1-D, sorted).

    ``flare``: a brightening of 20-100 % lasting 1-5 d (exponential decay);
    ``step``: a permanent drop of 15-50 % at a random epoch in the middle 80 %;
    ``fade``: a linear fade of 15-50 % over the whole span;
    ``badcal3``: three consecutive epochs 15-40 % low (bad calibration).
    """
    t = np.asarray(mjd, float)
    span = t[-1] - t[0]
    out = np.ones(t.size)
    if kind == "flare":
        tf = rng.uniform(t[0] + 0.1 * span, t[-1] - 0.1 * span)
        amp, tau = rng.uniform(0.2, 1.0), rng.uniform(1.0, 5.0)
        after = t >= tf
        out[after] += amp * np.exp(-(t[after] - tf) / tau)
    elif kind == "step":
        ts = rng.uniform(t[0] + 0.1 * span, t[-1] - 0.1 * span)
        out[t >= ts] -= rng.uniform(0.15, 0.5)
    elif kind == "fade":
        out -= rng.uniform(0.15, 0.5) * (t - t[0]) / span
    elif kind == "badcal3":
        i = rng.integers(int(0.05 * t.size), int(0.95 * t.size) - 3)
        out[i:i + 3] -= rng.uniform(0.15, 0.4)
    else:
        raise ValueError(f"negative_shape: unknown kind {kind!r}; one of {NEGATIVE_CLASSES}")
    return out


@dataclass
class ClassSample:
    """Light curves of one class on a shared cadence.

    Attributes
    ----------
    name : str
    mjd : ndarray, shape (n_epochs,)
    flux, err : ndarray, shape (n, n_epochs)
        Normalised flux (baseline 1 x source flux, Jy/beam) and 1-sigma errors.
    is_ese : bool
        Whether a detector should flag the class.
    params : dict of ndarray
        Injected parameters per light curve.
    """

    name: str
    mjd: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    is_ese: bool
    params: dict


def simulate_classes(n_per_class: int = 200, *, n_steady: int = 2000, n_days: float = 365.0,
                     gap_frac: float = 0.25, err_frac: float = 0.025, seed: int = 0,
                     classes=None) -> list[ClassSample]:
    """Light curves of every class at DSA-110 cadence (daily, ``gap_frac`` gaps).

    Classes: ``steady``; ``clegg`` (1-D Gaussian lens, alpha log-uniform 0.5-10,
    source size 0.05-0.4 lens radii, crossing time 4-30 d, so events last
    ~2-5 weeks to ~4 months); ``2d-lens`` (axisymmetric lens, same parameters,
    impact parameter uniform in 0-3 lens radii); each lens light curve is typed by
    :func:`lens_curve_type` (``params['type']``) and its depth 1 - min(gain) is kept;
    and the negatives of :data:`NEGATIVE_CLASSES`.
    Events are centred so that the whole event and at least 20 d either side lie
    inside the span. Errors are ``err_frac`` of the flux (the reported error is
    exact); every class shares one cadence per call.
    """
    rng = np.random.default_rng(seed)
    mjd = dsa110_cadence(n_days, gap_frac=gap_frac, rng=rng)
    names = classes or ("steady",) + LENS_CLASSES + NEGATIVE_CLASSES
    fine = np.linspace(-_U_MAX, _U_MAX, 3201)
    out = []
    for name in names:
        n = n_steady if name == "steady" else n_per_class
        shape = np.ones((n, mjd.size))
        params: dict = {}
        if name in LENS_CLASSES:
            alpha = np.exp(rng.uniform(np.log(0.5), np.log(10.0), n))
            size = rng.uniform(0.05, 0.4, n)
            cross = np.exp(rng.uniform(np.log(4.0), np.log(30.0), n))
            half = 3.0 * cross + 20.0
            t0 = rng.uniform(mjd[0] + half, mjd[-1] - half)
            b = None if name == "clegg" else rng.uniform(0.0, 3.0, n)
            types, depth = [], np.zeros(n)
            for i in range(n):
                if b is None:
                    g = gaussian_lens_gain(fine, alpha[i], size[i])
                else:
                    g = axisymmetric_lens_gain(np.hypot(fine, b[i]), alpha[i], size[i])
                shape[i] = np.interp((mjd - t0[i]) / cross[i], fine, g, left=1.0, right=1.0)
                types.append(lens_curve_type(g))
                depth[i] = 1.0 - g.min()
            params = {"alpha": alpha, "source_size": size, "crossing_days": cross, "t0": t0,
                      "type": np.array(types), "depth": depth}
            if b is not None:
                params["impact"] = b
        elif name in NEGATIVE_CLASSES:
            for i in range(n):
                shape[i] = negative_shape(name, mjd, rng)
        elif name != "steady":
            raise ValueError(f"simulate_classes: unknown class {name!r}")
        flux0 = 10 ** rng.uniform(np.log10(0.01), np.log10(1.0), n)       # Jy/beam
        sigma = err_frac * flux0[:, None] * np.ones((1, mjd.size))
        flux = flux0[:, None] * shape + sigma * rng.standard_normal(shape.shape)
        is_ese = name in LENS_CLASSES
        out.append(ClassSample(name, mjd, flux, sigma, is_ese, params))
    return out



@dataclass
class SimulatedPopulation:
    """Light curves of steady sources and injected ESEs, with their truth.

    Attributes
    ----------
    mjd : ndarray, shape (n_epochs,)
        Image epochs (MJD), unevenly spaced, shared by all sources.
    flux, err : ndarray, shape (n_sources, n_epochs)
        Raw measured flux (Jy/beam; per-epoch gain applied) and 1-sigma error;
        NaN where a source was not measured.
    true_flux : ndarray, shape (n_sources,)
        Intrinsic out-of-event flux (Jy/beam).
    catalog_snr : ndarray, shape (n_sources,)
        Catalogue SNR (for reference selection).
    gain : ndarray, shape (n_epochs,)
        Injected per-image gain.
    is_ese : ndarray of bool
    depth, duration, t0, caustic_amp : ndarray, shape (n_sources,)
        Injected ESE parameters (NaN for steady sources).
    """

    mjd: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    true_flux: np.ndarray
    catalog_snr: np.ndarray
    gain: np.ndarray
    is_ese: np.ndarray
    depth: np.ndarray
    duration: np.ndarray
    t0: np.ndarray
    caustic_amp: np.ndarray


def simulate_population(n_steady: int, n_ese: int, *, n_epochs: int = 60, noise_frac: float = 0.02,
                        gain_jitter: float = 0.05, depth_range=(0.2, 0.6),
                        duration_range=(20.0, 150.0), mean_cadence_days: float = 6.0,
                        missing_frac: float = 0.05, caustic_frac: float = 0.5,
                        seed: int = 0) -> SimulatedPopulation:
    """Steady sources plus injected ESEs on an uneven cadence, with gain jitter.

    Epoch spacings are exponential (mean ``mean_cadence_days``) with two seasonal
    gaps of 20-40 d; each source misses a random ``missing_frac`` of epochs.
    Fluxes are log-uniform in 5 mJy - 2 Jy; the measurement noise is
    ``noise_frac`` of the flux (the reported error is exact); every image's
    flux scale is multiplied by 1 + N(0, ``gain_jitter``). ESE sources get
    :func:`ese_model` with depth uniform in ``depth_range``, duration log-uniform
    in ``duration_range``, fully inside the span, and (for a fraction
    ``caustic_frac``) caustics of 0.1-0.5 times the depth. The catalogue SNR is
    flux / 0.45 mJy (NVSS-like).
    """
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(mean_cadence_days, n_epochs - 1) + 0.5
    for g in rng.choice(n_epochs - 1, 2, replace=False):
        gaps[g] += rng.uniform(20, 40)
    mjd = 60000.0 + np.concatenate([[0.0], np.cumsum(gaps)])
    n = n_steady + n_ese
    true = 10 ** rng.uniform(np.log10(0.005), np.log10(2.0), n)
    gain = 1.0 + gain_jitter * rng.standard_normal(n_epochs)
    is_ese = np.zeros(n, bool)
    is_ese[rng.choice(n, n_ese, replace=False)] = True
    depth = np.full(n, np.nan)
    dur = np.full(n, np.nan)
    t0 = np.full(n, np.nan)
    caus = np.full(n, np.nan)
    k = int(is_ese.sum())
    depth[is_ese] = rng.uniform(*depth_range, k)
    dur[is_ese] = np.exp(rng.uniform(np.log(duration_range[0]), np.log(duration_range[1]), k))
    lo, hi = mjd[0] + dur[is_ese] / 2, mjd[-1] - dur[is_ese] / 2
    t0[is_ese] = rng.uniform(lo, hi)
    caus[is_ese] = np.where(rng.random(k) < caustic_frac, rng.uniform(0.1, 0.5, k), 0.0) * depth[is_ese]
    shape = np.ones((n, n_epochs))
    shape[is_ese] = ese_model(mjd[None, :], t0[is_ese, None], dur[is_ese, None],
                              depth[is_ese, None], caus[is_ese, None])
    sigma = noise_frac * true[:, None] * np.ones((1, n_epochs))
    flux = gain[None, :] * (true[:, None] * shape + sigma * rng.standard_normal((n, n_epochs)))
    err = gain[None, :] * sigma
    miss = rng.random((n, n_epochs)) < missing_frac
    flux[miss] = np.nan
    err[miss] = np.nan
    return SimulatedPopulation(mjd, flux, err, true, true / 0.00045, gain, is_ese, depth, dur, t0,
                               caus)


__all__ = ["ClassSample", "LENS_CLASSES", "NEGATIVE_CLASSES", "SimulatedPopulation", "axisymmetric_lens_gain",
           "dsa110_cadence", "gaussian_lens_gain", "lens_curve_type", "lens_light_curve",
           "negative_shape", "simulate_classes", "simulate_population"]
