"""Blind source detection on the service's own background and noise maps (docs/science.md §15).

:func:`detect_sources` finds every compact source of one image plane, whether or not a
catalogue knows it, and measures it with the project's own estimators:

1. **Islands** (:func:`find_islands`). Pixels whose significance
   ``z = (D - B) / sigma`` (B, sigma: the background and noise maps of
   :mod:`dsa110_contimg.science.noise`, the ones forced photometry uses) reaches the
   analysis threshold (default 3) are grouped into 8-connected islands; an island is kept
   when its brightest pixel reaches the detection threshold (default 5) and it has at
   least ``min_pixels`` pixels. The image is scanned a strip of rows at a time and only
   candidate pixels are kept, so memory follows the number of bright pixels, not the
   image size; with estimated (grid) maps the threshold is first compared with a lower
   bound taken from the grid and z is evaluated only where a pixel passes it.
2. **Components** (:func:`deblend`). Every local maximum of z inside an island that
   reaches the detection threshold and is the highest pixel within the beam's half-power
   ellipse is a seed; a seed that is not the island's brightest must stand at least
   ``min_prominence`` above the lowest z on the straight line to the nearest brighter
   seed of its island (its saddle), else it is a noise bump on a brighter component.
3. **Positions** (:func:`fit_positions`). A fixed-beam Gaussian (the restoring beam,
   free amplitude and centre) is fitted to each seed's cutout by Gauss-Newton, with the
   current models of the neighbouring components subtracted, all components at once.
4. **Fluxes** with the forced estimator at the fitted positions
   (:func:`dsa110_contimg.science.forced.measure_arrays`: joint solutions for blends,
   the image's noise-correlation factor in the error) and Condon (1997) position errors
   (:func:`dsa110_contimg.science.condon.position_errors_arcsec`, SNR = peak / local rms)
   with a systematic term added in quadrature. Components whose fitted peak is below
   ``analysis_sigma`` x the local rms (a seed on the wing of a brighter neighbour whose
   own flux is noise) are dropped.

Units: fluxes Jy/beam, positions deg, position errors arcsec, pixels 0-based.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.science.results import Flag, MeasurementTable

#: rows of the image scanned at a time for candidate pixels (memory: a few strips of rows)
STRIP_ROWS = 256
#: Gauss-Newton iterations of the position fit
POSITION_ITERATIONS = 5


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

    ``idx`` are flat pixel indices (``y * nx + x``, ascending), ``z`` their significance,
    ``label`` their island (0..n-1, only kept islands), ``shape`` the image shape.
    """

    idx: np.ndarray
    z: np.ndarray
    label: np.ndarray
    shape: tuple[int, int]

    @property
    def n(self) -> int:
        return int(self.label.max()) + 1 if self.label.size else 0

    def z_at(self, flat, fill: float) -> np.ndarray:
        """z at flat pixel indices; ``fill`` where a pixel is not a candidate."""
        flat = np.asarray(flat, np.int64)
        if self.idx.size == 0:
            return np.full(flat.shape, fill, float)
        pos = np.minimum(np.searchsorted(self.idx, flat), self.idx.size - 1)
        return np.where(self.idx[pos] == flat, self.z[pos], fill)


def _strip_candidates(data, background, rms, y0: int, y1: int, sigma: float):
    """Flat indices and z of the pixels of rows ``y0:y1`` with z >= ``sigma``."""
    nx = data.shape[1]
    d = np.asarray(data[y0:y1], np.float32)
    with np.errstate(invalid="ignore"):
        if getattr(background, "smooth", False) and getattr(rms, "smooth", False):
            # threshold B + k sigma is bilinear in the grid: its minimum over a strip's rows
            # lies on the strip's end rows or a grid-centre row, so it bounds every pixel
            rows = np.unique(np.r_[y0, y1 - 1, _centre_rows(rms, y0, y1)])
            cols = np.arange(nx)
            lower = np.min(background.region(rows, cols) + sigma * rms.region(rows, cols), axis=0)
            yy, xx = np.nonzero(d >= lower[None, :])
            flat = (yy + y0).astype(np.int64) * nx + xx
            z = (d[yy, xx] - background.take_flat(flat)) / rms.take_flat(flat)
        else:
            b = np.asarray(background[y0:y1], np.float32) if np.ndim(background) else background
            s = np.asarray(rms[y0:y1], np.float32) if np.ndim(rms) else rms
            zs = (d - b) / s
            yy, xx = np.nonzero(zs >= sigma)
            flat = (yy + y0).astype(np.int64) * nx + xx
            z = zs[yy, xx]
        keep = z >= sigma
    return flat[keep], z[keep].astype(np.float64)


