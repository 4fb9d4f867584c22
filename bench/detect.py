"""Benchmark of blind detection on a 4096 x 4096 image with 4,000 sources.

Run: ``.venv/bin/python bench/detect.py [--size 4096] [--n 4000] [--epochs 6] [--no-aegean]
[--no-photutils]``

Prints, in one run on one simulated image (18" x 13" beam, 3" pixels, 1 mJy/beam correlated
noise, sources 5-500 sigma):

* the detection time of the service's finder (``science/detect.py``) and its recall by SNR;
* the per-image time of the whole workflow (``PhotometryManager.run_image``: open, noise maps,
  forced photometry of the catalogue, detection, the steps' write transaction, ESE) with
  detection off and on, on ``--epochs`` images of the field (the first warms up; each image
  through both, one after the other, in alternating order), and their ratio (the target is
  <= 1.3), in wall time and in CPU time (on a shared, loaded machine the CPU ratio is the
  steadier figure), and the median over the images of each image's CPU ratio (the two runs
  of one image see the same load and the same history);
* the same image through photutils segmentation with ``deblend_sources`` (when photutils and
  scikit-image are installed) and through Aegean's blind finder (``AegeanTools``, when
  installed; slow: minutes), on the same background and noise maps, with their recall;
  PySE (``radio-pyse``) when installed.

BLAS and OpenMP run one thread, as in the service's workers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

import workerenv  # noqa: E402,F401  (before numpy: the workers' one thread per library)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _recall(x, y, truth_x, truth_y, snr):
    from scipy.spatial import cKDTree

    found = np.zeros(truth_x.size, bool)
    if len(x):
        d, i = cKDTree(np.column_stack([x, y])).query(np.column_stack([truth_x, truth_y]))
        found = d <= 2.0
    parts = []
    for lo, hi in ((5, 6), (6, 10), (10, np.inf)):
        sel = (snr >= lo) & (snr < hi)
        parts.append(f"{lo}-{hi if np.isfinite(hi) else 'inf'} sigma {found[sel].mean():.3f}")
    return ", ".join(parts)


def _time(fn, repeat=3, clock=time.perf_counter):
    best, out = np.inf, None
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
    return best, out


def make_images(root: Path, size: int, n: int, epochs: int):
    """The field's catalogue (ingested) and ``epochs`` images of it."""
    from benchfield import BEAM, field_catalogue, ingest, write_epochs

    rng = np.random.default_rng(7)
    ra, dec, flux, csv = field_catalogue(root, size, n, 3.0, rng)
    ingest(csv, root / "catalogs")
    paths = write_epochs([root / f"image{k}.fits" for k in range(epochs)], size, 3.0, ra, dec,
                         flux, rng, gain_sd=0.0, naxis=2)
    return paths, ra, dec, flux, BEAM


