"""Entry point of ``contimg-photometry``.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed namespace and returning an exit code).

Exit codes, the same for every command (:mod:`dsa110_contimg.cli.common`): 0 ok;
1 failure (one line on stderr; also a closed stdout); 2 usage error; 3 daemon not
running; 4 database missing or unreadable. ``status`` also exits 1 when degraded.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dsa110_contimg import __version__
from dsa110_contimg.cli import common

#: Sub-command modules, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "demo",
    "init",
    "config",
    "run",
    "status",
    "jobs",
    "files",
    "images",
    "measure",
    "catalog",
    "worker",
    "reprocess",
    "ese",
    "sources",
    "alerts",
    "lightcurve",
    "db",
    "serve",
]


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``PROG: error: MESSAGE (see PROG --help)``,
    exit code 2) instead of the usage block; sub-parsers inherit the class."""

    def error(self, message: str):  # noqa: D401 - argparse API
        message = " ".join(str(message).split())
        self.exit(common.EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _print_message(self, message, file=None):
        try:
            super()._print_message(message, file)
        except BrokenPipeError:   # `--help | head`
            common.silence_stdout()


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="contimg-photometry",
        description="DSA-110 photometry service: forced photometry, catalogues, "
        "normalisation, variability and ESE detection.",
        epilog=common.EXIT_CODES_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"dsa110_contimg.cli.{name}").register(sub)
    for p in _all_parsers(parser):   # the same exit codes documented on every command
        if not p.epilog:
            p.epilog = common.EXIT_CODES_EPILOG
        elif "exit code" not in p.epilog:
            p.epilog = f"{p.epilog}; {common.EXIT_CODES_EPILOG}"
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help/--version (0) or a usage error (2), already printed
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            common.silence_stdout()
        return int(exc.code or 0) if not isinstance(exc.code, str) else common.EXIT_USAGE
    # Log lines go to stderr so that stdout carries only the command's output (tables,
    # JSON); `run` reconfigures to stdout for journald.
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("auto", "info", stream=sys.stderr)
    return common.run_command(args.command, args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
