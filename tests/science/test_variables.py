"""Variables beyond ESEs: eta-V (Rowlinson et al. 2019) and two-epoch Vs/m (Mooley et al. 2016)."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.science.variability import RunningStats
from dsa110_contimg.science.variables import select_variables

from variable_seasons import season


def metrics_of(t, flux, err):
    return RunningStats.from_lightcurves(flux, err, t).metrics()


def test_dip_flare_and_fade_selected_steady_sources_rarely():
    t, flux, err = season()
    m = metrics_of(t, flux, err)
    sel = select_variables(m["eta"], m["v"], m["vs_max"], m["m_at_vs_max"], m["n"])
    assert sel.variable[:3].all(), sel.reasons[:3]
    assert sel.two_epoch[0] and sel.two_epoch[1]              # the dip and the flare: one pair
    assert sel.eta_v[2]                                       # the fade: eta and V, no big jump
    fp = sel.variable[3:].mean()
    assert fp <= 0.005, fp
    assert "Vs|" in sel.reasons[1] and sel.reasons[5] == "" or sel.variable[5]
    # the fitted population: log eta of steady sources is centred near log10(1) = 0
    assert abs(sel.thresholds.mu_log_eta) < 0.1
    assert sel.thresholds.eta_threshold == pytest.approx(
        10 ** (sel.thresholds.mu_log_eta + 3.0 * sel.thresholds.sigma_log_eta))


def test_thresholds_configurable_and_few_epochs_never_selected():
    t, flux, err = season(n_steady=300, seed=1)
    m = metrics_of(t, flux, err)
    loose = select_variables(m["eta"], m["v"], m["vs_max"], m["m_at_vs_max"], m["n"],
                             eta_v_sigma=0.5, vs_min=2.0, m_min=0.01)
    strict = select_variables(m["eta"], m["v"], m["vs_max"], m["m_at_vs_max"], m["n"],
                              eta_v_sigma=5.0, vs_min=50.0, m_min=0.9)
    assert loose.variable.sum() > 10 * max(strict.variable.sum(), 1)
    few = select_variables(m["eta"], m["v"], m["vs_max"], m["m_at_vs_max"], np.full(m["n"].size, 4))
    assert not few.variable.any() and few.thresholds is None
