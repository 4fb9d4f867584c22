"""A full-resolution map held as a coarse grid: :class:`GridMap`.

The background/noise estimator (:mod:`dsa110_contimg.science.noise_estimate`)
measures one value per box of a few tens of beams; the map between box centres
is their bilinear interpolation. A :class:`GridMap` keeps only the grid and the
per-row/per-column interpolation coefficients and evaluates the map where it is
indexed (at source positions, in cutouts), so a map of a large mosaic costs a
few kilobytes. Values are float32, in the unit of the grid (Jy/beam for the
background and rms maps).
"""

from __future__ import annotations

import numpy as np


class GridMap:
    """A full-resolution map defined by a coarse grid and separable bilinear interpolation.

    Behaves like a read-only ``(ny, nx)`` float32 array for what the
    photometry needs without materialising it: ``m[yi, xi]`` with integer
    index arrays, ``m[y0:y1, x0:x1]`` (a small region), :meth:`take_flat`
    (flat indices, as ``np.take`` on the raveled map) and :meth:`sample`.
    ``np.asarray(m)`` materialises the whole map (row block by row block).
    Values are exactly the bilinear interpolation of the grid between box
    centres (constant beyond the outer centres), Jy/beam.

    Parameters
    ----------
    grid : ndarray (nby, nbx)
        Values at the box centres.
    iy, fy : ndarray (ny,)
        Per image row: lower grid row and the weight of the next one.
    ix, fx : ndarray (nx,)
        Per image column: lower grid column and the weight of the next one.
    """

    ndim = 2
    dtype = np.dtype(np.float32)
    #: values vary only on the box scale (constant over a beam footprint)
    smooth = True

    def __init__(self, grid, iy, fy, ix, fx):
        g = np.asarray(grid, np.float32)
        # pad a single row/column so that index+1 always exists (its weight is 0)
        if g.shape[0] == 1:
            g = np.concatenate([g, g], axis=0)
        if g.shape[1] == 1:
            g = np.concatenate([g, g], axis=1)
        self.grid = np.ascontiguousarray(g)
        self._iy, self._fy = np.asarray(iy, np.int64), np.asarray(fy, np.float32)
        self._ix, self._fx = np.asarray(ix, np.int64), np.asarray(fx, np.float32)
        self.shape = (self._iy.size, self._ix.size)
        self.size = self.shape[0] * self.shape[1]

    @classmethod
    def from_boxes(cls, grid, ny: int, nx: int, boxy: int, boxx: int) -> "GridMap":
        """Grid of boxes ``boxy x boxx`` tiling ``(ny, nx)`` from the top-left corner."""
        nby, nbx = grid.shape
        iy, fy = _interp_coeffs(ny, nby, boxy)
        ix, fx = _interp_coeffs(nx, nbx, boxx)
        return cls(grid, iy, fy, ix, fx)

    def __len__(self):
        return self.shape[0]

    def sample(self, yi, xi) -> np.ndarray:
        """Map values at integer pixels (broadcast shapes; no bounds check), float32."""
        iy, fy = self._iy[yi], self._fy[yi]
        ix, fx = self._ix[xi], self._fx[xi]
        g = self.grid
        g00 = g[iy, ix]
        top = g00 + fx * (g[iy, ix + 1] - g00)
        g10 = g[iy + 1, ix]
        bot = g10 + fx * (g[iy + 1, ix + 1] - g10)
        return top + fy * (bot - top)

    def column_sampler(self) -> "ColumnSampler":
        """The grid interpolated once to every image column, for evaluating the map at many
        pixels of one image (:class:`ColumnSampler`; ``(nby, nx)`` float32)."""
        return ColumnSampler(self)

    def take_flat(self, idx) -> np.ndarray:
        """Like ``np.take(map.ravel(), idx)``, float32."""
        idx = np.asarray(idx, np.int64)
        yi, xi = np.divmod(idx, self.shape[1])
        return self.sample(yi, xi)

    def cutouts(self, yc, xc, h: int) -> np.ndarray:
        """The map on ``(2h+1) x (2h+1)`` cutouts centred on integer pixels, ``(m, S, S)`` float32.

        Exact (same values as :meth:`sample`) and cheap: a cutout narrower than a box
        touches at most 3 x 3 grid points, which are gathered once per cutout and
        interpolated separably. Cutouts must lie inside the map.
        """
        yc = np.asarray(yc, np.int64)
        xc = np.asarray(xc, np.int64)
        S = 2 * h + 1
        g = np.arange(-h, h + 1)
        Y = yc[:, None] + g[None, :]
        X = xc[:, None] + g[None, :]
        iy, fy = self._iy[Y], self._fy[Y]
        ix, fx = self._ix[X], self._fx[X]
        iy0 = iy[:, 0]
        ix0 = ix[:, 0]
        ry = iy - iy0[:, None]
        cx = ix - ix0[:, None]
        if ry.max(initial=0) > 1 or cx.max(initial=0) > 1:      # cutout wider than a box
            return self.sample(Y[:, :, None], X[:, None, :])
        gp = self._padded()
        k = np.arange(3)
        P = gp[(iy0[:, None] + k[None, :])[:, :, None], (ix0[:, None] + k[None, :])[:, None, :]]
        # along y: (m, S, 3), selecting the grid row pair of each cutout row
        ryb = ry.astype(bool)[:, :, None]
        lo = np.where(ryb, P[:, 1:2, :], P[:, 0:1, :])
        hi = np.where(ryb, P[:, 2:3, :], P[:, 1:2, :])
        R = lo + fy[:, :, None] * (hi - lo)
        R0, R1, R2 = R[:, :, 0:1], R[:, :, 1:2], R[:, :, 2:3]
        fxb = fx[:, None, :]
        cross = cx.any(axis=1)                       # cutouts that cross a box centre in x
        if not cross.any():
            return R0 + fxb * (R1 - R0)
        out = np.empty((yc.size, S, S), np.float32)
        nc = ~cross
        out[nc] = R0[nc] + fxb[nc] * (R1[nc] - R0[nc])
        c = cx[cross].astype(bool)[:, None, :]
        lo = np.where(c, R1[cross], R0[cross])
        hi = np.where(c, R2[cross], R1[cross])
        out[cross] = lo + fxb[cross] * (hi - lo)
        return out

    def _padded(self):
        gp = self.__dict__.get("_gp")
        if gp is None:
            gp = np.pad(self.grid, ((0, 2), (0, 2)), mode="edge")
            self._gp = gp
        return gp

    def region(self, rows, cols) -> np.ndarray:
        """The map on the outer product of pixel ``rows`` and ``cols``, float32."""
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        # separable: interpolate the grid to the rows, then along the columns
        iy, fy = self._iy[rows], self._fy[rows][:, None]
        g0 = self.grid[iy]
        gr = g0 + fy * (self.grid[iy + 1] - g0)                      # (nrows, nbx)
        ix, fx = self._ix[cols], self._fx[cols]
        a = gr[:, ix]
        return a + fx * (gr[:, ix + 1] - a)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key, slice(None))
        if len(key) != 2:
            raise IndexError("a GridMap takes two indices (rows, columns)")
        ky, kx = key
        if isinstance(ky, slice) or isinstance(kx, slice):
            rows = np.arange(self.shape[0])[ky] if isinstance(ky, slice) else np.asarray(ky)
            cols = np.arange(self.shape[1])[kx] if isinstance(kx, slice) else np.asarray(kx)
            if rows.ndim == 0 and cols.ndim == 0:
                return self.sample(rows, cols)
            if rows.ndim == 0:
                return self.region(rows[None], cols)[0]
            if cols.ndim == 0:
                return self.region(rows, cols[None])[:, 0]
            return self.region(rows, cols)
        ky = np.asarray(ky)
        kx = np.asarray(kx)
        if ky.dtype == bool or kx.dtype == bool:
            raise IndexError("boolean indexing of a GridMap is not supported; use np.asarray")
        ny, nx = self.shape
        ky = np.where(ky < 0, ky + ny, ky)
        kx = np.where(kx < 0, kx + nx, kx)
        if (np.any(ky < 0) or np.any(ky >= ny) or np.any(kx < 0) or np.any(kx >= nx)):
            raise IndexError("pixel index out of the map")
        return self.sample(ky, kx)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        step = max(1, 4_000_000 // max(1, self.shape[1]))
        cols = np.arange(self.shape[1])
        for y0 in range(0, self.shape[0], step):
            out[y0:y0 + step] = self.region(np.arange(y0, min(self.shape[0], y0 + step)), cols)
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy=True):
        return np.asarray(self, dtype=dtype)

    def sampled(self, max_samples: int = 1_000_000) -> np.ndarray:
        """The map on a regular lattice of at most about ``max_samples`` pixels (for statistics)."""
        ny, nx = self.shape
        stride = max(1, int(np.ceil(np.sqrt(ny * nx / max_samples))))
        return self.region(np.arange(0, ny, stride), np.arange(0, nx, stride))

    def __repr__(self):
        return f"GridMap(shape={self.shape}, grid={self.grid.shape})"


