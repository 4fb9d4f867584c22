"""The kept sums of the live ESE templates: the screened live search equals the full one over
a season (events mid-season and near its end), after earlier epochs change, from a cold
cache and with a cache too small to hold a field."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.science.ese import ese_model
from dsa110_contimg.science.ese_live_sums import LiveScreen, LiveSums, template_keys
from dsa110_contimg.science.ese_stage import ese_stages, live_dip_search

KEYS = ("significance", "depth", "t_min_mjd", "duration_days", "baseline", "onset_mjd")


def _season(n_epochs=150, n_sources=30, seed=3):
    """Daily epochs: sources 0-5 have 30 % ESEs of 20-45 d spread over the season (the last
    ends 5 d before its end), 6-15 scatter 1.7 times their 2 % errors, the rest are steady."""
    rng = np.random.default_rng(seed)
    mjd = 60000.0 + np.arange(n_epochs) + rng.uniform(-0.05, 0.05, n_epochs)
    err = np.full((n_sources, n_epochs), 0.02)
    flux = 1.0 + err * rng.standard_normal(err.shape)
    for i, (t0, d) in enumerate([(40, 20), (60, 25), (80, 30), (100, 35), (115, 40), (122, 45)]):
        flux[i] *= ese_model(mjd, mjd[0] + t0, d, 0.3)
    flux[6:16] = 1.0 + 1.7 * err[6:16] * rng.standard_normal((10, n_epochs))
    return mjd, flux, err


def _same(full: dict, got: dict) -> None:
    det = full["detected"]
    np.testing.assert_array_equal(got["detected"], det)
    np.testing.assert_array_equal(got["recovering"], full["recovering"])
    for k in KEYS:
        np.testing.assert_allclose(got[k][det], full[k][det], rtol=1e-9, atol=0, err_msg=k)


def _screen(cache, mjd, tokens, k, n_sources):
    return LiveScreen(cache, "db", np.arange(n_sources) + 100, (mjd[:k], tokens[:k]), -np.inf)


def test_screened_live_search_equals_the_full_one_epoch_after_epoch():
    mjd, flux, err = _season()
    S = flux.shape[0]
    tokens = np.arange(mjd.size, dtype=np.int64) * 7 + 1
    cache = LiveSums()
    detected, stages = 0, set()
    for k in range(20, mjd.size + 1):
        t = np.broadcast_to(mjd[:k], (S, k))
        full = live_dip_search(t, flux[:, :k], err[:, :k])
        got = live_dip_search(t, flux[:, :k], err[:, :k], screen=_screen(cache, mjd, tokens, k, S))
        _same(full, got)
        detected += int(full["detected"].sum())
        if k % 10 == 0:                 # the stages, through ese_stages, are the same
            a = ese_stages(t, flux[:, :k], err[:, :k])
            b = ese_stages(t, flux[:, :k], err[:, :k],
                           screen=_screen(cache, mjd, tokens, k, S))
            np.testing.assert_array_equal(a["stage"], b["stage"])
            np.testing.assert_allclose(a["significance"], b["significance"], rtol=1e-9)
            stages |= set(a["stage"])
    assert detected > 100 and {"dip_in_progress", "recovering", "confirmed"} <= stages
    assert cache.updated_cells > 20 * cache.rebuilt_cells     # kept, not summed again


@pytest.mark.parametrize("change", ["renormalised", "excluded", "included", "cold"])
def test_sums_follow_changed_earlier_epochs(change):
    """Earlier epochs normalised again (new flux, new token), one taken out, one put back, or a
    new process (cold cache): the screened search is the full one of the light curves now."""
    mjd, flux, err = _season()
    S, k = flux.shape[0], 110
    tokens = np.arange(mjd.size, dtype=np.int64) * 7 + 1
    cache = LiveSums()
    use = np.ones(mjd.size, bool)
    if change == "included":
        use[95] = False
    for j in (k - 2, k - 1):
        sel = np.flatnonzero(use[:j])
        live_dip_search(np.broadcast_to(mjd[sel], (S, sel.size)), flux[:, sel], err[:, sel],
                        screen=LiveScreen(cache, "db", np.arange(S) + 100,
                                          (mjd[sel], tokens[sel]), -np.inf))
    flux = flux.copy()
    if change == "renormalised":        # a 20 % gain error on ten epochs of the dip of source 3
        flux[:, 90:100] /= 1.2
        tokens[90:100] += 1
    elif change == "excluded":
        use[92] = False
    elif change == "included":
        use[95] = True
    else:
        cache = LiveSums()
    sel = np.flatnonzero(use[:k])
    t = np.broadcast_to(mjd[sel], (S, sel.size))
    full = live_dip_search(t, flux[:, sel], err[:, sel])
    got = live_dip_search(t, flux[:, sel], err[:, sel], screen=LiveScreen(
        cache, "db", np.arange(S) + 100, (mjd[sel], tokens[sel]), -np.inf))
    _same(full, got)
    assert full["detected"].any()


def test_a_cache_too_small_for_the_field_drops_sources_and_stays_exact():
    mjd, flux, err = _season(n_epochs=100)
    S = flux.shape[0]
    tokens = np.arange(mjd.size, dtype=np.int64)
    cache = LiveSums(max_cells=5_000)
    for k in range(60, 100, 3):
        t = np.broadcast_to(mjd[:k], (S, k))
        _same(live_dip_search(t, flux[:, :k], err[:, :k]),
              live_dip_search(t, flux[:, :k], err[:, :k],
                              screen=_screen(cache, mjd, tokens, k, S)))
        assert cache.cells <= 5_000


def test_template_keys_are_unique_across_grids():
    from dsa110_contimg.science.ese import DEFAULT_DURATIONS, template_grid

    a = template_grid(60000.0, 60300.0)
    b = template_grid(60100.0, 60500.0)
    ka = template_keys(a, DEFAULT_DURATIONS, 0.125)
    kb = template_keys(b, DEFAULT_DURATIONS, 0.125)
    assert np.unique(ka).size == ka.size
    same = np.isin(ka, kb)
    both = (a["t0"] >= 60100.0 - 0.35 * a["duration"]) & (a["t0"] <= 60300.0 + 0.35 * a["duration"])
    np.testing.assert_array_equal(same, both)
