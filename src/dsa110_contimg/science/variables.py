"""Variable sources of one field, beyond ESEs: the eta-V selection and the two-epoch criterion.

Two selections over the per-source statistics of :mod:`dsa110_contimg.science.variability`
(vectorised over the field's sources, no database):

* **eta-V** (Rowlinson et al. 2019): Gaussian fits to log10 eta and log10 V of the field's
  population after iterative sigma clipping
  (:func:`~dsa110_contimg.science.ese.eta_v_thresholds`); a source is selected when
  log10 eta > mu_eta + n sigma_eta **and** log10 V > mu_V + n sigma_V;
* **two-epoch** (Mooley et al. 2016): the pair of consecutive epochs with the largest
  |Vs| has |Vs| >= ``vs_min`` (4.3) **and** |m| >= ``m_min`` (0.26).

Only sources with at least ``min_epochs`` valid epochs take part (in the population fit
too). Units: eta, V, Vs and m are dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.core.errors import InvalidLightCurve
from dsa110_contimg.science.ese import EtaVThresholds, eta_v_thresholds

#: Two-epoch defaults (Mooley et al. 2016; VAST).
VS_MIN = 4.3
M_MIN = 0.26
#: eta-V defaults: threshold in sigma of the clipped Gaussian fits, and the clip.
ETA_V_SIGMA = 3.0
CLIP_SIGMA = 3.0
#: Fewest sources for the population fit of one field.
MIN_POPULATION = 10


@dataclass(frozen=True)
class VariableSelection:
    """The variables of one field.

    Attributes
    ----------
    variable, eta_v, two_epoch : ndarray of bool, shape (n_sources,)
        Selected by either criterion, by eta-V, by the two-epoch criterion.
    thresholds : EtaVThresholds or None
        The field's fitted thresholds (None when fewer than :data:`MIN_POPULATION`
        sources have usable eta and V: then eta-V selects nothing).
    reasons : ndarray of object
        Per source, why it was selected ("" when not): e.g.
        ``"eta 12.3 > 4.1 and V 0.18 > 0.05 (2 sigma); |Vs| 9.0 >= 4.3 and |m| 0.41 >= 0.26"``.
    """

    variable: np.ndarray
    eta_v: np.ndarray
    two_epoch: np.ndarray
    thresholds: EtaVThresholds | None
    reasons: np.ndarray


def select_variables(eta, v, vs, m, n, *, eta_v_sigma: float = ETA_V_SIGMA,
                     clip_sigma: float = CLIP_SIGMA, vs_min: float = VS_MIN,
                     m_min: float = M_MIN, min_epochs: int = 5) -> VariableSelection:
    """Variables among one field's sources (see the module docstring).

    Parameters
    ----------
    eta, v : array-like, shape (n_sources,)
        eta and V of each light curve.
    vs, m : array-like, shape (n_sources,)
        |Vs| of the most significant consecutive pair and that pair's signed m.
    n : array-like of int
        Valid epochs per source.
    eta_v_sigma, clip_sigma : float
        eta-V thresholds (sigma of the Gaussian fits) and the clip before fitting.
    vs_min, m_min : float
        Two-epoch thresholds.
    min_epochs : int
        Fewest epochs for a source to be selected or to enter the population fit.
    """
    eta, v, vs, m = (np.asarray(x, dtype=float) for x in (eta, v, vs, m))
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        enough = np.nan_to_num(n) >= min_epochs
        usable = enough & np.isfinite(eta) & (eta > 0) & np.isfinite(v) & (v > 0)
    thresholds = None
    eta_sel = np.zeros(eta.shape, bool)
    if usable.sum() >= MIN_POPULATION:
        try:
            thresholds = eta_v_thresholds(eta[usable], v[usable], eta_v_sigma,
                                          clip_sigma=clip_sigma, min_sources=MIN_POPULATION)
        except InvalidLightCurve:
            thresholds = None
    with np.errstate(invalid="ignore"):
        if thresholds is not None:
            eta_sel = usable & (eta > thresholds.eta_threshold) & (v > thresholds.v_threshold)
        pair_sel = enough & (np.abs(vs) >= vs_min) & (np.abs(m) >= m_min)
    reasons = np.full(eta.shape, "", dtype=object)
    for i in np.flatnonzero(eta_sel | pair_sel):          # the selected few only
        parts = []
        if eta_sel[i]:
            parts.append(f"eta {eta[i]:.3g} > {thresholds.eta_threshold:.3g} and V {v[i]:.3g} > "
                         f"{thresholds.v_threshold:.3g} ({eta_v_sigma:g} sigma)")
        if pair_sel[i]:
            parts.append(f"|Vs| {abs(vs[i]):.3g} >= {vs_min:g} and |m| {abs(m[i]):.3g} >= {m_min:g}")
        reasons[i] = "; ".join(parts)
    return VariableSelection(eta_sel | pair_sel, eta_sel, pair_sel, thresholds, reasons)


__all__ = ["CLIP_SIGMA", "ETA_V_SIGMA", "M_MIN", "MIN_POPULATION", "VS_MIN", "VariableSelection",
           "select_variables"]
