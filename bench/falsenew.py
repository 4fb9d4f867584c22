"""False new sources per 100 images on sky-like seasons of the real NVSS field, at scale.

Run: ``.venv/bin/python bench/falsenew.py [--fields 8] [--epochs 125] [--size 320] [--seed 2323]``

The seasons of ``tests/support/skyseason.py`` (the check ``tests/pipeline/
test_transients_falsenew.py`` runs 150 images of them): several fields of the real NVSS
extract, many epochs each, through ``PhotometryManager.run_image`` with blind detection on and
the default thresholds; beam-correlated noise varying by epoch and towards the corners, gain
and pointing jitter, sidelobe / calibration-artefact blobs around the bright sources, blanked
discs and borders, sources below the NVSS limit, and a few genuine transients. Prints the
images, detections, new sources, false new sources (new sources matching no injected
transient) per 100 images with the Poisson 95 % upper limit against, in the same run, what the
depth test alone (without the own-image SNR condition) and the detections alone as artefact
hosts (without the catalogue's) would have let through; the transients found, the outcome of
every detection, the classes of the rejected and of the unmatched-but-not-new ones, and the
CPU time per image. Needs the shared data folder (``../shared/data``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))


def _classes(reasons) -> dict:
    out: dict = {}
    for r in reasons:
        key = (r or "(none)").split(":")[0] if not (r or "").startswith("no flux") else r
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> int:
    import structlog

    from skyseason import SkySeason, SkySeasonSpec, classify, detections_table, poisson_upper

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=125)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--seed", type=int, default=2323)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    if not (args.data / "real").is_dir():
        print(f"falsenew: shared data not found at {args.data}", file=sys.stderr)
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    spec = SkySeasonSpec(n_fields=args.fields, epochs=args.epochs, shape=(args.size, args.size),
                         seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="falsenew-") as tmp:
        sky = SkySeason(spec, args.data, Path(tmp))
        t0, w0 = time.process_time(), time.perf_counter()
        done = [0]

        def progress(n):
            done[0] = n
            if n % 100 == 0:
                print(f"  {n} images, {time.perf_counter() - w0:.0f} s", file=sys.stderr)

        run = sky.run(progress)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        det = detections_table(run["manager"])
    out = classify(sky, det)
    n_img, k = len(run["paths"]), int(out["false_new"].size)
    print(f"sky-like seasons: {spec.n_fields} fields x {spec.epochs} epochs of {args.size}^2 "
          f"pixels ({spec.pixscale:g}\" pixels, beam {spec.beam[0]:g}\" x {spec.beam[1]:g}\"), "
          f"noise {1e3 * spec.noise:g} mJy/beam x0.8-1.25 per epoch, gain rms {spec.gain_rms:g}, "
          f"seed {spec.seed}")
    print(f"images                      {n_img}")
    print(f"detections                  {out['n_detections']} ({out['n_detections'] / n_img:.1f} per image)")
    print(f"new sources                 {out['n_new']}")
    print(f"transients found as new     {int(out['found'].sum())} / {out['found'].size} "
          f"(injected 10-50 sigma)")
    print(f"false new sources           {k}: {100 * k / n_img:.2f} per 100 images, "
          f"95 % upper limit {100 * poisson_upper(k) / n_img:.2f} per 100 images")
    for i in out["false_new"]:
        print(f"    {Path(det['path'][i]).parent.name}/{Path(det['path'][i]).name}  "
              f"ra {det['ra'][i]:.5f} dec {det['dec'][i]:.5f}  x {det['x'][i]:.0f} y {det['y'][i]:.0f}  "
              f"snr {det['snr'][i]:.1f}")
    faint_here = np.array([str(r).startswith("too faint in its own image") for r in det["reason"]])
    host_only = (det["status"] == "rejected") & (det["reason"] == "artefact") & np.isnan(det["related"])
    print(f"baseline, same run: the depth test alone (VAST/TraP, without the own-image SNR "
          f"condition) would have called {int(faint_here.sum())} more new "
          f"({100 * (k + faint_here.sum()) / n_img:.2f} per 100 images); "
          f"{int(host_only.sum())} detections were artefacts of a catalogue source that was not "
          f"detected (beyond the edge, blanked), which the detections alone would not have caught")
    print("detection outcomes          " + ", ".join(f"{s} {n}" for s, n in out["status_counts"].items()))
    print("rejected, by reason:")
    for r, n in _classes(det["reason"][det["status"] == "rejected"]).items():
        print(f"    {n:6d}  {r}")
    print("blind (unmatched, not new), by reason:")
    for r, n in _classes(det["reason"][det["status"] == "blind_source"]).items():
        print(f"    {n:6d}  {r}")
    print(f"time                        {cpu:.1f} s CPU, {wall:.1f} s wall "
          f"({1e3 * cpu / n_img:.0f} ms CPU per image, simulation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
