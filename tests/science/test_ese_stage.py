"""ESE stages while the event happens: dip in progress, recovering, confirmed, retired
(short version of part 4 of bench/ese.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.science import ese, ese_models, ese_stage


def _cadence(rng, days=365.0):
    return ese_models.dsa110_cadence(days, rng=rng)


def _noisy(rng, shape, err=0.025, flux=0.05):
    f = flux * np.asarray(shape, float)
    e = np.full(f.shape, err * flux)
    return f + e * rng.standard_normal(f.shape), e


def _until(t, f, e, cut):
    k = np.searchsorted(t, cut, side="right")
    return t[:k], f[..., :k], e[..., :k]


@pytest.fixture(scope="module")
def lenses():
    """Deep 1-D Gaussian-lens ESEs (depth >= 30 %) at DSA-110 cadence."""
    return ese_models.simulate_classes(40, n_steady=1, seed=11, classes=("clegg",))[0]


def test_deep_lens_flagged_in_progress_by_its_minimum(lenses):
    deep = lenses.params["depth"] >= 0.3
    assert deep.sum() >= 20
    late = lenses.mjd[None, :] > lenses.params["t0"][deep, None]     # observed until t0
    f = np.where(late, np.nan, lenses.flux[deep])
    e = np.where(late, np.nan, lenses.err[deep])
    flagged = ese_stage.ese_stages(lenses.mjd, f, e)["stage"]
    assert np.mean(flagged != "") >= 0.8
    assert np.mean(flagged == "dip_in_progress") >= 0.7     # no recovery seen yet
    assert not np.any(flagged == "retired")


def test_stage_follows_an_injected_dip_through_its_recovery():
    rng = np.random.default_rng(5)
    t = _cadence(rng)
    t0, dur = 60150.0, 40.0
    f, e = _noisy(rng, ese_models.ese_model(t, t0, dur, 0.4))
    stages = {}
    for label, cut in (("before", t0 - 40), ("ingress", t0 - 8), ("minimum", t0),
                       ("after", t0 + dur / 2 + 4), ("2 weeks after", t0 + dur / 2 + 14),
                       ("long after", t0 + dur / 2 + 60)):
        tt, ff, ee = _until(t, f[None], e[None], cut)
        r = ese_stage.ese_stages(tt, ff, ee)
        stages[label] = r["stage"][0]
        if stages[label] in ("dip_in_progress", "confirmed"):
            assert r["depth"][0] == pytest.approx(0.4, abs=0.1)
    assert stages.pop("2 weeks after") in ("recovering", "confirmed")
    assert stages == {"before": "", "ingress": "dip_in_progress", "minimum": "dip_in_progress",
                      "after": "recovering", "long after": "confirmed"}


def test_step_and_fade_are_retired_with_their_reason_not_confirmed():
    rng = np.random.default_rng(6)
    t = _cadence(rng, 400.0)
    step = np.where(t >= 60100.0, 0.65, 1.0)
    fade = 1.0 - 0.4 * (t - t[0]) / (t[-1] - t[0])
    f, e = _noisy(rng, np.vstack([step, fade, np.ones_like(t)]))
    r = ese_stage.ese_stages(t, f, e)
    assert r["stage"].tolist() == ["retired", "retired", ""]
    assert r["reason"][0].startswith("step: flux fell by 35 %")
    assert r["reason"][1].startswith("fade:")
    assert not r["confirmed"]["detected"][:2].any()
    # 60 days after the step it is still a dip in progress: the longest template is 180 d
    tt, ff, ee = _until(t, f[:1], e[:1], 60160.0)
    assert ese_stage.ese_stages(tt, ff, ee)["stage"].tolist() == ["dip_in_progress"]


def test_steady_sources_and_a_flare_never_get_a_stage():
    rng = np.random.default_rng(8)
    t = _cadence(rng, 200.0)
    flare = np.ones_like(t)
    flare[np.argmin(np.abs(t - 60100.0))] = 2.0
    f, e = _noisy(rng, np.vstack([np.ones((80, t.size)), flare[None]]))
    ever = np.zeros(f.shape[0], bool)
    prev = 0
    for k in range(40, t.size + 1, 20):          # streamed: the confirmed search incremental
        conf = ese.detect_ese_shapes(t[:k], f[:, :k], e[:, :k], new_since_mjd=t[prev])
        ever |= ese_stage.ese_stages(t[:k], f[:, :k], e[:, :k], confirmed=conf)["stage"] != ""
        prev = k
    assert not ever.any()


def test_step_fit_hand_values():
    t = np.arange(10.0)
    f = np.array([1.0] * 5 + [0.5] * 5)
    r = ese_stage.step_fit(t, f[None], np.full((1, 10), 0.01))
    assert r["t_step_mjd"][0] == pytest.approx(4.5)
    assert r["drop"][0] == pytest.approx(0.5)
    assert r["last_low"][0] and r["kind"][0] == "step"
    assert r["significance"][0] == pytest.approx(0.5 / np.sqrt(2 * 0.01 ** 2 / 5))


def test_live_search_in_runs_of_durations_picks_what_one_search_picks(monkeypatch):
    """The live templates fitted in three runs of durations, each on the columns its reach
    needs: the same best template, significance (to rounding) and stage flags as one search
    over all of them, for dips of 14-180 d caught at any point."""
    from dsa110_contimg.science import ese, ese_stage

    rng = np.random.default_rng(5)
    t = 60000.0 + np.arange(400.0) + rng.uniform(-0.05, 0.05, 400)
    e = np.full((30, t.size), 0.02)
    f = 1.0 + e * rng.standard_normal(e.shape)
    for i in range(24):
        f[i] *= ese.ese_model(t, t[-1] - rng.uniform(-30, 200), rng.uniform(14, 180),
                              rng.uniform(0.1, 0.4))
    runs = ese_stage.live_dip_search(t, f, e)
    real = ese_stage._duration_groups
    monkeypatch.setattr(ese_stage, "_duration_groups", lambda d, n_groups=3: real(d, 1))
    one = ese_stage.live_dip_search(t, f, e)
    assert runs["detected"].sum() >= 10
    for k in ("detected", "recovering", "duration_days", "t_min_mjd", "onset_mjd"):
        np.testing.assert_array_equal(runs[k], one[k])
    for k in ("significance", "depth", "baseline"):
        np.testing.assert_allclose(runs[k], one[k], rtol=1e-12, atol=1e-12)
