"""The landed (pre-issue-15) full-resolution background estimator and noise-correlation factor.

Kept only as the reference of the accuracy tests of the estimator and of the noise-correlation
factor (``science/noise_estimate.py``, ``science/noise_correlation.py``: the production code
evaluates a coarse grid lazily and samples the correlation factor). Returns plain arrays.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from dsa110_contimg.core.errors import EmptyImage


DEFAULT_BOX_BEAMS = 20.0
DEFAULT_BOX_PIX = 64


def BackgroundMaps(background, rms, source, box_pix):
    return SimpleNamespace(background=background, rms=rms, source=source, box_pix=box_pix)


def _clip_variance_factor(k: float) -> float:
    """Variance of a unit normal truncated at +-k sigma (corrects clipped std)."""
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    return 1.0 - 2.0 * k * phi / math.erf(k / math.sqrt(2.0))


def _masked_median(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row medians of ``x`` ignoring ``mask`` (True = excluded), vectorised.

    Excluded entries are replaced by equal numbers of -inf and +inf, which
    leaves the middle of each sorted row on the kept values (exact to half a
    rank), so a single ``np.median`` over all rows does the work.
    """
    work = x.copy()
    rows, cols = np.nonzero(mask)            # row-major: grouped by row, O(masked) work
    k = np.bincount(rows, minlength=x.shape[0])
    if rows.size:
        start = np.concatenate(([0], np.cumsum(k)[:-1]))
        rank = np.arange(rows.size) - start[rows]
        lo = rank < (k // 2)[rows]
        work[rows[lo], cols[lo]] = -np.inf
        work[rows[~lo], cols[~lo]] = np.inf
    n = work.shape[1]
    kth = [n // 2 - 1, n // 2] if n % 2 == 0 else [n // 2]
    work.partition(kth, axis=1)                # in place: no second copy
    med = work[:, kth].mean(axis=1) if len(kth) == 2 else work[:, kth[0]]
    nkeep = x.shape[1] - k
    med = med.astype(np.float64)
    med[nkeep == 0] = np.nan
    return med


def _interp_matrix(n: int, n_boxes: int, box: int, n_data: int | None = None) -> np.ndarray:
    """(n, n_boxes) bilinear weights from box centres to pixels (constant beyond the ends).

    ``n_data`` is the unpadded length (the last box is centred on its data part).
    """
    n_data = n if n_data is None else n_data
    w = np.zeros((n, n_boxes), dtype=np.float32)
    pix = np.arange(n, dtype=np.float64)
    if n_boxes == 1:
        w[:, 0] = 1.0
        return w
    centres = np.arange(n_boxes) * box + (box - 1) / 2.0
    centres[-1] = min(centres[-1], (n_boxes - 1) * box + (n_data - (n_boxes - 1) * box - 1) / 2.0)
    t = np.interp(pix, centres, np.arange(n_boxes, dtype=np.float64))
    i0 = np.clip(np.floor(t).astype(int), 0, n_boxes - 2)
    f = t - i0
    w[np.arange(n), i0] = 1.0 - f
    w[np.arange(n), i0 + 1] = f
    return w


def _clipped_stats(blocks: np.ndarray, bad: np.ndarray, clip_sigma: float, n_iter: int,
                   start_mask: np.ndarray | None = None):
    """Per-row sigma-clipped median and std (std corrected for the truncation).

    Returns ``(median, std, final_mask)``.
    """
    mask = bad if start_mask is None else start_mask
    med = np.full(blocks.shape[0], np.nan)
    std = np.full(blocks.shape[0], np.nan)
    with np.errstate(invalid="ignore"):
        for it in range(max(1, n_iter) + 1):
            med = _masked_median(blocks, mask)
            dev = blocks - med[:, None].astype(np.float32)
            kept = ~mask
            nk = kept.sum(axis=1)
            dk = np.where(kept, dev, 0.0)
            sq = np.einsum("ij,ij->i", dk, dk, dtype=np.float64)
            std = np.sqrt(sq / np.maximum(nk, 1))
            if it == n_iter:
                break
            newmask = bad | (np.abs(dev) > clip_sigma * std[:, None])
            if np.array_equal(newmask, mask):
                break
            mask = newmask
    if n_iter > 0:
        std = std / math.sqrt(_clip_variance_factor(clip_sigma))
    return med, std, mask


def estimate_background(data, *, beam_pix: float | None = None, box_pix: int | None = None,
                        clip_sigma: float = 3.0, n_iter: int = 3, filter_size: int = 3,
                        min_fraction: float = 0.2, subsample: int | None = None,
                        second_pass: bool = True) -> BackgroundMaps:
    """Robust background and rms maps (BANE-like, vectorised).

    Parameters
    ----------
    data : array-like, (ny, nx)
        Image in Jy/beam; NaN pixels are ignored.
    beam_pix : float, optional
        Beam major-axis FWHM in pixels; sets the default box to
        ``20 * beam_pix`` (about BANE's default) and the sub-sampling.
    box_pix : int, optional
        Box side in pixels (overrides ``beam_pix``); default 64 without a beam.
    clip_sigma, n_iter : float, int
        Sigma clipping about the median: ``n_iter`` rounds at ``clip_sigma``.
        The clipped std is corrected for the truncation of a Gaussian.
    filter_size : int
        Median filter over the grid of boxes (1 = none); suppresses boxes
        dominated by a bright source.
    min_fraction : float
        Boxes with fewer finite samples than this fraction are filled from
        their nearest valid neighbour.
    second_pass : bool
        Re-measure the rms on the data minus the interpolated background
        (as BANE does), so gradients inside a box do not inflate it.
    subsample : int, optional
        Use every ``subsample``-th pixel in each direction within a box. The
        default takes about two samples per beam FWHM: noise is correlated
        on the beam scale, so neighbouring pixels add almost no information.

    Returns
    -------
    BackgroundMaps
        ``source="estimated"``.

    Raises
    ------
    EmptyImage
        No finite pixel at all.
    """
    from scipy import ndimage

    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"estimate_background needs 2-D data, got shape {arr.shape}")
    ny, nx = arr.shape
    if box_pix is None:
        box_pix = int(round(DEFAULT_BOX_BEAMS * beam_pix)) if beam_pix else DEFAULT_BOX_PIX
    box_pix = int(max(8, box_pix))
    nby = max(1, int(round(ny / box_pix)))
    nbx = max(1, int(round(nx / box_pix)))
    boxy = -(-ny // nby)
    boxx = -(-nx // nbx)
    if subsample is None:
        subsample = max(1, int(beam_pix // 2)) if beam_pix else 1
        # keep at least ~400 samples per box
        while subsample > 1 and (boxy // subsample) * (boxx // subsample) < 400:
            subsample -= 1
    s = int(max(1, subsample))

    # padded, sub-sampled blocks: (nby*nbx, samples)
    py, px = nby * boxy, nbx * boxx
    if (py, px) == (ny, nx):
        src = arr
    else:
        src = np.full((py, px), np.nan, dtype=np.float32)
        src[:ny, :nx] = arr
    blocks = src.reshape(nby, boxy, nbx, boxx)[:, ::s, :, ::s]
    blocks = np.ascontiguousarray(blocks.transpose(0, 2, 1, 3), dtype=np.float32)
    blocks = blocks.reshape(nby * nbx, -1)
    nsamp = blocks.shape[1]

    bad = ~np.isfinite(blocks)
    n_finite = nsamp - bad.sum(axis=1)
    if not n_finite.any():
        raise EmptyImage("no finite pixel to estimate the background from")
    med, std, final_mask = _clipped_stats(blocks, bad, clip_sigma, n_iter)
    valid = (n_finite >= max(5, min_fraction * nsamp)) & np.isfinite(med) & np.isfinite(std) \
        & (std > 0)
    if not valid.any():
        valid = (n_finite >= 2) & np.isfinite(std) & (std > 0)
        if not valid.any():
            raise EmptyImage("too few finite pixels to estimate the background")
    bgrid = med.reshape(nby, nbx)
    rgrid = std.reshape(nby, nbx)
    vgrid = valid.reshape(nby, nbx)
    iy = ix = None
    if not vgrid.all():
        _, (iy, ix) = ndimage.distance_transform_edt(~vgrid, return_indices=True)
        bgrid = bgrid[iy, ix]
        rgrid = rgrid[iy, ix]
    if filter_size > 1 and min(nby, nbx) >= filter_size:
        bgrid = ndimage.median_filter(bgrid, size=filter_size, mode="nearest")
        rgrid = ndimage.median_filter(rgrid, size=filter_size, mode="nearest")
    wy = _interp_matrix(py, nby, boxy, ny)
    wx = _interp_matrix(px, nbx, boxx, nx)
    bgrid32 = bgrid.astype(np.float32)
    if second_pass:
        # BANE's second pass: rms of the data minus the interpolated background, so a
        # background gradient across a box does not inflate the rms
        ry, rx = len(range(0, boxy, s)), len(range(0, boxx, s))
        rows = (np.arange(nby)[:, None] * boxy + np.arange(0, boxy, s)[None, :]).ravel()
        cols = (np.arange(nbx)[:, None] * boxx + np.arange(0, boxx, s)[None, :]).ravel()
        bs = (wy[rows] @ bgrid32) @ wx[cols].T                     # at the sampled pixels
        bs = bs.reshape(nby, ry, nbx, rx)
        bs = np.ascontiguousarray(bs.transpose(0, 2, 1, 3)).reshape(nby * nbx, -1)
        if bs.shape == blocks.shape:
            _, std2, _ = _clipped_stats(blocks - bs, bad, clip_sigma, min(n_iter, 2),
                                        start_mask=final_mask)
            r2 = std2.reshape(nby, nbx)
            if not vgrid.all():
                r2 = r2[iy, ix]
            if filter_size > 1 and min(nby, nbx) >= filter_size:
                r2 = ndimage.median_filter(r2, size=filter_size, mode="nearest")
            ok2 = np.isfinite(r2) & (r2 > 0)
            rgrid = np.where(ok2, r2, rgrid)
    bkg = (wy[:ny] @ bgrid32) @ wx[:nx].T
    rms = (wy[:ny] @ rgrid.astype(np.float32)) @ wx[:nx].T
    return BackgroundMaps(np.asarray(bkg, np.float32), np.asarray(rms, np.float32),
                          "estimated", box_pix)


def noise_correlation_factor(data, background, rms, kernel: np.ndarray, *,
                             max_side: int = 512, clip_sigma: float = 3.0) -> float:
    """Matched-filter noise factor of an image: std(filtered z) / std(z), z = (D - B)/sigma.

    The forced estimator's quoted error is the kernel-weighted mean pixel
    noise (science.md §1.3). For noise correlated on the beam scale the
    amplitude scatters more or less than a pixel does (sqrt(2) times for white
    noise convolved with the beam, about 1.15 for noise correlated like the
    PSF, much less for white noise). Applying the same unit-peak kernel to the
    normalised image, ``f = (z * K) / sum(K^2)``, and comparing robust
    standard deviations measures that factor on the image itself; sources are
    sparse and removed by sigma clipping.

    Parameters
    ----------
    data, background, rms : ndarray (ny, nx)
        Jy/beam.
    kernel : ndarray (S, S)
        The unit-peak beam kernel on the pixel grid.
    max_side : int
        Only a central crop of at most this side is used (cost bound).

    Returns
    -------
    float
        The factor (NaN when it cannot be measured).
    """
    from scipy.ndimage import correlate, minimum_filter

    ny, nx = data.shape
    cy, cx = ny // 2, nx // 2
    hy, hx = min(ny, max_side) // 2, min(nx, max_side) // 2
    sl = (slice(cy - hy, cy - hy + min(ny, max_side)), slice(cx - hx, cx - hx + min(nx, max_side)))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (np.asarray(data[sl], np.float64) - np.asarray(background[sl], np.float64)) \
            / np.asarray(rms[sl], np.float64)
    good = np.isfinite(z)
    if good.sum() < 10 * kernel.size:
        return float("nan")
    z0 = np.where(good, z, 0.0)
    f = correlate(z0, kernel, mode="constant") / np.sum(kernel ** 2)
    # only where the whole kernel footprint is on good pixels
    fgood = minimum_filter(good.astype(np.uint8), size=kernel.shape, mode="constant") > 0
    hk = kernel.shape[0] // 2
    fgood[:hk, :] = fgood[-hk:, :] = False
    fgood[:, :hk] = fgood[:, -hk:] = False
    if fgood.sum() < 10 * kernel.size:
        return float("nan")

    def clipped_std(v):
        v = v[np.isfinite(v)]
        for _ in range(3):
            m = np.median(v)
            s = 1.4826 * np.median(np.abs(v - m))
            keep = np.abs(v - m) < clip_sigma * s
            v = v[keep]
        return np.std(v) / math.sqrt(_clip_variance_factor(clip_sigma))

    sz = clipped_std(z[fgood])
    sf = clipped_std(f[fgood])
    return float(sf / sz) if sz > 0 else float("nan")
