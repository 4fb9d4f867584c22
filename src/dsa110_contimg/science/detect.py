"""Blind source detection on the service's own background and noise maps (docs/science.md §15).

:func:`detect_sources` finds every compact source of one image plane, whether or not a
catalogue knows it, and measures it with the project's own estimators:

1. **Islands** (:func:`find_islands`). Pixels whose significance
   ``z = (D - B) / sigma`` (B, sigma: the background and noise maps of
   :mod:`dsa110_contimg.science.noise`, the ones forced photometry uses) reaches the
   analysis threshold (default 3) are grouped into 8-connected islands; an island is kept
   when its brightest pixel reaches the detection threshold (default 5) and it has at
   least ``min_pixels`` pixels. The image is scanned a strip of rows at a time and only
   candidate pixels are kept and labelled (through their horizontal runs), so memory and
   time follow the number of bright pixels after one comparison pass; with estimated
   (grid) maps the threshold is first compared with a lower bound taken from the grid and
   z is evaluated only where a pixel passes it. The same pass counts the image's finite
   pixels and their peak (the QC statistics' counts, recorded on the image).
2. **Components** (:func:`deblend`). Every local maximum of z inside an island that
   reaches the detection threshold and is the highest pixel within the beam's half-power
   ellipse is a seed; a seed that is not the island's brightest must stand at least
   ``min_prominence`` above the lowest z on the straight line to the nearest brighter
   seed of its island (its saddle), else it is a noise bump on a brighter component.
3. **Positions** (:func:`fit_positions`). A fixed-beam Gaussian (the restoring beam,
   free amplitude and centre) is fitted to each seed's cutout by Gauss-Newton, with the
   current models of the neighbouring components subtracted, all components at once;
   each fit stops once its step is below a fraction of its statistical position error.
4. **Fluxes**: a converged fit's amplitude, the fixed-beam (forced) estimator at the
   fitted centre with the neighbours' models subtracted, with the forced estimator's
   error (local rms x the image's noise-correlation factor); components whose fit did
   not converge, or with pixel-varying noise maps, are measured with
   :func:`dsa110_contimg.science.forced.measure_arrays` at their positions. Condon
   (1997) position errors (:func:`dsa110_contimg.science.condon.position_errors_arcsec`,
   SNR = peak / local rms) with a systematic term added in quadrature. Components whose
   fitted peak is below ``analysis_sigma`` x the local rms (a seed on the wing of a
   brighter neighbour whose own flux is noise) are dropped.

Units: fluxes Jy/beam, positions deg, position errors arcsec, pixels 0-based.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.science.results import FAILURE_FLAGS, Flag, MeasurementTable

#: rows of the image scanned at a time for candidate pixels (memory: a few strips of rows)
STRIP_ROWS = 256
#: most Gauss-Newton iterations of the position fit
POSITION_ITERATIONS = 8
#: a position fit stops once its step is below this, pixels (the floor of its stopping rule)
POSITION_TOLERANCE = 1e-2
#: ... or below this fraction of its statistical (Condon) position error along the beam's
#: minor axis, BMIN / (sqrt(2) SNR) with the seed's z as SNR (the fits then end within
#: ~0.3 of that error of the fully converged centre, p99 ~0.06; docs/science.md §15)
POSITION_STOP_FRACTION = 0.25
#: sources per block of the position fit: its per-pixel work is a few small matrix
#: products per cutout, so large blocks (fewer numpy calls per iteration) are faster
FIT_BLOCK = 4096
#: sources per block of the forced fit of the components without a position fit (its
#: (block, cutout) arrays stay in cache: about half the time of whole-image arrays)
FORCED_BLOCK = 1024
#: offsets of the local-maximum search looked up one at a time (nearest first) before the
#: rest are looked up together
FIRST_OFFSETS = 2
#: cutout side of the position (and peak) fit, in beams
FIT_NBEAM = 2.0


@dataclass(frozen=True)
class DetectionOptions:
    """Settings of :func:`detect_sources`.

    Attributes
    ----------
    detect_sigma : float
        A component's brightest pixel must reach this many local rms (default 5).
    analysis_sigma : float
        Islands are the connected pixels above this many local rms (default 3).
    min_pixels : int
        Fewest pixels of a kept island.
    min_prominence : float
        How far (in local rms) a secondary peak must rise above its saddle.
    systematic_arcsec : float
        Astrometric systematic added in quadrature to each position error, arcsec.
    nbeam : float
        Cutout side of the position and flux fits, in beams.
    cluster_threshold : float
        Joint flux fits of components closer than this x BMAJ (forced estimator).
    """

    detect_sigma: float = 5.0
    analysis_sigma: float = 3.0
    min_pixels: int = 3
    min_prominence: float = 2.0
    systematic_arcsec: float = 1.0
    nbeam: float = 3.0
    cluster_threshold: float = 1.5

    @classmethod
    def from_config(cls, cfg) -> "DetectionOptions":
        """The settings of a :class:`~dsa110_contimg.core.config.PhotometryConfig`."""
        return cls(detect_sigma=cfg.detect_sigma, analysis_sigma=cfg.detect_analysis_sigma,
                   systematic_arcsec=cfg.detect_systematic_arcsec, nbeam=cfg.nbeam,
                   cluster_threshold=cfg.cluster_threshold)

    def __post_init__(self):
        from dsa110_contimg.core.errors import ConfigError

        if not (self.detect_sigma > 0 and 0 < self.analysis_sigma <= self.detect_sigma):
            raise ConfigError("analysis_sigma", self.analysis_sigma,
                              f"a number > 0 and <= detect_sigma ({self.detect_sigma})")
        if self.min_pixels < 1:
            raise ConfigError("min_pixels", self.min_pixels, "an integer >= 1")


@dataclass
class Islands:
    """Candidate pixels of an image grouped into islands.

    ``idx`` are flat pixel indices (``y * nx + x``, ascending), ``z`` their significance
    (float32),
    ``label`` their island (0..n-1, only kept islands), ``shape`` the image shape;
    ``run_start`` (optional) marks the pixels whose left neighbour is not a candidate (the
    first pixel of each horizontal run).
    """

    idx: np.ndarray
    z: np.ndarray
    label: np.ndarray
    shape: tuple[int, int]
    run_start: np.ndarray | None = None
    #: ``(n, peak)``: the image's finite pixels and their max |value| (Jy/beam), when
    #: counted in the same pass (``find_islands(count_finite=True)``)
    finite: tuple[int, float] | None = None

    @property
    def n(self) -> int:
        return int(self.label.max()) + 1 if self.label.size else 0

    def z_at(self, flat, fill: float) -> np.ndarray:
        """z at flat pixel indices; ``fill`` where a pixel is not a candidate.

        Looked up by binary search among the horizontal runs' first pixels (several
        times fewer than the pixels), then by the offset within the run."""
        flat = np.asarray(flat, np.int64)
        if self.idx.size == 0:
            return np.full(flat.shape, fill, float)
        starts, first, last = self._run_bounds()
        run = np.maximum(np.searchsorted(first, flat, side="right") - 1, 0)
        hit = (flat >= first[run]) & (flat <= last[run])
        pos = np.where(hit, starts[run] + (flat - first[run]), 0)
        return np.where(hit, self.z[pos], fill)

    def set_runs(self, starts) -> None:
        """Record the horizontal runs' start positions in ``idx`` (those marked in
        ``run_start``), so that they are not searched for again."""
        starts = np.asarray(starts, np.int64)
        ends = np.r_[starts[1:], self.idx.size][:starts.size] - 1
        self._bounds = (starts, self.idx[starts], self.idx[ends])

    def _run_bounds(self):
        """``(starts, first, last)``: per horizontal run, its position in ``idx`` and its
        first and last flat pixel index (cached)."""
        cached = self.__dict__.get("_bounds")
        if cached is None:
            starts = (np.flatnonzero(self.run_start) if self.run_start is not None
                      else _runs(self.idx, self.shape[1]))
            ends = np.r_[starts[1:], self.idx.size] - 1
            cached = self._bounds = (starts, self.idx[starts], self.idx[ends])
        return cached


def _strip_candidates(d, background, rms, y0: int, sigma: float):
    """Flat indices and z (float32, as computed) of the pixels of the strip ``d`` (the
    image's rows from ``y0``) with z >= ``sigma``.

    ``background`` and ``rms`` are arrays or scalars, or both the same
    :class:`_GridThreshold` for estimated (grid) maps."""
    y1 = y0 + d.shape[0]
    nx = d.shape[1]
    with np.errstate(invalid="ignore"):
        if isinstance(background, _GridThreshold):
            local = np.flatnonzero(d >= background.lower(y0, y1, d.dtype)[None, :])
            z = background.z(d.reshape(-1)[local], local, y0, nx)
            flat = local + y0 * nx
        else:
            d = d.astype(np.float32, copy=False)
            b = np.asarray(background[y0:y1], np.float32) if np.ndim(background) else background
            s = np.asarray(rms[y0:y1], np.float32) if np.ndim(rms) else rms
            zs = ((d - b) / s).reshape(-1)
            local = np.flatnonzero(zs >= sigma)
            flat = local + y0 * nx
            z = zs[local]
        keep = z >= sigma
    if not keep.all():
        flat, z = flat[keep], z[keep]
    return flat.astype(np.int64, copy=False), z.astype(np.float32, copy=False)


def _strips(data, rows: int):
    """``(y0, strip)`` over the image ``rows`` rows at a time, each strip an array in native
    byte order: data stored otherwise (FITS is big-endian) are copied into one reused
    buffer, the same values (a fresh array per strip would cost its page faults)."""
    ny = data.shape[0]
    dtype = np.dtype(getattr(data, "dtype", np.float64))
    buf = None
    if dtype.kind == "f" and not dtype.isnative:
        buf = np.empty((min(rows, ny),) + tuple(data.shape[1:]), dtype.newbyteorder("="))
    for y0 in range(0, ny, rows):
        part = data[y0:y0 + rows]
        if buf is None:
            yield y0, np.asarray(part)
        else:
            out = buf[:part.shape[0]]
            np.copyto(out, part)
            yield y0, out


class _GridThreshold:
    """The significance of pixels on estimated (grid) background and noise maps.

    The threshold B + k sigma is bilinear in the grid, so its minimum over a strip of rows
    lies on the strip's end rows or a row where the interpolation changes its grid row
    pair: that per-column lower bound, in the data's own dtype (rounded down), is compared
    with the data as stored, and z = (D - B) / sigma is evaluated only for the pixels that
    pass it, with the maps' values bit for bit those of ``GridMap.sample``
    (:class:`~dsa110_contimg.science.noise_grid.ColumnSampler`).
    """

    def __init__(self, background, rms, sigma: float):
        self.bkg, self.rms = background.column_sampler(), rms.column_sampler()
        self.sigma = sigma
        self.shared = self.bkg.same_rows(self.rms)
        if self.shared:
            # per map, its column-interpolated rows and their differences to the next row,
            # flattened: a pixel's value is top + fy x difference, as ColumnSampler.values
            self._flat = [(m.columns.reshape(-1), (m.columns[1:] - m.columns[:-1]).reshape(-1))
                          for m in (self.bkg, self.rms)]

    def _rows_of(self, y0: int, y1: int) -> np.ndarray:
        """The rows of ``y0:y1`` where B + k sigma can be lowest per column (ascending):
        the end rows and those where a map's interpolation changes its grid row pair."""
        return np.unique(np.r_[y0, y1 - 1, self.bkg.centre_rows(y0, y1),
                               self.rms.centre_rows(y0, y1)])

    def prepare(self, spans) -> None:
        """Compute the lower bounds (:meth:`lower`) of all strips ``spans`` (``(y0, y1)``
        pairs, ascending and disjoint) at once: the maps evaluated on every strip's rows
        in one pass, each strip's minimum taken over its own rows (the same values)."""
        rows = [self._rows_of(y0, y1) for y0, y1 in spans]
        if not rows:
            return
        at = np.cumsum([0] + [r.size for r in rows[:-1]])
        every = np.concatenate(rows)
        bounds = np.minimum.reduceat(self.bkg.rows(every) + self.sigma * self.rms.rows(every),
                                     at, axis=0)
        self._bounds = {span: b for span, b in zip(spans, bounds)}

    def lower(self, y0: int, y1: int, dtype) -> np.ndarray:
        """Per column, a lower bound of B + k sigma over rows ``y0:y1``, in ``dtype``."""
        bound = getattr(self, "_bounds", {}).get((y0, y1))
        if bound is None:
            rows = self._rows_of(y0, y1)
            bound = np.min(self.bkg.rows(rows) + self.sigma * self.rms.rows(rows), axis=0)
        bound = bound.astype(np.float64)
        return (bound - 1e-6 * np.abs(bound) - 1e-30).astype(dtype)

    def z(self, values, local, y0: int, nx: int) -> np.ndarray:
        """z (float32) of the strip's pixels at flat indices ``local`` (strip from row
        ``y0``, ``nx`` columns) whose data are ``values``."""
        r = local // nx
        if not self.shared:
            x = local - r * nx
            r += y0
            where = self.bkg.locate(r, x)
            return (values.astype(np.float32) - self.bkg.values(*where)) / self.rms.sample(r, x)
        n = int(r[-1]) + 1 if r.size else 0
        # flat index of the upper grid row's value: the pixel's index moved from its image
        # row to its grid row
        nc = self.bkg.columns.shape[1]
        at = local + (self.bkg.iy[y0:y0 + n] * nc - np.arange(n) * nx)[r]
        f = self.bkg.fy[y0:y0 + n][r]
        (bt, bd), (st, sd) = self._flat
        b = np.take(bt, at)
        b += f * np.take(bd, at)
        s = np.take(st, at)
        s += f * np.take(sd, at)
        z = values.astype(np.float32)
        z -= b
        z /= s
        return z


def _runs(idx: np.ndarray, nx: int) -> np.ndarray:
    """Start positions (in ``idx``) of the horizontal runs of the ascending flat pixel
    indices ``idx``: maximal sequences of consecutive pixels of one image row."""
    if idx.size == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, np.diff(idx) != 1]
    # a candidate in column 0 starts a run too: found among the rows' first pixels
    at = np.searchsorted(idx, np.arange(0, int(idx[-1]) + 1, nx))
    at = at[at < idx.size]
    start[at[idx[at] % nx == 0]] = True
    return np.flatnonzero(start)


