"""Is a catalogue source compact in *this* image's beam? One rule for every survey.

A normalisation reference must be unresolved in the image being normalised: the
peak flux density (Jy/beam) of a resolved source depends on the beam, which
changes from image to image. Catalogues describe sizes in different ways; this
module turns every layout into one quantity -- the **deconvolved** (intrinsic)
FWHM major axis in arcsec, measured or an upper limit -- and compares it with
the image's restoring beam.

Per layout (columns as the files come; see :mod:`.readers`):

========== ===================================================================
layout     deconvolved size
========== ===================================================================
master     ``resolved_flag`` (FIRST deconvolved axis > 6 arcsec) decides; rows
           without a FIRST counterpart are not resolved (``reference_ok`` of the
           master list adds its own spectral-index and confusion tests)
NVSS       ``MajAxis``/``MinAxis`` are deconvolved; ``l_MajAxis == "<"`` marks
           an upper limit (547 of the 639 rows of the real VizieR extract)
FIRST      ``Maj``/``Min`` (or ``DECONV_MAJ``) deconvolved; 0 = unresolved
VLASS      ``DC_Maj``/``DC_Min`` deconvolved; 0 = unresolved
RACS       Aegean: ``a``, ``b`` are *fitted* (convolved) axes, ``psf_a``,
           ``psf_b`` the local PSF: theta = sqrt(max(a^2 - psf_a^2, 0));
           Selavy: ``maj_axis_deconv`` when present
generic    no size columns: unknown
========== ===================================================================

The rule (:func:`classify_compact`), with B = image BMAJ (arcsec) and
``COMPACT_BEAMS`` = 1:

* a measured deconvolved major axis theta <= COMPACT_BEAMS * B: ``compact``;
  theta > COMPACT_BEAMS * B: ``resolved`` (rejected as a reference);
* an upper limit <= COMPACT_BEAMS * B: ``compact`` (the source is at most that
  large); an upper limit above it proves nothing either way: ``unknown``;
* no size information: ``unknown``.

``unknown`` sources may serve as references only after every ``compact``
one (the light-curve stability test then guards them); ``resolved`` ones never.
Every row gets a one-line reason, stored with the image's reference choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A deconvolved major axis up to this many image BMAJ counts as compact.
COMPACT_BEAMS = 1.0
COMPACT, UNKNOWN, RESOLVED = "compact", "unknown", "resolved"


@dataclass
class SourceSizes:
    """Deconvolved sizes of catalogue rows.

    Attributes
    ----------
    major_arcsec : ndarray
        Deconvolved FWHM major axis (arcsec); NaN when the catalogue gives none.
    upper_limit : ndarray of bool
        ``major_arcsec`` is an upper limit.
    basis : str
        How the size was obtained (layout and columns), quoted in reasons.
    resolved_flag : ndarray of bool or None
        Master-list verdict where it exists (None: not a master-list table).
    """

    major_arcsec: np.ndarray
    upper_limit: np.ndarray
    basis: str
    resolved_flag: np.ndarray | None = None


def _col(cat, name):
    """A column by exact or case-insensitive name, else None."""
    names = getattr(cat, "colnames", None) or list(cat.keys())
    if name in names:
        return cat[name]
    low = {n.lower(): n for n in names}
    return cat[low[name.lower()]] if name.lower() in low else None


def _floats(col, n) -> np.ndarray:
    if col is None:
        return np.full(n, np.nan)
    return np.ma.filled(np.ma.asarray(col).astype(float), np.nan)


def _limit_flags(col, n) -> np.ndarray:
    """VizieR limit flag column (``"<"`` = upper limit) as bool."""
    if col is None:
        return np.zeros(n, bool)
    arr = np.ma.asarray(col)
    if arr.dtype.kind not in "SUO":          # an all-blank column read as numbers: no limits
        return np.zeros(n, bool)
    arr = np.asarray(np.ma.filled(arr.astype(str), ""))
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii", errors="replace")
    return np.char.strip(arr.astype(str)) == "<"


def source_sizes(cat, survey: str | None = None) -> SourceSizes:
    """Deconvolved major axes of the rows of a catalogue query result.

    Parameters
    ----------
    cat : astropy Table or dict of arrays
        A catalogue store query result (core columns plus the file's own columns).
    survey : str, optional
        ``nvss``, ``first``, ``vlass``, ``rax``, ``master``; default
        ``cat.meta["survey"]``.
    """
    n = len(cat["ra_deg"])
    survey = survey or getattr(cat, "meta", {}).get("survey", "")
    maj = _floats(_col(cat, "maj_arcsec"), n)
    if _col(cat, "resolved_flag") is not None:                # master list
        flag = np.asarray(_col(cat, "resolved_flag"), bool)
        has_first = np.zeros(n, bool)
        fid = _col(cat, "first_id")
        if fid is not None:
            has_first = np.char.str_len(np.asarray(fid).astype(str)) > 0
        return SourceSizes(maj, np.zeros(n, bool),
                           "master list (FIRST deconvolved axes; NVSS MajAxis without FIRST)",
                           np.where(has_first, flag, False) if fid is not None else flag)
    psf_a = _col(cat, "psf_a")
    if psf_a is not None:                                     # Aegean: fitted a vs psf_a
        a = maj
        pa = _floats(psf_a, n)
        with np.errstate(invalid="ignore"):
            theta = np.sqrt(np.clip(a * a - pa * pa, 0.0, None))
        theta = np.where(np.isfinite(a) & np.isfinite(pa) & (pa > 0), theta, np.nan)
        return SourceSizes(theta, np.zeros(n, bool), "Aegean fitted a deconvolved by psf_a")
    deconv = _col(cat, "maj_axis_deconv")
    if deconv is not None:                                    # Selavy
        return SourceSizes(_floats(deconv, n), np.zeros(n, bool), "Selavy maj_axis_deconv")
    if survey == "rax":       # RACS sizes without a PSF are fitted (convolved): not usable
        return SourceSizes(np.full(n, np.nan), np.zeros(n, bool),
                           "RACS fitted axes without PSF columns")
    if survey in ("nvss", "first", "vlass"):
        lim = _limit_flags(_col(cat, "l_MajAxis"), n)
        basis = {"nvss": "NVSS deconvolved MajAxis" + (" (l_MajAxis '<' = upper limit)"
                                                       if _col(cat, "l_MajAxis") is not None else ""),
                 "first": "FIRST deconvolved Maj (0 = unresolved)",
                 "vlass": "VLASS DC_Maj (0 = unresolved)"}[survey]
        return SourceSizes(maj, lim, basis)
    return SourceSizes(np.full(n, np.nan), np.zeros(n, bool), "catalogue without sizes")


def classify_compact(sizes: SourceSizes, beam_major_arcsec: float | None,
                     *, compact_beams: float = COMPACT_BEAMS):
    """Compactness class and reason of each row in an image of beam ``beam_major_arcsec``.

    Returns
    -------
    klass : ndarray of str
        ``compact``, ``unknown`` or ``resolved`` (see the module doc).
    reason : ndarray of str
        One line per row, e.g. ``"deconvolved size < 18.6 arcsec (upper limit) > beam 18.0"``.
    """
    theta = np.asarray(sizes.major_arcsec, float)
    n = theta.size
    klass = np.full(n, UNKNOWN, dtype=object)
    reason = np.full(n, f"no size in the catalogue ({sizes.basis}): compactness unknown",
                     dtype=object)
    if sizes.resolved_flag is not None:
        flag = np.asarray(sizes.resolved_flag, bool)
        klass[:] = np.where(flag, RESOLVED, COMPACT)
        reason[:] = np.where(flag, "master list: resolved (FIRST deconvolved axis > 6 arcsec)",
                             "master list: not resolved")
        return klass, reason
    if beam_major_arcsec is None or not np.isfinite(beam_major_arcsec):
        reason[:] = "image has no beam: compactness cannot be judged"
        return klass, reason
    limit = compact_beams * float(beam_major_arcsec)
    ul = np.asarray(sizes.upper_limit, bool)
    fin = np.isfinite(theta)
    txt = np.char.mod("%.1f", np.where(fin, theta, 0.0)).astype(object)
    beam_txt = f"{limit:.1f} arcsec ({compact_beams:g} x image BMAJ)"
    zero = fin & (theta == 0) & ~ul
    meas_c = fin & ~ul & (theta <= limit)
    meas_r = fin & ~ul & (theta > limit)
    ul_c = fin & ul & (theta <= limit)
    ul_u = fin & ul & (theta > limit)
    klass[meas_c | ul_c] = COMPACT
    klass[meas_r] = RESOLVED
    reason[meas_c] = "deconvolved size " + txt[meas_c] + f" arcsec <= {beam_txt} [{sizes.basis}]"
    reason[zero] = f"unresolved in the catalogue (deconvolved size 0) [{sizes.basis}]"
    reason[meas_r] = "resolved: deconvolved size " + txt[meas_r] + f" arcsec > {beam_txt} [{sizes.basis}]"
    reason[ul_c] = "deconvolved size < " + txt[ul_c] + f" arcsec (upper limit) <= {beam_txt} [{sizes.basis}]"
    reason[ul_u] = ("upper limit < " + txt[ul_u] + f" arcsec is above {beam_txt}: compactness unknown "
                    f"[{sizes.basis}]")
    return klass, reason


def compactness(cat, beam_major_arcsec: float | None, survey: str | None = None):
    """:func:`classify_compact` of :func:`source_sizes` (the one entry point)."""
    return classify_compact(source_sizes(cat, survey), beam_major_arcsec)


__all__ = ["COMPACT", "COMPACT_BEAMS", "RESOLVED", "UNKNOWN", "SourceSizes", "classify_compact",
           "compactness", "source_sizes"]
