"""Benchmark of the optional methods: ``adaptive`` (16-plane cube) and ``aegean``.

Run: ``.venv/bin/python bench/methods.py [--size 1024] [--n 2000] [--aegean-n 30]``

Prints
* adaptive on a 16-plane ``size``^2 cube with ``n`` positions: total time, the
  per-plane forced part and the binning step; same-run baselines: 16 separate
  ``forced`` calls (one per plane image) and a per-source Python loop of the
  §6 binning algorithm (speed-up ratio and whether both give identical bins);
* aegean vs forced on a 512^2 image with ``aegean-n`` priors (project maps and
  BANE), as a ratio to the same-run ``forced`` time.
Timings are wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import time

import workerenv  # noqa: E402,F401  (before numpy: the workers' one thread per library)

import numpy as np  # noqa: E402


def loop_bins(flux, err, target=5.0):
    """Per-source Python implementation of the science.md §6 binning (the baseline)."""
    out = []
    n, p = flux.shape
    for s in range(n):
        f, e = flux[s], err[s]
        ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
        w = np.where(ok, 1 / np.where(ok, e, 1) ** 2, 0.0)
        pool = list(range(p))

        def runs(idx):
            rs, cur = [], []
            for i in idx:
                if cur and i != cur[-1] + 1:
                    rs.append(cur)
                    cur = []
                cur.append(i)
            if cur:
                rs.append(cur)
            return rs

        def snr_of(ch):
            sw = w[ch].sum()
            return (w[ch] * np.where(ok[ch], f[ch], 0)).sum() / np.sqrt(sw) if sw > 0 else np.nan

        for width in range(1, p + 1):
            for run in runs(pool):
                for k in range(0, len(run), width):
                    ch = run[k:k + width]
                    if snr_of(ch) >= target:
                        out.append((s, ch[0], ch[-1]))
                        pool = [c for c in pool if c not in ch]
        for run in runs(pool):
            if len(run) >= 2 and snr_of(run) >= target:
                out.append((s, run[0], run[-1]))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--aegean-n", type=int, default=30)
    args = ap.parse_args()

    from dsa110_contimg.science.forced import measure_positions
    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.science.methods import adaptive
    from dsa110_contimg.science.simulate import (correlated_noise, paint_sources,
                                                    random_sky_positions, simulate_image, sky_wcs)

    rng = np.random.default_rng(1)
    size, n, P = args.size, args.n, 16
    shape = (size, size)
    wcs = sky_wcs(150.0, 37.0, 3.0, shape)
    ra, dec, x, y = random_sky_positions(wcs, shape, n, rng, margin_pix=20)
    peaks = rng.uniform(0.002, 0.05, n)
    planes = []
    t = time.perf_counter()
    for i in range(P):
        d = correlated_noise(shape, 5e-3, 5.0, 10 / 3, 30.0, rng)
        paint_sources(d, x, y, peaks, 5.0, 10 / 3, 30.0)
        planes.append(d.astype(np.float32))
    cube = np.stack(planes)
    header = simulate_image((8, 8), naxis=4, noise_rms=0).header
    header.update(wcs.to_header())
    header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = size, size, P
    header["CRVAL3"], header["CDELT3"] = 1.311e9, 15.625e6
    print(f"cube {P}x{size}^2 generated in {time.perf_counter() - t:.1f} s; {n} positions")

    img = RadioImage.from_array(cube[None], header)
    t = time.perf_counter()
    tab = adaptive.measure(img, ra, dec)
    t_adapt = time.perf_counter() - t
    t = time.perf_counter()
    bins = adaptive.adaptive_bins(tab.meta["plane_peak_jyb"], tab.meta["plane_err_jyb"])
    t_bin = time.perf_counter() - t
    print(f"adaptive total          {t_adapt:7.2f} s  ({n / t_adapt:,.0f} sources/s, "
          f"{len(bins['snr'])} bins)")
    print(f"  binning step          {t_bin * 1e3:7.1f} ms")

    t = time.perf_counter()
    for i in range(P):
        plane_img = RadioImage.from_array(cube[i], header)
        measure_positions(plane_img, ra, dec, method="forced")
    t_sep = time.perf_counter() - t
    print(f"baseline: 16 x forced   {t_sep:7.2f} s  -> adaptive/baseline = {t_adapt / t_sep:.2f}")

    m = min(n, 300)
    t = time.perf_counter()
    ref = loop_bins(tab.meta["plane_peak_jyb"][:m], tab.meta["plane_err_jyb"][:m])
    t_loop = (time.perf_counter() - t) * n / m
    mine = sorted((int(s), int(a), int(b)) for s, a, b in zip(
        bins["source_index"], bins["first_plane"], bins["last_plane"]) if s < m)
    print(f"baseline: per-source binning loop {t_loop:7.2f} s (extrapolated from {m}) -> "
          f"speed-up {t_loop / t_bin:,.0f}x; identical bins: {mine == ref}")

    from dsa110_contimg.science.methods import aegean

    if not aegean.aegean_available():
        print("aegean: AegeanTools not installed, skipped")
        return
    k = args.aegean_n
    sim = simulate_image((512, 512), ra_deg=ra[:0], dec_deg=dec[:0], noise_rms=1e-3, seed=3)
    w2 = sim.wcs
    ra2, dec2, x2, y2 = random_sky_positions(w2, (512, 512), k, rng, margin_pix=20,
                                             min_separation_pix=15)
    sim = simulate_image((512, 512), ra_deg=ra2, dec_deg=dec2, peak_jyb=rng.uniform(0.005, 0.1, k),
                         noise_rms=1e-3, seed=3)
    im = RadioImage.from_array(sim.data, sim.header)
    t = time.perf_counter()
    f = measure_positions(im, ra2, dec2, method="forced")
    t_f = time.perf_counter() - t
    t = time.perf_counter()
    a = aegean.measure(im, ra2, dec2, maps="project")
    t_ap = time.perf_counter() - t
    t = time.perf_counter()
    aegean.measure(im, ra2, dec2, maps="bane")
    t_ab = time.perf_counter() - t
    dz = (a["peak_jyb"] - f["peak_jyb"]) / np.hypot(a["peak_err_jyb"], f["peak_err_jyb"])
    print(f"forced 512^2, {k} priors  {t_f * 1e3:7.1f} ms")
    print(f"aegean (project maps)   {t_ap * 1e3:7.1f} ms  -> {t_ap / t_f:,.0f}x forced")
    print(f"aegean (BANE subprocess){t_ab * 1e3:7.1f} ms  -> {t_ab / t_f:,.0f}x forced")
    print(f"aegean - forced: median {np.median(dz):+.2f} sigma, max |{np.abs(dz).max():.2f}| sigma")


if __name__ == "__main__":
    main()
