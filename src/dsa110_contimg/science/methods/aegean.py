"""Aegean priorized (flux-only) fitting at catalogue positions (docs/science.md, Aegean).

This wraps AegeanTools' ``SourceFinder.priorized_fit_islands`` at ``stage=1``
(the ``--priorized 1`` mode: position and shape fixed to the prior, amplitude
free), the Aegean equivalent of the fixed-beam ``forced`` estimator. It is an
optional extra: ``pip install 'dsa110-contimg-photometry[aegean]'``.

How the upstream pitfalls (docs/science.md, Aegean) are handled
---------------------------------------------------------
* **numpy >= 2.4**: AegeanTools catches ``np.linalg.linalg.LinAlgError``,
  an alias removed in numpy 2.4 (Aegean#228); :func:`load_aegean` restores
  ``np.linalg.linalg = np.linalg`` before importing AegeanTools.
* **2- to 4-axis images**: the image is read by :class:`RadioImage` (squeezed
  to the selected 2-D plane, in Jy/beam) and written to a temporary 2-D FITS
  file with its celestial WCS and beam, which Aegean reads with
  ``cube_index=0``; so 3-/4-axis files, sub-band cubes (one plane at a time)
  and ``mJy/beam`` images all work the same way.
* **Prior columns**: every prior gets ``a, b, pa`` and ``psf_a, psf_b,
  psf_pa`` from the image beam (arcsec, deg) and a dummy ``peak_flux`` of 1.
* **Non-detections / negative fluxes**: the Python priorized path fits every
  prior over the pixels where its beam model exceeds 10 % of the peak (it does
  not flood-fill above ``--floodclip``, the CLI's ``outerclip`` is ignored), so
  it behaves like ``--floodclip -1``; the amplitude is unbounded, so negative
  fluxes are returned as measured (``--negative``). A prior Aegean drops
  (outside the image, NaN pixel, no finite pixel near it) comes back as a
  failed row, never as a missing one.
* **Half-pixel island offset** (found while validating this wrapper on
  ``aegean_synthetic_test.fits``; AegeanTools 2.3.5): ``_refit_islands``
  computes the island's lower corner as ``x - width/2`` with an odd integer
  ``width`` (a float ending in .5) but cuts the sub-image at ``int()`` of it,
  so the model sits half a pixel low on each axis and, for a 3.5-px beam, the
  fitted amplitude is ~5-10 % low. This wrapper reproduces Aegean's island
  geometry and moves each prior by the exact offset Aegean will subtract
  (+0.5 px or 0 per axis), so the model lands on the requested position.
  A free-position (``stage=2``) fit of the same image moves the sources by
  the same +0.5 px, which is how it was confirmed.
* **Background and noise**: from BANE (default, run once per image in a
  subprocess under a wall-clock time-out, docs/science.md, Noise maps: BANE "known hangs"), or
  from this project's maps (``maps="project"`` or a maps object), written to
  temporary FITS files that Aegean loads as ``bkgin``/``rmsin``.
* **Prior shape** (found on the AZP map below; AegeanTools 2.3.5):
  ``priorized_fit_islands`` rescales every prior (``cluster.resize``) to
  ``a^2 - psf_a^2 + imbeam_a^2``, where ``imbeam`` is the header beam held
  constant in *pixels* (converted once from CDELT) and projected back to the
  sky at the source. Where the pixel size varies across the image that is not
  the beam on the sky (780"-860" instead of 864" on the AZP map) and the
  fitted amplitude is off by +1...+3.6 %; it also changes the island width the
  half-pixel correction must predict. With ``keep_sky_beam=True`` (default)
  each prior's catalogue psf is set to Aegean's own image psf at its position,
  so the rescaling leaves the sky beam unchanged.

Accuracy on a real image (issue 10 item 7)
------------------------------------------
Full tables and the causes in ``docs/aegean.md`` (``bench/aegean_catalogue.py``,
``bench/aegean_injection.py``; asserted by ``tests/test_aegean_catalogue.py``).
On astropy's real Parkes 1.4 GHz map ``1904-66_AZP.fits`` (AZP projection,
pixel area -5...+6 % across it), at the positions of Aegean's own blind
free-fit catalogue, compact (int/peak < 1.25) isolated components with SNR > 10
(6), median ratio to Aegean's catalogue peak_flux / to ``forced``:

==================================================  ==========  ==========
estimator                                           / catalogue  / forced
==================================================  ==========  ==========
``forced`` (per-source pixel geometry)              0.998       1
``aegean`` (both fixes, project maps / BANE)        0.994/0.993 0.999/0.995
``aegean``, half-pixel fix only (before)            1.023       1.034
``aegean``, upstream (neither fix, BANE)            0.967       0.973
==================================================  ==========  ==========

The reported deficit (3.5 % below Aegean's catalogue, 6 % below ``forced``) is
upstream behaviour: the half-pixel island offset (-7 % for a 3.6-pixel beam on
an undistorted grid) and the constant-pixel psf, plus, for "6 %", extended
(``forced`` reads ~10 % above a free fit of a source wider than the beam) and
blended components (``forced`` groups neighbours within 1.5 beams, Aegean
within 4). Noise-free sources painted on the sky are recovered to 1.0000 by
``forced`` and to 0.995 (0.991-0.998) by ``aegean`` on this map (1.0000 on an
undistorted one; the rest is Aegean's approximate sky-to-pixel ellipse). Prefer
``forced`` for light curves, and compare the two only at the same positions.

Result columns
--------------
The core columns of :data:`~dsa110_contimg.science.results.CORE_COLUMNS`:
``peak_jyb`` = Aegean ``peak_flux``, ``peak_err_jyb`` = ``err_peak_flux``
(Aegean's covariance-aware amplitude error), ``local_rms_jyb`` = the noise map
at the source, ``snr`` = peak/err, ``chi2`` = NaN and ``dof`` = -1 (Aegean
reports residual statistics, not a chi-square), ``cluster_id`` = the fitting
group (``-1`` for a source fitted alone; Aegean groups priors closer than
``regroup_eps_arcmin``, by default 4 beams), ``Flag.CLUSTERED`` when a
neighbour is closer than 1.5 x BMAJ (the ``forced`` meaning of blended). Extra columns: ``background_jyb``,
``aegean_flags`` (Aegean's own bits, 68 = PRIORIZED + FIXED2PSF),
``residual_std_jyb``. Failed rows: NaN flux/error and ``Flag.FIT_FAILED``
(or ``OFF_IMAGE``/``BLANKED``/``BAD_POSITION`` when known before fitting).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dsa110_contimg.core.errors import (
    ConfigError,
    ExternalToolError,
    MapMismatch,
    MethodUnavailable,
)
from dsa110_contimg.core.geometry import unit_vectors
from dsa110_contimg.science.results import FAILURE_FLAGS, Flag, MeasurementTable

#: How to install the optional dependency (quoted in errors).
INSTALL_HINT = "pip install 'dsa110-contimg-photometry[aegean]'"

#: Aegean flag bits (AegeanTools.flags) that make a fitted amplitude unusable.
_AEGEAN_FITERR = 2
_AEGEAN_NOTFIT = 16

#: FWHM -> Gaussian sigma, as AegeanTools defines it (``FWHM2CC``).
_FWHM2CC = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def load_aegean():
    """Import AegeanTools (with the numpy >= 2.4 alias) and return its pieces.

    Returns
    -------
    (SourceFinder, ComponentSource, aegean_logger)

    Raises
    ------
    MethodUnavailable
        AegeanTools is not installed; the message says how to install it.
    """
    if not hasattr(np.linalg, "linalg"):
        # numpy 2.4 removed the private alias that AegeanTools' fitting.py still
        # names in an ``except`` clause (Aegean#228).
        np.linalg.linalg = np.linalg
    try:
        from AegeanTools.logging import logger as aegean_logger
        from AegeanTools.models import ComponentSource
        from AegeanTools.source_finder import SourceFinder
    except ImportError as exc:
        raise MethodUnavailable(
            f"measurement method 'aegean' needs AegeanTools, which is not installed "
            f"({exc}); install the optional extra with: {INSTALL_HINT}") from exc
    return SourceFinder, ComponentSource, aegean_logger


def aegean_available() -> bool:
    """True when AegeanTools can be imported."""
    try:
        load_aegean()
    except MethodUnavailable:
        return False
    return True


@contextmanager
def _quiet(logger, level=logging.WARNING):
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


# --- temporary FITS files ------------------------------------------------------------
def _plane_header(image):
    """A 2-D header: the celestial WCS, the beam (deg) and BUNIT Jy/beam."""
    from astropy.io import fits

    header = fits.Header()
    header.update(image.wcs.to_header())
    beam = image.require_beam()
    header["BMAJ"] = beam.major_deg
    header["BMIN"] = beam.minor_deg
    header["BPA"] = beam.pa_deg
    header["BUNIT"] = "Jy/beam"
    return header


def _write_plane(path: Path, data, header) -> Path:
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path, overwrite=True)
    return path


def run_bane(image_path: str | Path, out_base: str | Path, *, timeout_s: float = 300.0,
             cores: int = 1) -> tuple[Path, Path]:
    """Run BANE on a FITS file in a subprocess under a wall-clock time-out.

    Parameters
    ----------
    image_path : str or Path
        The image (2-D) to filter.
    out_base : str or Path
        Output stem; BANE writes ``<out_base>_bkg.fits`` and ``<out_base>_rms.fits``.
    timeout_s : float
        Wall-clock limit, seconds (BANE is known to hang on some images).
    cores : int
        Processes BANE may use.

    Returns
    -------
    (background_path, rms_path)

    Raises
    ------
    ExternalToolError
        BANE failed, timed out or wrote no maps.
    """
    code = textwrap.dedent(f"""
        import numpy as np
        if not hasattr(np.linalg, "linalg"):
            np.linalg.linalg = np.linalg
        import logging
        from AegeanTools.logging import logger
        logger.setLevel(logging.WARNING)
        from AegeanTools.BANE import filter_image
        filter_image(im_name={str(image_path)!r}, out_base={str(out_base)!r}, cores={int(cores)})
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ExternalToolError(f"BANE did not finish within {timeout_s:g} s (known upstream "
                                f"hangs, docs/science.md, Noise maps); pass maps='project' or a longer "
                                f"bane_timeout_s", image_path) from None
    bkg, rms = Path(f"{out_base}_bkg.fits"), Path(f"{out_base}_rms.fits")
    if proc.returncode != 0 or not (bkg.exists() and rms.exists()):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise ExternalToolError(f"BANE failed (exit {proc.returncode}): {' | '.join(tail)}",
                                image_path)
    return bkg, rms