def _connected(idx: np.ndarray, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """8-connected islands of the candidate pixels ``idx`` (ascending flat indices):
    ``(starts, run_label)``, the start of each horizontal run in ``idx`` (:func:`_runs`)
    and its island, numbered in raster order of each island's first pixel.

    Only the candidate pixels are visited: they are cut into horizontal runs, a run is
    joined to the runs of the row above whose columns reach within one pixel of its own
    (found by binary search in the ascending run starts and ends), and the islands are
    the connected components of that graph of runs.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    starts = _runs(idx, nx)
    n_runs = starts.size
    if n_runs == 0:
        return starts, np.zeros(0, np.int64)
    first = idx[starts]
    last = idx[np.r_[starts[1:], idx.size] - 1]
    row, x0, x1 = first // nx, first % nx, last % nx
    above = (row - 1) * nx
    # runs of the row above touching run b: end >= its x0 - 1 and start <= its x1 + 1
    lo = np.searchsorted(last, above + np.maximum(x0 - 1, 0), side="left")
    hi = np.searchsorted(first, above + np.minimum(x1 + 1, nx - 1), side="right")
    count = np.where(row > 0, np.maximum(hi - lo, 0), 0)
    # the graph in CSR form, row b holding the runs above it: its rows ascend
    end = np.cumsum(count)
    a = np.repeat(lo - (end - count), count) + np.arange(int(end[-1]))
    # float64 weights and int32 indices: the types csgraph works in (no converted copy)
    graph = csr_matrix((np.ones(a.size), a.astype(np.int32), np.r_[0, end].astype(np.int32)),
                       shape=(n_runs, n_runs))
    return starts, connected_components(graph, directed=False)[1].astype(np.int64)


def find_islands(data, background, rms, *, detect_sigma: float = 5.0,
                 analysis_sigma: float = 3.0, min_pixels: int = 3,
                 strip_rows: int = STRIP_ROWS, count_finite: bool = False) -> Islands:
    """Islands of pixels with z >= ``analysis_sigma`` whose peak reaches ``detect_sigma``.

    ``data``, ``background``, ``rms``: Jy/beam, shape (ny, nx) (maps may be lazy
    :class:`~dsa110_contimg.science.noise.GridMap`/``FileMap`` objects, or scalars);
    non-finite data or noise never make a candidate. Islands are renumbered 0..n-1.
    The image is read ``strip_rows`` rows at a time; with ``count_finite`` the same pass
    also counts the finite pixels and their max |value| (``Islands.finite``, as
    :func:`~dsa110_contimg.science.image.finite_count_and_peak`).
    """
    from dsa110_contimg.science.image import block_count_and_peak

    ny, nx = data.shape
    if all(getattr(m, "smooth", False) and hasattr(m, "column_sampler")
           for m in (background, rms)):
        background = rms = _GridThreshold(background, rms, analysis_sigma)
        background.prepare([(y0, min(y0 + strip_rows, ny)) for y0 in range(0, ny, strip_rows)])
    parts = []
    n_finite, top = 0, -np.inf
    for y0, strip in _strips(data, strip_rows):
        parts.append(_strip_candidates(strip, background, rms, y0, analysis_sigma))
        if count_finite:
            k, p = block_count_and_peak(strip)
            n_finite, top = n_finite + k, max(top, p)
    idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    z = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    starts, run_label = _connected(idx, nx)
    label = np.zeros(0, np.int64)
    if idx.size:
        run_size = np.diff(np.r_[starts, idx.size])
        counts = np.bincount(run_label, weights=run_size)
        peak = np.full(counts.size, -np.inf, z.dtype)
        np.maximum.at(peak, run_label, np.maximum.reduceat(z, starts))
        good = (peak >= detect_sigma) & (counts >= min_pixels)
        renumber = np.cumsum(good) - 1
        kept = good[run_label]                  # whole islands are kept: runs stay intact
        if not kept.all():
            keep = np.repeat(kept, run_size)
            idx, z = idx[keep], z[keep]
            run_label, run_size = run_label[kept], run_size[kept]
            starts = np.r_[0, np.cumsum(run_size)[:-1]] if run_size.size else run_size
        label = np.repeat(renumber[run_label], run_size)
    run_start = np.zeros(idx.size, bool)
    run_start[starts] = True
    islands = Islands(idx, z, label, (ny, nx), run_start)
    islands.set_runs(starts)
    if count_finite:
        islands.finite = (n_finite, top if n_finite else float("nan"))
    return islands


def _footprint_offsets(pixel_beam, level: float = 0.5):
    """Pixel offsets (dx, dy) where the unit-peak beam is >= ``level`` (centre excluded)."""
    h = max(1, int(math.ceil(0.5 * pixel_beam.major_pix)))
    g = np.arange(-h, h + 1)
    dx, dy = np.meshgrid(g, g)
    inside = (pixel_beam.evaluate(dx, dy) >= level) & ~((dx == 0) & (dy == 0))
    return dx[inside].astype(np.int64), dy[inside].astype(np.int64)


def _row_neighbours(islands: Islands) -> tuple[np.ndarray, np.ndarray]:
    """z of each candidate's left and right neighbour (-inf where that pixel is not a
    candidate): adjacent entries of the ascending flat indices within a horizontal run."""
    z = islands.z
    if z.size == 0:
        return z.copy(), z.copy()
    starts = islands._run_bounds()[0]
    left, right = np.empty_like(z), np.empty_like(z)      # in z's dtype (float32)
    left[0], left[1:] = -np.inf, z[:-1]
    right[-1], right[:-1] = -np.inf, z[1:]
    left[starts] = -np.inf                      # a run's first pixel has no left neighbour,
                                                # the pixel before it no right one
    right[starts[starts > 0] - 1] = -np.inf
    return left, right


def _local_maxima(islands: Islands, pixel_beam, detect_sigma: float) -> np.ndarray:
    """Positions in ``islands`` of the pixels with z >= ``detect_sigma`` that are the highest
    of the beam's half-power ellipse around them (ties go to the lower flat index).

    Sparse: a neighbour's z is looked up among the candidate pixels (pixels that are not
    candidates, or off the image, never win). The left and right neighbours are compared
    first, over all candidates at once (adjacent entries of a run); the next
    :data:`FIRST_OFFSETS` (the column neighbours) each drop the pixels they beat, so their
    binary searches run only for the pixels still standing (about one per row of a source),
    and the other offsets are looked up together for the pixels left (about one per source).
    """
    ny, nx = islands.shape
    odx, ody = _footprint_offsets(pixel_beam)
    left, right = _row_neighbours(islands)
    z = islands.z
    # a tie with the left neighbour (earlier flat index) loses, with the right one wins
    sel = np.flatnonzero((z >= detect_sigma) & (left < z) & (right <= z))
    rest = ~((ody == 0) & (np.abs(odx) == 1))
    odx, ody = odx[rest], ody[rest]
    order = np.lexsort((odx, ody, odx * odx + ody * ody))
    odx, ody = odx[order], ody[order]
    # the nearest offsets one at a time (each drops most of the pixels still standing), the
    # others together for the few left (about one per source)
    groups = [slice(k, k + 1) for k in range(FIRST_OFFSETS)] + [slice(FIRST_OFFSETS, None)]
    for group in groups:
        dx, dy = odx[group], ody[group]
        if dx.size == 0 or sel.size == 0:
            continue
        flat = islands.idx[sel][:, None]
        zc = z[sel][:, None]
        x, y = flat % nx + dx[None, :], flat // nx + dy[None, :]
        inside = (x >= 0) & (x < nx) & (y >= 0) & (y < ny)
        nb = np.where(inside, islands.z_at(flat + dy * nx + dx, -np.inf), -np.inf)
        earlier = ((dy < 0) | ((dy == 0) & (dx < 0)))[None, :]
        sel = sel[((nb < zc) | ((nb == zc) & ~earlier)).all(axis=1)]
    return sel


def deblend(islands: Islands, pixel_beam, *, detect_sigma: float = 5.0,
            analysis_sigma: float = 3.0, min_prominence: float = 2.0):
    """Component seeds of the islands: ``(flat index, z, island)`` arrays, brightest first
    within each island (see the module docstring, step 2)."""
    peaks = _local_maxima(islands, pixel_beam, detect_sigma)
    seed_flat, seed_z, seed_isl = islands.idx[peaks], islands.z[peaks], islands.label[peaks]
    order = np.lexsort((-seed_z, seed_isl))
    seed_flat, seed_z, seed_isl = seed_flat[order], seed_z[order], seed_isl[order]
    keep = _prominent(seed_flat, seed_z, seed_isl, islands, analysis_sigma, min_prominence)
    return seed_flat[keep], seed_z[keep], seed_isl[keep]


def _prominent(flat, z, isl, islands: Islands, floor: float, min_prominence: float) -> np.ndarray:
    """Which seeds (sorted by island, brightest first) are kept: each island's brightest,
    and others rising ``min_prominence`` above the lowest z on the line to the nearest
    brighter seed of their island (pixels that are not candidates count as ``floor``)."""
    n = flat.size
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    first = np.r_[True, isl[1:] != isl[:-1]]
    secondary = np.flatnonzero(~first)
    if secondary.size == 0:
        return keep
    nx = islands.shape[1]
    x, y = (flat % nx).astype(float), (flat // nx).astype(float)
    start = np.flatnonzero(first)
    group_start = start[np.searchsorted(start, secondary, side="right") - 1]
    # pairs (secondary i, brighter j of the same island): j runs over group_start[i] .. i-1
    counts = secondary - group_start
    i_rep = np.repeat(secondary, counts)
    j_rep = np.repeat(group_start, counts) + (np.arange(counts.sum())
                                               - np.repeat(np.cumsum(counts) - counts, counts))
    d2 = (x[i_rep] - x[j_rep]) ** 2 + (y[i_rep] - y[j_rep]) ** 2
    order = np.lexsort((d2, i_rep))
    i_s, j_s = i_rep[order], j_rep[order]
    nearest = np.r_[True, i_s[1:] != i_s[:-1]]
    i_n, j_n = i_s[nearest], j_s[nearest]
    steps = int(math.ceil(np.sqrt(d2.max()))) + 1
    t = np.linspace(0.0, 1.0, steps + 1)[None, :]
    px = np.rint(x[i_n, None] + t * (x[j_n] - x[i_n])[:, None]).astype(np.int64)
    py = np.rint(y[i_n, None] + t * (y[j_n] - y[i_n])[:, None]).astype(np.int64)
    saddle = islands.z_at(py * nx + px, floor).min(axis=1)
    keep[i_n] = z[i_n] - saddle >= min_prominence
    return keep


@dataclass
class PositionFit:
    """Result of :func:`fit_positions`, per source: the fixed-beam centre ``x``, ``y``
    (pixels), amplitude ``amp`` (Jy/beam), ``converged``, the sum of squared residuals
    ``rss`` ((Jy/beam)^2) and finite pixels ``n_good`` of its cutout at the last step, and
    the neighbour ``pairs`` (i, j) whose models were subtracted from each other."""

    x: np.ndarray
    y: np.ndarray
    amp: np.ndarray
    converged: np.ndarray
    rss: np.ndarray
    n_good: np.ndarray
    pairs: np.ndarray


def fit_positions(data, background, x0, y0, pixel_beam, *, nbeam: float = FIT_NBEAM,
                  n_iter: int = POSITION_ITERATIONS,
                  tolerance=POSITION_TOLERANCE) -> PositionFit:
    """Fixed-beam Gaussian centres of sources near pixel positions ``(x0, y0)``.

    Gauss-Newton on ``(A, x, y)`` of ``A K(x_pix - x, y_pix - y)`` (K the unit-peak beam of
    ``pixel_beam``) over each source's cutout (``nbeam`` beams wide) of ``data - background``
    with uniform weights, the current models of the other sources subtracted; steps are
    limited to 1 pixel per iteration. Each fit starts from the beam-shaped Gaussian through
    the brightest pixel and its row and column neighbours (:func:`_start_offsets`) and
    stops once its step is below ``tolerance`` (pixels, per source or one for all; a
    neighbour that moved by more than its own tolerance sets it going again).
    The amplitude is the fixed-beam (matched-filter) least-squares peak at the fitted
    centre, the neighbours' models subtracted. A source whose fit leaves the inner half of
    its cutout or fails keeps its start pixel (``converged`` False). Sources must lie at
    least a cutout half-width from the edges.
    """
    x0 = np.asarray(x0, float)
    y0 = np.asarray(y0, float)
    m = x0.size
    h = pixel_beam.half_size(nbeam)
    xc, yc = np.rint(x0).astype(np.int64), np.rint(y0).astype(np.int64)
    D, good = _position_cutouts(data, background, xc, yc, h)
    dx, dy = _start_offsets(D.reshape(m, 2 * h + 1, 2 * h + 1), h, pixel_beam)
    amp = D[:, D.shape[1] // 2].copy()
    cut = _FitCutouts(D, good, h, pixel_beam)
    tol = np.broadcast_to(np.asarray(tolerance, float), (m,))
    pairs = _neighbour_pairs(x0, y0, h + 2.0 * pixel_beam.major_pix)
    ok = np.ones(m, bool)
    active = np.ones(m, bool)
    rss = np.full(m, np.nan)
    n_good = good.sum(axis=1)
    for _ in range(n_iter):
        sel = np.flatnonzero(active)
        if sel.size == 0:
            break
        # all steps of an iteration see the models of the previous one; sources go in
        # blocks so that the (block, S*S) temporaries stay in cache
        step, solved = np.empty((sel.size, 3)), np.empty(sel.size, bool)
        ss = np.empty(sel.size)
        xn, yn = xc + dx, yc + dy
        for b0 in range(0, sel.size, FIT_BLOCK):
            part = sel[b0:b0 + FIT_BLOCK]
            near = _neighbour_models(pairs, active, part, amp, xn, yn, xc, yc, h, pixel_beam)
            step[b0:b0 + part.size], solved[b0:b0 + part.size], ss[b0:b0 + part.size] = \
                _gauss_newton_step(cut, part, amp[part], dx[part], dy[part], near)
        ok[sel] &= solved
        rss[sel] = ss
        step[~ok[sel]] = 0.0
        amp[sel] += step[:, 0]
        dx[sel] += np.clip(step[:, 1], -1.0, 1.0)
        dy[sel] += np.clip(step[:, 2], -1.0, 1.0)
        moved = np.zeros(m, bool)
        moved[sel] = np.abs(step[:, 1:]).max(axis=1) >= tol[sel]
        active = moved.copy()
        if pairs.size:
            active[pairs[moved[pairs[:, 1]], 0]] = True
        active &= ok
    inner = 0.5 * h
    converged = ok & (np.abs(dx) <= inner) & (np.abs(dy) <= inner) & (amp > 0)
    x = np.where(converged, xc + dx, x0)
    y = np.where(converged, yc + dy, y0)
    return PositionFit(x, y, amp, converged, rss, n_good, pairs)


def _position_cutouts(data, background, xc, yc, h: int):
    """``(D, good)``: the ``(m, S*S)`` cutouts (S = 2h + 1) of ``data - background``
    centred on pixels ``(xc, yc)`` (0 where a pixel is not finite) and their finite mask."""
    m, S = xc.size, 2 * h + 1
    nx = data.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(data), (S, S))
    raw = windows[yc - h, xc - h].reshape(m, S * S).astype(np.float64)
    good = np.isfinite(raw)
    all_good = bool(good.all())
    D = raw if all_good else np.where(good, raw, 0.0)
    if background is not None and np.ndim(background):
        if getattr(background, "smooth", False):
            D -= background.take_flat(yc * nx + xc).astype(np.float64)[:, None]
        else:
            g = np.arange(-h, h + 1)
            gy, gx = yc[:, None] + g[None, :], xc[:, None] + g[None, :]
            D -= np.asarray(background[gy[:, :, None], gx[:, None, :]], np.float64).reshape(m, -1)
    elif background is not None:
        D -= float(background)
    if not all_good:
        D[~good] = 0.0
    return D, good


def _start_offsets(cutouts, h: int, pixel_beam):
    """Sub-pixel offsets (dx, dy) of the fixed-beam Gaussian through the centre pixel of
    each ``(m, S, S)`` cutout and its row and column neighbours.

    The log of the beam model is quadratic with known curvature (a, b, c of
    ``pixel_beam``): ln D(1, 0) - ln D(-1, 0) = 4a dx + 2b dy and
    ln D(0, 1) - ln D(0, -1) = 2b dx + 4c dy, exact for a noiseless isolated source. Where
    a neighbour is not positive or the solution leaves ±0.75 pixel, the parabolas'
    vertex (:func:`_parabola_offsets`) is taken instead.
    """
    a, b, c = pixel_beam.a, pixel_beam.b, pixel_beam.c
    row, col = cutouts[:, h, :], cutouts[:, :, h]
    with np.errstate(all="ignore"):
        lx = np.log(row[:, h + 1] / row[:, h - 1])
        ly = np.log(col[:, h + 1] / col[:, h - 1])
        det = 16.0 * a * c - 4.0 * b * b
        dx = (4.0 * c * lx - 2.0 * b * ly) / det
        dy = (4.0 * a * ly - 2.0 * b * lx) / det
    good = np.isfinite(dx) & np.isfinite(dy) & (np.abs(dx) <= 0.75) & (np.abs(dy) <= 0.75)
    if good.all():
        return dx, dy
    pdx, pdy = _parabola_offsets(cutouts, h)
    return np.where(good, dx, pdx), np.where(good, dy, pdy)


def _parabola_offsets(cutouts, h: int):
    """Sub-pixel offsets (dx, dy) of the vertex of the parabolas through the centre pixel
    of each ``(m, S, S)`` cutout and its row and column neighbours, each within ±0.5
    pixel (0 where the centre is not a maximum of its three)."""
    def vertex(lo, mid, hi):
        curve = lo - 2.0 * mid + hi
        with np.errstate(invalid="ignore", divide="ignore"):
            off = np.where(curve < 0, 0.5 * (lo - hi) / curve, 0.0)
        return np.clip(np.nan_to_num(off), -0.5, 0.5)

    row, col = cutouts[:, h, :], cutouts[:, :, h]
    return (vertex(row[:, h - 1], row[:, h], row[:, h + 1]),
            vertex(col[:, h - 1], col[:, h], col[:, h + 1]))


class _FitCutouts:
    """The cutouts of a position fit: ``D`` (``(m, S*S)``, data - background, 0 where not
    finite), ``good`` (finite pixels), ``full`` (every pixel finite) and ``d2`` (sums of
    D^2, for :func:`_separable_moments`)."""

    def __init__(self, D, good, h: int, pixel_beam):
        self.D, self.good, self.h, self.pixel_beam = D, good, h, pixel_beam
        self.full = good.all(axis=1)
        self.d2 = np.einsum("ij,ij->i", D, D)

    def crossed(self, rows) -> np.ndarray:
        """The cutouts ``rows`` times the beam's cross factor exp(-b gx gy), ``(n, S, S)``."""
        S = 2 * self.h + 1
        out = self.D[rows].reshape(-1, S, S)
        out *= _cross_factor(float(self.pixel_beam.b), self.h)
        return out


