"""The background and noise estimator: BANE-like grids of sigma-clipped box statistics.

:func:`estimate_background` tiles an image with boxes a few tens of beams wide and
measures, box row by box row (one *strip*), the sigma-clipped median (background)
and standard deviation (rms) of every box on a sub-sampled lattice
(:mod:`dsa110_contimg.science.noise_clipping`). Boxes with too few samples are
filled from their nearest valid neighbour, the grids are median-filtered over
neighbouring boxes, and the maps are their bilinear interpolation between box
centres (:class:`~dsa110_contimg.science.noise_grid.GridMap`, evaluated where
indexed). Strips are processed a batch at a time in one reused buffer, so the
working memory is a fixed budget (:data:`BATCH_SAMPLES`) whatever the image size,
and a memory-mapped mosaic is read strip by strip. All values are Jy/beam.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dsa110_contimg.core.clipping import truncated_normal_variance
from dsa110_contimg.core.errors import EmptyImage
from dsa110_contimg.science.noise_clipping import clipped_row_stats
from dsa110_contimg.science.noise_grid import GridMap
from dsa110_contimg.science.noise_maps import BackgroundMaps

#: default box side in beams (BANE: grid 4 beams, box 5 x grid)
DEFAULT_BOX_BEAMS = 20.0
#: box side without a beam, pixels
DEFAULT_BOX_PIX = 64
#: default sample spacing in beam FWHM (noise is correlated on the beam scale, so
#: one sample per beam carries almost all the information of the box)
SUBSAMPLE_BEAMS = 0.75
#: fewest samples per box the default sub-sampling keeps
MIN_BOX_SAMPLES = 400
#: second pass only for boxes where the background ramp across the box has a variance
#: above this fraction of the rms^2 (it would change the rms by more than 0.05 %)
GRADIENT_VARIANCE = 1e-3
#: samples whose clipped statistics are computed together (several strips of boxes at
#: once; a strip larger than this is one batch): bounds the estimator's working memory
#: (one float32 buffer of this many samples, about 6 MB in all) whatever the image size
BATCH_SAMPLES = 1 << 20


@dataclass(frozen=True)
class _Tiling:
    """Boxes of ``boxy x boxx`` pixels tiling an ``(ny, nx)`` image from the top-left
    corner (``nby x nbx`` of them), sampled every ``step`` pixels in each direction."""

    ny: int
    nx: int
    box_pix: int
    nby: int
    nbx: int
    boxy: int
    boxx: int
    step: int

    @property
    def ry(self) -> int:
        """Sampled rows per box."""
        return len(range(0, self.boxy, self.step))

    @property
    def rx(self) -> int:
        """Sampled columns per box."""
        return len(range(0, self.boxx, self.step))

    @property
    def n_samples(self) -> int:
        """Samples per box."""
        return self.ry * self.rx

    def sample_columns(self) -> np.ndarray:
        """``(nbx, rx)`` image columns of every box's samples (may lie beyond the image)."""
        return np.arange(self.nbx)[:, None] * self.boxx + np.arange(0, self.boxx, self.step)[None, :]

    @cached_property
    def _gather(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What every strip's gather uses (the same for all strips): the sampled columns
        clipped to the image, flattened, and the (box, column) indices of those beyond it."""
        cols = self.sample_columns()
        bi, ji = np.nonzero(cols >= self.nx)
        return np.minimum(cols, self.nx - 1).ravel(), bi, ji

    def strip(self, arr, r: int, out: np.ndarray | None = None) -> np.ndarray:
        """Samples of box row ``r`` as ``(nbx, n_samples)`` float32 (NaN padding),
        written into ``out`` when given.

        Reads only the rows ``r*boxy, r*boxy + step, ...`` of the image (memory-map
        friendly): one gather of the sampled columns, one transposing copy into box order.
        """
        nbx, ry, rx = self.nbx, self.ry, self.rx
        y0 = r * self.boxy
        rows = arr[y0:min(self.ny, y0 + self.boxy):self.step]
        k = rows.shape[0]
        cols, bi, ji = self._gather
        out = np.empty((nbx, ry, rx), np.float32) if out is None else out.reshape(nbx, ry, rx)
        out[:, :k] = np.take(rows, cols, axis=1).reshape(k, nbx, rx).transpose(1, 0, 2)
        out[:, k:] = np.nan                       # rows below the image (last strip)
        out[bi, :, ji] = np.nan                   # columns beyond it (last box column)
        return out.reshape(nbx, ry * rx)

    def grid_map(self, grid: np.ndarray) -> GridMap:
        """The full-resolution map of a ``(nby, nbx)`` grid of box values."""
        return GridMap.from_boxes(grid, self.ny, self.nx, self.boxy, self.boxx)


def _tiling(shape, beam_pix: float | None, box_pix: int | None,
            subsample: int | None) -> _Tiling:
    """The estimator's boxes for an image (see :func:`estimate_background` for the defaults)."""
    ny, nx = shape
    if box_pix is None:
        box_pix = int(round(DEFAULT_BOX_BEAMS * beam_pix)) if beam_pix else DEFAULT_BOX_PIX
    box_pix = int(max(8, box_pix))
    nby = max(1, int(round(ny / box_pix)))
    nbx = max(1, int(round(nx / box_pix)))
    boxy = -(-ny // nby)
    boxx = -(-nx // nbx)
    if subsample is None:
        subsample = max(1, int(round(beam_pix * SUBSAMPLE_BEAMS))) if beam_pix else 1
        # keep at least ~MIN_BOX_SAMPLES samples per box
        while subsample > 1 and len(range(0, boxy, subsample)) * len(range(0, boxx, subsample)) \
                < MIN_BOX_SAMPLES:
            subsample -= 1
    return _Tiling(ny, nx, box_pix, nby, nbx, boxy, boxx, int(max(1, subsample)))


def _first_pass(arr, t: _Tiling, buf: np.ndarray, clip_sigma: float, n_iter: int):
    """Clipped statistics of every box, a batch of strips at a time in ``buf``:
    ``(median, std, finite samples, converged)`` grids ``(nby, nbx)``."""
    per_batch = buf.shape[0] // t.nbx
    med = np.full((t.nby, t.nbx), np.nan)
    std = np.full((t.nby, t.nbx), np.nan)
    n_finite = np.zeros((t.nby, t.nbx), np.int64)
    converged = np.ones((t.nby, t.nbx), bool)
    for r0 in range(0, t.nby, per_batch):
        r1 = min(t.nby, r0 + per_batch)
        for r in range(r0, r1):
            t.strip(arr, r, out=buf[(r - r0) * t.nbx:(r - r0 + 1) * t.nbx])
        stats = clipped_row_stats(buf[:(r1 - r0) * t.nbx], clip_sigma, n_iter,
                                  return_converged=True, overwrite=True)
        for grid, values in zip((med, std, n_finite, converged), stats):
            grid[r0:r1] = values.reshape(r1 - r0, t.nbx)
    return med, std, n_finite, converged


def _fill_index(n_finite, med, std, min_samples: float):
    """Index arrays filling every unusable box from its nearest usable one (None: all usable).

    A box is usable with at least ``max(5, min_samples)`` finite samples and a finite,
    positive std; when no box is, any box with 2 samples and a positive std will do.
    """
    from scipy import ndimage

    valid = (n_finite >= max(5, min_samples)) & np.isfinite(med) & np.isfinite(std) & (std > 0)
    if not valid.any():
        valid = (n_finite >= 2) & np.isfinite(std) & (std > 0)
        if not valid.any():
            raise EmptyImage("too few finite pixels to estimate the background")
    if valid.all():
        return None
    _, fill = ndimage.distance_transform_edt(~valid, return_indices=True)
    return tuple(fill)


def _fill_and_filter(grid, fill_index, filter_size):
    from scipy import ndimage

    if fill_index is not None:
        grid = grid[fill_index]
    nby, nbx = grid.shape
    if filter_size > 1 and min(nby, nbx) >= filter_size:
        grid = ndimage.median_filter(grid, size=filter_size, mode="nearest")
    return grid


def _second_pass_boxes(bgrid, rgrid, converged, t: _Tiling) -> np.ndarray:
    """Boxes whose rms is measured again on the data minus the background map.

    Those where the interpolated background varies enough to matter (the variance of a
    linear ramp across the box above ``GRADIENT_VARIANCE`` x rms^2) and those whose
    first-pass clipping had not settled (bright sources): the second pass's rounds
    continue it.
    """
    gy, gx = (np.gradient(bgrid.astype(np.float64), axis=a) if bgrid.shape[a] > 1
              else np.zeros(bgrid.shape) for a in (0, 1))
    # np.gradient is per box: the slope per pixel is that / box side
    ramp_var = ((gy / t.boxy) ** 2 * (t.boxy ** 2 - 1)
                + (gx / t.boxx) ** 2 * (t.boxx ** 2 - 1)) / 12.0
    with np.errstate(invalid="ignore"):
        need = ~(ramp_var <= GRADIENT_VARIANCE * rgrid ** 2)
    return need | ~converged


def _residual_batches(arr, t: _Tiling, bmap: GridMap, need: np.ndarray, buf: np.ndarray):
    """Pack the samples minus the background map of the boxes ``need`` into ``buf``, strip
    by strip; yields ``(strips, rows filled)`` each time the buffer is full."""
    rows_in_box = np.arange(0, t.boxy, t.step)
    cols = np.minimum(t.sample_columns().ravel(), t.nx - 1)
    strips = list(np.flatnonzero(need.any(axis=1)))
    counts = need.sum(axis=1)
    while strips:
        batch, filled = [], 0
        while strips and filled + counts[strips[0]] <= buf.shape[0]:
            r = strips.pop(0)
            sel = need[r]
            rows = np.minimum(r * t.boxy + rows_in_box, t.ny - 1)
            bs = bmap.region(rows, cols).reshape(t.ry, t.nbx, t.rx).transpose(1, 0, 2)[sel]
            np.subtract(t.strip(arr, r)[sel], bs.reshape(-1, t.n_samples),
                        out=buf[filled:filled + counts[r]])
            filled += counts[r]
            batch.append(r)
        yield batch, filled


def _second_pass_std(arr, t: _Tiling, bmap: GridMap, std, need, buf, clip_sigma: float,
                     n_iter: int) -> np.ndarray:
    """BANE's second pass: the std grid with the boxes ``need`` measured on the data minus
    the interpolated background, so a gradient across a box does not inflate the rms.
    Clipping starts from the first pass's range (``|residual| <= k x first-pass rms``)."""
    std2 = np.where(need, np.nan, std)
    corr = math.sqrt(truncated_normal_variance(clip_sigma))
    for batch, filled in _residual_batches(arr, t, bmap, need, buf):
        sel = need[batch]
        start = (np.zeros(filled), clip_sigma * std[batch][sel] * corr)
        part = std2[batch]
        _, part[sel], _ = clipped_row_stats(buf[:filled], clip_sigma, min(n_iter, 2),
                                            start=start, overwrite=True)
        std2[batch] = part
    return std2


def estimate_background(data, *, beam_pix: float | None = None, box_pix: int | None = None,
                        clip_sigma: float = 3.0, n_iter: int = 5, filter_size: int = 3,
                        min_fraction: float = 0.2, subsample: int | None = None,
                        second_pass: bool = True) -> BackgroundMaps:
    """Robust background and rms maps (BANE-like, strip by strip, lazy full-resolution maps).

    The image is tiled by boxes from the top-left corner; box row by box row
    (one strip of ``box`` image rows, sub-sampled) the sigma-clipped median and
    standard deviation of every box are computed. Boxes with too few samples
    are filled from their nearest valid neighbour, the grid is median-filtered
    over ``filter_size`` boxes, and the maps are the bilinear interpolation of
    the grid between box centres (:class:`GridMap`, evaluated where needed).
    Peak memory is a few times one sub-sampled strip; the input may be a
    memory map (each strip is read twice with ``second_pass``).

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
        Sigma clipping about the median: at most ``n_iter`` rounds at ``clip_sigma``
        (a strip stops as soon as no box's kept range moves, so boxes of plain noise
        settle in 1-2 rounds and the extra rounds cost only where bright sources are
        still being clipped away; with 5 rounds the shared synthetic image's rms map
        is within 2.3 % (p99) of the truth, against 3.2 % with 3, at no measurable
        cost). The second pass runs at most 2 further rounds. The clipped std is
        corrected for the truncation of a Gaussian.
    filter_size : int
        Median filter over the grid of boxes (1 = none); suppresses boxes
        dominated by a bright source.
    min_fraction : float
        Boxes with fewer finite samples than this fraction are filled from
        their nearest valid neighbour.
    second_pass : bool
        Re-measure the rms on the data minus the interpolated background
        (as BANE does), so gradients inside a box do not inflate it; done
        only for boxes where the background ramp matters
        (``GRADIENT_VARIANCE``) or whose clipping had not converged.
    subsample : int, optional
        Use every ``subsample``-th pixel in each direction within a box. The
        default takes a sample every 0.75 beam FWHM (``SUBSAMPLE_BEAMS``),
        and at least ``MIN_BOX_SAMPLES`` per box: noise is correlated on the
        beam scale, so neighbouring pixels add little information.

    Returns
    -------
    BackgroundMaps
        ``source="estimated"``; ``background`` and ``rms`` are :class:`GridMap`
        objects (``np.asarray`` gives full float32 arrays), ``grid_shape`` and
        ``box_shape`` describe the grid.

    Raises
    ------
    EmptyImage
        No finite pixel at all.
    """
    arr = data if hasattr(data, "shape") and hasattr(data, "ndim") else np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"estimate_background needs 2-D data, got shape {arr.shape}")
    t = _tiling(arr.shape, beam_pix, box_pix, subsample)
    per_batch = max(1, BATCH_SAMPLES // max(1, t.nbx * t.n_samples))
    buf = np.empty((min(t.nby, per_batch) * t.nbx, t.n_samples), np.float32)  # one batch, reused
    med, std, n_finite, converged = _first_pass(arr, t, buf, clip_sigma, n_iter)
    if not n_finite.any():
        raise EmptyImage("no finite pixel to estimate the background from")
    fill = _fill_index(n_finite, med, std, min_fraction * t.n_samples)
    bgrid = _fill_and_filter(med, fill, filter_size).astype(np.float32)
    rgrid = _fill_and_filter(std, fill, filter_size)
    bmap = t.grid_map(bgrid)
    if second_pass and n_iter > 0:
        need = _second_pass_boxes(bgrid, rgrid, converged, t)
        if need.any():
            std2 = _second_pass_std(arr, t, bmap, std, need, buf, clip_sigma, n_iter)
            r2 = _fill_and_filter(std2, fill, filter_size)
            ok2 = np.isfinite(r2) & (r2 > 0)
            rgrid = np.where(ok2, r2, rgrid)
    rmap = t.grid_map(rgrid.astype(np.float32))
    return BackgroundMaps(bmap, rmap, "estimated", t.box_pix, grid_shape=(t.nby, t.nbx),
                          box_shape=(t.boxy, t.boxx))


__all__ = ["estimate_background", "DEFAULT_BOX_BEAMS", "DEFAULT_BOX_PIX", "SUBSAMPLE_BEAMS",
           "MIN_BOX_SAMPLES", "GRADIENT_VARIANCE", "BATCH_SAMPLES"]
