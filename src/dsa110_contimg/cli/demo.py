"""``contimg-photometry demo``: simulated sky, catalogue and daemon end to end."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the daemon on ~30 simulated epochs with an injected ESE",
                       description="Make a small simulated sky and NVSS-like catalogue, start the "
                                   "daemon on a drop-in directory, drop ~30 epochs of simulated "
                                   "DSA-110-like images (one source with an injected extreme "
                                   "scattering event, per-epoch gain jitter), wait, print the status "
                                   "and the ESE candidate and write its light-curve PNG.")
    p.add_argument("--workdir", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--epochs", type=int, default=30, help="number of simulated epochs (default 30)")
    p.add_argument("--workers", type=int, default=2, help="daemon worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=110.0, help="seconds to wait for the daemon")
    p.set_defaults(func=run)


def run(args) -> int:
    from dsa110_contimg.cli.demo_run import run_demo

    return run_demo(workdir=args.workdir, epochs=args.epochs, workers=args.workers, timeout_s=args.timeout)