class ColumnSampler:
    """A :class:`GridMap` evaluated through its grid interpolated to every image column.

    The map at pixel (y, x) is ``top + fy (bottom - top)`` with ``top``/``bottom`` the
    column-interpolated grid rows around y, the same operations in the same order as
    :meth:`GridMap.sample` (so the same float32 values, bit for bit), with two gathers per
    pixel instead of four and no column coefficients looked up. Costs ``(nby, nx)``
    float32: made for a pass over an image, not kept with the map.
    """

    def __init__(self, grid_map: GridMap):
        g = grid_map.grid
        ix, fx = grid_map._ix, grid_map._fx
        g0 = g[:, ix]
        # C order: values() gathers from the flattened rows (fancy indexing of the grid's
        # columns yields Fortran order, whose flattening would copy the array every call)
        self.columns = np.ascontiguousarray(g0 + fx * (g[:, ix + 1] - g0))   # (nby, nx) float32
        self.iy, self.fy = grid_map._iy, grid_map._fy

    def locate(self, yi, xi):
        """``(at, fy)`` of integer pixels (1-d arrays): flat index of the upper row's value in
        :attr:`columns` and the weight of the lower one (shared by maps of one grid)."""
        return self.iy[yi] * self.columns.shape[1] + xi, self.fy[yi]

    def values(self, at, fy) -> np.ndarray:
        """Map values at pixels given by :meth:`locate`, float32."""
        flat = self.columns.reshape(-1)
        top = np.take(flat, at)
        return top + fy * (np.take(flat, at + self.columns.shape[1]) - top)

    def sample(self, yi, xi) -> np.ndarray:
        """Map values at integer pixels (1-d arrays), float32; as ``GridMap.sample``."""
        return self.values(*self.locate(yi, xi))

    def same_rows(self, other: "ColumnSampler") -> bool:
        """True when ``other`` has this one's shape and row interpolation (then
        :meth:`locate` serves both)."""
        return (self.columns.shape == other.columns.shape and np.array_equal(self.iy, other.iy)
                and np.array_equal(self.fy, other.fy))

    def rows(self, rows) -> np.ndarray:
        """The map on whole image ``rows``: ``(len(rows), nx)`` float32."""
        rows = np.asarray(rows, np.int64)
        iy, fy = self.iy[rows], self.fy[rows][:, None]
        top = self.columns[iy]
        return top + fy * (self.columns[iy + 1] - top)

    def centre_rows(self, y0: int, y1: int) -> np.ndarray:
        """Image rows in ``[y0, y1)`` where the interpolation moves to the next grid row
        pair (between them the map is linear in y)."""
        return y0 + np.flatnonzero(np.diff(self.iy[y0:y1])) + 1


def _interp_coeffs(n: int, n_boxes: int, box: int):
    """Per pixel: lower box index and weight of the next box (bilinear between box centres).

    The last box is centred on its data part; beyond the outer centres the value is constant.
    """
    if n_boxes == 1:
        return np.zeros(n, np.int64), np.zeros(n, np.float32)
    pix = np.arange(n, dtype=np.float64)
    centres = np.arange(n_boxes) * box + (box - 1) / 2.0
    centres[-1] = min(centres[-1], (n_boxes - 1) * box + (n - (n_boxes - 1) * box - 1) / 2.0)
    t = np.interp(pix, centres, np.arange(n_boxes, dtype=np.float64))
    i0 = np.clip(np.floor(t).astype(np.int64), 0, n_boxes - 2)
    return i0, (t - i0).astype(np.float32)


__all__ = ["GridMap"]