def _centre_rows(grid_map, y0: int, y1: int) -> np.ndarray:
    """Image rows inside ``[y0, y1)`` where the grid interpolation changes its row pair."""
    iy = grid_map._iy[y0:y1]
    return y0 + np.flatnonzero(np.diff(iy)) + 1


def _strip_labels(idx, y0: int, y1: int, nx: int):
    """8-connected labels (1..n) of the candidate pixels ``idx`` of rows ``y0:y1``."""
    from scipy import ndimage

    mask = np.zeros((y1 - y0, nx), bool)
    mask.flat[idx - y0 * nx] = True
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    return lab, n


def _connected(idx: np.ndarray, ny: int, nx: int, strip_rows: int) -> np.ndarray:
    """8-connected island labels of the candidate pixels ``idx`` (ascending flat indices).

    Labelled a strip of rows at a time (``ndimage.label``, memory of one strip); islands
    that cross a strip boundary are joined through the pixel pairs that touch across it.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    label = np.zeros(idx.size, np.int64)
    bounds = np.searchsorted(idx, np.arange(0, ny + strip_rows, strip_rows) * nx)
    offset = 0
    joins = []
    prev_last = None                     # (labelled last row of the previous strip, its offset)
    for k, y0 in enumerate(range(0, ny, strip_rows)):
        y1 = min(ny, y0 + strip_rows)
        sl = slice(bounds[k], bounds[k + 1])
        lab, n = _strip_labels(idx[sl], y0, y1, nx)
        label[sl] = lab.flat[idx[sl] - y0 * nx] - 1 + offset
        if prev_last is not None:
            last, last_off = prev_last
            first = lab[0]
            for dx in (-1, 0, 1):
                a = last[max(0, -dx): nx - max(0, dx)]
                b = first[max(0, dx): nx - max(0, -dx)]
                both = (a > 0) & (b > 0)
                joins.append(np.column_stack([a[both] - 1 + last_off, b[both] - 1 + offset]))
        prev_last = (lab[-1].copy(), offset)
        offset += n
    joins = [j for j in joins if j.size]
    if not joins:
        return label
    pairs = np.concatenate(joins)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(offset, offset))
    return connected_components(graph, directed=False)[1][label].astype(np.int64)


def find_islands(data, background, rms, *, detect_sigma: float = 5.0,
                 analysis_sigma: float = 3.0, min_pixels: int = 3,
                 strip_rows: int = STRIP_ROWS) -> Islands:
    """Islands of pixels with z >= ``analysis_sigma`` whose peak reaches ``detect_sigma``.

    ``data``, ``background``, ``rms``: Jy/beam, shape (ny, nx) (maps may be lazy
    :class:`~dsa110_contimg.science.noise.GridMap`/``FileMap`` objects, or scalars);
    non-finite data or noise never make a candidate. Islands are renumbered 0..n-1.
    """
    ny, nx = data.shape
    parts = [_strip_candidates(data, background, rms, y0, min(ny, y0 + strip_rows), analysis_sigma)
             for y0 in range(0, ny, strip_rows)]
    idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    z = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    label = _connected(idx, ny, nx, strip_rows)
    if idx.size:
        counts = np.bincount(label)
        order = np.argsort(label, kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        peak = np.full(counts.size, -np.inf)
        nonempty = counts > 0
        peak[nonempty] = np.maximum.reduceat(z[order], starts[nonempty])
        good = (peak >= detect_sigma) & (counts >= min_pixels)
        keep = good[label]
        renumber = np.cumsum(good) - 1
        idx, z, label = idx[keep], z[keep], renumber[label[keep]]
    return Islands(idx, z, label.astype(np.int64), (ny, nx))


def _footprint_offsets(pixel_beam, level: float = 0.5):
    """Pixel offsets (dx, dy) where the unit-peak beam is >= ``level`` (centre excluded)."""
    h = max(1, int(math.ceil(0.5 * pixel_beam.major_pix)))
    g = np.arange(-h, h + 1)
    dx, dy = np.meshgrid(g, g)
    inside = (pixel_beam.evaluate(dx, dy) >= level) & ~((dx == 0) & (dy == 0))
    return dx[inside].astype(np.int64), dy[inside].astype(np.int64)


def _local_maxima(islands: Islands, pixel_beam, detect_sigma: float,
                  strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """Positions in ``islands`` of the pixels with z >= ``detect_sigma`` that are the highest
    of the beam's half-power ellipse around them (ties go to the lower flat index).

    Done a strip of rows at a time on a dense z array of the strip and its halo (pixels
    that are not candidates are -inf), so each lookup is a direct index.
    """
    ny, nx = islands.shape
    odx, ody = _footprint_offsets(pixel_beam)
    halo = int(np.abs(ody).max(initial=0))
    out = []
    for y0 in range(0, ny, strip_rows):
        y1 = min(ny, y0 + strip_rows)
        lo, hi = np.searchsorted(islands.idx, [max(0, y0 - halo) * nx, min(ny, y1 + halo) * nx])
        sel = lo + np.flatnonzero(islands.z[lo:hi] >= detect_sigma)
        sel = sel[(islands.idx[sel] >= y0 * nx) & (islands.idx[sel] < y1 * nx)]
        if sel.size == 0:
            continue
        top = max(0, y0 - halo)
        dense = np.full((min(ny, y1 + halo) - top + 2 * halo, nx + 2 * halo), -np.inf,
                        np.float32)
        span = islands.idx[lo:hi]
        dense[span // nx - top + halo, span % nx + halo] = islands.z[lo:hi]
        fy = islands.idx[sel] // nx - top + halo
        fx = islands.idx[sel] % nx + halo
        zc = islands.z[sel].astype(np.float32)[:, None]
        nb = dense[fy[:, None] + ody[None, :], fx[:, None] + odx[None, :]]
        earlier = (ody[None, :] < 0) | ((ody[None, :] == 0) & (odx[None, :] < 0))
        beaten = (nb > zc) | ((nb == zc) & earlier)
        out.append(sel[~beaten.any(axis=1)])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


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


def fit_positions(data, background, x0, y0, pixel_beam, *, nbeam: float = 2.0,
                  n_iter: int = POSITION_ITERATIONS):
    """Fixed-beam Gaussian centres of sources near pixel positions ``(x0, y0)``.

    Gauss-Newton on ``(A, x, y)`` of ``A K(x_pix - x, y_pix - y)`` (K the unit-peak beam of
    ``pixel_beam``) over each source's cutout (``nbeam`` beams wide) of ``data - background``
    with uniform weights, the current models of the other sources subtracted; steps are
    limited to 1 pixel per iteration. Returns ``(x, y, amplitude, converged)``; a source
    whose fit leaves the inner half of its cutout or fails keeps its start position
    (``converged`` False). Sources must lie at least a cutout half-width from the edges.
    """
    from dsa110_contimg.science.forced import _kernel_cutouts

    nx = data.shape[1]
    x = np.asarray(x0, float).copy()
    y = np.asarray(y0, float).copy()
    m = x.size
    h = pixel_beam.half_size(nbeam)
    S = 2 * h + 1
    xc, yc = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    g = np.arange(-h, h + 1)
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(data), (S, S))
    raw = windows[yc - h, xc - h].reshape(m, S * S).astype(np.float64)
    good = np.isfinite(raw)
    D = np.where(good, raw, 0.0)
    if background is not None and np.ndim(background):
        if getattr(background, "smooth", False):
            D -= background.take_flat(yc * nx + xc).astype(np.float64)[:, None]
        else:
            gy, gx = yc[:, None] + g[None, :], xc[:, None] + g[None, :]
            D -= np.asarray(background[gy[:, :, None], gx[:, None, :]], np.float64).reshape(m, -1)
    elif background is not None:
        D -= float(background)
    D = np.where(good, D, 0.0)
    a, b, c = pixel_beam.a, pixel_beam.b, pixel_beam.c
    gg = np.broadcast_to(g[None, :].astype(float), (m, S))
    amp = D[:, (S * S) // 2].copy()
    pairs = _neighbour_pairs(x, y, h + 2.0 * pixel_beam.major_pix)
    ok = np.ones(m, bool)
    for _ in range(n_iter):
        fx = (gg - (x - xc)[:, None])[:, None, :]                   # (m, 1, S)
        fy = (gg - (y - yc)[:, None])[:, :, None]                   # (m, S, 1)
        K = _kernel_cutouts(a, b, c, g, x - xc, y - yc) * good
        R = D - amp[:, None] * K - _neighbour_models(pairs, amp, x, y, xc, yc, g, a, b, c)
        R *= good
        gx_term = (2 * a * fx + b * fy).reshape(m, -1) if b else np.broadcast_to(
            2 * a * fx, (m, S, S)).reshape(m, -1)
        gy_term = (b * fx + 2 * c * fy).reshape(m, -1) if b else np.broadcast_to(
            2 * c * fy, (m, S, S)).reshape(m, -1)
        Kx, Ky = K * gx_term, K * gy_term
        N = np.empty((m, 3, 3))
        for (p, q), (u, v) in {(0, 0): (K, K), (0, 1): (K, Kx), (0, 2): (K, Ky), (1, 1): (Kx, Kx),
                               (1, 2): (Kx, Ky), (2, 2): (Ky, Ky)}.items():
            N[:, p, q] = N[:, q, p] = np.einsum("ij,ij->i", u, v)
        scale = np.stack([np.ones(m), amp, amp], axis=1)
        N *= scale[:, :, None] * scale[:, None, :]
        r = np.stack([np.einsum("ij,ij->i", u, R) for u in (K, Kx, Ky)], axis=1) * scale
        with np.errstate(all="ignore"):
            det_ok = np.abs(np.linalg.det(N)) > 1e-300
            step = np.zeros((m, 3))
            if det_ok.any():
                step[det_ok] = np.linalg.solve(N[det_ok], r[det_ok][..., None])[..., 0]
        ok &= det_ok & np.all(np.isfinite(step), axis=1)
        step = np.where(ok[:, None], step, 0.0)
        amp = amp + step[:, 0]
        x = x + np.clip(step[:, 1], -1.0, 1.0)
        y = y + np.clip(step[:, 2], -1.0, 1.0)
        if np.abs(step[:, 1:]).max(initial=0.0) < 1e-3:
            break
    inner = 0.5 * h
    converged = ok & (np.abs(x - xc) <= inner) & (np.abs(y - yc) <= inner) & (amp > 0)
    x = np.where(converged, x, np.asarray(x0, float))
    y = np.where(converged, y, np.asarray(y0, float))
    return x, y, amp, converged


def _neighbour_pairs(x, y, radius: float):
    """Ordered pairs (i, j), i != j, of sources closer than ``radius`` pixels."""
    from scipy.spatial import cKDTree

    if x.size < 2:
        return np.zeros((0, 2), np.int64)
    p = cKDTree(np.column_stack([x, y])).query_pairs(radius, output_type="ndarray")
    return np.concatenate([p, p[:, ::-1]]) if p.size else np.zeros((0, 2), np.int64)


def _neighbour_models(pairs, amp, x, y, xc, yc, g, a, b, c):
    """Per source, its neighbours' current models summed on its cutout: (m, S*S)."""
    from dsa110_contimg.science.forced import _kernel_cutouts

    m, S = x.size, g.size
    out = np.zeros((m, S * S))
    if pairs.size == 0:
        return out
    i, j = pairs[:, 0], pairs[:, 1]
    K = _kernel_cutouts(a, b, c, g, x[j] - xc[i], y[j] - yc[i])
    np.add.at(out, i, amp[j][:, None] * K)
    return out


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
    from dsa110_contimg.science.forced import correlation_factor, measure_arrays, pixel_beam_for
    from dsa110_contimg.science.noise import background_maps_for

    opt = options or DetectionOptions()
    beam = image.require_beam()
    pb = pixel_beam_for(image, beam)
    maps = maps if maps is not None else background_maps_for(image)
    data = image.data
    islands = find_islands(data, maps.background, maps.rms, detect_sigma=opt.detect_sigma,
                           analysis_sigma=opt.analysis_sigma, min_pixels=opt.min_pixels)
    flat, seed_z, isl = deblend(islands, pb, detect_sigma=opt.detect_sigma,
                                analysis_sigma=opt.analysis_sigma,
                                min_prominence=opt.min_prominence)
    ny, nx = data.shape
    x0, y0 = (flat % nx).astype(float), (flat // nx).astype(float)
    h = pb.half_size(opt.nbeam)
    hp = pb.half_size(2.0)
    interior = (x0 >= hp) & (x0 < nx - hp) & (y0 >= hp) & (y0 < ny - hp)
    x, y = x0.copy(), y0.copy()
    converged = np.zeros(x0.size, bool)
    if interior.any():
        fx, fy, _, conv = fit_positions(data, maps.background, x0[interior], y0[interior], pb)
        x[interior], y[interior], converged[interior] = fx, fy, conv
    scale = error_scale
    if scale is None:
        scale = correlation_factor(image, maps, pb, opt.nbeam)
        scale = scale if np.isfinite(scale) else 1.0
    cols = measure_arrays(data, maps.background, maps.rms, x, y, pb, nbeam=opt.nbeam,
                          cluster_threshold=opt.cluster_threshold, error_scale=scale)
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
                ra_err_arcsec=era, dec_err_arcsec=edec, seed_sigma=seed_z,
                island_id=isl, n_components=n_comp, position_fit=converged,
                edge_distance_beams=edge,
                near_blank=_near_blank(data, x, y, max(1, int(round(0.5 * pb.major_pix)))))
    meta = {"image": None if image.path is None else str(image.path), "mjd": image.mjd,
            "detect_sigma": opt.detect_sigma, "analysis_sigma": opt.analysis_sigma,
            "n_islands": islands.n, "noise_corr_factor": float(scale),
            "systematic_arcsec": opt.systematic_arcsec, "beam_deg": beam.as_tuple()}
    return MeasurementTable(cols, meta)


__all__ = ["DetectionOptions", "Islands", "find_islands", "deblend", "fit_positions",
           "detect_sources"]
