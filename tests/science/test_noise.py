"""The maps of an image plane as a value: built once by background_maps_for, held by the caller
and passed to the measurement; nothing is cached on the image."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.core.errors import ConfigError, MapMismatch
from dsa110_contimg.science.forced import measure_positions, pixel_beam_for
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.noise import background_maps_for
from dsa110_contimg.science.noise_maps import BackgroundMaps
from dsa110_contimg.science.simulate import random_sky_positions, simulate_image, sky_wcs

SHAPE = (384, 384)


@pytest.fixture(scope="module")
def field():
    """An image with 40 sources, 1 mJy/beam correlated noise on a 20 mJy/beam pedestal."""
    rng = np.random.default_rng(5)
    ra, dec, _, _ = random_sky_positions(sky_wcs(150, 37, 3.0, SHAPE), SHAPE, 40, rng,
                                         margin_pix=20, min_separation_pix=15)
    sim = simulate_image(SHAPE, ra_deg=ra, dec_deg=dec, peak_jyb=rng.uniform(0.01, 0.1, ra.size),
                         noise_rms=1e-3, background=(0.02, 0.0, 0.0), naxis=2, seed=6)
    return RadioImage.from_array(sim.data.astype(np.float32), sim.header), ra, dec


def test_maps_of_an_image_are_jy_per_beam_arrays_on_demand(field):
    img, _, _ = field
    attributes = set(vars(img))
    maps = background_maps_for(img)
    assert maps.source == "estimated" and maps.shape == SHAPE
    background, rms = maps.arrays()
    assert background.shape == rms.shape == SHAPE
    assert background.dtype == rms.dtype == np.float32
    assert np.median(background) == pytest.approx(0.02, abs=2e-4)
    assert np.median(rms) == pytest.approx(1e-3, rel=0.08)
    np.testing.assert_array_equal(maps.rms_at([10.2, 300.7], [50.0, 7.4]), rms[[50, 7], [10, 301]])
    # a value the caller holds: each call builds its own, and the image is left as it was
    again = background_maps_for(img)
    assert again is not maps and np.array_equal(again.arrays()[1], rms)
    assert set(vars(img)) == attributes


def test_measurement_uses_the_maps_it_is_given(field):
    img, ra, dec = field
    maps = background_maps_for(img)
    given = measure_positions(img, ra, dec, maps=maps)
    built = measure_positions(img, ra, dec)
    for col in ("peak_jyb", "peak_err_jyb", "local_rms_jyb", "bkg_jyb", "flags"):
        np.testing.assert_array_equal(given[col], built[col])
    # the noise factor measured on the plane is kept with its maps for the next measurement
    assert list(maps.correlation_factors.values()) == [given.meta["noise_corr_factor"]]
    # other maps: a background 5 mJy/beam higher lowers a matched-filter amplitude by
    # 5 mJy/beam x sum(K) / sum(K^2) and a box peak by 5 mJy/beam
    background, rms = maps.arrays()
    shifted = BackgroundMaps(background + np.float32(5e-3), rms, "given")
    plain = BackgroundMaps(background, rms, "given")
    moved = measure_positions(img, ra, dec, maps=shifted, error_model="mean_noise")
    assert moved.meta["noise_source"] == "given"
    kernel = pixel_beam_for(img).stamp(3.0)
    drop = measure_positions(img, ra, dec, maps=plain, error_model="mean_noise")["peak_jyb"] \
        - moved["peak_jyb"]
    np.testing.assert_allclose(drop, 5e-3 * kernel.sum() / (kernel ** 2).sum(), rtol=0.01)
    peaks = [measure_positions(img, ra, dec, method="peak", maps=m, subtract_background=True)
             for m in (plain, shifted)]
    np.testing.assert_allclose(peaks[0]["peak_jyb"] - peaks[1]["peak_jyb"], 5e-3, atol=1e-6)


def test_given_maps_are_checked_against_the_image(field):
    img, ra, dec = field
    maps = background_maps_for(img)
    small = BackgroundMaps(np.zeros((10, 10), np.float32), np.ones((10, 10), np.float32), "given")
    with pytest.raises(MapMismatch, match=r"shape \(10, 10\)"):
        measure_positions(img, ra, dec, maps=small)
    with pytest.raises(ConfigError, match="rms_path"):
        measure_positions(img, ra, dec, maps=maps, rms_path="noise.fits")
    with pytest.raises(ConfigError, match="background_options"):
        measure_positions(img, ra, dec, method="peak", maps=maps,
                          background_options={"box_pix": 32})