def _gauss_newton_step(cut: _FitCutouts, part, amp, dx, dy, near):
    """One Gauss-Newton step ``(dA, dx, dy)`` for the cutouts ``part`` of ``cut`` of the
    fixed-beam model ``A K`` at sub-pixel offsets ``(dx, dy)`` from the cutout centres,
    with the neighbours' models ``near`` (``(rows, models)`` of :func:`_neighbour_models`)
    subtracted; returns ``(step, solved, rss)`` (step 0 where the normal matrix is
    singular or the step not finite; rss the sum of squared residuals before the step).

    The model's derivatives are K (2a fx + b fy) and K (b fx + 2c fy) (fx, fy: pixel
    offsets from the source), so the right-hand side is a linear combination of the moments
    of K R (R the residual) in fx and fy: taken as moments in the cutout's integer offsets
    (1, gx, gy) and shifted to the source (fx = gx - dx). K is a row factor times a column
    factor times the source-independent cross factor exp(-b gx gy)
    (:func:`_kernel_factors`), so on a cutout of finite pixels without neighbours the
    moments are contractions of the two factors (:func:`_separable_moments`); the other
    cutouts are evaluated pixel by pixel. The normal matrix is made of the moments of K^2
    about the source: on a cutout of finite pixels these are those of the beam centred on
    a pixel (:func:`_beam_moments`; a sub-pixel shift changes them only through the
    truncated wings), so A and the centre decouple and the step needs no linear solve.
    The right-hand side, and so the fit's fixed point (the least-squares solution), is
    exact; the matrix sets only how fast the steps get there. Cutouts with non-finite
    pixels take the matrix of their own finite pixels.
    """
    from dsa110_contimg.science.forced import _kernel_cutouts

    h, pixel_beam = cut.h, cut.pixel_beam
    m = amp.size
    a, b, c = pixel_beam.a, pixel_beam.b, pixel_beam.c
    P = _monomials(h)
    partial = ~cut.full[part]
    explicit = partial.copy()
    if near is not None:
        explicit[near[0]] = True
    kr = np.empty((m, 3))
    rss = np.empty(m)
    f = np.flatnonzero(~explicit)
    if f.size:
        kr[f], rss[f] = _separable_moments(cut.crossed(part[f]), cut.d2[part[f]], amp[f], dx[f],
                                           dy[f], h, pixel_beam)
    e = np.flatnonzero(explicit)
    if e.size:
        K = _kernel_cutouts(a, b, c, np.arange(-h, h + 1), dx[e], dy[e])
        R = cut.D[part[e]] - amp[e, None] * K
        if near is not None:
            R[np.searchsorted(e, near[0])] -= near[1]
        pe = partial[e]
        if pe.any():
            K[pe] *= cut.good[part[e[pe]]]
            R[pe] *= cut.good[part[e[pe]]]
        kr[e] = (K * R) @ P[:, :3]                        # sums of K R x (1, gx, gy)
        rss[e] = np.einsum("ij,ij->i", R, R)
    r0, rx, ry = kr[:, 0], kr[:, 1] - dx * kr[:, 0], kr[:, 2] - dy * kr[:, 0]
    ux, uy = 2 * a * rx + b * ry, b * rx + 2 * c * ry
    step = np.zeros((m, 3))
    solved = np.zeros(m, bool)
    m00, mxx, myy, mxy = _beam_moments(a, b, c, h)
    # finite cutouts: the beam's centred moments make N block-diagonal, A apart from a
    # 2 x 2 position block proportional to amp^2
    a11 = 4 * a * a * mxx + 4 * a * b * mxy + b * b * myy
    a12 = 2 * a * b * mxx + (4 * a * c + b * b) * mxy + 2 * b * c * myy
    a22 = b * b * mxx + 4 * b * c * mxy + 4 * c * c * myy
    det_a = a11 * a22 - a12 * a12
    q = np.flatnonzero(~partial)
    if q.size:
        aq = amp[q]
        with np.errstate(all="ignore"):
            det = m00 * det_a * (aq * aq) * (aq * aq)
            ok = np.isfinite(det) & (np.abs(det) > 1e-300)
            scale = det_a * aq
            step[q, 0] = r0[q] / m00
            step[q, 1] = (a22 * ux[q] - a12 * uy[q]) / scale
            step[q, 2] = (a11 * uy[q] - a12 * ux[q]) / scale
        solved[q] = ok
    p = np.flatnonzero(partial)
    if p.size:
        step[p], solved[p] = _partial_steps(cut, part[p], amp[p], dx[p], dy[p], r0[p], ux[p],
                                            uy[p])
    solved &= np.all(np.isfinite(step), axis=1)
    step[~solved] = 0.0
    return step, solved, rss


