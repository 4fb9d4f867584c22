"""Entry point of ``contimg-photometry``.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed namespace and returning an exit code).

Exit codes: 0 success; 1 error (one line on stderr); 2 usage error; other
codes are documented by the sub-command (``status``: 1 degraded, 3 not
running, 4 database missing).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dsa110_contimg import __version__
from dsa110_contimg.photometry.errors import PhotometryError

#: Sub-command modules, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "demo",
    "init",
    "run",
    "status",
    "jobs",
    "measure",
    "catalog",
    "worker",
    "reprocess",
    "ese",
    "lightcurve",
    "db",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contimg-photometry",
        description="DSA-110 photometry service: forced photometry, catalogues, "
        "normalisation, variability and ESE detection.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"dsa110_contimg.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Log lines go to stderr so that stdout carries only the command's output (tables,
    # JSON); `run` reconfigures to stdout for journald.
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("auto", "info", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except PhotometryError as exc:
        print(f"contimg-photometry {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"contimg-photometry {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
