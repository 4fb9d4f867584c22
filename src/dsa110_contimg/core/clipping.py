"""Robust scale and sigma clipping, defined once (docs/science.md, Noise and QC statistics).

Two conventions are used in the package, each with one home here:

* **MAD clipping** (:func:`mad_clip`): centre = median, scale = 1.4826 x MAD
  (:func:`mad_sigma`) of the samples currently kept; a sample is kept when
  ``|x - centre| <= clip_sigma * scale`` (inclusive, so a zero scale keeps the
  samples equal to the median). Every round re-tests *all* samples against the
  centre and scale of the previous round's kept set, and the loop stops when
  the kept set no longer changes, the scale is not finite, or after
  ``max_iter`` rounds. Used for small populations (reference flux ratios,
  log eta / log V, matched-filter samples), where one outlier must not set the scale.
* **Std clipping about the median** (:func:`clipped_std`): centre = median,
  scale = standard deviation of the kept samples (about their mean), bounds
  inclusive, each round clipping only the survivors of the previous one, up to
  ``maxiters`` rounds. This is exactly ``astropy.stats.sigma_clip(cenfunc="median",
  stdfunc="std")`` followed by ``np.std`` (a test checks it), computed on a sorted
  copy with prefix sums: ~3x faster than astropy on a 262 144-pixel sample, which
  matters because it runs on every image.

The per-box background estimator keeps (in :mod:`dsa110_contimg.science.noise_clipping`) its
own row-wise variant of the std convention (vectorised over thousands of boxes,
std about the median, corrected with :func:`truncated_normal_variance`).
"""

from __future__ import annotations

import math

import numpy as np

#: Gaussian-equivalent sigma of the median absolute deviation (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.4826
#: Standard error of a sample median is sqrt(pi/2) sigma / sqrt(N) for Gaussian data.
MEDIAN_EFFICIENCY = float(np.sqrt(np.pi / 2.0))


def mad_sigma(x, axis=None):
    """1.4826 x median absolute deviation about the median, ignoring NaN (same unit as ``x``).

    A scalar for ``axis=None``, else reduced along ``axis``.
    """
    x = np.asarray(x, dtype=float)
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=axis)


def mad_clip(x, clip_sigma: float, max_iter: int = 10) -> np.ndarray:
    """Mask of the samples of 1-D ``x`` (finite values) kept by iterative MAD clipping.

    See the module docstring for the convention. Returns a bool array of ``x``'s
    length (all True when ``max_iter`` is 0).
    """
    x = np.asarray(x, dtype=float)
    keep = np.ones(x.size, bool)
    for _ in range(max_iter):
        med = np.median(x[keep])
        sd = MAD_TO_SIGMA * np.median(np.abs(x[keep] - med))
        if not np.isfinite(sd):
            break
        new = np.abs(x - med) <= clip_sigma * sd
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def clipped_std(v, *, sigma: float = 3.0, maxiters: int = 5) -> float:
    """Standard deviation of 1-D finite samples ``v`` after median-centred std clipping.

    See the module docstring for the convention. NaN for no sample.
    """
    v = np.sort(np.asarray(v, dtype=np.float64).ravel())
    n = v.size
    if n == 0:
        return float("nan")
    # sorted once: every clipping round keeps a contiguous range [lo, hi); sums by prefix sums
    d = v - v[n // 2]
    c1 = np.concatenate(([0.0], np.cumsum(d)))
    c2 = np.concatenate(([0.0], np.cumsum(d * d)))
    lo, hi = 0, n

    def std_of(lo, hi):
        k = hi - lo
        mean = (c1[hi] - c1[lo]) / k
        return float(np.sqrt(max((c2[hi] - c2[lo]) / k - mean * mean, 0.0)))

    for _ in range(maxiters):
        k = hi - lo
        med = 0.5 * (v[lo + (k - 1) // 2] + v[lo + k // 2])
        std = std_of(lo, hi)
        if not std > 0:
            break
        nlo = max(lo, int(np.searchsorted(v, med - sigma * std, "left")))
        nhi = min(hi, int(np.searchsorted(v, med + sigma * std, "right")))
        if (nlo, nhi) == (lo, hi) or nhi <= nlo:
            break
        lo, hi = nlo, nhi
    return std_of(lo, hi)


def truncated_normal_variance(k: float) -> float:
    """Variance of a unit normal truncated at +-k sigma: divide a clipped variance by it
    to recover the Gaussian variance."""
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    return 1.0 - 2.0 * k * phi / math.erf(k / math.sqrt(2.0))


__all__ = ["MAD_TO_SIGMA", "MEDIAN_EFFICIENCY", "mad_sigma", "mad_clip", "clipped_std",
           "truncated_normal_variance"]
