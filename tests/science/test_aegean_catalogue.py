"""``forced`` / ``aegean`` / Aegean's own catalogue on the real Parkes AZP map (issue 10 item 7).

The map astropy ships (``1904-66_AZP.fits``) has an AZP projection whose
reference pixel lies outside the image: the pixel area changes by -5 %...+6 %
across it and the pixels are skewed. Two causes of the reported aegean-vs-forced
differences were found there and fixed (see ``docs/aegean.md``):

* ``forced`` took the beam's pixel shape from the image centre (peaks drifted by
  up to +-2.8 %); it now maps the beam through the WCS at each source when the
  geometry varies;
* Aegean's priorized fit rescales every prior to its own image psf, which is the
  header beam held constant in *pixels*; the wrapper now gives priors a
  catalogue psf equal to that image psf, so the fitted shape is the sky beam.

Noise-free tests paint sources on the sky (through the WCS) into an empty image
with the map's header; the real-map test runs Aegean's blind source finder.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest

from benchmods import inj, load_bench, needs_azp_map
from dsa110_contimg.science.forced import (
    local_kernels,
    measure_positions,
    pixel_beam_for,
)
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods import aegean as aegean_mod

catbench = load_bench("aegean_catalogue")

pytestmark = needs_azp_map
needs_aegean = pytest.mark.skipif(not aegean_mod.aegean_available(),
                                  reason="AegeanTools not installed")


def _grid(n=6, lo=20.0, hi=170.0, seed=1):
    rng = np.random.default_rng(seed)
    g = np.linspace(lo, hi, n)
    xs = np.repeat(g, n) + rng.uniform(-0.5, 0.5, n * n)
    ys = np.tile(g, n) + rng.uniform(-0.5, 0.5, n * n)
    return xs, ys


def _noise_free(header, xs, ys, peaks=None):
    empty = RadioImage.from_array(np.zeros((192, 192)), header)
    ra, dec = empty.pixel_to_world(xs, ys)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    peaks = np.ones(xs.size) if peaks is None else np.asarray(peaks, float)
    img = RadioImage.from_array(inj.paint_on_sky(empty, ra, dec, peaks, 0.24), header)
    return img, ra, dec, peaks


def _azp_header():
    return RadioImage.open(inj.azp_path()).header.copy()


def _sin_header():
    h = _azp_header()
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRPIX1"] = h["CRPIX2"] = 96.5
    h["CRVAL1"], h["CRVAL2"] = 285.0, -66.0
    for k in ("PV2_1", "PV2_2", "LONPOLE", "LATPOLE"):
        h.remove(k, ignore_missing=True)
    return h


_UNIT_MAPS = types.SimpleNamespace(background=np.zeros((192, 192)), rms=np.ones((192, 192)))


def test_forced_uses_each_sources_pixel_geometry_on_the_azp_map():
    xs, ys = _grid()
    img, ra, dec, truth = _noise_free(_azp_header(), xs, ys)
    local = measure_positions(img, ra, dec, cluster_threshold=None)
    assert local.meta["pixel_geometry"] == "local"
    q = np.asarray(local["peak_jyb"]) / truth
    assert np.all(np.abs(q - 1) < 0.002)
    # the centre's kernel everywhere (the behaviour before): peaks drift with the pixel size
    centre = measure_positions(img, ra, dec, cluster_threshold=None, pixel_geometry="centre")
    qc = np.asarray(centre["peak_jyb"]) / truth
    assert centre.meta["pixel_geometry"] == "centre"
    assert qc.min() < 0.98 and qc.max() > 1.02


def test_forced_blended_pairs_use_each_members_geometry():
    # pairs 1.2 beams (~4.3 px) apart, fitted jointly, across the map
    xs, ys = _grid(n=4, lo=25.0, hi=160.0, seed=3)
    xs = np.concatenate([xs, xs + 3.0])
    ys = np.concatenate([ys, ys + 3.0])
    peaks = np.concatenate([np.ones(xs.size // 2), np.full(xs.size // 2, 0.5)])
    img, ra, dec, truth = _noise_free(_azp_header(), xs, ys, peaks)
    t = measure_positions(img, ra, dec)
    assert np.all(np.asarray(t["cluster_id"]) >= 0)
    q = np.asarray(t["peak_jyb"]) / truth
    assert np.all(np.abs(q - 1) < 0.003)


@pytest.mark.parametrize("cdelt_deg", [0.007, 0.02])
def test_regular_image_keeps_the_centre_kernel(cdelt_deg):
    # SIN fields 1.3 and 3.8 deg across (a DSA-110 image is ~3.4 deg): the geometry does
    # not vary enough to change anything, every source gets the centre's kernel
    h = _sin_header()
    h["CDELT1"], h["CDELT2"] = -cdelt_deg, cdelt_deg
    h["BMAJ"] = h["BMIN"] = 3.6 * cdelt_deg
    img = RadioImage.from_array(np.zeros((192, 192)), h)
    xs, ys = _grid(lo=0.0, hi=191.0)
    assert local_kernels(img, img.beam, xs, ys, pixel_beam_for(img)) is None


@needs_aegean
@pytest.mark.parametrize("projection", ["azp", "sin"])
def test_aegean_priorized_fit_recovers_noise_free_sources(projection):
    header = _azp_header() if projection == "azp" else _sin_header()
    xs, ys = _grid()
    img, ra, dec, truth = _noise_free(header, xs, ys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = np.asarray(aegean_mod.measure(img, ra, dec, maps=_UNIT_MAPS)["peak_jyb"]) / truth
        upstream = np.asarray(aegean_mod.measure(img, ra, dec, maps=_UNIT_MAPS,
                                                 correct_half_pixel=False, keep_sky_beam=False)
                              ["peak_jyb"]) / truth
    # residual on AZP: Aegean's own approximate sky->pixel ellipse (<= 1 %)
    assert np.all(np.abs(fixed - 1) < 0.01)
    # upstream AegeanTools 2.3.5 reads low: the half-pixel island offset (and on AZP the
    # constant-pixel psf): ~7 % on SIN, 2-5 % on this AZP map
    assert np.all(upstream < 0.985)
    if projection == "azp":
        half_only = np.asarray(aegean_mod.measure(img, ra, dec, maps=_UNIT_MAPS,
                                                  keep_sky_beam=False)["peak_jyb"]) / truth
        assert np.median(half_only) > 1.01  # the constant-pixel psf alone: too narrow here


@needs_aegean
def test_against_aegeans_own_catalogue_on_the_real_map():
    variants = {k: catbench.VARIANTS[k] for k in
                ("forced", "aegean, project maps", "aegean, BANE, upstream (both fixes off)")}
    sub, meas, _ = catbench.compare(variants=variants, offsets=())
    g = sub["compact"] & sub["isolated"]
    assert g.sum() >= 5
    cat = sub["peak_flux"][g]
    forced = meas["forced"][g] / cat
    aegean = meas["aegean, project maps"][g] / cat
    upstream = meas["aegean, BANE, upstream (both fixes off)"][g] / cat
    # forced and the fixed aegean agree with Aegean's free fit (the real beam here is
    # close to the header's for compact sources) within 1 % in the median
    assert np.median(forced) == pytest.approx(1.0, abs=0.01)
    assert np.median(aegean) == pytest.approx(1.0, abs=0.01)
    assert np.all(np.abs(aegean / forced - 1) < 0.03)
    # the reported deficit (~3.5 % below Aegean's catalogue) is upstream behaviour
    assert 0.95 < np.median(upstream) < 0.98