# --- Aegean's island geometry (to undo its half-pixel offset) -----------------------
def _group_labels(ra_deg, dec_deg, eps_arcmin: float) -> np.ndarray:
    """Connected components of the 'closer than eps' graph (= DBSCAN, min_samples=1)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(ra_deg)
    if n == 0:
        return np.zeros(0, np.int64)
    xyz = unit_vectors(ra_deg, dec_deg)
    chord = np.sin(np.deg2rad(eps_arcmin / 60.0))  # the measure Aegean uses
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _island_offset(pos: np.ndarray, width: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-source shift along one numpy axis that cancels Aegean's sub-image truncation.

    Aegean's island corner is ``lo = min_i max(0, round(p_i) - w_i/2)`` and the model
    is placed at ``p - lo`` inside ``data[int(lo):]``, i.e. at ``p - frac(lo)`` in the
    image. We look for the shift ``c`` in {0.5, 0} with ``frac(lo(p + c)) == c``.
    """
    out = np.zeros(pos.size)
    if pos.size == 0:
        return out
    n_groups = int(labels.max()) + 1
    chosen = np.full(n_groups, np.nan)
    for c in (0.5, 0.0):
        lo_i = np.maximum(0.0, np.round(pos + c) - width / 2.0)
        lo = np.full(n_groups, np.inf)
        np.minimum.at(lo, labels, lo_i)
        ok = np.isnan(chosen) & np.isclose(lo - np.floor(lo), c)
        chosen[ok] = c
    # no consistent shift (mixed beam widths in one group): use the first-order one
    left = np.isnan(chosen)
    if left.any():
        lo_i = np.maximum(0.0, np.round(pos) - width / 2.0)
        lo = np.full(n_groups, np.inf)
        np.minimum.at(lo, labels, lo_i)
        chosen[left] = (lo - np.floor(lo))[left]
    out[:] = chosen[labels]
    return out


