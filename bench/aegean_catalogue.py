"""``aegean`` vs ``forced`` vs Aegean's own free-fit catalogue on a real map (issue 10 item 7).

Runs AegeanTools' blind source finder (BANE background/noise, then
``SourceFinder.find_sources_in_image``, i.e. what the ``aegean`` CLI does) on the
real Parkes 1.4 GHz map astropy ships (``1904-66_AZP.fits``), keeps the compact
(``int_flux / peak_flux < 1.25``), unflagged components with SNR > 10, and
measures them at Aegean's own fitted positions with

* ``forced`` (fixed-beam weighted amplitude, this project's maps),
* ``aegean`` (priorized, stage 1) with this project's maps and with BANE's,
  with and without the half-pixel island offset correction,
* the same at positions moved by a fraction of a pixel (catalogue positions
  that are not the fitted peak),

and prints the median ratio of each to Aegean's free-fit ``peak_flux`` and to
``forced`` (a table that ``docs/aegean.md`` quotes).

Usage: PYTHONPATH=src python bench/aegean_catalogue.py
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from dsa110_contimg.science.image import RadioImage
from dsa110_contimg.science.methods import aegean as aegean_mod


def azp_path() -> Path:
    """Path of astropy's copy of the Parkes 1904-66 map (no network)."""
    import astropy

    p = Path(astropy.__file__).parent / "modeling" / "tests" / "data" / "1904-66_AZP.fits"
    if not p.exists():
        raise FileNotFoundError(f"{p}: astropy's test data (1904-66_AZP.fits) is not installed")
    return p


def blind_catalogue(image_path, workdir) -> dict[str, np.ndarray]:
    """Aegean's own free-fit components of ``image_path`` (BANE maps, default clips).

    Returns columns ``ra, dec`` (deg), ``peak_flux, err_peak_flux, int_flux,
    local_rms, background`` (Jy/beam, Jy), ``a, b, psf_a, psf_b`` (arcsec), ``flags``.
    """
    SourceFinder, _, aegean_logger = aegean_mod.load_aegean()
    workdir = Path(workdir)
    bkg, rms = aegean_mod.run_bane(image_path, workdir / "blind")
    sf = SourceFinder()
    with aegean_mod._quiet(aegean_logger), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comps = sf.find_sources_in_image(str(image_path), hdu_index=0, cores=1, bkgin=str(bkg),
                                         rmsin=str(rms), docov=True, progress=False)
    cols = ("ra", "dec", "peak_flux", "err_peak_flux", "int_flux", "local_rms", "background",
            "a", "b", "psf_a", "psf_b", "flags")
    return {c: np.array([getattr(s, c) for s in comps], float) for c in cols}


def bright(cat, snr_min=10.0):
    """Mask of unflagged components with peak / local_rms > ``snr_min``."""
    return (cat["flags"] == 0) & (cat["peak_flux"] / cat["local_rms"] > snr_min)


def compact(cat, compact_max=1.25):
    """Mask of components with int_flux / peak_flux < ``compact_max`` (about a beam)."""
    return cat["int_flux"] / cat["peak_flux"] < compact_max


def isolated(cat, radius_deg):
    """Mask of components with no other catalogued component within ``radius_deg``."""
    from scipy.spatial import cKDTree

    ra, dec = np.deg2rad(cat["ra"]), np.deg2rad(cat["dec"])
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    counts = np.array([len(v) for v in cKDTree(xyz).query_ball_point(
        xyz, 2 * np.sin(np.deg2rad(radius_deg) / 2))])
    return counts == 1


#: estimator variants: name -> (method, options)
VARIANTS = {
    "forced": ("forced", {}),
    "forced, centre pixel geometry (before)": ("forced", {"pixel_geometry": "centre"}),
    "aegean, project maps": ("aegean", {"maps": "project"}),
    "aegean, BANE": ("aegean", {"maps": "bane"}),
    "aegean, project maps, no sky-beam fix": ("aegean", {"maps": "project",
                                                          "keep_sky_beam": False}),
    "aegean, project maps, no half-pixel fix": ("aegean", {"maps": "project",
                                                            "correct_half_pixel": False}),
    "aegean, BANE, upstream (both fixes off)": ("aegean", {"maps": "bane", "keep_sky_beam": False,
                                                           "correct_half_pixel": False}),
}


