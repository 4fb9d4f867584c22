"""Association of blind detections with known sources by the de Ruiter radius (docs/science.md §16).

The de Ruiter radius of a detection and a source is

    r = sqrt( (Δα cos δ̄)² / (σα,1² + σα,2²) + Δδ² / (σδ,1² + σδ,2²) )

with δ̄ the mean declination and σ the 1-sigma position errors of each (the detection's
Condon error with the systematic term in quadrature, the source's running weighted-mean
error). For Gaussian errors r is Rayleigh distributed, so r ≤ 5.68 misses about 1 in 10⁷
true pairs (the VAST and TraP default). Pairs are first limited to a pre-cut radius of
``precut_beams`` x BMAJ/2 (1.5 in VAST) by a k-d tree on unit vectors, so the cost is
O((n + m) log m) for n detections and m sources.

One-to-many and many-to-one matches are resolved by keeping the smallest r: pairs that
are each other's best are matched, removed, and the rest matched again (a few vectorised
rounds; the result equals taking pairs in order of increasing r). A detection whose
candidate sources were all taken by closer detections is a *duplicate* of its best
candidate: it is recorded, never turned into a second light curve.

Positions in degrees (ICRS), errors in arcsec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors

#: de Ruiter radius limit (VAST, TraP)
DE_RUITER_MAX = 5.68
#: pre-cut radius in units of BMAJ/2 (VAST ``deruiter_beamwidth_limit``)
PRECUT_BEAMS = 1.5
#: resolution (FWHM, arcsec) and typical rms (mJy/beam) of surveys, for the position error
#: of a catalogue source when the catalogue gives none: FWHM / (2 SNR), plus the systematic
SURVEY_RESOLUTION = {"nvss": (45.0, 0.45), "first": (5.4, 0.15), "vlass": (2.5, 0.12),
                     "sumss": (45.0, 1.0), "racs": (15.0, 0.25), "rax": (15.0, 0.25)}


def de_ruiter(ra1, dec1, era1, edec1, ra2, dec2, era2, edec2) -> np.ndarray:
    """de Ruiter radius of position pairs (deg; errors arcsec, broadcast), dimensionless."""
    ra1, dec1, ra2, dec2 = (np.asarray(v, float) for v in (ra1, dec1, ra2, dec2))
    dra = (ra1 - ra2 + 180.0) % 360.0 - 180.0
    cosd = np.cos(np.radians(0.5 * (dec1 + dec2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((dra * cosd * 3600.0) ** 2 / (np.square(era1) + np.square(era2))
                       + ((dec1 - dec2) * 3600.0) ** 2 / (np.square(edec1) + np.square(edec2)))


@dataclass
class Association:
    """Result of :func:`associate`, per detection.

    ``source`` (index into the sources, -1 for none), ``r`` (its de Ruiter radius, NaN
    for none), ``n_candidates`` (sources within the limit), ``duplicate_of`` (for a
    detection whose candidates were all taken by closer detections: its best candidate
    source, else -1) and ``duplicate_r``.
    """

    source: np.ndarray
    r: np.ndarray
    n_candidates: np.ndarray
    duplicate_of: np.ndarray
    duplicate_r: np.ndarray


#: nearest sources asked per detection by :func:`candidate_pairs` before it falls back to
#: listing every pair (a detection with this many sources inside the pre-cut radius)
NEAREST_SOURCES = 8


def candidate_pairs(det_ra, det_dec, src_ra, src_dec, radius_arcsec: float):
    """All (detection, source) index pairs closer than ``radius_arcsec`` (k-d tree of the
    sources, nearest neighbours of each detection; every pair is listed when some
    detection has :data:`NEAREST_SOURCES` sources that close). Ordered by detection, then
    distance."""
    from scipy.spatial import cKDTree

    det_ok = np.flatnonzero(np.isfinite(det_ra) & np.isfinite(det_dec))
    src_ok = np.flatnonzero(np.isfinite(src_ra) & np.isfinite(src_dec))
    if det_ok.size == 0 or src_ok.size == 0:       # non-finite positions never match
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chord = chord_of_angle(radius_arcsec / 3600.0)
    tree = cKDTree(unit_vectors(np.asarray(src_ra)[src_ok], np.asarray(src_dec)[src_ok]))
    det_xyz = unit_vectors(np.asarray(det_ra)[det_ok], np.asarray(det_dec)[det_ok])
    k = min(NEAREST_SOURCES, src_ok.size)
    dist, idx = tree.query(det_xyz, k=k, distance_upper_bound=chord * (1 + 1e-9))
    dist, idx = dist.reshape(det_ok.size, k), idx.reshape(det_ok.size, k)
    if k < src_ok.size and (dist[:, -1] <= chord).any():
        sm = tree.sparse_distance_matrix(cKDTree(det_xyz), chord, output_type="ndarray")
        order = np.lexsort((sm["v"], sm["j"]))
        return det_ok[sm["j"][order]].astype(np.int64), src_ok[sm["i"][order]].astype(np.int64)
    row, col = np.nonzero(dist <= chord)
    return det_ok[row].astype(np.int64), src_ok[idx[row, col]].astype(np.int64)


def _match_smallest(d, s, r):
    """Greedy one-to-one matching of pairs (d, s) in order of increasing r, by rounds of
    mutual best choices. Returns a boolean mask of the pairs kept."""
    kept = np.zeros(d.size, bool)
    if d.size == 0:
        return kept
    # a pair alone on its detection and on its source is matched whatever the order
    alone = (np.bincount(d)[d] == 1) & (np.bincount(s)[s] == 1)
    kept[alone] = True
    alive = ~alone
    while alive.any():
        idx = np.flatnonzero(alive)
        order = idx[np.lexsort((s[idx], r[idx], d[idx]))]
        best_d = order[np.r_[True, d[order][1:] != d[order][:-1]]]
        order = idx[np.lexsort((d[idx], r[idx], s[idx]))]
        best_s = order[np.r_[True, s[order][1:] != s[order][:-1]]]
        mutual = np.intersect1d(best_d, best_s)
        kept[mutual] = True
        taken_d = np.isin(d, d[mutual])
        taken_s = np.isin(s, s[mutual])
        alive &= ~(taken_d | taken_s)
    return kept


def associate(det_ra, det_dec, det_era, det_edec, src_ra, src_dec, src_era, src_edec, *,
              beam_major_arcsec: float, precut_beams: float = PRECUT_BEAMS,
              r_max: float = DE_RUITER_MAX) -> Association:
    """Associate detections with sources (see the module docstring).

    Parameters
    ----------
    det_ra, det_dec, det_era, det_edec : array-like
        Detections: position (deg) and 1-sigma RA/Dec errors (arcsec, systematic included).
    src_ra, src_dec, src_era, src_edec : array-like
        Sources: running weighted-mean positions (deg) and their errors (arcsec).
    beam_major_arcsec : float
        The image's BMAJ, for the pre-cut radius ``precut_beams`` x BMAJ/2.
    """
    n = np.size(det_ra)
    out = Association(np.full(n, -1, np.int64), np.full(n, np.nan), np.zeros(n, np.int64),
                      np.full(n, -1, np.int64), np.full(n, np.nan))
    d, s = candidate_pairs(det_ra, det_dec, src_ra, src_dec,
                           precut_beams * 0.5 * beam_major_arcsec)
    if d.size == 0:
        return out
    arr = [np.asarray(v, float) for v in (det_ra, det_dec, det_era, det_edec)]
    src = [np.asarray(v, float) for v in (src_ra, src_dec, src_era, src_edec)]
    r = de_ruiter(arr[0][d], arr[1][d], arr[2][d], arr[3][d],
                  src[0][s], src[1][s], src[2][s], src[3][s])
    ok = np.isfinite(r) & (r <= r_max)
    d, s, r = d[ok], s[ok], r[ok]
    out.n_candidates[:] = np.bincount(d, minlength=n)
    kept = _match_smallest(d, s, r)
    out.source[d[kept]] = s[kept]
    out.r[d[kept]] = r[kept]
    lost = ~np.isin(d, d[kept])
    if lost.any():
        dl, sl, rl = d[lost], s[lost], r[lost]
        order = np.lexsort((sl, rl, dl))
        first = order[np.r_[True, dl[order][1:] != dl[order][:-1]]]
        out.duplicate_of[dl[first]] = sl[first]
        out.duplicate_r[dl[first]] = rl[first]
    return out


def update_weighted_positions(ra, dec, w_ra, w_dec, new_ra, new_dec, new_era, new_edec):
    """Running inverse-variance weighted-mean positions after one more detection each.

    ``w_ra``/``w_dec`` are the accumulated weights 1/σ² (arcsec⁻²; 0 = no position yet);
    RA offsets are wrapped into [-180, 180) deg (the cos δ of an offset on the sky and of
    its conversion back cancel: each axis is averaged on its own). Returns
    ``(ra, dec, w_ra, w_dec)``; the mean's errors are ``1/sqrt(w)`` arcsec. The same
    arithmetic as the products store's
    :func:`~dsa110_contimg.store.detections.accumulate_detection_positions`.
    """
    ra, dec, w_ra, w_dec = (np.asarray(v, float) for v in (ra, dec, w_ra, w_dec))
    wn_ra = 1.0 / np.square(np.asarray(new_era, float))
    wn_dec = 1.0 / np.square(np.asarray(new_edec, float))
    d = np.asarray(new_ra, float) - ra
    d = np.where(d >= 180.0, d - 360.0, np.where(d < -180.0, d + 360.0, d))
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = ra + wn_ra / (w_ra + wn_ra) * d
        moved = np.where(moved < 0.0, moved + 360.0, np.where(moved >= 360.0, moved - 360.0, moved))
        ra_new = np.where(w_ra > 0, moved, new_ra)
        dec_new = np.where(w_dec > 0, dec + wn_dec / (w_dec + wn_dec) * (new_dec - dec), new_dec)
    return ra_new, dec_new, w_ra + wn_ra, w_dec + wn_dec


def catalogue_position_error_arcsec(survey: str, flux_mjy, systematic_arcsec: float | None = None):
    """1-sigma position error of catalogue sources without catalogued errors, arcsec.

    ``FWHM / (2 SNR)`` of the survey (:data:`SURVEY_RESOLUTION`; SNR = flux / survey rms,
    at least 5) with the survey's astrometric systematic
    (:data:`~dsa110_contimg.science.condon.SURVEY_SYSTEMATICS_ARCSEC`) in quadrature.
    """
    from dsa110_contimg.science.condon import SURVEY_SYSTEMATICS_ARCSEC

    sys_err = SURVEY_SYSTEMATICS_ARCSEC.get(survey, SURVEY_SYSTEMATICS_ARCSEC["default"]) \
        if systematic_arcsec is None else systematic_arcsec
    flux = np.asarray(flux_mjy, float)
    if survey not in SURVEY_RESOLUTION:
        return np.full(flux.shape, float(sys_err))
    fwhm, rms = SURVEY_RESOLUTION[survey]
    snr = np.maximum(np.where(np.isfinite(flux), flux / rms, 5.0), 5.0)
    return np.hypot(fwhm / (2.0 * snr), sys_err)


__all__ = ["DE_RUITER_MAX", "PRECUT_BEAMS", "NEAREST_SOURCES", "Association", "de_ruiter",
           "candidate_pairs", "associate", "update_weighted_positions",
           "catalogue_position_error_arcsec"]
