"""Noise footprints: stored depth equals the maps forced photometry uses, coverage, edges,
blanked cells, and a round trip through bytes."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science.footprint import NoiseFootprint, footprint_of
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.noise import background_maps_for
from dsa110_contimg.science.simulate import simulate_image


def _image(noise_gradient=True):
    sim = simulate_image((300, 260), beam_arcsec=(15.0, 10.0, 30.0), noise_rms=1e-3, naxis=2,
                         seed=4, projection="SIN")
    if noise_gradient:
        sim.data *= np.linspace(1.0, 3.0, 260)[None, :]   # noise rising with x
    sim.data[200:220, 100:130] = np.nan
    return RadioImage.from_array(sim.data.astype(np.float32), sim.header)


def test_depth_equals_the_noise_map_and_survives_serialisation():
    image = _image()
    maps = background_maps_for(image)
    fp = NoiseFootprint.from_bytes(footprint_of(image, maps).to_bytes())
    assert len(footprint_of(image, maps).to_bytes()) < 20_000
    x = np.array([50.0, 150.0, 240.0])
    y = np.array([50.0, 100.0, 150.0])
    ra, dec = image.pixel_to_icrs(x, y)
    rms, status = fp.depth_at(ra, dec)
    assert status.tolist() == ["ok", "ok", "ok"]
    assert np.allclose(rms, maps.rms_at(x, y), rtol=1e-5)
    assert rms[2] > 1.5 * rms[0]                    # the gradient is there
    assert np.isclose(fp.rms_min, np.nanmin(np.asarray(maps.rms)), rtol=1e-5)
    assert np.isclose(fp.rms_max, np.nanmax(np.asarray(maps.rms)), rtol=1e-5)
    blob = footprint_of(image, maps).to_bytes()
    assert NoiseFootprint.extremes_of(blob) == (fp.rms_min, fp.rms_max)
    # decoded once per content: the same blob gives the same (shared) footprint
    again = NoiseFootprint.parsed(blob)
    assert NoiseFootprint.parsed(bytes(blob)) is again
    assert np.array_equal(again.depth_at(ra, dec)[0], rms, equal_nan=True)
    other = footprint_of(image, maps, noise_corr_factor=2.0).to_bytes()
    assert NoiseFootprint.parsed(other).noise_corr_factor == 2.0


def test_outside_edge_and_blanked_positions():
    image = _image(noise_gradient=False)
    fp = footprint_of(image, background_maps_for(image))
    x = np.array([-40.0, 2.0, 115.0, 115.0])
    y = np.array([100.0, 100.0, 210.0, 150.0])
    ra, dec = image.pixel_to_icrs(x, y)
    rms, status = fp.depth_at(ra, dec)
    assert status.tolist() == ["outside", "edge", "blanked", "ok"]
    assert np.isnan(rms[:3]).all() and rms[3] > 0


def test_maps_from_arrays_are_reduced_to_a_coarse_grid():
    image = _image()
    maps = background_maps_for(image)
    from dsa110_contimg.science.noise import BackgroundMaps

    pixel_maps = BackgroundMaps(np.asarray(maps.background), np.asarray(maps.rms), "files")
    fp = footprint_of(image, pixel_maps)
    ra, dec = image.pixel_to_icrs(np.array([60.0, 200.0]), np.array([60.0, 60.0]))
    rms, status = fp.depth_at(ra, dec)
    assert status.tolist() == ["ok", "ok"]
    assert np.allclose(rms, maps.rms_at([60, 200], [60, 60]), rtol=0.1)


def test_a_kept_footprint_answers_like_its_decoded_bytes():
    """The footprint the measuring process keeps (remember) is what parsed() and
    extremes_of() give for its bytes, and it answers depth_at exactly as the footprint
    decoded from those bytes in another process would, blanked or not."""
    from dsa110_contimg.science.footprint import remember

    for blanked in (True, False):
        image = _image()
        if not blanked:
            image = RadioImage.from_array(np.nan_to_num(np.asarray(image.data)).astype(np.float32),
                                          image.header)
        fp = footprint_of(image, background_maps_for(image))
        blob = fp.to_bytes()
        remember(blob, fp)
        assert NoiseFootprint.parsed(blob) is fp
        assert NoiseFootprint.extremes_of(blob) == (fp.rms_min, fp.rms_max)
        decoded = NoiseFootprint.from_bytes(blob)
        assert decoded.blank_cells.any() == blanked
        assert np.array_equal(decoded.blank_cells, fp.blank_cells)
        x, y = np.meshgrid(np.linspace(-20, 280, 31), np.linspace(-20, 320, 35))
        ra, dec = image.pixel_to_icrs(x.ravel(), y.ravel())
        got, want = fp.depth_at(ra, dec), decoded.depth_at(ra, dec)
        assert np.array_equal(got[0], want[0], equal_nan=True)
        assert got[1].tolist() == want[1].tolist()
        assert set(want[1].tolist()) >= {"ok", "edge", "outside"}
