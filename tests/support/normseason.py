"""Injection-recovery of per-epoch gains over a simulated season of the real NVSS field.

The real NVSS VizieR extract gives the sky (its 1.4 GHz fluxes as the true peak fluxes);
each epoch j multiplies every source by a known gain g_j and adds Gaussian noise of
``noise_jyb``; references are the sources with SNR >= 50 (highest first, at most
``max_refs``), baselines the median of their first 10 epochs, and every epoch's factor
and error come from :func:`dsa110_contimg.science.normalize.normalise_epochs`.

The truth of a factor is g_j / G: G is the gain the baselines themselves carry, one
number common to every epoch of the season (a common scale is not a normalisation error:
it cancels in every light curve), taken as the median of C_j / g_j over the baseline window's epochs (the first 10). A
*discordant subset* is a set of references whose flux steps up by ``discordant_step``
after the baseline window (intrinsically variable references the catalogue cannot know).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NVSS_REAL = "real/nvss_vizier_VIII65_extract.fits"


def nvss_fluxes(shared_data: Path) -> np.ndarray:
    """The real extract's 1.4 GHz flux densities (Jy), brightest first."""
    from astropy.table import Table

    flux = np.asarray(Table.read(Path(shared_data) / NVSS_REAL)["S1.4"], float) / 1000.0
    return np.sort(flux[np.isfinite(flux) & (flux > 0)])[::-1]


def noise_for_references(flux: np.ndarray, n_refs: int, min_snr: float = 50.0) -> float:
    """Noise (Jy/beam) at which exactly ``n_refs`` sources reach ``min_snr``."""
    return float(0.5 * (flux[n_refs - 1] + flux[n_refs])) / min_snr


@dataclass
class SeasonPulls:
    """Per-epoch outcome of one simulated season (arrays over the normalised epochs)."""

    factor: np.ndarray
    error: np.ndarray
    truth: np.ndarray
    n_refs: np.ndarray
    warned: np.ndarray
    n_epochs: int

    @property
    def pull(self) -> np.ndarray:
        return (self.factor - self.truth) / self.error


def simulate_season(flux: np.ndarray, *, noise_jyb: float, epochs: int = 40, gain_rms: float = 0.04,
                    max_refs: int = 20, discordant: int = 0, discordant_step: float = 0.05,
                    seed: int = 0, min_snr: float = 50.0) -> SeasonPulls:
    """Simulate a season and recover its gains (see the module docstring)."""
    from dsa110_contimg.science.normalize import normalise_epochs, select_references

    rng = np.random.default_rng(seed)
    n = flux.size
    gain = 1.0 + gain_rms * rng.standard_normal(epochs)
    mjd = 60676.0 + 2.0 * np.arange(epochs)
    true = flux[:, None] * gain[None, :]
    snr = flux / noise_jyb
    ones = np.ones(n, bool)
    ref = select_references(snr, ones, ones, min_snr=min_snr, max_refs=max_refs)
    if discordant:
        odd = ref[rng.permutation(ref.size)[:discordant]]
        true[odd, 10:] *= 1.0 + discordant_step
    err = np.full(true.shape, noise_jyb)
    measured = true + noise_jyb * rng.standard_normal(true.shape)
    _, _, corr = normalise_epochs(measured, err, mjd, ref)
    ok = np.array([c.ok for c in corr])
    fac = np.array([c.factor for c in corr])[ok]
    early = ok[:10]
    scale = float(np.median(fac[:early.sum()] / gain[:10][early])) if early.any() else np.nan
    return SeasonPulls(fac, np.array([c.factor_err for c in corr])[ok], gain[ok] * scale,
                       np.array([c.n_used for c in corr])[ok],
                       np.array([bool(c.warning) for c in corr])[ok], epochs)


def robust_sigma(x) -> float:
    """1.4826 x MAD (the pull distribution's width, robust to a few outliers)."""
    from dsa110_contimg.core.clipping import mad_sigma

    return float(mad_sigma(np.asarray(x, float)))
