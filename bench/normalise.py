"""Normalisation injection-recovery benchmark: the pull table per regime.

Seasons of the real NVSS extract (``tests/support/normseason.py``) with known per-epoch
gains (4 % rms, 40 epochs), at noise levels that leave a few references (3-10) and ones
that leave dozens, with and without a discordant subset of references (their flux steps
up by 5 % after the baseline window). For each regime: the number of normalised epochs,
the robust sigma (1.4826 MAD) and rms of the pulls (factor - true gain) / error, the
largest |pull|, the fraction of |pull| > 3 and the fraction of factors flagged as
disagreeing. Target (docs/science.md §7.3): robust sigma 0.8-1.3, no |pull| > 5.

Usage: .venv/bin/python bench/normalise.py [--seasons 50] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from normseason import noise_for_references, nvss_fluxes, robust_sigma, simulate_season  # noqa: E402

REGIMES = (  # (name, references at SNR >= 50, max_refs, discordant subset)
    ("3 refs", 3, 20, 0),
    ("5 refs", 5, 20, 0),
    ("8 refs", 8, 20, 0),
    ("9 refs, 3 discordant", 9, 20, 3),
    ("9 refs, 4 discordant", 9, 20, 4),
    ("6 refs, 2 discordant", 6, 20, 2),
    ("20 refs", 20, 20, 0),
    ("60 refs", 60, 60, 0),
    ("60 refs, 10 discordant", 60, 60, 10),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seasons", type=int, default=50, help="seasons per regime")
    default = os.environ.get("CONTIMG_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--data", type=Path, default=Path(default))
    args = ap.parse_args(argv)
    flux = nvss_fluxes(args.data)
    print(f"{'regime':<24} {'noise mJy':>9} {'epochs':>11} {'rob.sig':>7} {'rms':>6} "
          f"{'max|p|':>7} {'|p|>3':>6} {'flagged':>7}")
    for name, n_refs, max_refs, disc in REGIMES:
        noise = noise_for_references(flux, n_refs)
        pulls, warned, n_ok, n_all = [], [], 0, 0
        for seed in range(args.seasons):
            s = simulate_season(flux, noise_jyb=noise, max_refs=max_refs, discordant=disc,
                                seed=seed)
            pulls.append(s.pull)
            warned.append(s.warned)
            n_ok += s.factor.size
            n_all += s.n_epochs
        p, w = np.concatenate(pulls), np.concatenate(warned)
        print(f"{name:<24} {noise * 1e3:9.3f} {n_ok:>5}/{n_all:<5} {robust_sigma(p):7.2f} "
              f"{np.sqrt(np.mean(p ** 2)):6.2f} {np.max(np.abs(p)):7.2f} "
              f"{np.mean(np.abs(p) > 3):6.3f} {np.mean(w):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