# --- measurement ----------------------------------------------------------------------
def measure(image, ra_deg, dec_deg, *, maps="bane", docov: bool = True,
            regroup_eps_arcmin: float | None = None, bane_timeout_s: float = 300.0,
            bane_cores: int = 1, correct_half_pixel: bool = True, keep_sky_beam: bool = True,
            workdir: str | Path | None = None, beam=None, bkg_path=None, rms_path=None,
            autoload_maps: bool = True, background_options: dict | None = None
            ) -> MeasurementTable:
    """Aegean priorized flux-only fit at the given positions.

    Parameters
    ----------
    image : RadioImage or str or Path
        The image; its selected plane is measured (Jy/beam). Needs a beam.
    ra_deg, dec_deg : array-like
        Positions, ICRS degrees.
    maps : {"bane", "project"} or object with ``background`` and ``rms`` arrays
        Background/noise for Aegean: BANE (default), this project's maps
        (:func:`dsa110_contimg.science.noise.background_maps_for`), or given
        maps (Jy/beam, same shape as the image, e.g. a
        :class:`~dsa110_contimg.science.noise_maps.BackgroundMaps`).
    docov : bool
        Use Aegean's pixel-covariance matrix in the fit (slower, correct errors).
    regroup_eps_arcmin : float, optional
        Priors closer than this are fitted jointly (default, as Aegean: 4x the
        beam major axis).
    bane_timeout_s : float
        Wall-clock limit for BANE, seconds.
    bane_cores : int
        Processes for BANE.
    correct_half_pixel : bool
        Undo AegeanTools 2.3.5's half-pixel island offset (see module notes).
        Leave on; off reproduces upstream behaviour.
    keep_sky_beam : bool
        Fit the image beam as it is on the sky at every position (see module
        notes, "Prior shape"). Leave on; off reproduces upstream behaviour (the
        header beam held constant in pixels, wrong by up to ~3 % in amplitude on
        a projection whose pixel size varies across the image).
    workdir : str or Path, optional
        Directory for the temporary FITS files (default: a fresh temp dir,
        removed afterwards).
    beam : Beam, optional
        Beam used when the header has none.
    bkg_path, rms_path, autoload_maps, background_options
        As for ``forced``; used only with ``maps="project"`` (passed to
        :func:`~dsa110_contimg.science.noise.background_maps_for`).

    Returns
    -------
    MeasurementTable
        One row per position, input order; ``meta['method'] == 'aegean'``.

    Raises
    ------
    MethodUnavailable
        AegeanTools is not installed.
    MissingBeam
        The image has no beam.
    MapMismatch
        Given maps do not match the image shape.
    ExternalToolError
        BANE failed or timed out.
    ConfigError
        An option has an invalid value.
    """
    aegean = load_aegean()
    from dsa110_contimg.science.image import as_image

    image = as_image(image, beam=beam)
    beam = image.require_beam()
    map_options = {"bkg_path": bkg_path, "rms_path": rms_path,
                   "background_options": background_options}
    _check_options(image, maps, map_options, bane_timeout_s)
    from dsa110_contimg.science.forced import _positions

    ra, dec = _positions(ra_deg, dec_deg)
    x, y, flags = _locate(image, ra, dec)
    usable = flags == 0
    meta = {
        "method": "aegean", "image": None if image.path is None else str(image.path),
        "mjd": image.mjd, "freq_hz": image.freq_hz, "beam_deg": beam.as_tuple(),
        "aegean_stage": 1, "aegean_docov": bool(docov),
        "aegean_maps": maps if isinstance(maps, str) else "given",
        "aegean_half_pixel_correction": bool(correct_half_pixel),
        "aegean_keep_sky_beam": bool(keep_sky_beam)}
    out = {k: np.full(ra.size, np.nan) for k in ("peak", "err", "rms", "bkg", "resid")}
    out["aflags"] = np.zeros(ra.size, np.int64)
    out["group"] = np.full(ra.size, -1, np.int64)
    if usable.any():
        with tempfile.TemporaryDirectory(dir=workdir, prefix="aegean_") as tmp:
            files = _input_files(Path(tmp), image, maps, bane_timeout_s, bane_cores,
                                 autoload_maps, map_options)
            res = _fit(*aegean, *files, ra[usable], dec[usable], x[usable], y[usable], beam,
                       image, docov=docov, eps=regroup_eps_arcmin, correct=correct_half_pixel,
                       sky_beam=keep_sky_beam)
        idx = np.flatnonzero(usable)
        for name, target in out.items():
            target[idx] = res[name]
        flags[idx[res["blended"]]] |= int(Flag.CLUSTERED)
        meta["aegean_groups"] = int(res["n_groups"])
    return _table(ra, dec, x, y, flags, usable, out, meta)


