"""The background and noise maps of one image plane, as one value: :class:`BackgroundMaps`.

A map is anything that reads like a read-only ``(ny, nx)`` float32 array in Jy/beam:
a :class:`~dsa110_contimg.science.noise_grid.GridMap` (estimated: a coarse grid
interpolated where indexed, attribute ``smooth = True``), a
:class:`~dsa110_contimg.science.noise_files.FileMap` (a memory-mapped FITS map read
where indexed) or an ndarray. All support ``m[yi, xi]``, ``m[y0:y1, x0:x1]``, ``shape``
and ``np.asarray(m)`` (the whole map). In an rms map NaN means "no noise estimate".

The caller that needs the maps of an image builds them once
(:func:`dsa110_contimg.science.noise.background_maps_for`) and passes the value on to
whatever measures that plane (the forced fit, QC statistics, source detection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BackgroundMaps:
    """Background and rms maps of one image plane.

    Attributes
    ----------
    background : map, (ny, nx)
        Background level, Jy/beam.
    rms : map, (ny, nx)
        1-sigma pixel noise, Jy/beam; NaN where unknown (0 in a file becomes NaN).
    source : str
        ``"estimated"`` (both computed here), ``"files"`` (both read from
        maps) or ``"mixed"`` (one read, the other estimated).
    box_pix : int or None
        Box side used by the estimator, pixels.
    paths : dict
        ``{"bkg": Path|None, "rms": Path|None}`` of the maps read from disk.
    grid_shape, box_shape : tuple or None
        ``(nby, nbx)`` boxes of ``(boxy, boxx)`` pixels of an estimated map.
    correlation_factors : dict
        Matched-filter noise factors already measured on this plane with these maps,
        keyed by the kernel that measured them
        (:func:`dsa110_contimg.science.forced.correlation_factor`), so that measuring
        the plane again reuses them.

    Estimated maps are :class:`GridMap` objects (evaluated where indexed); maps read
    from floating-point files are :class:`FileMap` objects (memory-mapped, read where
    indexed), from scaled integer files arrays. :meth:`arrays` gives full arrays.
    """

    background: "np.ndarray | GridMap | FileMap"
    rms: "np.ndarray | GridMap | FileMap"
    source: str
    box_pix: int | None = None
    paths: dict = field(default_factory=dict)
    grid_shape: tuple | None = None
    box_shape: tuple | None = None
    correlation_factors: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the plane."""
        return tuple(self.rms.shape)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(background, rms)`` as full ``(ny, nx)`` float32 arrays, Jy/beam (rms NaN where
        unknown). Materialises the maps: ``4 * ny * nx`` bytes each."""
        return np.asarray(self.background, np.float32), np.asarray(self.rms, np.float32)

    def rms_at(self, x, y) -> np.ndarray:
        """rms at 0-based pixel positions (nearest pixel; NaN off the map), Jy/beam."""
        return _sample(self.rms, x, y)

    def background_at(self, x, y) -> np.ndarray:
        """Background at 0-based pixel positions (nearest pixel; NaN off the map), Jy/beam."""
        return _sample(self.background, x, y)


def _sample(arr, x, y):
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    ny, nx = arr.shape
    ok = np.isfinite(x) & np.isfinite(y)
    xi = np.where(ok, np.round(np.where(ok, x, 0)), -1).astype(np.int64)
    yi = np.where(ok, np.round(np.where(ok, y, 0)), -1).astype(np.int64)
    ok &= (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
    out = np.full(x.shape, np.nan)
    if ok.any():
        out[ok] = arr[yi[ok], xi[ok]]
    return out


__all__ = ["BackgroundMaps"]
