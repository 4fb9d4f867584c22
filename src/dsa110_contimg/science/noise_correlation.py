"""How much noisier a matched-filter amplitude is than one pixel, measured on the image itself.

The noise of interferometric images is correlated on the beam scale, so the forced
estimator's kernel-weighted mean pixel noise is not an honest 1-sigma error of the
fitted amplitude (docs/science.md, Forced photometry: estimator).
:func:`noise_correlation_factor` measures the ratio on the image, and the forced
photometry multiplies its errors by it.
"""

from __future__ import annotations

import math

import numpy as np

from dsa110_contimg.core.clipping import mad_clip, truncated_normal_variance

#: fewest usable lattice points for a factor (else NaN)
MIN_POINTS = 50
#: footprint pixels copied per chunk of lattice points (bounds the working memory to a
#: few hundred kB whatever ``max_points``)
_CHUNK_PIXELS = 1 << 16


def _lattice(shape, side: int, max_points: int):
    """Flat pixel indices ``(y, x)`` of at most about ``max_points`` points on a regular
    lattice whose ``side x side`` footprints lie inside the image (spacing at least a third
    of the side), or None when the image is too small."""
    ny, nx = shape
    hk = side // 2
    if ny < side + 2 or nx < side + 2:
        return None
    ay, ax = ny - 2 * hk, nx - 2 * hk
    step = max(1, side // 3, int(math.ceil(math.sqrt(ay * ax / max_points))))
    ys = np.arange(hk, ny - hk, step)
    xs = np.arange(hk, nx - hk, step)
    return tuple(a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))


def _map_values(arr, where: np.ndarray) -> np.ndarray:
    """A map (scalar, lazy map or array) at flat pixel indices ``where``, float64."""
    if np.ndim(arr) == 0:
        return np.full(where.shape, float(arr))
    if hasattr(arr, "take_flat"):
        return arr.take_flat(where).astype(np.float64)
    flat = arr.reshape(-1) if getattr(arr, "flags", None) is not None and arr.flags.c_contiguous \
        else np.ascontiguousarray(arr).reshape(-1)
    return np.take(flat, where).astype(np.float64)


def _filtered(data, background, rms, kernel: np.ndarray, yy: np.ndarray, xx: np.ndarray):
    """At each lattice point: the normalised image ``z = (D - B) / sigma`` filtered with the
    unit-peak kernel, ``f = (z * K) / sum(K^2)``, and ``z`` itself at the point.

    With smooth maps (a lazy grid map, or scalars) the background and rms are taken at
    the lattice point (they vary on the box scale, much wider than the kernel); with
    arrays, pixel by pixel. Footprints are copied as ``(S, S)`` blocks of a window view
    of the image, in chunks of points: memory is bounded by the chunk, not the lattice.
    """
    ny, nx = data.shape
    S = kernel.shape[0]
    hk = S // 2
    g = np.arange(-hk, hk + 1)
    off = (g[:, None] * nx + g[None, :]).ravel()
    centre = yy * nx + xx
    kflat = kernel.ravel()
    norm = np.sum(kernel ** 2)
    maps_smooth = all(np.ndim(m) == 0 or getattr(m, "smooth", False) for m in (background, rms))
    f = np.empty(centre.size)
    zc = np.empty(centre.size)
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(data), (S, S))
    chunk = max(64, _CHUNK_PIXELS // (S * S))
    if maps_smooth:   # background and rms constant over a footprint: taken once per point
        b_all, s_all = _map_values(background, centre), _map_values(rms, centre)
    with np.errstate(invalid="ignore", divide="ignore"):
        for c0 in range(0, centre.size, chunk):
            part = slice(c0, c0 + chunk)
            cen = centre[part]
            D = windows[yy[part] - hk, xx[part] - hk].reshape(cen.size, S * S)
            if maps_smooth:
                # filter the data only
                bc, sc = b_all[part], s_all[part]
                f[part] = (D @ kflat.astype(D.dtype) - bc * kflat.sum()) / sc / norm
                zc[part] = (D[:, S * S // 2] - bc) / sc
            else:
                idx = cen[:, None] + off[None, :]
                z = (D - _map_values(background, idx)) / _map_values(rms, idx)
                f[part] = z @ kflat / norm
                zc[part] = z[:, S * S // 2]
    return f, zc


def _clipped_std(v: np.ndarray, clip_sigma: float) -> float:
    """Gaussian-equivalent std of the finite samples after MAD clipping (sources removed)."""
    v = v[np.isfinite(v)]
    v = v[mad_clip(v, clip_sigma, max_iter=3)]
    return np.std(v) / math.sqrt(truncated_normal_variance(clip_sigma))


def noise_correlation_factor(data, background, rms, kernel: np.ndarray, *,
                             max_points: int = 6000, clip_sigma: float = 3.0) -> float:
    """Matched-filter noise factor of an image: std(filtered z) / std(z), z = (D - B)/sigma.

    The forced estimator's quoted error is the kernel-weighted mean pixel
    noise (docs/science.md, Forced photometry: estimator). For noise correlated on the beam scale the
    amplitude scatters more or less than a pixel does (sqrt(2) times for white
    noise convolved with the beam, about 1.15 for noise correlated like the
    PSF, much less for white noise). Applying the same unit-peak kernel to the
    normalised image, ``f = (z * K) / sum(K^2)``, and comparing robust
    standard deviations measures that factor on the image itself; sources are
    sparse and removed by sigma clipping.

    The filter is evaluated only at up to ``max_points`` pixels on a regular
    lattice over the whole image (spacing at least a third of the kernel
    side), whose kernel footprints lie on finite pixels, so the cost does not
    depend on the image size. With a lazy :class:`GridMap` background/rms the
    maps are taken at the lattice pixel (they vary on the box scale, much
    wider than the kernel); with arrays, pixel by pixel.

    Parameters
    ----------
    data, background, rms : ndarray (ny, nx) or GridMap
        Jy/beam (background may be a scalar 0, rms a scalar).
    kernel : ndarray (S, S)
        The unit-peak beam kernel on the pixel grid (S odd).
    max_points : int
        Lattice points used (cost bound).

    Returns
    -------
    float
        The factor (dimensionless; NaN when it cannot be measured).
    """
    kernel = np.asarray(kernel, np.float64)
    points = _lattice(data.shape, kernel.shape[0], max_points)
    if points is None:
        return float("nan")
    f, zc = _filtered(data, background, rms, kernel, *points)
    good = np.isfinite(f) & np.isfinite(zc)
    if good.sum() < MIN_POINTS:
        return float("nan")
    sz = _clipped_std(zc[good], clip_sigma)
    sf = _clipped_std(f[good], clip_sigma)
    return float(sf / sz) if sz > 0 else float("nan")


__all__ = ["noise_correlation_factor"]