def _check_options(image, maps, map_options: dict, bane_timeout_s) -> None:
    if not (isinstance(maps, str) and maps in ("bane", "project")) and not (
            hasattr(maps, "background") and hasattr(maps, "rms")):
        raise ConfigError("maps", maps, "'bane', 'project' or an object with background and rms "
                          "arrays", image.path)
    if not (isinstance(maps, str) and maps == "project"):
        given = [k for k, v in map_options.items() if v]
        if given:
            raise ConfigError(given[0], map_options[given[0]], "only with maps='project' (or give "
                              "the maps object itself)", image.path)
    if not (np.isfinite(bane_timeout_s) and bane_timeout_s > 0):
        raise ConfigError("bane_timeout_s", bane_timeout_s, "a positive number of seconds")


def _locate(image, ra, dec):
    """Pixel positions and the flags known before fitting (bad position, off the image,
    blanked pixel)."""
    ny, nx = image.shape
    x, y = image.world_to_pixel(ra, dec)
    flags = np.zeros(ra.size, np.int64)
    finite = np.isfinite(x) & np.isfinite(y)
    flags[~finite] |= int(Flag.BAD_POSITION)
    xr = np.where(finite, np.round(np.where(finite, x, 0.0)), -1).astype(np.int64)
    yr = np.where(finite, np.round(np.where(finite, y, 0.0)), -1).astype(np.int64)
    inside = finite & (xr >= 0) & (xr < nx) & (yr >= 0) & (yr < ny)
    flags[finite & ~inside] |= int(Flag.OFF_IMAGE)
    pix = np.full(ra.size, np.nan)
    pix[inside] = image.data[yr[inside], xr[inside]]
    flags[inside & ~np.isfinite(pix)] |= int(Flag.BLANKED)
    return x, y, flags


