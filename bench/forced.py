"""Benchmark of forced photometry on a 4096 x 4096 image with 10,000 positions.

Run: ``.venv/bin/python bench/forced.py [--n 10000] [--size 4096] [--threads 1]``

Prints: image load + noise-map time, sources/s for ``forced`` (with and
without clustering) and ``peak``, and a straightforward per-source loop
implementation of the same estimator (maps weighted pixel by pixel) as the
same-run baseline, with the speed-up ratio and the largest difference between
the two.

Setup as in science.md §1.6: 2.5" pixels, 12" circular beam, sigma = 0.1 mJy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def baseline_loop(data, bkg, rms, x, y, pb, nbeam=3.0):
    """Per-source Python loop of the same estimator (no clustering): the baseline."""
    import numpy as np

    ny, nx = data.shape
    h = pb.half_size(nbeam)
    flux = np.full(x.size, np.nan)
    err = np.full(x.size, np.nan)
    for i in range(x.size):
        xc, yc = int(round(x[i])), int(round(y[i]))
        if xc - h < 0 or yc - h < 0 or xc + h >= nx or yc + h >= ny:
            continue
        sl = (slice(yc - h, yc + h + 1), slice(xc - h, xc + h + 1))
        d = np.asarray(data[sl], float) - bkg[sl]
        s = np.asarray(rms[sl], float)
        yy, xx = np.mgrid[yc - h:yc + h + 1, xc - h:xc + h + 1]
        k = pb.evaluate(xx - x[i], yy - y[i])
        good = np.isfinite(d) & np.isfinite(s) & (s > 0)
        if not good.any():
            continue
        d, s, k = d[good], s[good], k[good]
        flux[i] = np.sum(d * k / s ** 2) / np.sum(k ** 2 / s ** 2)
        err[i] = np.sum(k / s) / np.sum(k / s ** 2)
    return flux, err


def _have_forced_phot() -> bool:
    try:
        import forced_phot  # noqa: F401
    except Exception:  # noqa: BLE001 - optional, any import failure means "absent"
        return False
    return True


def compare_forced_phot(path, comp, ra, dec, n, best, fresh):
    """The same positions with forced_phot (askap-vast), numpy and numba paths, clustering on
    and off, from the same image and the same ``_bkg``/``_rms`` maps on disk.

    Two modes per setting: *fresh* (open the image and both maps, then fit: what a service
    pays per image) and *fit only* (objects already built, maps in memory). Ratios are
    forced_phot's time / ours in the same run (> 1: ours is faster).
    """
    import warnings

    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from forced_phot import ForcedPhot

    from dsa110_contimg.science.forced import measure_positions
    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.science.noise import background_maps_for

    pos = SkyCoord(ra * u.deg, dec * u.deg)
    img = RadioImage.open(path)
    maps = background_maps_for(img)                      # maps read once
    measure_positions(img, ra, dec, method="forced", maps=maps)   # and the factor measured
    ours_fit = {thr: best(lambda: measure_positions(img, ra, dec, method="forced", maps=maps,
                                                    cluster_threshold=thr))[0]
                for thr in (1.5, None)}
    ours_fresh = {thr: fresh(thr) for thr in (1.5, None)}
    print("# forced_phot comparison (ratio = forced_phot time / ours; > 1 means ours is faster)")
    for numba in (False, True):
        for thr, label in ((1.5, "clustering on"), (None, "clustering off")):
            kw = dict(nbeam=3, cluster_threshold=thr, use_clusters=thr is not None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fp = ForcedPhot(path, str(comp["bkg"]), str(comp["rms"]), use_numba=numba)
                fp.measure(pos[:50], **kw)                  # numba: compile outside the timing
                t_fit = best(lambda: fp.measure(pos, **kw))[0]
                t_fresh = best(lambda: ForcedPhot(path, str(comp["bkg"]), str(comp["rms"]),
                                                  use_numba=numba).measure(pos, **kw))[0]
            name = "numba" if numba else "numpy"
            print(f"forced_phot {name}, {label}: fit only {t_fit:.3f} s "
                  f"(ours {ours_fit[thr]:.3f} s, ratio {t_fit / ours_fit[thr]:.1f}x); "
                  f"fresh with maps from disk {t_fresh:.3f} s "
                  f"(ours {ours_fresh[thr]:.3f} s, ratio {t_fresh / ours_fresh[thr]:.1f}x)")
    img.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    _limit_threads(args.threads)

    import numpy as np

    from dsa110_contimg.science.forced import measure_arrays, measure_positions, pixel_beam_for
    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.science.noise import background_maps_for
    from dsa110_contimg.science.simulate import sky_wcs

    size, n = args.size, args.n
    rng = np.random.default_rng(42)
    shape = (size, size)
    pix, beam = 2.5, 12.0
    print("# timings: best of --repeat runs in process CPU seconds (noise map: wall and CPU)")
    print(f"# forced photometry benchmark: {size}x{size} float32, {n} positions, "
          f"{pix}\" px, {beam}\" beam, threads={args.threads}, numpy {np.__version__}")
    t0 = time.perf_counter()
    # white noise is enough for timing (the estimator cost does not depend on it)
    data = rng.normal(0.0, 1e-4, shape).astype(np.float32)
    wcs = sky_wcs(150.0, 37.0, pix, shape)
    xs = rng.uniform(20, size - 21, n)
    ys = rng.uniform(20, size - 21, n)
    yy = np.rint(ys).astype(int)
    xx = np.rint(xs).astype(int)
    data[yy, xx] += rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    hdr = wcs.to_header()
    hdr["BMAJ"] = beam / 3600
    hdr["BMIN"] = beam / 3600
    hdr["BPA"] = 0.0
    hdr["BUNIT"] = "Jy/beam"
    hdr["DATE-OBS"] = "2025-01-01T00:00:00"
    from astropy.io import fits

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.fits")
        fits.PrimaryHDU(data[None, None], hdr).writeto(path)
        del data
        print(f"setup (simulate + write): {time.perf_counter() - t0:.2f} s")
        ra, dec = wcs.wcs_pix2world(xs, ys, 0)

        t0 = time.perf_counter()
        img = RadioImage.open(path)
        t_open = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        maps = background_maps_for(img)
        t_noise = time.perf_counter() - t0
        c_noise = time.process_time() - c0
        print(f"open image (memory map): {t_open * 1e3:.1f} ms")
        print(f"noise + background map {size}x{size}: {t_noise:.2f} s wall, {c_noise:.2f} s CPU "
              f"(target <= 2 s)")
        # the noise-correlation factor, timed once: kept in the maps, which the runs below
        # are given (as the pipeline does), so they time the fit
        from dsa110_contimg.science.forced import correlation_factor

        t0 = time.perf_counter()
        cf = correlation_factor(img, maps, pixel_beam_for(img))
        print(f"noise-correlation factor (once per image): {time.perf_counter() - t0:.3f} s "
              f"(factor {cf:.3f})")

        def best(fn):
            """Best of ``repeat`` runs; CPU time of that process (robust to a busy machine)."""
            ts = []
            out = None
            for _ in range(args.repeat):
                t = time.process_time()
                out = fn()
                ts.append(time.process_time() - t)
            return min(ts), out

        t_forced, res = best(lambda: measure_positions(img, ra, dec, method="forced", maps=maps))
        print(f"forced (cluster 1.5, incl. WCS + error factor): {t_forced:.3f} s -> "
              f"{n / t_forced:,.0f} sources/s  ({res.n_success} ok, "
              f"{int((res['cluster_id'] >= 0).sum())} clustered)")
        x, y = img.world_to_pixel(ra, dec)
        pb = pixel_beam_for(img)
        m = maps
        t_core, core = best(lambda: measure_arrays(img.data, m.background, m.rms, x, y, pb,
                                                   cluster_threshold=None))
        print(f"forced core, no clustering (measure_arrays): {t_core:.3f} s -> "
              f"{n / t_core:,.0f} sources/s")
        t_peak, pres = best(lambda: measure_positions(img, ra, dec, method="peak", maps=maps))
        print(f"peak: {t_peak:.3f} s -> {n / t_peak:,.0f} sources/s")

        # per-image cost from a fresh open, as a service sees it: open + maps + correlation
        # factor + fit, with estimated maps and with BANE-style maps read from disk
        from dsa110_contimg.science.noise import companion_map_paths

        def fresh(thr, **kw):
            return best(lambda: measure_positions(RadioImage.open(path), ra, dec, method="forced",
                                                  cluster_threshold=thr, **kw))[0]

        for thr, label in ((1.5, "clustering on"), (None, "clustering off")):
            t_e = fresh(thr, autoload_maps=False)
            print(f"fresh image, estimated maps, {label}: {t_e:.3f} s -> {n / t_e:,.0f} sources/s")
        comp = companion_map_paths(path)
        fits.PrimaryHDU(np.asarray(m.background, np.float32)).writeto(comp["bkg"])
        fits.PrimaryHDU(np.asarray(m.rms, np.float32)).writeto(comp["rms"])
        for thr, label in ((1.5, "clustering on"), (None, "clustering off")):
            t_d = fresh(thr)
            print(f"fresh image, maps from disk (_bkg/_rms.fits), {label}: {t_d:.3f} s -> "
                  f"{n / t_d:,.0f} sources/s")

        if _have_forced_phot():
            compare_forced_phot(path, comp, ra, dec, n, best, fresh)
        else:
            print("forced_phot not installed: no comparison with it (optional; see README)")

        nb = min(n, 2000)
        t0 = time.process_time()
        bflux, berr = baseline_loop(img.data, m.background, m.rms, x[:nb], y[:nb], pb)
        t_base = (time.process_time() - t0) * n / nb
        print(f"baseline per-source loop (same estimator, {nb} sources, scaled to {n}): "
              f"{t_base:.2f} s -> {n / t_base:,.0f} sources/s")
        diff = np.nanmax(np.abs(bflux - core["peak_jyb"][:nb]))
        # the loop weights by the maps pixel by pixel; the vectorised fit takes the smooth
        # estimated maps as constant over a cutout (science.md §1.3)
        print(f"speed-up forced core vs loop: {t_base / t_core:.1f}x; "
              f"forced (full API) vs loop: {t_base / t_forced:.1f}x; "
              f"max |flux difference| {diff:.2e} Jy/beam = "
              f"{diff / np.nanmedian(berr):.1e} of the median error")
        img.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