def _partial_steps(cut: _FitCutouts, rows, amp, dx, dy, r0, ux, uy):
    """``(step, solved)`` of the Gauss-Newton step for cutouts ``rows`` of ``cut`` that hold
    non-finite pixels: the normal matrix from the moments of K^2 over their own finite
    pixels, the 3 x 3 systems solved in closed form (right-hand side ``r0``, ``ux amp``,
    ``uy amp`` as in :func:`_gauss_newton_step`)."""
    from dsa110_contimg.science.forced import _kernel_cutouts

    a, b, c = cut.pixel_beam.a, cut.pixel_beam.b, cut.pixel_beam.c
    h = cut.h
    Kp = _kernel_cutouts(a, b, c, np.arange(-h, h + 1), dx, dy) * cut.good[rows]
    m00, mx, my, mxx, myy, mxy = _centred((Kp * Kp) @ _monomials(h), dx, dy).T
    N = np.empty((rows.size, 3, 3))
    N[:, 0, 0] = m00
    N[:, 0, 1] = N[:, 1, 0] = (2 * a * mx + b * my) * amp
    N[:, 0, 2] = N[:, 2, 0] = (b * mx + 2 * c * my) * amp
    N[:, 1, 1] = (4 * a * a * mxx + 4 * a * b * mxy + b * b * myy) * amp * amp
    N[:, 1, 2] = N[:, 2, 1] = (2 * a * b * mxx + (4 * a * c + b * b) * mxy
                               + 2 * b * c * myy) * amp * amp
    N[:, 2, 2] = (b * b * mxx + 4 * b * c * mxy + 4 * c * c * myy) * amp * amp
    r = np.stack([r0, ux * amp, uy * amp], axis=1)
    step = np.zeros((rows.size, 3))
    with np.errstate(all="ignore"):
        det = _det3(N)
        ok = np.isfinite(det) & (np.abs(det) > 1e-300)
        step[ok] = _solve3(N[ok], r[ok], det[ok])
    return step, ok


