"""Condon (1997) error formulas for elliptical Gaussian fits (docs/science.md, Condon errors).

Port of the formulas used by the VAST pipeline, restated from the paper.
Angles: axes in arcsec (any consistent unit), position angles in degrees
east of north. Fluxes in Jy/beam (peak) or Jy (integrated).

PA error: we use the vast-pipeline form ``(180/pi) * 2 / (rho (r^2 - 1))``
without Condon's extra factor ``r`` (documented choice).
"""

from __future__ import annotations

import numpy as np

#: Astrometric systematics (arcsec) added in quadrature to position errors.
SURVEY_SYSTEMATICS_ARCSEC = {
    "nvss": 1.0, "first": 0.5, "vlass": 0.5, "sumss": 1.5, "racs": 0.5,
    "askap": 0.5, "dsa110": 1.0, "default": 1.0,
}


def rho_squared(snr, major, minor, beam_major, beam_minor, alpha_major=1.5, alpha_minor=1.5):
    """Condon's effective signal-to-noise squared, rho^2.

    ``rho^2 = (M m / (4 B b)) (1 + (B/M)^2)^aM (1 + (b/m)^2)^am SNR^2``; fitted
    axes <= 0 or non-finite fall back to the beam. Non-positive SNR or beam -> NaN.
    """
    snr = np.asarray(snr, float)
    M = np.asarray(major, float)
    m = np.asarray(minor, float)
    B = np.asarray(beam_major, float)
    b = np.asarray(beam_minor, float)
    M = np.where(np.isfinite(M) & (M > 0), M, B)
    m = np.where(np.isfinite(m) & (m > 0), m, b)
    with np.errstate(all="ignore"):
        r2 = (M * m / (4.0 * B * b)) * (1.0 + (B / M) ** 2) ** alpha_major \
            * (1.0 + (b / m) ** 2) ** alpha_minor * snr ** 2
    ok = (snr > 0) & (B > 0) & (b > 0)
    return np.where(ok, r2, np.nan)


def peak_flux_error(peak, rms, major=None, minor=None, beam_major=1.0, beam_minor=1.0,
                    frac_cal_error: float = 0.0):
    """Condon peak-flux error, Jy/beam.

    ``sigma_peak = |S| / rho`` (exponents 1.5/1.5), optionally with a
    fractional calibration error added in quadrature. Where rho is not finite
    (SNR <= 0, e.g. a negative forced flux) the local rms is returned.
    ``major``/``minor`` default to the beam (point source).
    """
    peak = np.asarray(peak, float)
    rms = np.asarray(rms, float)
    major = beam_major if major is None else major
    minor = beam_minor if minor is None else minor
    with np.errstate(all="ignore"):
        snr = peak / rms
        rho = np.sqrt(rho_squared(snr, major, minor, beam_major, beam_minor))
        err = np.abs(peak) / rho
    err = np.where(np.isfinite(err) & (rms > 0), err, rms)
    if frac_cal_error:
        err = np.hypot(err, frac_cal_error * peak)
    return err


def integrated_flux_error(peak_err, major, minor, beam_major, beam_minor):
    """``sigma_int = sigma_peak sqrt(M m / (B b))`` when that ratio >= 1, else sigma_peak."""
    ratio = np.asarray(major, float) * np.asarray(minor, float) / (
        np.asarray(beam_major, float) * np.asarray(beam_minor, float))
    return np.where(ratio >= 1.0, np.asarray(peak_err, float) * np.sqrt(np.maximum(ratio, 0)),
                    np.asarray(peak_err, float))


def axis_errors(snr, major, minor, beam_major, beam_minor):
    """``(sigma_major, sigma_minor) = (2 M / rho, 2 m / rho)`` (exponents 1.5/1.5)."""
    rho = np.sqrt(rho_squared(snr, major, minor, beam_major, beam_minor))
    return 2.0 * np.asarray(major, float) / rho, 2.0 * np.asarray(minor, float) / rho


def pa_error_deg(snr, major, minor, beam_major, beam_minor):
    """PA error in degrees: ``(180/pi) 2 / (rho (r^2 - 1))`` for r = M/m > 1.1, else 180; <= 180."""
    M = np.asarray(major, float)
    m = np.asarray(minor, float)
    rho = np.sqrt(rho_squared(snr, M, m, beam_major, beam_minor))
    r = M / m
    with np.errstate(all="ignore"):
        e = np.degrees(2.0 / (rho * (r ** 2 - 1.0)))
    e = np.where((r > 1.1) & np.isfinite(e), e, 180.0)
    return np.minimum(e, 180.0)


def position_errors_arcsec(snr, major, minor, pa_deg, beam_major, beam_minor,
                           systematic_arcsec: float = 0.0):
    """Position errors (sigma_ra, sigma_dec, radius) on the sky, arcsec.

    rho from the 2.5/0.5 exponents; ``e_M = M/rho``, ``e_m = m/rho``;
    ``sigma_RA = sqrt((e_M sin PA)^2 + (e_m cos PA)^2)``,
    ``sigma_Dec = sqrt((e_M cos PA)^2 + (e_m sin PA)^2)``, plus the survey
    systematic in quadrature. Non-finite rho falls back to ``beam/(2 SNR)``.
    """
    M = np.asarray(major, float)
    m = np.asarray(minor, float)
    rho = np.sqrt(rho_squared(snr, M, m, beam_major, beam_minor, 2.5, 0.5))
    pa = np.radians(np.asarray(pa_deg, float))
    eM, em = M / rho, m / rho
    sra = np.hypot(eM * np.sin(pa), em * np.cos(pa))
    sdec = np.hypot(eM * np.cos(pa), em * np.sin(pa))
    with np.errstate(all="ignore"):
        fallback = np.asarray(beam_major, float) / (2.0 * np.asarray(snr, float))
    sra = np.where(np.isfinite(sra), sra, fallback)
    sdec = np.where(np.isfinite(sdec), sdec, fallback)
    sra = np.hypot(sra, systematic_arcsec)
    sdec = np.hypot(sdec, systematic_arcsec)
    return sra, sdec, np.hypot(sra, sdec)


__all__ = ["rho_squared", "peak_flux_error", "integrated_flux_error", "axis_errors",
           "pa_error_deg", "position_errors_arcsec", "SURVEY_SYSTEMATICS_ARCSEC"]
