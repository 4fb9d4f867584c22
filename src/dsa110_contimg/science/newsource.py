"""Is a detection that matches no known source a *new* source? (docs/science.md §18)

Known false-positive classes first (:func:`false_positive_reasons`), per detection of the
current image:

* ``edge``: closer than ``edge_beams`` x BMAJ to the image edge (VAST's edge buffer,
  1.2 x 3/2 beams; islands there are cut and the noise map is extrapolated);
* ``blanked``: a blanked pixel within ``blank_beams`` x BMAJ (a cut island, a map border);
* ``extended``: inside a resolved catalogue source (its deconvolved ellipse convolved with
  the beam, plus half a beam): the finder splits a source several beams long into
  components whose number and positions change with the noise, away from the catalogue
  position; a genuine transient there is given up with them;
* ``artefact``: within ``artefact_radius_beams`` x BMAJ of a detection or of a known
  source (the catalogue's, on the image or off it, blanked or not) at least
  1 / ``artefact_flux_ratio`` times brighter (sidelobes and calibration artefacts of
  bright sources sit at a few per cent of their peak, a few beams away; a source just
  beyond the edge or under a blanked region still throws them onto the image).

Then the depth test (:func:`new_source_significance`), against the earlier images that
covered the position (VAST ``new_sources``; TraP ``newsource``):

* no earlier image covers it: a first visit, never new;
* ``sigma_i = peak / (c_i rms_i)`` with ``rms_i`` the noise of earlier image *i* at the
  position and ``c_i`` its noise-correlation factor, i.e. the SNR a fixed-beam measurement
  would have had there (positions in its edge buffer or near blanked pixels are skipped);
  ``new_high_sigma`` is the largest ``sigma_i`` and ``new_sigma_image`` its image;
* new when ``new_high_sigma >= min_sigma`` (default 6) *and* its own SNR (peak / error,
  the fixed-beam measurement of the detection) reaches ``min_sigma`` too: the source
  would have been seen at that significance in at least one earlier image, and it is seen
  at it now. Without the second condition a noise peak of a noisier image (4-5 sigma
  there) is "new" against a deeper earlier image (about 3 per 100 images when the noise
  varies by +-25 % between epochs, ``bench/falsenew.py``). Such a detection is
  ``faint_here``: the workflow records it and makes no source of it, so a real source is
  tested afresh at its next detection. VAST divides by the pixel rms alone;
  on beam-correlated noise (c ~ 1.4) a 5-sigma pixel peak of noise often fits to 6-7
  "pixel sigma", so the pixel rms would call about one noise peak in six images new,
  while in measurement units 6 sigma is above every noise detection of 40 simulated images
  (docs/science.md §18);
* ``likely_transient`` (TraP type 1): also ``peak >= min_sigma x c rms_max`` of that image,
  i.e. it would have been seen anywhere in it;
* ``sigma_rms_min = peak / (c min(rms_min))`` over the covering images is VAST's
  ``diff_sigma`` in the same units, kept for reference.

Fluxes Jy/beam, positions deg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.science.footprint import COVER_OK, COVER_OUTSIDE

REASON_EDGE = "edge"
REASON_BLANKED = "blanked"
REASON_ARTEFACT = "artefact"
REASON_EXTENDED = "extended"


@dataclass(frozen=True)
class NewSourceRules:
    """Thresholds of the new-source decision (see the module docstring)."""

    min_sigma: float = 6.0
    edge_beams: float = 1.8
    blank_beams: float = 0.5
    artefact_radius_beams: float = 5.0
    artefact_flux_ratio: float = 0.1

    @classmethod
    def from_config(cls, cfg) -> "NewSourceRules":
        """The thresholds of a :class:`~dsa110_contimg.core.config.PhotometryConfig`."""
        return cls(min_sigma=cfg.new_source_min_sigma, edge_beams=cfg.new_source_edge_beams,
                   artefact_radius_beams=cfg.artefact_radius_beams,
                   artefact_flux_ratio=cfg.artefact_flux_ratio)


def false_positive_reasons(peak_jyb, ra_deg, dec_deg, edge_distance_beams, near_blank,
                           beam_major_arcsec: float, rules: NewSourceRules = NewSourceRules(),
                           hosts=None, resolved=None, classify=None):
    """The false-positive class of each detection of one image.

    ``hosts``, optional, is ``(ra_deg, dec_deg, peak_jyb)`` of known sources that can throw
    artefacts besides the detections themselves (the catalogue's bright sources on and
    around the image: one beyond the edge or under a blanked region is not detected).
    ``resolved``, optional, is ``(ra_deg, dec_deg, major_arcsec, minor_arcsec, pa_deg)`` of
    the catalogue sources the image's beam resolves (deconvolved FWHM axes, PA east of north).

    ``classify``, optional, is a boolean mask of the detections to classify (e.g. those that
    matched no known source): the others are left unclassified (``""``, -1) but still
    make artefacts of the classified ones; the classified ones get the same classes as
    without the mask, at a cost that follows their number.

    Returns ``(reason, related)``: ``reason`` is ``""`` (none), ``"edge"``, ``"blanked"``
    or ``"artefact"``; ``related`` is, for an artefact, the index of the brightest
    detection that makes it one, or -1 (not an artefact, or made one by ``hosts`` only).
    ``peak_jyb`` NaN (a failed fit) counts as 0.
    """
    from scipy.spatial import cKDTree

    from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors

    peak = np.nan_to_num(np.asarray(peak_jyb, float), nan=0.0)
    n = peak.size
    reason = np.full(n, "", dtype=object)
    related = np.full(n, -1, np.int64)
    if n == 0:
        return reason, related
    h_ra, h_dec, h_peak = (np.zeros(0),) * 3 if hosts is None else \
        (np.atleast_1d(np.asarray(v, float)) for v in hosts)
    ra = np.concatenate([np.asarray(ra_deg, float), h_ra])
    dec = np.concatenate([np.asarray(dec_deg, float), h_dec])
    peak = np.concatenate([peak, np.nan_to_num(h_peak, nan=0.0)])
    chord = chord_of_angle(rules.artefact_radius_beams * beam_major_arcsec / 3600.0)
    todo = np.ones(n, bool) if classify is None else np.asarray(classify, bool).copy()
    if todo.any():
        i, j = _pairs_within(ra, dec, np.flatnonzero(todo), chord)
        keep = i != j                              # hosts are never classified themselves
        i, j = i[keep], j[keep]
        faint = peak[i] < rules.artefact_flux_ratio * peak[j]
        i, j = i[faint], j[faint]
        order = np.lexsort((j, -peak[j], j >= n, i))  # detections first, brightest first
        first = order[np.r_[True, i[order][1:] != i[order][:-1]]] if order.size else order
        reason[i[first]] = REASON_ARTEFACT
        related[i[first]] = np.where(j[first] < n, j[first], -1)
    if resolved is not None:
        inside = np.zeros(n, bool)
        at = np.flatnonzero(todo)
        inside[at] = _inside_resolved(np.asarray(ra_deg, float)[at],
                                      np.asarray(dec_deg, float)[at], resolved, beam_major_arcsec)
        reason[inside] = REASON_EXTENDED
        related[inside] = -1
    reason[todo & np.asarray(near_blank, bool)] = REASON_BLANKED
    reason[todo & (np.asarray(edge_distance_beams, float) < rules.edge_beams)] = REASON_EDGE
    return reason, related


def _pairs_within(ra, dec, which, chord):
    """Index pairs ``(i, j)``, ``i`` among ``which``, of positions within ``chord`` (unit
    vectors) of each other (``i == j`` among them)."""
    from scipy.spatial import cKDTree

    from dsa110_contimg.core.geometry import unit_vectors

    xyz = unit_vectors(ra, dec)
    ok = np.isfinite(xyz).all(axis=1)
    which = which[ok[which]]
    if which.size == 0 or not ok.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    every = np.flatnonzero(ok)
    sm = cKDTree(xyz[which]).sparse_distance_matrix(cKDTree(xyz[every]), chord,
                                                    output_type="ndarray")
    return which[sm["i"]].astype(np.int64), every[sm["j"]].astype(np.int64)


def _inside_resolved(ra, dec, resolved, beam_major_arcsec: float) -> np.ndarray:
    """Per position: inside the ellipse of any resolved source, with semi-axes (convolved
    FWHM + BMAJ) / 2 (convolved axes: deconvolved and BMAJ in quadrature)."""
    from scipy.spatial import cKDTree

    from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors

    s_ra, s_dec, maj, mnr, pa = (np.atleast_1d(np.asarray(v, float)) for v in resolved)
    out = np.zeros(ra.size, bool)
    if s_ra.size == 0 or ra.size == 0:
        return out
    a = 0.5 * (np.hypot(maj, beam_major_arcsec) + beam_major_arcsec)
    b = 0.5 * (np.hypot(np.nan_to_num(mnr), beam_major_arcsec) + beam_major_arcsec)
    pairs = cKDTree(unit_vectors(ra, dec)).sparse_distance_matrix(
        cKDTree(unit_vectors(s_ra, s_dec)), chord_of_angle(float(np.nanmax(a)) / 3600.0),
        output_type="ndarray")
    i, j = pairs["i"], pairs["j"]
    east = ((ra[i] - s_ra[j] + 180.0) % 360.0 - 180.0) * np.cos(np.radians(s_dec[j])) * 3600.0
    north = (dec[i] - s_dec[j]) * 3600.0
    t = np.radians(np.nan_to_num(pa[j]))
    along, across = east * np.sin(t) + north * np.cos(t), east * np.cos(t) - north * np.sin(t)
    hit = (along / a[j]) ** 2 + (across / b[j]) ** 2 <= 1.0
    out[i[hit]] = True
    return out


@dataclass
class NewSourceVerdict:
    """Per detection (see :func:`new_source_significance`)."""

    is_new: np.ndarray
    new_high_sigma: np.ndarray
    new_sigma_image: np.ndarray
    likely_transient: np.ndarray
    sigma_rms_min: np.ndarray
    n_covering: np.ndarray
    reason: np.ndarray
    #: deep enough earlier, but below ``min_sigma`` in its own image (not new)
    faint_here: np.ndarray | None = None


def new_source_significance(peak_jyb, depth_rms, depth_status, rms_min, rms_max,
                            rules: NewSourceRules = NewSourceRules(),
                            corr_factor=None, snr=None) -> NewSourceVerdict:
    """The VAST/TraP new-source test of detections against earlier images.

    Parameters
    ----------
    peak_jyb : (n,)
        Peak flux of each detection, Jy/beam.
    depth_rms, depth_status : (n, k)
        Per detection and earlier image: rms at the position (Jy/beam) and its status
        (:meth:`~dsa110_contimg.science.footprint.NoiseFootprint.depth_at`).
    rms_min, rms_max : (k,)
        The earlier images' noise extremes, Jy/beam.
    corr_factor : (k,), optional
        The earlier images' noise-correlation factors (default 1: pixel units).
    snr : (n,), optional
        Each detection's own SNR (peak / its fixed-beam error); a detection below
        ``min_sigma`` in its own image is not new (default: not checked).

    Returns
    -------
    NewSourceVerdict
        ``new_sigma_image`` indexes the earlier images (-1 for none); ``reason`` says
        why a detection is or is not new.
    """
    peak = np.asarray(peak_jyb, float)
    n = peak.size
    rms = np.asarray(depth_rms, float).reshape(n, -1)
    status = np.asarray(depth_status, dtype=object).reshape(n, -1)
    k = rms.shape[1]
    c = np.ones(k) if corr_factor is None else np.asarray(corr_factor, float).reshape(k)
    rms = rms * c[None, :]
    rms_min = np.asarray(rms_min, float).reshape(k) * c
    rms_max = np.asarray(rms_max, float).reshape(k) * c
    covering = status != COVER_OUTSIDE
    usable = (status == COVER_OK) & np.isfinite(rms) & (rms > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.where(usable, peak[:, None] / np.where(usable, rms, 1.0), -np.inf)
        min_rms_min = np.where(covering, rms_min[None, :], np.inf).min(axis=1, initial=np.inf)
        sigma_rms_min = np.where(np.isfinite(min_rms_min), peak / min_rms_min, np.nan)
    best = np.argmax(sigma, axis=1) if k else np.zeros(n, np.int64)
    high = sigma[np.arange(n), best] if k else np.full(n, -np.inf)
    any_usable = usable.any(axis=1)
    new_high = np.where(any_usable, high, np.nan)
    own = np.full(n, np.inf) if snr is None else np.nan_to_num(np.asarray(snr, float), nan=0.0)
    deep_enough = any_usable & (new_high >= rules.min_sigma)
    is_new = deep_enough & (own >= rules.min_sigma)
    rmax_best = rms_max[best] if k else np.full(n, np.nan)
    likely = is_new & (peak >= rules.min_sigma * rmax_best)
    n_cov = covering.sum(axis=1)
    reason = np.full(n, "new", dtype=object)
    reason[~is_new] = [f"earlier images too shallow: new_high_sigma {v:.1f} < {rules.min_sigma:g}"
                       for v in new_high[~is_new]]
    faint_here = deep_enough & ~is_new
    reason[faint_here] = [f"too faint in its own image: snr {v:.1f} < {rules.min_sigma:g}"
                          for v in own[faint_here]]
    reason[(n_cov > 0) & ~any_usable] = "earlier images cover it only near an edge or blanked pixels"
    reason[n_cov == 0] = "first visit: no earlier image covers it"
    return NewSourceVerdict(is_new, new_high, np.where(any_usable, best, -1), likely,
                            sigma_rms_min, n_cov, reason, faint_here)


__all__ = ["NewSourceRules", "NewSourceVerdict", "false_positive_reasons",
           "new_source_significance", "REASON_EDGE", "REASON_BLANKED", "REASON_ARTEFACT",
           "REASON_EXTENDED"]
