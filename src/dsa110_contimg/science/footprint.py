"""What an image's depth looks like at any sky position, without its pixels (docs/science.md §17).

A :class:`NoiseFootprint` is stored with every image so that later images can ask "did
this earlier image cover that position, how deep was it there, and could it have seen a
source?" without re-reading the FITS file:

* the celestial WCS (header text) and the image shape: the exact pixel coverage;
* the noise map on its coarse grid (the estimator's own grid for estimated maps, whose
  bilinear interpolation is then reproduced exactly; block medians of ~5 beams for maps
  read from files), Jy/beam;
* ``rms_min``/``rms_max`` of that map (VAST's and TraP's per-image depth);
* a mask of cells (about half a beam wide) holding any blanked pixel;
* the beam major axis in pixels (edge and blank buffers are in beams);
* the noise-correlation factor c (a fixed-beam flux there has the error c x rms).

Serialised with :meth:`NoiseFootprint.to_bytes` (a compressed ``npz``, a few kB for a
4096² image).
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

#: why an earlier image's depth at a position cannot be used
COVER_OUTSIDE = "outside"
COVER_EDGE = "edge"
COVER_BLANKED = "blanked"
COVER_OK = "ok"


@dataclass
class NoiseFootprint:
    """The depth map of one image plane (see the module docstring).

    Attributes
    ----------
    shape : (ny, nx)
    wcs_header : str
        The celestial WCS as FITS header text.
    grid : ndarray (nby, nbx) float32
        rms at the box centres, Jy/beam.
    box : (boxy, boxx)
        Box size of the grid, pixels.
    blank_cells : ndarray (ncy, ncx) bool
        Cells of ``cell_pix`` x ``cell_pix`` pixels that hold a non-finite pixel.
    cell_pix : int
    rms_min, rms_max : float
        Extremes of the finite rms map, Jy/beam.
    beam_major_pix : float
        BMAJ in pixels.
    noise_corr_factor : float
        The image's matched-filter noise factor c (docs/science.md §1.3): a fixed-beam
        flux measured there has the error c x rms.
    """

    shape: tuple[int, int]
    wcs_header: str
    grid: np.ndarray
    box: tuple[int, int]
    blank_cells: np.ndarray
    cell_pix: int
    rms_min: float
    rms_max: float
    beam_major_pix: float
    noise_corr_factor: float = 1.0

    def _wcs(self):
        w = self.__dict__.get("_wcs_cache")
        if w is None:
            from astropy.io import fits
            from astropy.wcs import WCS

            w = WCS(fits.Header.fromstring(self.wcs_header)).celestial
            self._wcs_cache = w
        return w

    def rms_map(self):
        """The rms as a lazy full-resolution :class:`~dsa110_contimg.science.noise.GridMap`
        (built once per footprint: a kept footprint answers every later image's test)."""
        m = self.__dict__.get("_rms_map_cache")
        if m is None:
            from dsa110_contimg.science.noise import GridMap

            m = GridMap.from_boxes(self.grid, self.shape[0], self.shape[1], *self.box)
            self._rms_map_cache = m
        return m

    def depth_at(self, ra_deg, dec_deg, *, edge_beams: float = 1.8,
                 blank_beams: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """rms (Jy/beam) at ICRS positions and whether it is usable there.

        Returns ``(rms, status)``: ``status`` is ``"outside"`` (not on the image),
        ``"edge"`` (within ``edge_beams`` x BMAJ of an edge), ``"blanked"`` (a blanked
        pixel within ``blank_beams`` x BMAJ) or ``"ok"``; ``rms`` is NaN unless ok.
        """
        from dsa110_contimg.science.image import wcs_world_to_pixel

        x, y = wcs_world_to_pixel(self._wcs(), ra_deg, dec_deg)
        ny, nx = self.shape
        status = np.full(x.shape, COVER_OK, dtype=object)
        inside = np.isfinite(x) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        status[~inside] = COVER_OUTSIDE
        buf = edge_beams * self.beam_major_pix
        xs, ys = np.where(inside, x, 0.0), np.where(inside, y, 0.0)
        edge = inside & (np.minimum.reduce([xs + 0.5, nx - 0.5 - xs, ys + 0.5, ny - 0.5 - ys]) < buf)
        status[edge] = COVER_EDGE
        blank = inside & ~edge & self._near_blank(xs, ys, blank_beams * self.beam_major_pix)
        status[blank] = COVER_BLANKED
        rms = np.full(x.shape, np.nan)
        ok = status == COVER_OK
        if ok.any():
            xi = np.clip(np.rint(xs[ok]).astype(np.int64), 0, nx - 1)
            yi = np.clip(np.rint(ys[ok]).astype(np.int64), 0, ny - 1)
            rms[ok] = self.rms_map().sample(yi, xi)
        rms[~(rms > 0)] = np.nan
        status[ok & ~np.isfinite(rms)] = COVER_BLANKED
        return rms, status

    def _near_blank(self, x, y, radius_pix: float) -> np.ndarray:
        if not self.blank_cells.any():
            return np.zeros(np.shape(x), bool)
        c = self.cell_pix
        ncy, ncx = self.blank_cells.shape
        reach = int(np.ceil(radius_pix / c))
        cx = np.floor((np.asarray(x) + 0.5) / c).astype(np.int64)
        cy = np.floor((np.asarray(y) + 0.5) / c).astype(np.int64)
        hit = np.zeros(np.shape(x), bool)
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                yy, xx = np.clip(cy + dy, 0, ncy - 1), np.clip(cx + dx, 0, ncx - 1)
                hit |= self.blank_cells[yy, xx]
        return hit

    def to_bytes(self) -> bytes:
        """A compressed ``npz`` of the footprint (:meth:`from_bytes` reads it)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf, shape=np.asarray(self.shape, np.int64), wcs=np.asarray(self.wcs_header),
            grid=np.asarray(self.grid, np.float32), box=np.asarray(self.box, np.int64),
            blank=np.packbits(self.blank_cells, axis=None),
            blank_shape=np.asarray(self.blank_cells.shape, np.int64),
            cell=np.asarray(self.cell_pix), extremes=np.asarray([self.rms_min, self.rms_max]),
            beam=np.asarray(self.beam_major_pix), corr=np.asarray(self.noise_corr_factor))
        return buf.getvalue()

    @staticmethod
    def parsed(blob: bytes) -> "NoiseFootprint":
        """:meth:`from_bytes` through a per-process cache keyed by the blob's content (the
        last :data:`PARSED_CACHE` footprints, with their WCS once built): each image's
        new-source test reads the same earlier footprints again, ~5 ms each to decode.
        The returned footprint is shared: do not modify it."""
        blob = bytes(blob)
        with _PARSED_LOCK:
            fp = _PARSED.get(blob)
            if fp is not None:
                _PARSED.move_to_end(blob)
                return fp
        fp = NoiseFootprint.from_bytes(blob)
        remember(blob, fp)
        return fp

    @staticmethod
    def extremes_of(blob: bytes) -> tuple[float, float]:
        """``(rms_min, rms_max)`` (Jy/beam) of a footprint made by :meth:`to_bytes`, read
        without decoding the rest (or from the decoded footprint when one is kept)."""
        kept = _PARSED.get(blob) if isinstance(blob, bytes) else None
        if kept is not None:
            return float(kept.rms_min), float(kept.rms_max)
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            lo, hi = z["extremes"]
        return float(lo), float(hi)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "NoiseFootprint":
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            bshape = tuple(int(v) for v in z["blank_shape"])
            packed = z["blank"]
            blank = (np.unpackbits(packed, count=int(np.prod(bshape))).view(bool)
                     if packed.any() else np.zeros(int(np.prod(bshape)), bool))
            return cls(shape=tuple(int(v) for v in z["shape"]), wcs_header=str(z["wcs"]),
                       grid=z["grid"], box=tuple(int(v) for v in z["box"]),
                       blank_cells=blank.reshape(bshape), cell_pix=int(z["cell"]),
                       rms_min=float(z["extremes"][0]), rms_max=float(z["extremes"][1]),
                       beam_major_pix=float(z["beam"]),
                       noise_corr_factor=float(z["corr"]) if "corr" in z.files else 1.0)


#: footprints kept decoded by :meth:`NoiseFootprint.parsed` (a few tens of kB each)
PARSED_CACHE = 256
_PARSED: "OrderedDict[bytes, NoiseFootprint]" = OrderedDict()
_PARSED_LOCK = threading.Lock()


def remember(blob: bytes, footprint: NoiseFootprint) -> None:
    """Keep ``footprint`` as the decoded form of ``blob`` (its :meth:`~NoiseFootprint.to_bytes`)
    for :meth:`NoiseFootprint.parsed`, the least recently used beyond
    :data:`PARSED_CACHE` dropped: the process that measured an image finds its footprint
    decoded when the field's next image asks for it."""
    blob = bytes(blob)
    with _PARSED_LOCK:
        _PARSED[blob] = footprint
        _PARSED.move_to_end(blob)
        while len(_PARSED) > PARSED_CACHE:
            _PARSED.popitem(last=False)


def _blank_cells(data, cell: int, strip_rows: int = 1024) -> np.ndarray:
    """Per ``cell`` x ``cell`` block of the image, whether it holds a non-finite pixel."""
    ny, nx = data.shape
    ncy, ncx = -(-ny // cell), -(-nx // cell)
    out = np.zeros((ncy, ncx), bool)
    rows = max(cell, strip_rows - strip_rows % cell)
    for y0 in range(0, ny, rows):
        block = ~np.isfinite(np.asarray(data[y0:y0 + rows]))
        if not block.any():
            continue
        h = block.shape[0]
        pad = np.zeros((-(-h // cell) * cell, ncx * cell), bool)
        pad[:h, :nx] = block
        out[y0 // cell: y0 // cell + pad.shape[0] // cell] = \
            pad.reshape(pad.shape[0] // cell, cell, ncx, cell).any(axis=(1, 3))
    return out


def _coarse_rms(rms, shape, box_pix: int):
    """A coarse grid of a pixel rms map (block medians of ``box_pix`` boxes): (grid, box)."""
    ny, nx = shape
    if np.ndim(rms) == 0:
        return np.full((1, 1), float(rms), np.float32), (ny, nx)
    step = max(1, box_pix // 8)
    ys = np.arange(0, ny, step)
    xs = np.arange(0, nx, step)
    sampled = np.asarray(rms[ys[:, None], xs[None, :]], np.float32)
    k = max(1, box_pix // step)
    nby, nbx = -(-ys.size // k), -(-xs.size // k)
    pad = np.full((nby * k, nbx * k), np.nan, np.float32)
    pad[:ys.size, :xs.size] = sampled
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = np.nanmedian(pad.reshape(nby, k, nbx, k).transpose(0, 2, 1, 3).reshape(nby, nbx, -1),
                            axis=2)
    return grid.astype(np.float32), (k * step, k * step)


def footprint_of(image, maps, noise_corr_factor: float = 1.0) -> NoiseFootprint:
    """The :class:`NoiseFootprint` of a :class:`RadioImage`, its background maps and its
    noise-correlation factor."""
    ny, nx = image.shape
    beam_pix = (image.beam.major_arcsec / image.pixel_scale_arcsec) if image.beam is not None \
        else 5.0
    rms = maps.rms
    if hasattr(rms, "grid") and maps.grid_shape is not None:
        nby, nbx = maps.grid_shape
        grid, box = np.asarray(rms.grid[:nby, :nbx], np.float32), tuple(maps.box_shape)
    else:
        grid, box = _coarse_rms(rms, (ny, nx), max(8, int(round(5 * beam_pix))))
    finite = grid[np.isfinite(grid) & (grid > 0)]
    cell = max(1, int(round(0.5 * beam_pix)))
    fp = NoiseFootprint(
        shape=(ny, nx), wcs_header=image.wcs.to_header_string(relax=True), grid=grid, box=box,
        blank_cells=(_blank_cells(image.data, cell) if image.blanked_fraction > 0 else
                     np.zeros((-(-ny // cell), -(-nx // cell)), bool)), cell_pix=cell,
        rms_min=float(finite.min()) if finite.size else float("nan"),
        rms_max=float(finite.max()) if finite.size else float("nan"),
        beam_major_pix=float(beam_pix), noise_corr_factor=float(noise_corr_factor))
    fp._wcs_cache = image.wcs          # the celestial WCS its header text was written from
    return fp


__all__ = ["NoiseFootprint", "footprint_of", "COVER_OK", "COVER_EDGE", "COVER_BLANKED",
           "COVER_OUTSIDE"]