def bench_workflow(paths, root: Path):
    """Per-image time of the whole workflow (``PhotometryManager.run_image``: measure, the
    steps' write transaction, ESE) with detection off and on, each on a fresh products
    database. Each image goes through both, one after the other in alternating order, so
    that both see the same machine load; the first image warms up, the medians of the others
    are reported, as wall time and as this process's CPU time (on a shared machine the wall
    time also holds the time spent waiting for a core), with the median of the images'
    own CPU ratios (``paired_cpu``)."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.manager import PhotometryManager

    runs = {}
    for label, detect in (("off", False), ("on", True)):
        manager = PhotometryManager(root / f"products_{label}.sqlite3",
                                    catalog_dir=root / "catalogs")
        runs[label] = (manager, PhotometryConfig(catalog="nvss", detect=detect), [])
    for k, p in enumerate(paths):
        # the order alternates from image to image: neither variant always runs second
        # (the second run of an image finds the file pages that the first one read)
        for label, (manager, cfg, times) in list(runs.items())[::-1 if k % 2 else 1]:
            wall, cpu = time.perf_counter(), time.process_time()
            result = manager.run_image(p, "image", cfg)
            if k:
                times.append((time.perf_counter() - wall, time.process_time() - cpu,
                              result.step_seconds))
    out = {"paired_cpu": float(np.median([on[1] / off[1] for off, on in
                                          zip(runs["off"][2], runs["on"][2])]))}
    for label, (_, _, times) in runs.items():
        out[label] = float(np.median([t[0] for t in times]))
        out[label + "_cpu"] = float(np.median([t[1] for t in times]))
        out[label + "_steps"] = {k: float(np.median([t[2].get(k, 0.0) for t in times]))
                                 for k in times[0][2]}
    return out


def bench_photutils(data, bkg, rms):
    from photutils.segmentation import deblend_sources, detect_sources

    z = (data - bkg) / rms
    t = time.perf_counter()
    seg = detect_sources(z, 5.0, n_pixels=3)
    t_detect = time.perf_counter() - t
    t = time.perf_counter()
    seg = deblend_sources(z, seg, n_pixels=3, n_levels=32, contrast=0.001, progress_bar=False)
    t_deblend = time.perf_counter() - t
    from scipy import ndimage

    labels = np.arange(1, seg.n_labels + 1)
    pos = np.array(ndimage.maximum_position(z, seg.data, seg.labels)) if seg.n_labels else \
        np.zeros((0, 2))
    del labels
    return t_detect, t_deblend, pos[:, 1], pos[:, 0]


def bench_aegean(path: Path, bkg, rms, header, root: Path):
    from astropy.io import fits
    from AegeanTools.source_finder import SourceFinder

    bkg_path, rms_path = root / "bkg.fits", root / "rms.fits"
    fits.PrimaryHDU(np.asarray(bkg, np.float32), header).writeto(bkg_path, overwrite=True)
    fits.PrimaryHDU(np.asarray(rms, np.float32), header).writeto(rms_path, overwrite=True)
    sf = SourceFinder()
    import logging

    logging.getLogger("Aegean").setLevel(logging.ERROR)
    t = time.perf_counter()
    found = sf.find_sources_in_image(str(path), bkgin=str(bkg_path), rmsin=str(rms_path),
                                     innerclip=5.0, outerclip=3.0, cores=1)
    elapsed = time.perf_counter() - t
    return elapsed, np.array([s.ra for s in found]), np.array([s.dec for s in found])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=6,
                    help="images of the field through the workflow (the first warms up)")
    ap.add_argument("--no-aegean", action="store_true", help="skip Aegean (minutes on 4096^2)")
    ap.add_argument("--no-photutils", action="store_true", help="skip photutils deblending")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from dsa110_contimg.science.detect import detect_sources
    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.science.noise import background_maps_for

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"simulating a {args.size}^2 image with {args.n} sources ...", flush=True)
        paths, ra, dec, flux_mjy, beam = make_images(root, args.size, args.n, args.epochs)
        path = paths[0]
        image = RadioImage.open(path)
        maps = background_maps_for(image)
        tx, ty = image.world_to_pixel(ra, dec)
        snr = flux_mjy                                  # 1 mJy/beam noise: SNR = mJy
        detect_sources(image, maps)                     # warm: imports, correlation factor
        t_det, det = _time(lambda: detect_sources(image, maps))
        cpu_det, _ = _time(lambda: detect_sources(image, maps), clock=time.process_time)
        print(f"detection (service finder): {t_det:.3f} s ({cpu_det:.3f} s CPU), {len(det)} components in "
              f"{det.meta['n_islands']} islands; recall {_recall(det['x_pix'], det['y_pix'], tx, ty, snr)}")
        wf = bench_workflow(paths, root)
        print(f"per-image workflow end to end (run_image, stored; medians of {len(paths) - 1} "
              f"images): detection off {wf['off']:.3f} s, on {wf['on']:.3f} s, ratio "
              f"{wf['on'] / wf['off']:.2f} (target <= 1.3); CPU time off {wf['off_cpu']:.3f} s, "
              f"on {wf['on_cpu']:.3f} s, ratio {wf['on_cpu'] / wf['off_cpu']:.2f}; per-image CPU "
              f"ratio (median over the images) {wf['paired_cpu']:.2f}")
        for label in ("off", "on"):
            print(f"  steps {label}: " + ", ".join(f"{k} {v:.3f}"
                                                for k, v in wf[label + "_steps"].items()))
        data = np.asarray(image.data, np.float32)
        bkg, rms = np.asarray(maps.background), np.asarray(maps.rms)
        have_photutils = importlib.util.find_spec("photutils") and importlib.util.find_spec("skimage")
        if have_photutils and not args.no_photutils:
            t1, t2, px, py = bench_photutils(data, bkg, rms)
            print(f"photutils detect_sources {t1:.3f} s + deblend_sources {t2:.3f} s "
                  f"({t2 / max(len(det), 1) * 1e3:.1f} ms per component); recall "
                  f"{_recall(px, py, tx, ty, snr)}")
        else:
            print("photutils with scikit-image not installed (or skipped): no comparison")
        if importlib.util.find_spec("sourcefinder"):
            print("PySE (radio-pyse) is installed but not wired into this benchmark")
        else:
            print("PySE (radio-pyse) not installed: no comparison")
        if importlib.util.find_spec("AegeanTools") and not args.no_aegean:
            print("Aegean blind finder on the same image and maps (minutes) ...", flush=True)
            t_a, ara, adec = bench_aegean(path, bkg, rms, image.wcs.to_header(), root)
            ax, ay = image.world_to_pixel(ara, adec)
            print(f"Aegean: {t_a:.1f} s, {ara.size} components ({t_a / t_det:.0f}x the service "
                  f"finder); recall {_recall(ax, ay, tx, ty, snr)}")
        else:
            print("Aegean not installed (or skipped): no comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())