def _input_files(tmp: Path, image, maps, bane_timeout_s, bane_cores, autoload_maps,
                 map_options: dict) -> tuple[Path, Path, Path]:
    """The image plane and its background and noise maps as 2-D FITS files for Aegean:
    ``(image, background, rms)``."""
    header = _plane_header(image)
    img_path = _write_plane(tmp / "image.fits", image.data, header)
    if isinstance(maps, str) and maps == "bane":
        return (img_path, *run_bane(img_path, tmp / "image", timeout_s=bane_timeout_s,
                                    cores=bane_cores))
    if isinstance(maps, str):  # "project"
        from dsa110_contimg.science.noise import background_maps_for

        maps = background_maps_for(image, bkg_path=map_options["bkg_path"],
                                   rms_path=map_options["rms_path"], autoload=bool(autoload_maps),
                                   **dict(map_options["background_options"] or {}))
    b = np.asarray(maps.background, dtype=float)
    r = np.asarray(maps.rms, dtype=float)
    for name, arr in (("background", b), ("rms", r)):
        if arr.shape != image.shape:
            raise MapMismatch(f"{name} map has shape {arr.shape}, image has {image.shape}",
                              image.path)
    r = np.where(r > 0, r, np.nan)  # a noise of 0 means no noise estimate
    return (img_path, _write_plane(tmp / "image_bkg.fits", b, header),
            _write_plane(tmp / "image_rms.fits", r, header))


