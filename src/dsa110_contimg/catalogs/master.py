"""The master reference catalogue: NVSS cross-matched with FIRST and VLASS.

One row per NVSS source (dsa110.md section 6.3). Counterparts are searched
within ``match_radius_arcsec`` (default 7.5 arcsec) on the sphere (k-d tree of
unit vectors); the nearest counterpart supplies the fluxes.

Derived columns
---------------
s_first_mjy, s_first_peak_mjy, s_vlass_mjy : float
    Integrated (and FIRST peak) flux density of the nearest counterpart (mJy), NaN if none.
n_first, n_vlass : int
    Number of counterparts within the radius.
sep_first_arcsec, sep_vlass_arcsec : float
    Separation of the nearest counterpart (arcsec).
alpha : float
    Spectral index ``log(S_VLASS / S_NVSS) / log(3.0 / 1.4)`` (S proportional to nu^alpha),
    NaN unless both fluxes are positive.
compactness : float
    Peak / integrated flux of the FIRST counterpart (5 arcsec beam), else of the
    VLASS counterpart; about 1 for an unresolved source, NaN without a counterpart.
resolved_flag : bool
    FIRST major or minor axis > 6 arcsec.
confusion_flag : bool
    More than one FIRST or more than one VLASS counterpart within the radius.
snr_nvss : float
    NVSS ``flux_mjy / flux_err_mjy``.
reference_ok : bool
    Good normalisation reference: ``snr_nvss > 50``, not resolved, not confused,
    ``-1.2 <= alpha <= 0.2`` (so a VLASS counterpart is required).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from dsa110_contimg.catalogs.readers import NormalisedTable
from dsa110_contimg.core.errors import CatalogError, CatalogMissing
from dsa110_contimg.core.geometry import angle_of_chord, chord_of_angle, unit_vectors

#: Frequencies (GHz) of NVSS and VLASS used for the spectral index.
NU_NVSS_GHZ = 1.4
NU_VLASS_GHZ = 3.0
#: Reference-source thresholds (dsa110.md section 6.3).
SNR_MIN = 50.0
RESOLVED_ARCSEC = 6.0
ALPHA_RANGE = (-1.2, 0.2)
MASTER_KEY = "master:build"


def match_nearest(ra1, dec1, ra2, dec2, radius_arcsec: float):
    """Nearest counterpart in catalogue 2 of each source of catalogue 1.

    Returns
    -------
    index : ndarray of int
        Row in catalogue 2, -1 where none is within the radius.
    sep_arcsec : ndarray of float
        Separation (arcsec), NaN where unmatched.
    count : ndarray of int
        Number of catalogue-2 sources within the radius.
    """
    n1 = len(ra1)
    if n1 == 0 or len(ra2) == 0:
        return np.full(n1, -1), np.full(n1, np.nan), np.zeros(n1, dtype=np.int64)
    chord = float(chord_of_angle(radius_arcsec / 3600.0))
    tree = cKDTree(unit_vectors(ra2, dec2))
    p = unit_vectors(ra1, dec1)
    dist, idx = tree.query(p, k=1, distance_upper_bound=chord * (1 + 1e-12))
    ok = np.isfinite(dist)
    sep = np.where(ok, angle_of_chord(dist) * 3600.0, np.nan)
    count = np.asarray(tree.query_ball_point(p, chord * (1 + 1e-12), return_length=True),
                       dtype=np.int64)
    return np.where(ok, idx, -1), sep, count


def spectral_index(s1, nu1, s2, nu2) -> np.ndarray:
    """``log(s2/s1) / log(nu2/nu1)``; NaN unless both fluxes are finite and > 0."""
    s1, s2 = np.asarray(s1, float), np.asarray(s2, float)
    good = np.isfinite(s1) & np.isfinite(s2) & (s1 > 0) & (s2 > 0)
    out = np.full(np.broadcast(s1, s2).shape, np.nan)
    out[good] = np.log(s2[good] / s1[good]) / math.log(nu2 / nu1)
    return out


def master_columns(nvss, first, vlass, match_radius_arcsec: float = 7.5) -> NormalisedTable:
    """Cross-match normalised NVSS/FIRST/VLASS tables (astropy Tables, or None if absent)."""
    if not (match_radius_arcsec > 0):
        raise CatalogError(f"match radius must be > 0 arcsec, got {match_radius_arcsec!r}")
    n = len(nvss)
    ra, dec = np.asarray(nvss["ra_deg"], float), np.asarray(nvss["dec_deg"], float)
    s_nvss = np.asarray(nvss["flux_mjy"], float)
    nan = np.full(n, np.nan)

    def counterpart(other, flux_col):
        if other is None:
            return np.full(n, -1), nan.copy(), np.zeros(n, np.int64), nan.copy()
        idx, sep, cnt = match_nearest(ra, dec, other["ra_deg"], other["dec_deg"],
                                      match_radius_arcsec)
        flux = np.where(idx >= 0, np.asarray(other[flux_col], float)[np.maximum(idx, 0)], np.nan)
        return idx, sep, cnt, flux

    fi, fsep, fcnt, s_first = counterpart(first, "flux_mjy")
    vi, vsep, vcnt, s_vlass = counterpart(vlass, "flux_mjy")

    def take(other, idx, col, fill=np.nan):
        if other is None:
            return np.full(n, fill)
        vals = np.asarray(other[col])
        out = vals[np.maximum(idx, 0)]
        return np.where(idx >= 0, out, fill)

    f_peak = take(first, fi, "peak_flux_mjy")
    f_int = take(first, fi, "int_flux_mjy")
    v_peak = take(vlass, vi, "peak_flux_mjy")
    v_int = take(vlass, vi, "int_flux_mjy")
    with np.errstate(invalid="ignore", divide="ignore"):
        compact_first = f_peak / f_int
        compact_vlass = v_peak / v_int
    compactness = np.where(np.isfinite(compact_first), compact_first, compact_vlass)
    f_maj, f_min = take(first, fi, "maj_arcsec"), take(first, fi, "min_arcsec")
    with np.errstate(invalid="ignore"):
        resolved = (f_maj > RESOLVED_ARCSEC) | (f_min > RESOLVED_ARCSEC)
        snr = s_nvss / np.asarray(nvss["flux_err_mjy"], float)
    confused = (fcnt > 1) | (vcnt > 1)
    alpha = spectral_index(s_nvss, NU_NVSS_GHZ, s_vlass, NU_VLASS_GHZ)
    with np.errstate(invalid="ignore"):
        ref_ok = (snr > SNR_MIN) & ~resolved & ~confused & (alpha >= ALPHA_RANGE[0]) & \
            (alpha <= ALPHA_RANGE[1])
    core = {
        "source_id": np.asarray(nvss["source_id"], dtype=str),
        "ra_deg": ra, "dec_deg": dec, "flux_mjy": s_nvss,
        "flux_err_mjy": np.asarray(nvss["flux_err_mjy"], float),
        "peak_flux_mjy": np.asarray(nvss["peak_flux_mjy"], float),
        "int_flux_mjy": np.asarray(nvss["int_flux_mjy"], float),
        "maj_arcsec": np.asarray(nvss["maj_arcsec"], float),
        "min_arcsec": np.asarray(nvss["min_arcsec"], float),
        "pa_deg": np.asarray(nvss["pa_deg"], float),
    }
    extras = {
        "s_nvss_mjy": s_nvss.copy(),
        "snr_nvss": snr,
        "s_first_mjy": s_first,
        "s_first_peak_mjy": f_peak,
        "s_vlass_mjy": s_vlass,
        "first_id": take(first, fi, "source_id", "") if first is not None else np.full(n, ""),
        "vlass_id": take(vlass, vi, "source_id", "") if vlass is not None else np.full(n, ""),
        "sep_first_arcsec": fsep,
        "sep_vlass_arcsec": vsep,
        "n_first": fcnt,
        "n_vlass": vcnt,
        "alpha": alpha,
        "compactness": compactness,
        "resolved_flag": np.asarray(resolved, bool),
        "confusion_flag": np.asarray(confused, bool),
        "reference_ok": np.asarray(ref_ok, bool),
    }
    extras["first_id"] = np.asarray(extras["first_id"], dtype=str)
    extras["vlass_id"] = np.asarray(extras["vlass_id"], dtype=str)
    return NormalisedTable(core=core, extras=extras, layout="master")


def build_master(store, *, match_radius_arcsec: float = 7.5, progress=None) -> int:
    """Build (or rebuild) the ``master`` survey of ``store`` from its NVSS, FIRST and VLASS.

    NVSS is required (:class:`CatalogMissing` otherwise); a missing FIRST or
    VLASS leaves its columns NaN (and ``reference_ok`` False without VLASS).
    Returns the number of master rows.
    """
    nvss = store.survey("nvss").all_rows(columns=[])
    others = {}
    for key in ("first", "vlass"):
        try:
            others[key] = store.survey(key).all_rows(columns=[])
        except CatalogMissing:
            others[key] = None
    norm = master_columns(nvss, others["first"], others["vlass"], match_radius_arcsec)
    n = store.ingest_table("master", norm, MASTER_KEY, progress=progress)
    engine = store.survey("master")._db(create=True)
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        for k, v in {"match_radius_arcsec": match_radius_arcsec, "snr_min": SNR_MIN,
                     "resolved_arcsec": RESOLVED_ARCSEC, "alpha_min": ALPHA_RANGE[0],
                     "alpha_max": ALPHA_RANGE[1],
                     "inputs": ",".join(k for k in ("nvss", "first", "vlass")
                                        if k == "nvss" or others[k] is not None)}.items():
            conn.exec_driver_sql("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 (k, str(v)))
    return n