def _kernel_factors(pixel_beam, h: int, dx, dy):
    """``(ex, ey)``, ``(m, S)`` each: the unit-peak beam at offsets ``(dx, dy)`` from the
    cutout centres is ``ey[gy] ex[gx] exp(-b gx gy)`` on the cutout's integer offsets
    gx, gy = -h .. h (the factorisation of
    :func:`~dsa110_contimg.science.forced._kernel_cutouts`)."""
    a, b, c = pixel_beam.a, pixel_beam.b, pixel_beam.c
    g = np.arange(-h, h + 1, dtype=float)[None, :]
    dxc, dyc = dx[:, None], dy[:, None]
    ex = np.exp(-a * (g - dxc) ** 2 + b * g * dyc - b * dxc * dyc)
    ey = np.exp(-c * (g - dyc) ** 2 + b * g * dxc)
    return ex, ey


@functools.lru_cache(maxsize=16)
def _cross_factor(b: float, h: int) -> np.ndarray:
    """``(S, S)`` exp(-b gx gy) on a cutout of half-size ``h`` (rows gy; read-only)."""
    g = np.arange(-h, h + 1, dtype=float)
    out = np.exp(-b * g[:, None] * g[None, :])
    out.flags.writeable = False
    return out


def _separable_moments(Dc, d2, amp, dx, dy, h: int, pixel_beam):
    """``(kr, rss)`` of cutouts of finite pixels without neighbours: the sums of K R x
    (1, gx, gy) (``(m, 3)``) and of R^2, R = D - amp K, from the kernel's factors
    (:func:`_kernel_factors`): the sums of K D from ``Dc`` (D times the cross factor,
    ``(m, S, S)``), those of K^2 from the squared cross factor, and ``d2`` the sums of
    D^2."""
    ex, ey = _kernel_factors(pixel_beam, h, dx, dy)
    g = np.arange(-h, h + 1, dtype=float)
    C2 = np.square(_cross_factor(float(pixel_beam.b), h))
    # sums of K D: over each row's columns (x 1, x gx), then over the rows (x 1, x gy)
    v = Dc @ np.stack([ex, ex * g], axis=2)                      # (m, S rows, 2)
    s0 = np.einsum("my,my->m", ey, v[:, :, 0])
    sx = np.einsum("my,my->m", ey, v[:, :, 1])
    sy = np.einsum("my,my->m", ey * g, v[:, :, 0])
    # sums of K^2 = ey^2 ex^2 C^2: over the rows by matrix products with C^2
    ex2, ey2 = ex * ex, ey * ey
    q = ey2 @ C2                                                 # (m, S columns)
    q0 = np.einsum("mx,mx->m", q, ex2)
    qx = np.einsum("mx,mx->m", q, ex2 * g)
    qy = np.einsum("mx,mx->m", (ey2 * g) @ C2, ex2)
    kr = np.column_stack([s0 - amp * q0, sx - amp * qx, sy - amp * qy])
    rss = d2 - 2.0 * amp * s0 + amp * amp * q0
    return kr, rss