def measure_all(image, ra, dec, variants=None):
    """Every estimator variant at (ra, dec): dict name -> peak (Jy/beam)."""
    from dsa110_contimg.science.forced import measure_positions

    out = {}
    for name, (method, opts) in (variants or VARIANTS).items():
        if method == "aegean" and not aegean_mod.aegean_available():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = np.asarray(measure_positions(image, ra, dec, method=method, **opts)
                                   ["peak_jyb"], float)
    return out


def offset_positions(image, ra, dec, dx_pix, dy_pix):
    """(ra, dec) moved by (dx, dy) pixels."""
    x, y = image.world_to_pixel(ra, dec)
    r, d = image.pixel_to_world(x + dx_pix, y + dy_pix)
    return np.asarray(r, float) % 360.0, np.asarray(d, float)


def compare(workdir=None, variants=None, offsets=(0.25, 0.5)):
    """The whole comparison.

    Returns (catalogue of the SNR > 10 components with masks ``compact`` and
    ``isolated``, measurements at Aegean's positions, {offset_px: measurements at
    positions moved by (offset, offset) pixels}).
    """
    path = azp_path()
    image = RadioImage.open(path)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="aegean_cat_") as tmp:
        cat = blind_catalogue(path, tmp)
    beam_deg = image.require_beam().major_deg
    iso = isolated(cat, 2.0 * beam_deg)
    sel = bright(cat)
    sub = {k: v[sel] for k, v in cat.items()}
    sub["compact"] = compact(sub)
    sub["isolated"] = iso[sel]
    meas = measure_all(image, sub["ra"], sub["dec"], variants)
    moved = {}
    for d in offsets:
        r, dd = offset_positions(image, sub["ra"], sub["dec"], d, d)
        moved[d] = measure_all(image, r, dd, {k: v for k, v in (variants or VARIANTS).items()
                                              if k in ("forced", "aegean, project maps")})
    return sub, meas, moved


def _row(name, v, ref_cat, ref_f):
    q = v / ref_cat
    return (f"  {name:<46} {np.nanmedian(q):7.4f} ({np.nanpercentile(q, 16):.3f}-"
            f"{np.nanpercentile(q, 84):.3f}) {np.nanmedian(v / ref_f):9.4f}")


def main():
    sub, meas, moved = compare()
    groups = {"compact, isolated": sub["compact"] & sub["isolated"],
              "compact (all)": sub["compact"],
              "compact, with a neighbour < 2 beams": sub["compact"] & ~sub["isolated"],
              "extended (int/peak >= 1.25)": ~sub["compact"]}
    print(f"Aegean blind catalogue of 1904-66_AZP.fits (BANE, default clips): "
          f"{sub['ra'].size} unflagged components with SNR > 10")
    for gname, g in groups.items():
        if not g.any():
            continue
        print(f"\n{gname}: {g.sum()} components; fitted a x b median {np.median(sub['a'][g]):.0f}\" x "
              f"{np.median(sub['b'][g]):.0f}\" (header beam 864\")")
        print(f"  {'estimator at Aegean positions':<46} {'/ Aegean catalogue (16-84 %)':>28} "
              f"{'/ forced':>9}")
        ref_cat, ref_f = sub["peak_flux"][g], meas["forced"][g]
        for name, v in meas.items():
            print(_row(name, v[g], ref_cat, ref_f))
        if gname.startswith("compact, isolated"):
            for d, m in moved.items():
                for name, v in m.items():
                    print(_row(f"{name} at +{d:g},+{d:g} px", v[g], ref_cat, ref_f))


if __name__ == "__main__":
    main()