def _table(ra, dec, x, y, flags, usable, out: dict, meta: dict) -> MeasurementTable:
    """The result columns: failed fits flagged, failed rows NaN (see the module notes)."""
    peak, err, aflags = out["peak"], out["err"], out["aflags"]
    bad_fit = usable & ((aflags & (_AEGEAN_FITERR | _AEGEAN_NOTFIT)) != 0)
    bad_fit |= usable & ~(np.isfinite(peak) & np.isfinite(err) & (err > 0))
    flags[bad_fit] |= int(Flag.FIT_FAILED)
    success = (flags & int(FAILURE_FLAGS)) == 0
    peak[~success] = np.nan
    err[~success] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = peak / err
    return MeasurementTable({
        "ra_deg": ra, "dec_deg": dec, "x_pix": x, "y_pix": y,
        "peak_jyb": peak, "peak_err_jyb": err, "local_rms_jyb": out["rms"], "snr": snr,
        "chi2": np.full(ra.size, np.nan), "dof": np.full(ra.size, -1, np.int64),
        "cluster_id": out["group"], "flags": flags, "success": success,
        "background_jyb": out["bkg"], "aegean_flags": aflags, "residual_std_jyb": out["resid"],
    }, meta)


def _fit(SourceFinder, ComponentSource, aegean_logger, img_path, bkg_path, rms_path,
         ra, dec, x, y, beam, image, *, docov, eps, correct, sky_beam=True):
    """Run the priorized fit on usable positions; return per-position arrays."""
    n = ra.size
    a_arcsec, b_arcsec = beam.major_deg * 3600.0, beam.minor_deg * 3600.0
    if eps is None:
        eps = 4.0 * a_arcsec / 60.0  # Aegean's default: 4x the mean major axis, arcmin
    if not (np.isfinite(eps) and eps >= 0):
        raise ConfigError("regroup_eps_arcmin", eps, "a non-negative number of arcmin")
    labels = _group_labels(ra, dec, eps)
    sizes = np.bincount(labels)

    sf = SourceFinder()
    with _quiet(aegean_logger):
        sf.load_globals(str(img_path), hdu_index=0, bkgin=str(bkg_path), rmsin=str(rms_path),
                        verb=False, cores=1, do_curve=False, docov=docov, cube_index=0)
        ra_fit, dec_fit = ra, dec
        if correct:
            # Aegean's island half-width per source: int(round(4 * sigma_major_pix)) + 1
            width = np.empty(n)
            for i in range(n):  # Aegean's own per-source projection (its loop is per source too)
                # the shape Aegean will fit: ours with sky_beam, else its rescaled one (its
                # image psf at the position, see the prior loop below)
                sa, sb = a_arcsec / 3600.0, b_arcsec / 3600.0
                if not sky_beam:
                    ib = sf.wcshelper.get_skybeam(ra[i], dec[i])
                    if ib is not None and np.isfinite(ib.a) and np.isfinite(ib.b):
                        sa, sb = ib.a, ib.b
                sx = sf.wcshelper.sky2pix_ellipse([ra[i], dec[i]], sa, sb, beam.pa_deg)[2]
                width[i] = int(round(4.0 * sx * _FWHM2CC)) + 1
            dy = _island_offset(y, width, labels)  # Aegean's first axis is numpy rows (y)
            dx = _island_offset(x, width, labels)
            ra_fit, dec_fit = image.pixel_to_world(x + dx, y + dy)
            ra_fit = np.asarray(ra_fit, float) % 360.0
            dec_fit = np.asarray(dec_fit, float)
        priors = []
        for i in range(n):
            c = ComponentSource()
            c.ra, c.dec = float(ra_fit[i]), float(dec_fit[i])
            c.peak_flux = 1.0
            c.a, c.b, c.pa = a_arcsec, b_arcsec, beam.pa_deg
            c.psf_a, c.psf_b, c.psf_pa = a_arcsec, b_arcsec, beam.pa_deg
            if sky_beam:
                # Aegean rescales every prior to a^2 - psf_a^2 + (its image psf)^2, and its
                # image psf is the header beam held constant in *pixels*: on a projection
                # whose pixel size varies across the image that is not the beam on the sky.
                # A prior psf equal to Aegean's own image psf here leaves the shape alone.
                ib = sf.wcshelper.get_skybeam(c.ra, c.dec)
                if ib is not None and np.all(np.isfinite((ib.a, ib.b))) and ib.a > 0 and ib.b > 0:
                    c.psf_a, c.psf_b, c.psf_pa = ib.a * 3600.0, ib.b * 3600.0, ib.pa
            c.island, c.source = int(labels[i]), i
            c.uuid = str(i)
            priors.append(c)
        try:
            fitted = sf.priorized_fit_islands(
                str(img_path), priors, hdu_index=0, bkgin=str(bkg_path), rmsin=str(rms_path),
                cores=1, stage=1, doregroup=False, docov=docov, cube_index=0, progress=False)
        except Exception as exc:  # AegeanTools raises bare exceptions from deep inside
            raise ExternalToolError(f"Aegean priorized fitting failed: {type(exc).__name__}: "
                                    f"{exc}", image.path) from exc

    out = {k: np.full(n, np.nan) for k in ("peak", "err", "rms", "bkg", "resid")}
    out["aflags"] = np.zeros(n, np.int64)
    out["aflags"][:] = _AEGEAN_NOTFIT  # positions Aegean returned nothing for
    for s in fitted:
        try:
            i = int(s.uuid)
        except (TypeError, ValueError):
            continue
        if not 0 <= i < n:
            continue
        out["peak"][i] = s.peak_flux
        e = s.err_peak_flux
        out["err"][i] = e if (e is not None and e > 0) else np.nan
        out["rms"][i] = s.local_rms
        out["bkg"][i] = s.background
        out["resid"][i] = s.residual_std
        out["aflags"][i] = int(s.flags)
    out["group"] = np.where(sizes[labels] > 1, labels, -1)
    # blended in the forced sense: a neighbour closer than 1.5 x BMAJ (Flag.CLUSTERED)
    close = _group_labels(ra, dec, 1.5 * a_arcsec / 60.0)
    out["blended"] = np.bincount(close)[close] > 1
    out["n_groups"] = int(sizes.size)
    return out


__all__ = ["INSTALL_HINT", "aegean_available", "load_aegean", "measure", "run_bane"]
