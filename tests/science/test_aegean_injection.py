"""Injection-recovery on a real image (issue 10 item 7): which peak flux is right?

Sources of known peak flux are painted on the sky with the real beam into the real
Parkes 1.4 GHz map astropy ships (1904-66_AZP.fits), at positions free of real
emission; ``forced`` and ``aegean`` measure the injected and the original image at
the same positions and the difference is compared with truth
(``bench/aegean_injection.py`` prints the full table).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmods import inj, needs_azp_map
from dsa110_contimg.science.methods import aegean as aegean_mod

pytestmark = needs_azp_map


def test_painting_on_the_sky_puts_the_peak_where_asked():
    from dsa110_contimg.science.image import RadioImage

    img = RadioImage.open(inj.azp_path())
    ra, dec = img.pixel_to_world(np.array([95.0]), np.array([95.0]))
    model = inj.paint_on_sky(img, ra, dec, [2.0], 0.24)
    assert model[95, 95] == pytest.approx(2.0, rel=1e-6)
    # FWHM 0.24 deg ~ 3.6 pixels of ~4': at one pixel along Dec the profile is ~0.8
    assert 0.6 < model[96, 95] / 2.0 < 0.9


@pytest.mark.parametrize("methods", [("forced",), ("forced", "aegean")])
def test_injected_sources_recovered_on_the_real_parkes_map(methods):
    if "aegean" in methods and not aegean_mod.aegean_available():
        pytest.skip("AegeanTools not installed")
    r = inj.inject_and_measure(n=30, snr=50.0, seed=4, methods=methods)
    truth = r["truth"]
    # noise: peak error ~ rms, i.e. 1-4 % per source at SNR 25-100 (the AZP projection
    # changes the pixel size by -5...+6 % across the map; forced maps the beam per source)
    q = r["forced"] / truth
    assert np.isfinite(q).all()
    assert np.median(q) == pytest.approx(1.0, abs=0.015)
    assert np.all(np.abs(q - 1) < 0.06)
    centre = np.hypot(r["x"] - 95.5, r["y"] - 95.5) < 50
    assert centre.sum() >= 5 and np.median(q[centre]) == pytest.approx(1.0, abs=0.01)
    if "aegean" in methods:
        qa = r["aegean"] / truth
        # aegean is not 6 % low on injected point sources: within 3 % of truth in the median,
        # with a wider per-source spread than forced (see the aegean module notes)
        assert np.median(qa) == pytest.approx(1.0, abs=0.03)
        assert np.nanpercentile(np.abs(qa - 1), 84) < 0.06