def _centred(k2, dx, dy):
    """Moments (1, x, y, x^2, y^2, xy) about the cutout centre shifted to the source at
    offsets ``(dx, dy)``."""
    s0, sx, sy, sxx, syy, sxy = k2.T
    return np.column_stack([s0, sx - dx * s0, sy - dy * s0,
                            sxx - 2 * dx * sx + dx * dx * s0,
                            syy - 2 * dy * sy + dy * dy * s0,
                            sxy - dy * sx - dx * sy + dx * dy * s0])


def _det3(N):
    """Determinants of ``(m, 3, 3)`` matrices."""
    return (N[:, 0, 0] * (N[:, 1, 1] * N[:, 2, 2] - N[:, 1, 2] * N[:, 2, 1])
            - N[:, 0, 1] * (N[:, 1, 0] * N[:, 2, 2] - N[:, 1, 2] * N[:, 2, 0])
            + N[:, 0, 2] * (N[:, 1, 0] * N[:, 2, 1] - N[:, 1, 1] * N[:, 2, 0]))


def _solve3(N, r, det):
    """Solutions of ``N x = r`` for ``(m, 3, 3)`` symmetric ``N`` (adjugate / ``det``)."""
    c00 = N[:, 1, 1] * N[:, 2, 2] - N[:, 1, 2] * N[:, 1, 2]
    c01 = N[:, 0, 2] * N[:, 1, 2] - N[:, 0, 1] * N[:, 2, 2]
    c02 = N[:, 0, 1] * N[:, 1, 2] - N[:, 0, 2] * N[:, 1, 1]
    c11 = N[:, 0, 0] * N[:, 2, 2] - N[:, 0, 2] * N[:, 0, 2]
    c12 = N[:, 0, 2] * N[:, 0, 1] - N[:, 0, 0] * N[:, 1, 2]
    c22 = N[:, 0, 0] * N[:, 1, 1] - N[:, 0, 1] * N[:, 0, 1]
    r0, r1, r2 = r.T
    return np.column_stack([c00 * r0 + c01 * r1 + c02 * r2,
                            c01 * r0 + c11 * r1 + c12 * r2,
                            c02 * r0 + c12 * r1 + c22 * r2]) / det[:, None]


