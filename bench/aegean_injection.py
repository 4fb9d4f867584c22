"""Which peak flux is right on a real image: ``forced`` or ``aegean``? (issue 10 item 7)

Sources of known peak flux are injected into the real Parkes 1.4 GHz map that
astropy ships (``1904-66_AZP.fits``, 192x192, 4' pixels, 0.24 deg circular beam,
zenithal AZP projection whose reference pixel lies outside the image), painted
*on the sky* with the real beam (every pixel's offset from the source computed
through the WCS, so the projection's distortion is included), at positions
free of real emission. Each method measures the injected image and the
original at the same positions; the recovered flux is the difference (the real
background and noise at the position are common to both), compared with truth.

Prints the median ratio recovered / injected and its scatter per method and
SNR bin, and the same for sources injected near the image centre (where the
pixel geometry equals the centre's).

Usage: PYTHONPATH=src python bench/aegean_injection.py [--n 60] [--snr 30]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods import aegean as aegean_mod


def azp_path():
    """Path of astropy's copy of the Parkes 1904-66 map (no network)."""
    from pathlib import Path

    import astropy

    p = Path(astropy.__file__).parent / "modeling" / "tests" / "data" / "1904-66_AZP.fits"
    if not p.exists():
        raise FileNotFoundError(f"{p}: astropy's test data (1904-66_AZP.fits) is not installed")
    return p


def paint_on_sky(img: RadioImage, ra, dec, peak, fwhm_deg):
    """Circular Gaussians of FWHM ``fwhm_deg`` (deg on the sky) at (ra, dec), peak in Jy/beam,
    evaluated at every pixel within 4 FWHM through the WCS (distortion included)."""
    ny, nx = img.shape
    model = np.zeros((ny, nx))
    x0, y0 = img.world_to_pixel(np.asarray(ra), np.asarray(dec))
    half = 4 * fwhm_deg / 0.0667 + 3
    for r, d, p, xc, yc in zip(ra, dec, peak, x0, y0):
        xs = np.arange(max(0, int(xc - half)), min(nx, int(xc + half) + 1))
        ys = np.arange(max(0, int(yc - half)), min(ny, int(yc + half) + 1))
        gx, gy = np.meshgrid(xs, ys)
        lon, lat = img.pixel_to_world(gx.ravel().astype(float), gy.ravel().astype(float))
        # angular distance (haversine), deg
        la1, la2 = np.deg2rad(d), np.deg2rad(lat)
        dlon = np.deg2rad(lon - r)
        h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin(dlon / 2) ** 2
        sep = np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))
        g = p * np.exp(-4 * np.log(2) * (sep / fwhm_deg) ** 2)
        model[gy.ravel(), gx.ravel()] += np.nan_to_num(g)
    return model


def choose_positions(img: RadioImage, rms, n, rng, min_sep_pix=12.0, clear_pix=8.0):
    """Positions free of real emission (no |pixel| > 4 rms within ``clear_pix``), finite,
    >= ``min_sep_pix`` apart and from the edges."""
    data = img.data
    ny, nx = data.shape
    bright = ~np.isfinite(data) | (np.abs(data) > 4 * np.asarray(rms))   # rms: a map or a GridMap
    from scipy import ndimage

    near = ndimage.binary_dilation(bright, iterations=int(clear_pix))
    ok = ~near
    ok[:12, :] = ok[-12:, :] = False
    ok[:, :12] = ok[:, -12:] = False
    cand = np.argwhere(ok)
    rng.shuffle(cand)
    chosen = []
    for y, x in cand:
        if all((x - cx) ** 2 + (y - cy) ** 2 >= min_sep_pix ** 2 for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) >= n:
            break
    ys, xs = np.array(chosen, float).T
    ys += rng.uniform(-0.5, 0.5, ys.size)
    xs += rng.uniform(-0.5, 0.5, xs.size)
    return img.pixel_to_world(xs, ys), xs, ys


def inject_and_measure(n=60, snr=30.0, seed=0, methods=("forced", "aegean", "aegean-bane"),
                       workdir=None):
    """Returns dict: truth peak, per-method recovered peak (difference), pixel positions."""
    from dsa110_contimg.science.forced import measure_positions
    from dsa110_contimg.science.noise import background_maps_for

    rng = np.random.default_rng(seed)
    base = RadioImage.open(azp_path())
    maps = background_maps_for(base)
    rms = float(np.nanmedian(maps.rms))
    (ra, dec), xs, ys = choose_positions(base, maps.rms, n, rng)
    peak = snr * rms * rng.uniform(0.5, 2.0, ra.size)
    fwhm = base.beam.major_arcsec / 3600.0
    injected = RadioImage.from_array(base.data + paint_on_sky(base, ra, dec, peak, fwhm),
                                     base.header)
    out = {"truth": peak, "x": xs, "y": ys, "rms": rms}
    for m in methods:
        if m.startswith("aegean") and not aegean_mod.aegean_available():
            continue
        opts = {"maps": "project"} if m == "aegean" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = measure_positions(injected, ra, dec, method=m.split("-")[0], **opts)
            b = measure_positions(base, ra, dec, method=m.split("-")[0], **opts)
        out[m] = np.asarray(a["peak_jyb"], float) - np.asarray(b["peak_jyb"], float)
        out[m + "_raw"] = np.asarray(a["peak_jyb"], float)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for snr in (10.0, 30.0, 100.0):
        r = inject_and_measure(args.n, snr, args.seed)
        ny, nx = 192, 192
        centre = np.hypot(r["x"] - (nx - 1) / 2, r["y"] - (ny - 1) / 2) < 40
        print(f"\nSNR ~{snr:g} (peak {snr * 0.5:g}-{snr * 2:g} x rms {r['rms'] * 1e3:.1f} mJy/beam), "
              f"{r['truth'].size} injected sources ({centre.sum()} within 40 px of the centre)")
        for m in ("forced", "aegean", "aegean-bane"):
            if m not in r:
                print(f"  {m:<7} not available")
                continue
            q = r[m] / r["truth"]
            qc = q[centre]
            print(f"  {m:<7} recovered/injected: median {np.nanmedian(q):.4f}, "
                  f"16-84 % {np.nanpercentile(q, 16):.4f}-{np.nanpercentile(q, 84):.4f}; "
                  f"near centre median {np.nanmedian(qc):.4f}; failed {np.isnan(q).sum()}")
        if "aegean" in r:
            ratio = r["aegean_raw"] / r["forced_raw"]
            print(f"  aegean (project maps) / forced on the injected image: median "
                  f"{np.nanmedian(ratio):.4f}")
        if "aegean-bane" in r:
            ratio = r["aegean-bane_raw"] / r["forced_raw"]
            print(f"  aegean (BANE maps) / forced on the injected image: median "
                  f"{np.nanmedian(ratio):.4f}")


if __name__ == "__main__":
    main()
