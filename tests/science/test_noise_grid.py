"""The strip-wise coarse-grid noise map (issue 15): accuracy against the landed estimator and
against known truth, lazy evaluation, bounded memory, the sampled noise-correlation factor,
sampled QC statistics, and the QC history read outside the write lock."""

from __future__ import annotations

import sqlite3
import tracemalloc

import math

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import legacy_background as legacy
from dsa110_contimg.science.forced import PixelBeam, measure_arrays, measure_positions
from dsa110_contimg.core.clipping import truncated_normal_variance
from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science import noise as noise_mod
from dsa110_contimg.science.methods import aegean as aegean_mod
from dsa110_contimg.science.noise import (
    FileMap, GridMap, background_maps_for, companion_map_paths, estimate_background,
    noise_correlation_factor)
from dsa110_contimg.science.qc import clipped_rms, finite_count_and_peak, map_median
from dsa110_contimg.science.simulate import random_sky_positions, simulate_image


def _traced_peak(fn):
    """``(fn(), peak bytes allocated by Python and numpy while it ran)``."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _p99(a):
    return float(np.percentile(np.abs(a), 99))


def _correlated_field(shape=(1536, 1536), beam_pix=4.8, seed=5):
    """Correlated noise with a known rms map (rising 30 % left to right) and background
    (a pedestal with a ramp), Jy/beam."""
    rng = np.random.default_rng(seed)
    c = ndimage.gaussian_filter(rng.normal(0, 1, shape), beam_pix / 2.3548)
    c /= c.std()
    ny, nx = shape
    rms = 1e-3 * (1 + 0.3 * np.linspace(0, 1, nx))[None, :] * np.ones(shape)
    bkg = 5e-3 + 1e-3 * np.linspace(-1, 1, ny)[:, None] * np.ones(shape)
    return (c * rms + bkg).astype(np.float32), rms, bkg


def test_grid_map_agrees_with_landed_estimator_on_correlated_noise():
    data, rms_true, bkg_true = _correlated_field()
    new = estimate_background(data, beam_pix=4.8)
    old = legacy.estimate_background(data, beam_pix=4.8)
    assert isinstance(new.rms, GridMap) and new.grid_shape == (16, 16)
    m = (slice(50, -50), slice(50, -50))
    nr, nb = np.asarray(new.rms), np.asarray(new.background)
    assert _p99((nr / old.rms - 1)[m]) < 0.02
    assert _p99((nb / old.background - 1)[m]) < 0.02
    # against the truth: no bias, and the per-box statistical scatter of both estimators
    assert abs(np.median(nr[m] / rms_true[m]) - 1) < 0.01
    assert abs(np.median(nb[m] / bkg_true[m]) - 1) < 0.01
    assert _p99((nr / rms_true - 1)[m]) < 1.25 * _p99((old.rms / rms_true - 1)[m])
    # (fewer samples per box than the landed estimator: a slightly noisier background grid)
    assert _p99((nb - bkg_true)[m]) < 1.5 * _p99((old.background - bkg_true)[m])


def test_grid_map_truth_within_two_percent_with_enough_samples_per_box():
    # with boxes of 60 beams the per-box statistical error is below 1 %: rms and background
    # maps are then within 2 % of the truth at the 99th percentile
    data, rms_true, bkg_true = _correlated_field(shape=(2048, 2048), beam_pix=3.0, seed=9)
    new = estimate_background(data, beam_pix=3.0, box_pix=180)
    m = (slice(100, -100), slice(100, -100))
    assert _p99((np.asarray(new.rms) / rms_true - 1)[m]) < 0.02
    assert _p99((np.asarray(new.background) / bkg_true - 1)[m]) < 0.02


def test_shared_synthetic_image_rms_and_background(shared_data):
    img = RadioImage.open(shared_data / "synthetic" / "aegean_synthetic_test.fits")
    maps = background_maps_for(img, cache=False)
    old = legacy.estimate_background(np.asarray(img.data),
                                     beam_pix=img.beam.major_arcsec / img.pixel_scale_arcsec)
    nr, nb = np.asarray(maps.rms), np.asarray(maps.background)
    # the README's truth: rms ~0.029 on a pedestal of ~0.25 (102 sources clipped away)
    assert np.median(nr) == pytest.approx(0.029, rel=0.02)
    assert _p99(nb / 0.25 - 1) < 0.02
    assert _p99(nb / old.background - 1) < 0.02
    # the rms grid has 4 x 7 boxes; with clipping run until it settles (5 rounds) the new
    # map is closer to the truth than the landed estimator (2.3 % against 3.0 % p99), and
    # the two differ by 2.5 % p99 -- the landed estimator's own error (3 rounds of clipping
    # leave bright-source wings in some boxes), not a 2 % disagreement to be closed
    assert _p99(nr / 0.029 - 1) < _p99(old.rms / 0.029 - 1)
    assert _p99(nr / 0.029 - 1) < 0.027
    assert _p99(nr / old.rms - 1) < 0.03


def test_grid_map_indexing_equals_materialised_map():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (300, 410)).astype(np.float32) + np.linspace(0, 5, 410)[None, :]
    maps = estimate_background(data, box_pix=50)
    full = np.asarray(maps.background)
    assert full.shape == (300, 410) and full.dtype == np.float32
    yi = rng.integers(0, 300, 500)
    xi = rng.integers(0, 410, 500)
    np.testing.assert_allclose(maps.background[yi, xi], full[yi, xi], rtol=1e-6)
    np.testing.assert_allclose(maps.background.take_flat(yi * 410 + xi), full[yi, xi], rtol=1e-6)
    np.testing.assert_allclose(maps.rms[10:20, 400:], np.asarray(maps.rms)[10:20, 400:], rtol=1e-6)
    np.testing.assert_allclose(maps.background_at(xi + 0.3, yi - 0.2), full[yi, xi], rtol=1e-6)
    assert np.isnan(maps.rms_at([-5.0], [3.0])[0])
    # the gradient is followed between box centres (bilinear), not stepped
    assert np.all(np.diff(full[150, 30:380]) > 0)


def test_noise_map_memory_is_a_fixed_budget_not_the_image():
    # the estimator works on batches of at most BATCH_SAMPLES samples (a few strips of
    # boxes): its peak memory is the same for an image four times larger, and a small
    # fraction of a large image
    rng = np.random.default_rng(2)
    peaks = {}
    for n in (2048, 4096):
        data = rng.standard_normal((n, n), dtype=np.float32) * np.float32(1e-3)
        maps, peaks[n] = _traced_peak(lambda: estimate_background(data, beam_pix=2.0))
        assert np.median(maps.rms.sampled()) == pytest.approx(1e-3, rel=0.02)
    assert peaks[4096] < 1.25 * peaks[2048], peaks
    assert peaks[4096] < 0.15 * 4096 * 4096 * 4, f"peak {peaks[4096] / 1e6:.1f} MB, image 67 MB"


def test_memory_mapped_image_is_measured_without_full_maps(tmp_path):
    sim = simulate_image((1024, 1024), pixscale_arcsec=3.0, beam_arcsec=(15, 15, 0), naxis=2,
                         ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05])
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(path)
    measure_positions(RadioImage.open(path), [150.0], [37.0])   # warm-up: lazy imports
    img = RadioImage.open(path)
    t, peak = _traced_peak(lambda: measure_positions(img, [150.0], [37.0]))
    assert t["peak_jyb"][0] == pytest.approx(0.05, abs=5 * t["peak_err_jyb"][0])
    assert peak < 0.5 * 1024 * 1024 * 4, f"peak {peak / 1e6:.1f} MB for a 4.2 MB image"


def test_maps_from_disk_are_memory_mapped_and_read_only_where_used(tmp_path):
    # BANE-style _bkg/_rms files beside the image: read lazily (a memory map), in mJy/beam
    # with zeros for "unknown"; the values equal a full read, and measuring touches only
    # the cutouts (far less memory than one map)
    sim = simulate_image((2048, 2048), pixscale_arcsec=3.0, beam_arcsec=(15, 15, 0), naxis=4,
                         ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05], noise_rms=1e-3)
    path = tmp_path / "img.fits"
    sim.write(path)
    rng = np.random.default_rng(3)
    bkg_mjy = (0.2 + 0.01 * rng.normal(size=(2048, 2048))).astype(np.float32)
    rms_mjy = np.full((2048, 2048), 1.0, np.float32)
    rms_mjy[:8] = 0.0
    comp = companion_map_paths(path)
    fits.PrimaryHDU(bkg_mjy[None, None], fits.Header({"BUNIT": "mJy/beam"})).writeto(comp["bkg"])
    fits.PrimaryHDU(rms_mjy, fits.Header({"BUNIT": "mJy/beam"})).writeto(comp["rms"])
    img = RadioImage.open(path)
    maps = background_maps_for(img)
    assert maps.source == "files" and isinstance(maps.rms, FileMap)
    full_b, full_r = np.asarray(maps.background), np.asarray(maps.rms)
    assert full_b.dtype == np.float32 and full_b.flags.writeable
    np.testing.assert_allclose(full_b, bkg_mjy * 1e-3, rtol=1e-6)
    assert np.isnan(full_r[:8]).all() and np.allclose(full_r[8:], 1e-3)
    yi, xi = rng.integers(0, 2048, 300), rng.integers(0, 2048, 300)
    np.testing.assert_array_equal(maps.background[yi, xi], full_b[yi, xi])
    np.testing.assert_array_equal(maps.background.take_flat(yi * 2048 + xi), full_b[yi, xi])
    np.testing.assert_array_equal(maps.rms[100:110, 5:9], full_r[100:110, 5:9])
    assert np.isnan(maps.rms_at([3.0], [2.0])[0])
    measure_positions(img, [150.0], [37.0])          # warm-up: lazy imports, cached factor
    img2 = RadioImage.open(path)
    t, peak = _traced_peak(lambda: measure_positions(img2, [150.0], [37.0]))
    assert t.meta["noise_source"] == "files"
    assert t["bkg_jyb"][0] == pytest.approx(2e-4, abs=5e-5)
    assert t["peak_jyb"][0] == pytest.approx(0.05 - 2e-4, abs=5 * t["peak_err_jyb"][0])
    assert peak < 0.25 * bkg_mjy.nbytes, f"peak {peak / 1e6:.1f} MB for a 16.8 MB map"


def test_forced_fluxes_and_errors_against_the_landed_maps():
    rng = np.random.default_rng(4)
    shape = (1024, 1024)
    sim0 = simulate_image(shape, pixscale_arcsec=3.0, beam_arcsec=(15, 12, 30), naxis=2)
    ra, dec, _, _ = random_sky_positions(sim0.wcs, shape, 150, rng, margin_pix=30,
                                         min_separation_pix=20)
    sim = simulate_image(shape, pixscale_arcsec=3.0, beam_arcsec=(15, 12, 30), naxis=2,
                         ra_deg=ra, dec_deg=dec, peak_jyb=rng.uniform(0.005, 0.2, ra.size),
                         background=(2e-3, 1e-3, -1e-3))
    img = RadioImage.from_array(sim.data.astype(np.float32), sim.header)
    new = measure_positions(img, ra, dec)
    pb = PixelBeam.from_beam(img.beam, img.pixel_jacobian_arcsec(), img.pixel_scale_arcsec)
    old_maps = legacy.estimate_background(img.data, beam_pix=img.beam.major_arcsec
                                          / img.pixel_scale_arcsec)
    x, y = img.world_to_pixel(ra, dec)
    factor = legacy.noise_correlation_factor(img.data, old_maps.background, old_maps.rms,
                                             pb.stamp(3.0))
    old = measure_arrays(img.data, old_maps.background, old_maps.rms, x, y, pb,
                         error_scale=factor)
    ok = old["success"] & new["success"]
    assert ok.sum() > 140
    # the flux moves only by the background difference: a small fraction of the error
    assert np.max(np.abs(new["peak_jyb"][ok] - old["peak_jyb"][ok]) / old["peak_err_jyb"][ok]) < 0.1
    ratio = new["peak_err_jyb"][ok] / old["peak_err_jyb"][ok]
    assert np.median(np.abs(ratio - 1)) < 0.02 and np.max(np.abs(ratio - 1)) < 0.05


def test_sampled_correlation_factor_matches_the_landed_measurement():
    sim = simulate_image((1024, 1024), beam_arcsec=(15, 15, 0), pixscale_arcsec=3.0, naxis=2,
                         seed=11)
    k = PixelBeam.from_fwhm(5.0, 5.0, 0.0).stamp(3.0)
    zeros, ones = np.zeros(sim.data.shape), np.full(sim.data.shape, 1e-3)
    f_new = noise_correlation_factor(sim.data, zeros, ones, k)
    f_old = legacy.noise_correlation_factor(sim.data, zeros, ones, k)
    assert f_new == pytest.approx(f_old, rel=0.03)
    maps = estimate_background(sim.data, beam_pix=5.0)
    assert noise_correlation_factor(sim.data, maps.background, maps.rms, k) == \
        pytest.approx(np.sqrt(2), rel=0.05)


def test_qc_statistics_from_samples():
    rng = np.random.default_rng(6)
    data = rng.normal(0.0, 2e-3, (1500, 1500)).astype(np.float32)
    data[rng.integers(0, 1500, 200), rng.integers(0, 1500, 200)] = 1.0   # bright outliers
    data[:100] = np.nan
    # (the clipped std is not corrected for the 3-sigma truncation: 0.9866 sigma)
    assert clipped_rms(data) == pytest.approx(0.9866 * 2e-3, rel=0.01)
    # the sorted-window clipping gives what the straightforward loop gives on the same sample
    v = np.asarray(data[::3, ::3], np.float64).ravel()
    v = v[np.isfinite(v)]
    for _ in range(5):
        keep = np.abs(v - np.median(v)) <= 3 * v.std()
        if keep.all():
            break
        v = v[keep]
    assert clipped_rms(data, max_samples=data.size // 9 + 1) == pytest.approx(v.std(), rel=1e-9)
    maps = estimate_background(data, box_pix=100)
    assert map_median(maps.rms) == pytest.approx(np.nanmedian(np.asarray(maps.rms)), rel=0.01)
    n, peak = finite_count_and_peak(data)
    assert n == np.isfinite(data).sum() and peak == 1.0


def test_qc_history_is_read_without_the_write_lock(tmp_path):
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.engine import make_engine, read_connection

    db = tmp_path / "p.sqlite3"
    open_products_db(db)
    holder = sqlite3.connect(db, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")          # another worker holds the write lock
    try:
        engine = make_engine(db, busy_timeout_ms=200)
        with read_connection(engine) as conn:     # deferred: reads go through
            assert lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None,
                                       exclude_path="x") == []
        # the same read on an ordinary (write) connection waits for the lock and fails
        with pytest.raises(Exception, match="locked"):
            with engine.connect() as conn:
                lc_store.qc_history(conn, 150.0, 37.0, 1.0, before_mjd=None, exclude_path="x")
        engine.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_grid_map_cutouts_are_exact():
    rng = np.random.default_rng(8)
    data = rng.normal(0, 1, (400, 500)).astype(np.float32) + np.linspace(0, 5, 500)[None, :]
    maps = estimate_background(data, box_pix=40)
    full = np.asarray(maps.rms)
    for h in (3, 7, 30):   # 30: wider than a box (general path)
        yc = rng.integers(h, 400 - h, 300)
        xc = rng.integers(h, 500 - h, 300)
        cut = maps.rms.cutouts(yc, xc, h)
        g = np.arange(-h, h + 1)
        ref = full[(yc[:, None] + g)[:, :, None], (xc[:, None] + g)[:, None, :]]
        np.testing.assert_allclose(cut, ref, rtol=2e-6)


@pytest.mark.skipif(not aegean_mod.aegean_available(),
                    reason="AegeanTools not installed (the [aegean] extra)")
def test_bane_maps_beside_the_shared_image_are_read_lazily_and_used(shared_data, tmp_path):
    # as a user would: BANE writes <stem>_bkg.fits / <stem>_rms.fits beside the image, and
    # measuring picks them up (memory-mapped) and recovers the known peaks
    import csv
    import shutil

    path = tmp_path / "aegean_synthetic_test.fits"
    shutil.copy(shared_data / "synthetic" / "aegean_synthetic_test.fits", path)
    aegean_mod.run_bane(path, tmp_path / "aegean_synthetic_test")
    with open(shared_data / "synthetic" / "aegean_synthetic_test_truth.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["inside_image"].lower() in ("true", "1")]
    ra, dec, peak = (np.array([float(r[k]) for r in rows]) for k in ("ra_deg", "dec_deg", "peak_flux"))
    img = RadioImage.open(path)
    assert isinstance(background_maps_for(img).rms, FileMap)
    files = measure_positions(img, ra, dec)
    est = measure_positions(RadioImage.open(path), ra, dec, autoload_maps=False)
    assert files.meta["noise_source"] == "files" and est.meta["noise_source"] == "estimated"
    ok = files["success"] & est["success"] & (peak > 1.0)
    assert ok.sum() > 50
    assert np.median(files["peak_jyb"][ok] / peak[ok]) == pytest.approx(1.0, abs=0.01)
    assert np.median(files["bkg_jyb"][ok]) == pytest.approx(0.25, rel=0.02)
    assert np.median(files["peak_err_jyb"][ok] / est["peak_err_jyb"][ok]) == pytest.approx(1.0, abs=0.1)


def _brute_clip(row, clip_sigma, n_iter, start=None):
    """Sigma clipping of one row as written in the estimator's docstring, sample by sample."""
    x = np.sort(row[np.isfinite(row)]).astype(np.float64)
    kept = x
    if start is not None and np.isfinite(start[0]) and np.isfinite(start[1]):
        lo32 = np.float32(start[0] - start[1])
        hi32 = np.float32(start[0] + start[1])
        sub = x[(x >= lo32) & (x <= hi32)]
        kept = sub if sub.size else x
    med = std = float("nan")
    for it in range(max(1, n_iter) + 1):
        if not kept.size:
            med = std = float("nan")
            break
        med = 0.5 * (kept[(kept.size - 1) // 2] + kept[kept.size // 2])
        std = math.sqrt(np.mean((kept - med) ** 2))
        if it == n_iter:
            break
        lo32, hi32 = np.float32(med - clip_sigma * std), np.float32(med + clip_sigma * std)
        new = x[(x >= lo32) & (x <= hi32)]
        if new.size == kept.size and (not new.size or (new[0] == kept[0] and new[-1] == kept[-1])):
            break
        kept = new
    if n_iter > 0:
        std /= math.sqrt(truncated_normal_variance(clip_sigma))
    return med, std, x.size


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nr=st.integers(1, 7), n=st.integers(1, 90),
       n_iter=st.integers(0, 5), bad=st.floats(0.0, 0.4), outliers=st.floats(0.0, 0.3),
       offset=st.sampled_from([0.0, 0.25, -3.0, 1e3]), use_start=st.booleans())
def test_clipped_stats_equal_clipping_sample_by_sample(seed, nr, n, n_iter, bad, outliers, offset,
                                                       use_start):
    # the estimator's per-box statistics (one sort, a binary search per round over every
    # row, range sums updated by the samples that enter or leave, rows dropped once
    # settled) equal plain sigma clipping: NaN, +-inf, bright outliers, offsets, empty rows
    rng = np.random.default_rng(seed)
    v = (offset + rng.normal(0, 1e-3, (nr, n))).astype(np.float32)
    hit = rng.random((nr, n)) < outliers
    v[hit] += rng.exponential(0.05, hit.sum()).astype(np.float32)
    odd = rng.random((nr, n)) < bad
    v[odd] = rng.choice(np.array([np.nan, np.inf, -np.inf, -np.nan], np.float32), odd.sum())
    if nr > 2:
        v[1] = np.nan                       # a row with no finite sample
    start = None
    if use_start:
        start = (np.full(nr, offset), np.where(rng.random(nr) < 0.2, np.nan, 3e-3))
    med, std, nfin = noise_mod._clipped_stats(v.copy(), 3.0, n_iter, start=start)
    for i in range(nr):
        bm, bs, bn = _brute_clip(v[i], 3.0, n_iter,
                                 None if start is None else (start[0][i], start[1][i]))
        assert nfin[i] == bn
        if np.isnan(bm):
            assert np.isnan(med[i]) and np.isnan(std[i])
            continue
        assert med[i] == bm
        assert std[i] == pytest.approx(bs, rel=1e-9, abs=1e-15)