@functools.lru_cache(maxsize=16)
def _beam_moments(a: float, b: float, c: float, h: int):
    """Sums of K^2 x (1, x^2, y^2, xy) over a cutout of half-size ``h`` for the unit-peak
    beam (a, b, c) centred on its centre pixel (its first moments vanish by symmetry)."""
    from dsa110_contimg.science.forced import _kernel_cutouts

    K = _kernel_cutouts(a, b, c, np.arange(-h, h + 1), np.zeros(1), np.zeros(1))
    k2 = ((K * K) @ _monomials(h))[0]
    return float(k2[0]), float(k2[3]), float(k2[4]), float(k2[5])


@functools.lru_cache(maxsize=16)
def _monomials(h: int) -> np.ndarray:
    """``(S*S, 6)``: 1, gx, gy, gx^2, gy^2, gx gy on a cutout of half-size ``h`` (row-major,
    gx the column offset, gy the row offset; read-only)."""
    g = np.arange(-h, h + 1, dtype=float)
    gy, gx = np.meshgrid(g, g, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    out = np.column_stack([np.ones_like(gx), gx, gy, gx * gx, gy * gy, gx * gy])
    out.flags.writeable = False
    return out


def _neighbour_pairs(x, y, radius: float):
    """Ordered pairs (i, j), i != j, of sources closer than ``radius`` pixels, sorted by i."""
    from scipy.spatial import cKDTree

    if x.size < 2:
        return np.zeros((0, 2), np.int64)
    p = cKDTree(np.column_stack([x, y])).query_pairs(radius, output_type="ndarray")
    if p.size == 0:
        return np.zeros((0, 2), np.int64)
    p = np.concatenate([p, p[:, ::-1]])
    return p[np.argsort(p[:, 0], kind="stable")]


def _neighbour_models(pairs, active, sel, amp, x, y, xc, yc, h: int, pixel_beam):
    """For the sources ``sel`` (ascending: the indices where ``active`` from ``sel[0]`` to
    ``sel[-1]``), their neighbours' current models (amplitude ``amp`` at ``(x, y)``)
    summed on their cutouts: ``(rows, models)``, the positions in ``sel`` of the sources
    that have a neighbour (ascending) and their ``(rows.size, S*S)`` models; None when
    none has one.
    ``pairs`` are sorted by their first column."""
    from dsa110_contimg.science.forced import _kernel_cutouts

    if pairs.size == 0:
        return None
    lo, hi = np.searchsorted(pairs[:, 0], [sel[0], sel[-1] + 1])
    pairs = pairs[lo:hi]
    pairs = pairs[active[pairs[:, 0]]]
    if pairs.size == 0:
        return None
    i, j = pairs[:, 0], pairs[:, 1]
    row = np.searchsorted(sel, i)
    K = _kernel_cutouts(pixel_beam.a, pixel_beam.b, pixel_beam.c, np.arange(-h, h + 1),
                        x[j] - xc[i], y[j] - yc[i])
    K *= amp[j][:, None]
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])    # rows ascend with i
    return row[first], np.add.reduceat(K, first, axis=0)


def _component_fluxes(data, maps, x0, y0, seed_z, interior, pixel_beam,
                      opt: DetectionOptions, scale: float):
    """The forced-estimator columns of the components seeded at pixels ``(x0, y0)`` (z of
    the seed pixels ``seed_z``), and whether each position fit converged.

    With smooth noise maps (an estimated grid, scalars) a converged position fit gives the
    peak: its amplitude is the fixed-beam least-squares peak at the fitted centre, the
    neighbours' models subtracted, and its error is the forced estimator's (the local rms
    x the image's noise-correlation factor ``scale``). The other components (the fit did
    not converge, too near an edge, pixel-varying noise maps) are measured with
    :func:`~dsa110_contimg.science.forced.measure_arrays` at their positions, jointly with
    their fitted neighbours. Either way a component
    whose forced-estimator cutout (``opt.nbeam`` beams) leaves the image is flagged
    ``NEAR_EDGE`` (no flux), as its light curve could not be measured there.
    """
    from dsa110_contimg.science.forced import _background_at, _locate, measure_arrays

    m = x0.size
    x, y = x0.copy(), y0.copy()
    converged = np.zeros(m, bool)
    fit = None
    if interior.any():
        tol = np.maximum(POSITION_TOLERANCE, POSITION_STOP_FRACTION * pixel_beam.minor_pix
                         / (math.sqrt(2.0) * np.maximum(seed_z[interior], 1.0)))
        fit = fit_positions(data, maps.background, x0[interior], y0[interior], pixel_beam,
                            tolerance=tol)
        x[interior], y[interior], converged[interior] = fit.x, fit.y, fit.converged
    smooth = all(np.ndim(a) == 0 or getattr(a, "smooth", False)
                 for a in (maps.background, maps.rms))
    from_fit = converged & smooth
    flags, xc, yc, _, blanked, local_rms = _locate(data, maps.rms, x, y, 0)
    cols = {"x_pix": x, "y_pix": y, "peak_jyb": np.full(m, np.nan),
            "peak_err_jyb": np.full(m, np.nan), "mean_noise_err_jyb": local_rms.copy(),
            "local_rms_jyb": local_rms, "bkg_jyb": np.full(m, np.nan),
            "snr": np.full(m, np.nan), "chi2": np.full(m, np.nan),
            "dof": np.zeros(m, np.int64), "n_pix": np.zeros(m, np.int64),
            "cluster_id": np.full(m, -1, np.int64), "flags": flags}
    if fit is not None:
        f = np.flatnonzero(interior)
        with np.errstate(invalid="ignore", divide="ignore"):
            chi2 = fit.rss / (local_rms[f] * local_rms[f])
        cols["peak_jyb"][f], cols["chi2"][f] = fit.amp, chi2
        cols["n_pix"][f], cols["dof"][f] = fit.n_good, np.maximum(fit.n_good - 3, 0)
        cols["cluster_id"][f] = _cluster_ids(fit.pairs, f.size)
        cols["peak_err_jyb"] = local_rms * scale
    cols["bkg_jyb"] = np.broadcast_to(_background_at(maps.background, yc, xc), (m,)).copy()
    # the forced estimator's cutout must lie inside the image, as for the light curve
    # measured at this position later
    h = pixel_beam.half_size(opt.nbeam)
    ny, nx = data.shape
    full = (xc - h >= 0) & (xc + h < nx) & (yc - h >= 0) & (yc + h < ny)
    flags[from_fit & ~full] |= int(Flag.NEAR_EDGE)
    flags[from_fit & blanked] |= int(Flag.BLANKED)
    flags[from_fit & ~(cols["peak_err_jyb"] > 0)] |= int(Flag.NO_NOISE)
    rest = np.flatnonzero(~from_fit)
    if rest.size:
        sel = _with_neighbours(x, y, rest, from_fit, opt.cluster_threshold * pixel_beam.major_pix)
        part = measure_arrays(data, maps.background, maps.rms, x[sel], y[sel], pixel_beam,
                              nbeam=opt.nbeam, cluster_threshold=opt.cluster_threshold,
                              error_scale=scale, chunk=FORCED_BLOCK)
        own = np.isin(sel, rest)
        for k in cols:
            if k in part:
                cols[k][sel[own]] = part[k][own]
    failed = (cols["flags"] & int(FAILURE_FLAGS)) != 0
    for k in ("peak_jyb", "peak_err_jyb", "chi2"):
        cols[k][failed] = np.nan
    cols["dof"][failed] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["snr"] = cols["peak_jyb"] / cols["peak_err_jyb"]
    cols["success"] = ~failed & np.isfinite(cols["peak_jyb"]) & np.isfinite(cols["peak_err_jyb"])
    return cols, converged


