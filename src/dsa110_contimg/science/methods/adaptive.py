"""Adaptive sub-band binning (docs/science.md, Adaptive binning; the WABIFAT pattern).

DSA-110 images 16 sub-bands. A faint source may be below the detection
threshold in every sub-band but detected when adjacent sub-bands are
combined. This method

1. measures every frequency plane with the fixed-beam ``forced`` estimator
   (:func:`dsa110_contimg.science.forced.measure_arrays`), with one
   background/noise map per plane and the plane's own noise-correlation
   factor, all sources at once;
2. bins adjacent planes per source until the bin reaches ``target_snr``:
   for width ``w = initial_width .. max_width`` the planes still in the
   source's pool are split into runs of consecutive planes, each run is cut
   into chunks of ``w`` (the last one may be shorter), and every chunk whose
   combined SNR is >= ``target_snr`` is recorded as a bin and its planes
   leave the pool. A final pass (``merge_leftovers``, the WABIFAT
   ``allow_adjacent_misfits``) combines each remaining run of >= 2 planes
   once and keeps it if it reaches the target;
3. reports the band-averaged flux over all planes.

Combination of planes (a deliberate change from WABIFAT's sum)
---------------------------------------------------------------
A bin's flux density is the **inverse-variance weighted mean** of its planes,
``F = sum(F_i / s_i^2) / sum(1 / s_i^2)`` with error ``1 / sqrt(sum(1/s_i^2))``
(s_i = the plane's ``peak_err_jyb``), not WABIFAT's sum ``sum(F_i)`` with error
``sqrt(sum s_i^2)``: the SNR behaves the same way, but the value stays a flux
density (Jy/beam) comparable between bins of different widths and with the
``forced`` result. Planes whose measurement failed get zero weight (they may
sit inside a bin; ``bin_n_used`` counts the planes that contributed).

Vectorisation: loops run over planes and widths only; every step is a numpy
operation over all sources.

Result
------
The core columns hold the **band-averaged** measurement: ``peak_jyb`` and
``peak_err_jyb`` the weighted mean and its error over all successful planes,
``local_rms_jyb`` the noise of the averaged band ``1/sqrt(sum 1/rms_i^2)``,
``snr`` their ratio, ``chi2``/``dof`` the sums of the per-plane values,
``x_pix``/``y_pix`` and ``cluster_id`` of the first plane; ``flags`` carry the failure bits
common to all planes (a source fails only when no plane could be measured).
Extra columns: ``n_planes_used``, ``n_bins``, ``spectral_chi2`` (sum of
``w_i (F_i - F)^2``, consistency of the planes with a flat spectrum) and
``best_bin_snr``.

``meta['bins']`` holds every bin of every source as columnar arrays of equal
length (one entry per bin, sorted by source then first plane):
``source_index`` (row of the table), ``first_plane``, ``last_plane``
(0-based, inclusive), ``width``, ``n_used``, ``freq_min_hz``, ``freq_max_hz``,
``freq_mean_hz`` (mean of the plane centre frequencies), ``flux_jyb``,
``err_jyb``, ``snr``. ``meta['plane_freqs_hz']``, ``meta['plane_peak_jyb']``
and ``meta['plane_err_jyb']`` (shape ``(n_sources, n_planes)``) keep the
per-plane measurements.

A single-plane image gives exactly the ``forced`` result with
``Flag.SINGLE_PLANE`` set on every row and ``meta['note']`` saying so.

Input: a :class:`RadioImage` cube (or its path), or a sequence of
single-plane images (e.g. the per-SPW images ``spw<id>.img-image-pbcor.fits``),
one plane each, in frequency order, each with its own WCS and beam.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.science.results import FAILURE_FLAGS, Flag, MeasurementTable

_BIN_KEYS = ("source_index", "first_plane", "last_plane", "width", "n_used", "freq_min_hz",
             "freq_max_hz", "freq_mean_hz", "flux_jyb", "err_jyb", "snr")


# --- the binning algorithm (pure numpy, all sources at once) ------------------------------
def _chunk_starts(pool: np.ndarray, width: int | None) -> np.ndarray:
    """For each (source, plane) in ``pool`` the first plane of its chunk, else -1.

    Runs of consecutive pooled planes are cut into chunks of ``width`` planes
    from the start of the run (``None``: the whole run is one chunk).
    """
    n, p = pool.shape
    idx = np.broadcast_to(np.arange(p), (n, p))
    prev = np.zeros_like(pool)
    prev[:, 1:] = pool[:, :-1]
    is_start = pool & ~prev
    run_start = np.maximum.accumulate(np.where(is_start, idx, -1), axis=1)
    if width is None:
        start = run_start
    else:
        start = run_start + ((idx - run_start) // width) * width
    return np.where(pool, start, -1)


def _combine(flux: np.ndarray, weight: np.ndarray, start: np.ndarray):
    """Sum weights and weighted fluxes per chunk; arrays indexed (source, chunk start)."""
    n, p = flux.shape
    sel = start >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], (n, p))[sel]
    key = rows * p + start[sel]
    sw = np.bincount(key, weights=weight[sel], minlength=n * p).reshape(n, p)
    swf = np.bincount(key, weights=(weight * flux)[sel], minlength=n * p).reshape(n, p)
    count = np.bincount(key, minlength=n * p).reshape(n, p)
    used = np.bincount(key, weights=(weight > 0)[sel].astype(float), minlength=n * p).reshape(n, p)
    return sw, swf, count, used


def adaptive_bins(flux: np.ndarray, err: np.ndarray, *, target_snr: float = 5.0,
                  initial_width: int = 1, max_width: int | None = None,
                  merge_leftovers: bool = True) -> dict[str, np.ndarray]:
    """Bin adjacent planes per source until the target SNR is reached.

    Parameters
    ----------
    flux, err : ndarray, shape (n_sources, n_planes)
        Per-plane flux density and 1-sigma error, Jy/beam. Planes with a
        non-finite flux or a non-positive/non-finite error get zero weight.
    target_snr : float
        SNR a bin must reach.
    initial_width, max_width : int
        Range of chunk widths tried (``max_width`` defaults to the number of planes).
    merge_leftovers : bool
        Final pass over runs of >= 2 left-over planes.

    Returns
    -------
    dict of str -> ndarray
        One entry per bin, sorted by source then first plane: ``source_index``,
        ``first_plane``, ``last_plane``, ``width``, ``n_used``, ``flux_jyb``,
        ``err_jyb``, ``snr``.
    """
    flux = np.asarray(flux, dtype=float)
    err = np.asarray(err, dtype=float)
    if flux.ndim != 2 or flux.shape != err.shape:
        raise ConfigError("flux", f"shape {flux.shape} / err {err.shape}",
                          "two arrays of the same shape (n_sources, n_planes)")
    n, p = flux.shape
    max_width = p if max_width is None else int(max_width)
    good = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    f0 = np.where(good, flux, 0.0)
    pool = np.ones((n, p), bool)
    found: list[tuple[np.ndarray, ...]] = []

    def one_pass(width, min_count):
        start = _chunk_starts(pool, width)
        sw, swf, count, used = _combine(f0, weight, start)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = swf / np.sqrt(sw)
        hit = (sw > 0) & (snr >= target_snr) & (count >= min_count)
        if not hit.any():
            return
        src, first = np.nonzero(hit)
        found.append((src, first, count[src, first], used[src, first],
                      swf[src, first] / sw[src, first], 1.0 / np.sqrt(sw[src, first]),
                      snr[src, first]))
        # planes of detected chunks leave the pool
        pool[:] &= ~((start >= 0) & hit[np.arange(n)[:, None], np.maximum(start, 0)])

    for w in range(max(1, int(initial_width)), max_width + 1):
        if not pool.any():
            break
        one_pass(w, 1)
    if merge_leftovers and pool.any():
        one_pass(None, 2)

    if found:
        src, first, count, used, fl, er, sn = (np.concatenate(a) for a in zip(*found))
    else:
        src = first = count = used = np.zeros(0, np.int64)
        fl = er = sn = np.zeros(0)
    order = np.lexsort((first, src))
    return {"source_index": src[order].astype(np.int64), "first_plane": first[order].astype(np.int64),
            "last_plane": (first + count - 1)[order].astype(np.int64),
            "width": count[order].astype(np.int64), "n_used": used[order].astype(np.int64),
            "flux_jyb": fl[order], "err_jyb": er[order], "snr": sn[order]}


# --- measuring the planes -------------------------------------------------------------------
def _plane_list(image, beam):
    """[(RadioImage, plane index, frequency Hz)] for a cube or a sequence of images."""
    from dsa110_contimg.science.image import as_image

    if isinstance(image, (str, os.PathLike)) or hasattr(image, "n_planes"):
        img = as_image(image, beam=beam)
        freqs = img.plane_freqs_hz
        return [(img, i, float(freqs[i])) for i in range(img.n_planes)]
    if isinstance(image, Sequence) and len(image) > 0:
        planes = []
        for item in image:
            img = as_image(item, beam=beam)
            freqs = img.plane_freqs_hz
            planes.extend((img, i, float(freqs[i])) for i in range(img.n_planes))
        return planes
    raise ConfigError("image", type(image).__name__, "a RadioImage, a path, or a non-empty "
                      "sequence of them (one per sub-band)")


def measure(image, ra_deg, dec_deg, *, target_snr: float = 5.0, initial_width: int = 1,
            max_width: int | None = None, merge_leftovers: bool = True,
            nbeam: float = 3.0, cluster_threshold: float | None = 1.5,
            error_model: str = "correlated", beam=None, bkg_path=None, rms_path=None,
            autoload_maps: bool = True, background_options: dict | None = None
            ) -> MeasurementTable:
    """Forced photometry per sub-band plane, adaptively binned to a target SNR.

    Parameters
    ----------
    image : RadioImage, str, Path or sequence of them
        A sub-band cube, or one single-plane image per sub-band in frequency order.
    ra_deg, dec_deg : array-like
        ICRS positions, degrees.
    target_snr : float
        SNR a bin must reach (default 5).
    initial_width, max_width : int
        Bin widths tried, planes (default 1 .. number of planes).
    merge_leftovers : bool
        Final pass over runs of >= 2 left-over planes (WABIFAT
        ``allow_adjacent_misfits``).
    nbeam, cluster_threshold, error_model, beam, bkg_path, rms_path, autoload_maps, background_options
        As for the ``forced`` method, applied to every plane. ``bkg_path``/
        ``rms_path`` may be cube maps (plane i is used for plane i).

    Returns
    -------
    MeasurementTable
        Band-averaged core columns; bins in ``meta['bins']`` (see module notes).

    Raises
    ------
    ConfigError
        Invalid option.
    MissingBeam, InvalidImage, MapMismatch
        From the images and maps.
    """
    from dsa110_contimg.science.forced import _positions, measure_positions

    _check_options(target_snr, initial_width, max_width, error_model, nbeam)
    ra, dec = _positions(ra_deg, dec_deg)
    planes = _plane_list(image, beam)
    if len({id(img) for img, _, _ in planes}) > 1 and (bkg_path or rms_path):
        raise ConfigError("bkg_path" if bkg_path else "rms_path", bkg_path or rms_path,
                          "no explicit map file with one image per sub-band (each image's "
                          "<stem>_bkg/_rms.fits companions are picked up automatically)")
    if len(planes) == 1:
        table = measure_positions(planes[0][0], ra, dec, method="forced", nbeam=nbeam,
                                  cluster_threshold=cluster_threshold, error_model=error_model,
                                  beam=beam, bkg_path=bkg_path, rms_path=rms_path,
                                  autoload_maps=autoload_maps,
                                  background_options=background_options)
        table.columns["flags"] = table.columns["flags"] | int(Flag.SINGLE_PLANE)
        table.meta.update(method="adaptive", n_planes=1, target_snr=float(target_snr),
                          note="single-plane image: adaptive binning not possible, result "
                               "equals method 'forced'")
        return table
    map_options = dict(bkg_path=bkg_path, rms_path=rms_path, autoload=bool(autoload_maps),
                       **dict(background_options or {}))
    stack = _PlaneStack.measure(planes, ra, dec, nbeam=nbeam, cluster_threshold=cluster_threshold,
                                error_model=error_model, map_options=map_options)
    band = _band_average(stack)
    freqs = np.array([f for _, _, f in planes])
    bins = _frequency_bins(stack.F, stack.E, freqs, target_snr=target_snr,
                           initial_width=initial_width, max_width=max_width,
                           merge_leftovers=merge_leftovers)
    n = ra.size
    n_bins = np.bincount(bins["source_index"], minlength=n)
    best = np.full(n, np.nan)
    if bins["snr"].size:
        np.fmax.at(best, bins["source_index"], bins["snr"])
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = band["peak"] / band["perr"]
    p = len(planes)
    meta = {
        "method": "adaptive", "image": _image_label(planes), "mjd": planes[0][0].mjd,
        "freq_hz": float(np.nanmean(freqs)) if np.isfinite(freqs).any() else None,
        "beam_deg": None if planes[0][0].beam is None else planes[0][0].beam.as_tuple(),
        "n_planes": p, "target_snr": float(target_snr), "initial_width": int(initial_width),
        "max_width": int(p if max_width is None else max_width),
        "merge_leftovers": bool(merge_leftovers), "combination": "inverse-variance weighted mean",
        "nbeam": nbeam, "cluster_threshold": cluster_threshold, "error_model": error_model,
        "noise_corr_factors": stack.factors, "noise_source": sorted(set(stack.noise_sources)),
        "plane_freqs_hz": freqs, "plane_peak_jyb": stack.F, "plane_err_jyb": stack.E,
        "bins": bins,
    }
    return MeasurementTable({
        "ra_deg": ra, "dec_deg": dec, "x_pix": stack.x, "y_pix": stack.y,
        "peak_jyb": band["peak"], "peak_err_jyb": band["perr"], "local_rms_jyb": band["rms"],
        "snr": snr, "chi2": band["chi2"], "dof": band["dof"], "cluster_id": stack.cluster,
        "flags": band["flags"], "success": band["success"],
        "n_planes_used": band["n_used"], "n_bins": n_bins,
        "spectral_chi2": band["spectral_chi2"], "best_bin_snr": best,
    }, meta)


def _check_options(target_snr, initial_width, max_width, error_model, nbeam) -> None:
    if not (isinstance(target_snr, (int, float)) and np.isfinite(target_snr) and target_snr > 0):
        raise ConfigError("target_snr", target_snr, "a number > 0")
    if not (isinstance(initial_width, (int, np.integer)) and initial_width >= 1):
        raise ConfigError("initial_width", initial_width, "an integer >= 1")
    if max_width is not None and not (isinstance(max_width, (int, np.integer))
                                      and max_width >= initial_width):
        raise ConfigError("max_width", max_width, f"an integer >= initial_width ({initial_width})")
    if error_model not in ("correlated", "mean_noise"):
        raise ConfigError("error_model", error_model, "'correlated' or 'mean_noise'")
    if not (np.isfinite(nbeam) and nbeam > 0):
        raise ConfigError("nbeam", nbeam, "a number > 0")


@dataclass
class _PlaneStack:
    """The forced measurements of every plane: ``F``, ``E``, ``R`` (flux, error, local rms,
    Jy/beam) of shape ``(n_sources, n_planes)`` (NaN where a plane failed); ``chi2``/``dof``
    summed over the successful planes; the AND and OR of the per-plane flags; the first
    plane's pixel positions and cluster ids; each plane's noise factor and map source."""

    F: np.ndarray
    E: np.ndarray
    R: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    flags_all: np.ndarray
    flags_any: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    factors: np.ndarray
    noise_sources: list

    @classmethod
    def measure(cls, planes, ra, dec, *, nbeam, cluster_threshold, error_model,
                map_options) -> "_PlaneStack":
        """Measure every plane with its own maps and noise-correlation factor."""
        from dsa110_contimg.science.forced import measure_arrays, pixel_beam_for
        from dsa110_contimg.science.noise import background_maps_for, noise_correlation_factor

        n, p = ra.size, len(planes)
        F, E, R = (np.full((p, n), np.nan) for _ in range(3))
        chi2 = np.zeros(n)
        dof = np.zeros(n, np.int64)
        flags_all = np.full(n, -1, np.int64)  # AND of the per-plane flags
        flags_any = np.zeros(n, np.int64)
        first = None
        factors = np.ones(p)
        noise_sources = []
        for k, (img, i, _freq) in enumerate(planes):
            pb = pixel_beam_for(img)
            maps = background_maps_for(img, plane=i, **map_options)
            noise_sources.append(maps.source)
            data = img.plane(i)
            if error_model == "correlated":
                c = noise_correlation_factor(data, maps.background, maps.rms, pb.stamp(nbeam))
                factors[k] = c if np.isfinite(c) else 1.0
            x, y = img.world_to_pixel(ra, dec)
            cols = measure_arrays(data, maps.background, maps.rms, x, y, pb, nbeam=nbeam,
                                  cluster_threshold=cluster_threshold, error_scale=factors[k])
            if first is None:
                first = (x, y, cols["cluster_id"])
            ok = cols["success"]
            F[k, ok] = cols["peak_jyb"][ok]
            E[k, ok] = cols["peak_err_jyb"][ok]
            R[k, ok] = cols["local_rms_jyb"][ok]
            chi2[ok] += cols["chi2"][ok]
            dof[ok] += cols["dof"][ok]
            flags_all &= cols["flags"]
            flags_any |= cols["flags"]
        return cls(F.T, E.T, R.T, chi2, dof, flags_all, flags_any, *first, factors,
                   noise_sources)


def _band_average(stack: _PlaneStack) -> dict[str, np.ndarray]:
    """The inverse-variance weighted mean over the successful planes of every source (see
    the module notes) and the columns that go with it."""
    F, E, R = stack.F, stack.E, stack.R
    good = np.isfinite(F) & np.isfinite(E) & (E > 0)
    n_used = good.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(good, 1.0 / np.where(good, E, 1.0) ** 2, 0.0)
        sw = w.sum(axis=1)
        peak = (w * np.where(good, F, 0.0)).sum(axis=1) / sw
        perr = 1.0 / np.sqrt(sw)
        rgood = good & np.isfinite(R) & (R > 0)
        rms = 1.0 / np.sqrt(np.where(rgood, 1.0 / np.where(rgood, R, 1.0) ** 2, 0.0).sum(axis=1))
        spectral_chi2 = (w * (np.where(good, F, 0.0) - peak[:, None]) ** 2).sum(axis=1)
    success = n_used > 0
    # flags: failure bits only where every plane failed; informational bits from any plane
    flags = np.where(success, stack.flags_any & ~int(FAILURE_FLAGS), stack.flags_all)
    flags = np.where(success | (flags != 0), flags, int(Flag.NO_GOOD_PIXELS))
    for arr in (peak, perr, spectral_chi2):
        arr[~success] = np.nan
    rms[~np.isfinite(rms)] = np.nan
    return {"peak": peak, "perr": perr, "rms": rms, "spectral_chi2": spectral_chi2,
            "success": success, "flags": flags, "n_used": n_used,
            "chi2": np.where(success, stack.chi2, np.nan),
            "dof": np.where(success, stack.dof, 0)}


def _frequency_bins(F, E, freqs, **binning) -> dict[str, np.ndarray]:
    """:func:`adaptive_bins` with each bin's frequency range and mean plane frequency (Hz)."""
    bins = adaptive_bins(F, E, **binning)
    lo, hi = bins["first_plane"], bins["last_plane"]
    csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(freqs))])
    with np.errstate(invalid="ignore"):
        bins["freq_min_hz"] = np.minimum(freqs[lo], freqs[hi])
        bins["freq_max_hz"] = np.maximum(freqs[lo], freqs[hi])
        bins["freq_mean_hz"] = np.where(np.isfinite(freqs[lo]) & np.isfinite(freqs[hi]),
                                        (csum[hi + 1] - csum[lo]) / (hi - lo + 1), np.nan)
    return {k: bins[k] for k in _BIN_KEYS}


def _image_label(planes):
    paths = []
    for img, _, _ in planes:
        label = None if img.path is None else str(img.path)
        if label not in paths:
            paths.append(label)
    return paths[0] if len(paths) == 1 else paths


__all__ = ["adaptive_bins", "measure"]
