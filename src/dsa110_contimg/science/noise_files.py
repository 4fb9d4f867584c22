"""Background and noise maps read from FITS files (BANE's ``<stem>_bkg.fits``/``<stem>_rms.fits``).

:func:`companion_map_paths` names the maps beside an image; :func:`read_map` opens
one and checks it against the image plane. A floating-point map is returned as a
lazy :class:`FileMap` over a memory map, so only the pages the photometry touches
are read and a map beside a large mosaic costs no memory; a scaled integer map is
read whole into a float32 array. On the way out values are converted to Jy/beam
(``BUNIT`` mJy/beam, uJy/beam are scaled), and in an rms map zero or negative values
become NaN ("no noise estimate", never sigma = 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsa110_contimg.core.errors import MapMismatch


def _map_stem(path: Path) -> Path:
    name = path.name
    for suffix in (".fits.gz", ".fits", ".fit", ".fts", ".imfits"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_name(path.stem)


def companion_map_paths(image_path: str | Path) -> dict[str, Path]:
    """The BANE-style ``<stem>_bkg.fits`` and ``<stem>_rms.fits`` paths beside an image."""
    stem = _map_stem(Path(image_path))
    return {"bkg": stem.with_name(stem.name + "_bkg.fits"),
            "rms": stem.with_name(stem.name + "_rms.fits")}


def _squeeze_plane(arr, plane: int):
    if arr.ndim > 2 and np.prod(arr.shape[:-2]) == 1:
        return arr.reshape(arr.shape[-2:])
    if arr.ndim > 2:
        return arr.reshape((-1,) + arr.shape[-2:])[plane]
    return arr


class FileMap:
    """A background or rms map read lazily from a FITS file (a memory map, never copied whole).

    Behaves like a read-only ``(ny, nx)`` float32 array for what the photometry needs,
    as :class:`GridMap` does: ``m[yi, xi]``, ``m[y0:y1, x0:x1]``, :meth:`take_flat` and
    :meth:`sampled`; ``np.asarray(m)`` reads the whole map. Values are converted on
    the way out: to native float32, to Jy/beam (``scale``), and for an rms map zero or
    negative values become NaN ("unknown", never sigma = 0). Only the pages the
    photometry touches are read, so a map beside a large mosaic costs no memory.
    """

    ndim = 2
    dtype = np.dtype(np.float32)
    #: values may vary pixel to pixel (not a smooth grid interpolation)
    smooth = False

    def __init__(self, raw: np.ndarray, scale: float, kind: str):
        self._raw = raw
        self.scale = np.float32(scale)
        self.kind = kind
        self.shape = tuple(raw.shape)
        self.size = int(raw.size)

    def _fix(self, values) -> np.ndarray:
        out = np.array(values, dtype=np.float32)        # native byte order, a copy
        if self.scale != 1.0:
            np.multiply(out, self.scale, out=out)
        if self.kind == "rms":
            with np.errstate(invalid="ignore"):
                np.copyto(out, np.float32(np.nan), where=~(out > 0))
        return out

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        return self._fix(self._raw[key])

    def take_flat(self, idx) -> np.ndarray:
        """Like ``np.take(map.ravel(), idx)``, float32."""
        return self._fix(np.take(self._raw.reshape(-1), np.asarray(idx, np.int64)))

    def sampled(self, max_samples: int = 1_000_000) -> np.ndarray:
        """The map on a regular lattice of at most about ``max_samples`` pixels (for statistics)."""
        ny, nx = self.shape
        stride = max(1, int(np.ceil(np.sqrt(ny * nx / max_samples))))
        return self[::stride, ::stride]

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        step = max(1, 4_000_000 // max(1, self.shape[1]))
        for y0 in range(0, self.shape[0], step):
            out[y0:y0 + step] = self[y0:y0 + step]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy=True):
        return np.asarray(self, dtype=dtype)

    def __repr__(self):
        return f"FileMap({self.kind}, shape={self.shape})"


def _memory_map(path: Path, hdul, hdu):
    """The HDU's data as a read-only ``np.memmap`` (floating point, unscaled), else None."""
    from astropy.io import fits

    h = hdu.header
    bitpix = h.get("BITPIX")
    if bitpix not in (-32, -64) or float(h.get("BSCALE", 1.0)) != 1.0 \
            or float(h.get("BZERO", 0.0)) != 0.0 or isinstance(hdu, fits.CompImageHDU):
        return None
    naxes = [int(h[f"NAXIS{i}"]) for i in range(int(h["NAXIS"]), 0, -1)]
    offset = hdul.fileinfo(hdul.index(hdu))["datLoc"]
    return np.memmap(path, dtype=">f4" if bitpix == -32 else ">f8", mode="r", offset=offset,
                     shape=tuple(naxes))


def read_map(path: str | Path, shape: tuple[int, int], kind: str, image_path=None,
             plane: int = 0):
    """Open a background/noise map and check it against the image shape.

    Degenerate axes are squeezed; mJy/beam maps are scaled to Jy/beam; in an rms map,
    zero or negative values mean "unknown" (NaN). A floating-point map is returned as
    a lazy :class:`FileMap` over a memory map (only the pixels used are read); scaled
    integer maps are read whole into a float32 array.

    Raises
    ------
    MapMismatch
        Missing file, unreadable, or a shape different from ``shape``.
    """
    from astropy.io import fits

    from dsa110_contimg.science.image import _flux_scale
    from dsa110_contimg.core.errors import InvalidImage

    path = Path(path)
    if not path.is_file():
        raise MapMismatch(f"configured {kind} map {path} does not exist", image_path or path)
    lazy = None
    try:
        with fits.open(path, memmap=True) as hdul:
            hdu = next((h for h in hdul if h.header.get("NAXIS", 0) >= 2 and h.data is not None
                        and h.data.ndim >= 2), None)
            if hdu is None:
                raise MapMismatch(f"{kind} map {path} holds no image data", image_path or path)
            bunit = hdu.header.get("BUNIT")
            arr = _squeeze_plane(hdu.data, plane)
            if tuple(arr.shape) != tuple(shape):
                raise MapMismatch(f"{kind} map {path} has shape {arr.shape}, the image has "
                                  f"{tuple(shape)}", image_path or path)
            mm = _memory_map(path, hdul, hdu)
            if mm is not None:
                lazy = _squeeze_plane(mm, plane)
            else:
                arr = np.array(arr, dtype=np.float32)   # read while the file is open
    except MapMismatch:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise MapMismatch(f"{kind} map {path} cannot be read: {exc}", image_path or path) from None
    try:
        scale = _flux_scale(bunit, path)
    except InvalidImage:
        scale = 1.0
    if lazy is not None:
        return FileMap(lazy, scale, kind)
    out = arr                                       # a native float32 copy: scaled in place
    if scale != 1.0:
        np.multiply(out, np.float32(scale), out=out)
    if kind == "rms":
        with np.errstate(invalid="ignore"):
            # 0 (and negative) noise means "unknown", never sigma=0
            np.copyto(out, np.float32(np.nan), where=~(out > 0))
    return out


__all__ = ["FileMap", "companion_map_paths", "read_map"]