def _cluster_ids(pairs, m: int) -> np.ndarray:
    """Per source, the group of sources whose models were fitted together (connected
    through ``pairs``), numbered from 0; -1 for a source fitted alone."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.full(m, -1, np.int64)
    if pairs.size == 0:
        return out
    # CSR in csgraph's own types (pairs are sorted by their first source)
    indptr = np.r_[0, np.cumsum(np.bincount(pairs[:, 0], minlength=m))].astype(np.int32)
    graph = csr_matrix((np.ones(len(pairs)), pairs[:, 1].astype(np.int32), indptr), shape=(m, m))
    _, labels = connected_components(graph, directed=False)
    joined = np.zeros(m, bool)
    joined[pairs[:, 0]] = True
    _, out[joined] = np.unique(labels[joined], return_inverse=True)
    return out


def _with_neighbours(x, y, sel, others, radius: float) -> np.ndarray:
    """``sel`` and the sources marked in ``others`` within ``radius`` pixels of one of
    them (ascending indices)."""
    from scipy.spatial import cKDTree

    cand = np.flatnonzero(others)
    if cand.size == 0 or radius <= 0:
        return sel
    near = cKDTree(np.column_stack([x[cand], y[cand]])).query_ball_point(
        np.column_stack([x[sel], y[sel]]), radius, return_sorted=False)
    extra = cand[np.concatenate([np.asarray(n, np.int64) for n in near])] if len(near) else []
    return np.union1d(sel, extra)


def _near_blank(data, x, y, half: int) -> np.ndarray:
    """True where a non-finite pixel lies within ``half`` pixels (a box) of (x, y)."""
    ny, nx = data.shape
    xc, yc = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    g = np.arange(-half, half + 1)
    gx = np.clip(xc[:, None] + g[None, :], 0, nx - 1)
    gy = np.clip(yc[:, None] + g[None, :], 0, ny - 1)
    vals = np.asarray(data[gy[:, :, None], gx[:, None, :]], np.float32) if x.size else \
        np.zeros((0, 1, 1), np.float32)
    return ~np.isfinite(vals).all(axis=(1, 2))


def detect_sources(image, maps=None, *, options: DetectionOptions | None = None,
                   error_scale: float | None = None) -> MeasurementTable:
    """Blind detections of one image plane (see the module docstring).

    Parameters
    ----------
    image : RadioImage
        With a beam (``MissingBeam`` otherwise).
    maps : BackgroundMaps, optional
        The image's background and noise maps (default: those forced photometry uses,
        :func:`~dsa110_contimg.science.noise.background_maps_for`).
    options : DetectionOptions
    error_scale : float, optional
        Noise-correlation factor of the flux errors (default: measured on the image).

    Returns
    -------
    MeasurementTable
        One row per component, brightest island first: the forced-estimator columns at
        the fitted position (Jy/beam; ``snr`` = peak / error), plus ``ra_err_arcsec``,
        ``dec_err_arcsec`` (Condon + systematic), ``seed_sigma`` (z of the seed pixel),
        ``island_id``, ``n_components`` (of its island), ``position_fit`` (the
        fixed-beam position fit converged), ``edge_distance_beams`` (to the nearest
        image edge, in BMAJ) and ``near_blank`` (a NaN pixel within BMAJ/2). ``meta``
        holds the thresholds, the number of islands and the noise-correlation factor.
    """
    from dsa110_contimg.science.condon import position_errors_arcsec
    from dsa110_contimg.science.forced import correlation_factor, pixel_beam_for
    from dsa110_contimg.science.noise import background_maps_for

    opt = options or DetectionOptions()
    beam = image.require_beam()
    pb = pixel_beam_for(image, beam)
    maps = maps if maps is not None else background_maps_for(image)
    data = image.data
    record = (None if getattr(image, "finite_counted", True) else
              getattr(image, "record_finite_count_and_peak", None))
    islands = find_islands(data, maps.background, maps.rms, detect_sigma=opt.detect_sigma,
                           analysis_sigma=opt.analysis_sigma, min_pixels=opt.min_pixels,
                           count_finite=record is not None)
    if islands.finite is not None:
        record(*islands.finite)            # the pixels are not read again for the QC counts
    flat, seed_z, isl = deblend(islands, pb, detect_sigma=opt.detect_sigma,
                                analysis_sigma=opt.analysis_sigma,
                                min_prominence=opt.min_prominence)
    ny, nx = data.shape
    x0, y0 = (flat % nx).astype(float), (flat // nx).astype(float)
    hp = pb.half_size(FIT_NBEAM)
    interior = (x0 >= hp) & (x0 < nx - hp) & (y0 >= hp) & (y0 < ny - hp)
    scale = error_scale
    if scale is None:
        scale = correlation_factor(image, maps, pb, opt.nbeam)
        scale = scale if np.isfinite(scale) else 1.0
    cols, converged = _component_fluxes(data, maps, x0, y0, seed_z, interior, pb, opt,
                                        float(scale))
    x, y = cols["x_pix"], cols["y_pix"]
    with np.errstate(invalid="ignore", divide="ignore"):
        pixel_snr = cols["peak_jyb"] / cols["local_rms_jyb"]
    # a seed whose own fitted peak is noise (the wing of a brighter neighbour) is no source
    keep = ~(cols["success"] & (pixel_snr < opt.analysis_sigma))
    cols = {k: v[keep] for k, v in cols.items()}
    x, y, seed_z, isl, converged = x[keep], y[keep], seed_z[keep], isl[keep], converged[keep]
    pixel_snr = pixel_snr[keep]
    ra, dec = image.pixel_to_icrs(x, y)
    era, edec, _ = position_errors_arcsec(pixel_snr, beam.major_arcsec, beam.minor_arcsec,
                                          beam.pa_deg, beam.major_arcsec, beam.minor_arcsec,
                                          systematic_arcsec=opt.systematic_arcsec)
    failed = ~cols["success"]
    era, edec = np.where(failed, np.nan, era), np.where(failed, np.nan, edec)
    n_comp = np.bincount(isl, minlength=islands.n)[isl] if isl.size else np.zeros(0, np.int64)
    edge = np.minimum.reduce([x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y]) / pb.major_pix \
        if x.size else np.zeros(0)
    cols.update(ra_deg=np.asarray(ra, float), dec_deg=np.asarray(dec, float),
                ra_err_arcsec=era, dec_err_arcsec=edec, seed_sigma=seed_z.astype(float),
                island_id=isl, n_components=n_comp, position_fit=converged,
                edge_distance_beams=edge,
                near_blank=(_near_blank(data, x, y, max(1, int(round(0.5 * pb.major_pix))))
                            if image.blanked_fraction > 0 else np.zeros(x.size, bool)))
    meta = {"image": None if image.path is None else str(image.path), "mjd": image.mjd,
            "detect_sigma": opt.detect_sigma, "analysis_sigma": opt.analysis_sigma,
            "n_islands": islands.n, "noise_corr_factor": float(scale),
            "systematic_arcsec": opt.systematic_arcsec, "beam_deg": beam.as_tuple()}
    return MeasurementTable(cols, meta)


__all__ = ["DetectionOptions", "Islands", "find_islands", "deblend", "fit_positions",
           "detect_sources"]
