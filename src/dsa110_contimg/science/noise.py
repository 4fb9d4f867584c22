"""Background and noise (rms) maps of a radio image plane: the public entry point.

:func:`background_maps_for` gives the maps of one plane of a :class:`RadioImage`
as a :class:`~dsa110_contimg.science.noise_maps.BackgroundMaps` value, Jy/beam:
user-supplied ``<stem>_bkg.fits`` / ``<stem>_rms.fits`` maps beside the image (as
written by BANE) or passed explicitly, and for whatever is not supplied the
estimator's maps. The caller holds the value and passes it to whatever measures the
plane (``measure_positions(..., maps=maps)``, ``image_statistics(image, maps=maps)``),
so the maps are built once per plane; nothing is cached on the image.

The concerns live in their own modules, re-exported here:

* :mod:`~dsa110_contimg.science.noise_estimate` -- the BANE-like estimator
  (:func:`estimate_background`), over the row-wise clipping engine
  :mod:`~dsa110_contimg.science.noise_clipping`, giving lazy
  :class:`~dsa110_contimg.science.noise_grid.GridMap` maps;
* :mod:`~dsa110_contimg.science.noise_files` -- map files beside the image
  (:func:`companion_map_paths`, :func:`read_map`, memory-mapped :class:`FileMap`);
* :mod:`~dsa110_contimg.science.noise_correlation` -- the matched-filter noise
  factor of the forced photometry's errors (:func:`noise_correlation_factor`).

All maps are in Jy/beam, shape ``(ny, nx)``, float32 (``np.asarray(map)``
materialises a lazy map; :meth:`BackgroundMaps.arrays` both).
"""

from __future__ import annotations

from pathlib import Path

from dsa110_contimg.science.noise_correlation import noise_correlation_factor
from dsa110_contimg.science.noise_estimate import estimate_background
from dsa110_contimg.science.noise_files import FileMap, companion_map_paths, read_map
from dsa110_contimg.science.noise_grid import GridMap
from dsa110_contimg.science.noise_maps import BackgroundMaps


def _map_paths(image, bkg_path, rms_path, autoload: bool) -> dict[str, Path | None]:
    """The map files to read: the explicit ones, else the companions present beside the image."""
    paths: dict[str, Path | None] = {"bkg": None, "rms": None}
    if bkg_path is not None:
        paths["bkg"] = Path(bkg_path)
    if rms_path is not None:
        paths["rms"] = Path(rms_path)
    if autoload and image.path is not None:
        comp = companion_map_paths(image.path)
        for kind in ("bkg", "rms"):
            if paths[kind] is None and comp[kind].is_file():
                paths[kind] = comp[kind]
    return paths


def background_maps_for(image, *, bkg_path=None, rms_path=None, autoload: bool = True,
                        plane: int | None = None, **estimate_options) -> BackgroundMaps:
    """Background and rms maps of one plane of a :class:`RadioImage`, Jy/beam.

    Maps given explicitly (``bkg_path``/``rms_path``) must exist; otherwise
    ``<stem>_bkg.fits``/``<stem>_rms.fits`` beside the image are used when
    present (``autoload``); whatever is not supplied is estimated with
    :func:`estimate_background` (box from the beam when the image has one).
    Each call builds the maps afresh: hold the returned value and pass it on.

    Parameters
    ----------
    image : RadioImage
    bkg_path, rms_path : str or Path, optional
        Explicit map files.
    autoload : bool
        Look for companion maps beside the image.
    plane : int, optional
        Plane of a cube (default: the image's current :attr:`data` plane).
    **estimate_options
        Passed to :func:`estimate_background`.

    Returns
    -------
    BackgroundMaps
        ``.background`` and ``.rms``: lazy ``(ny, nx)`` maps in Jy/beam (the rms NaN
        where there is no noise estimate); ``.arrays()`` gives both as float32 arrays,
        ``.rms_at(x, y)``/``.background_at(x, y)`` values at 0-based pixel positions;
        ``.source`` says where they came from (``"estimated"``, ``"files"``, ``"mixed"``).

    Raises
    ------
    MapMismatch
        A configured map is missing, unreadable or of the wrong shape.
    EmptyImage
        Nothing to estimate from (no finite pixel).
    """
    data = image.data if plane is None else image.plane(plane)
    shape = data.shape
    paths = _map_paths(image, bkg_path, rms_path, autoload)
    pl = 0 if plane is None else plane
    bkg = read_map(paths["bkg"], shape, "bkg", image.path, pl) if paths["bkg"] else None
    rms = read_map(paths["rms"], shape, "rms", image.path, pl) if paths["rms"] else None
    box = grid_shape = box_shape = None
    if bkg is None or rms is None:
        opts = dict(estimate_options)
        if "beam_pix" not in opts and "box_pix" not in opts and image.beam is not None:
            opts["beam_pix"] = image.beam.major_arcsec / image.pixel_scale_arcsec
        est = estimate_background(data, **opts)
        box, grid_shape, box_shape = est.box_pix, est.grid_shape, est.box_shape
        bkg = est.background if bkg is None else bkg
        rms = est.rms if rms is None else rms
    n_files = sum(p is not None for p in paths.values())
    source = "files" if n_files == 2 else ("estimated" if n_files == 0 else "mixed")
    return BackgroundMaps(bkg, rms, source, box, paths, grid_shape=grid_shape,
                          box_shape=box_shape)


__all__ = ["BackgroundMaps", "GridMap", "FileMap", "estimate_background", "background_maps_for",
           "companion_map_paths", "read_map", "noise_correlation_factor"]
