"""``contimg-photometry status``: daemon liveness, queue and results (read-only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EPILOG = ("exit codes: 0 healthy; 1 degraded (failed or dead jobs, stale heartbeat) or failure; "
          "2 usage; 3 daemon not running; 4 database missing or unreadable")


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("status", help="daemon and queue status (exit 0 ok, 1 degraded, 3 not running, "
                                      "4 no database)",
                       description="Show whether the daemon runs (heartbeat age), its workers, job "
                                   "counts by state, the oldest pending job, the throughput over the "
                                   "last hour, the last failures and the ESE candidate count. Reads "
                                   "the products database read-only.", epilog=EPILOG)
    common.add_db_options(p, registry=False)
    p.add_argument("--json", action="store_true", help="one JSON object with stable nested keys")
    p.add_argument("--watch", action="store_true",
                   help="refresh the status in place every --interval seconds until Ctrl-C "
                        "(exit code of the last refresh)")
    p.add_argument("--interval", type=_positive_float, default=2.0, metavar="S",
                   help="refresh period of --watch in seconds (default 2)")
    p.set_defaults(func=run)


def _positive_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def snapshot(args) -> tuple[dict, int]:
    """``(status dict, exit code)``; raises NoDatabase (exit 4) when the database is missing
    or unreadable."""
    from dsa110_contimg.cli import common
    from dsa110_contimg.service.status import collect_status, status_exit_code

    cfg = common.service_config(args)
    stale = cfg.daemon.stale_after_s if cfg is not None else 60.0
    db = common.open_products(args)
    try:
        try:
            where = common.products_db(args)
            state_dir = cfg.paths.state_dir if cfg is not None else \
                (None if "://" in where else Path(where).parent)
            st = collect_status(db, stale_after_s=stale, state_dir=state_dir,
                                photometry=cfg.photometry if cfg is not None else None)
        except Exception as exc:  # noqa: BLE001 - not a database, no schema
            raise common.NoDatabase(f"cannot read the products database: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}", common.products_db(args)) from None
    finally:
        db.dispose()
    return st, status_exit_code(st)


def run(args) -> int:
    from dsa110_contimg.cli import common
    from dsa110_contimg.service.status import format_status

    if args.watch:
        return _watch(args)
    try:
        st, rc = snapshot(args)
    except common.NoDatabase as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "daemon": {"running": False}}))
        raise
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return rc


def _watch(args) -> int:
    """Redraw in place (cursor home + clear to end of screen) on a terminal; elsewhere
    separate the snapshots with a blank line."""
    import time

    from dsa110_contimg.cli import common
    from dsa110_contimg.service.status import format_status

    tty = sys.stdout.isatty()
    rc = common.EXIT_OK
    if tty:
        sys.stdout.write("\x1b[H\x1b[2J")   # clear once; later refreshes overwrite in place
    try:
        while True:
            try:
                st, rc = snapshot(args)
                text = json.dumps(st) if args.json else format_status(st)
            except common.NoDatabase as exc:
                text, rc = common.error_line("status", exc), common.EXIT_NO_DB
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            header = f"every {args.interval:g} s, {stamp} (Ctrl-C to stop)"
            if tty:
                sys.stdout.write("\x1b[H" + header + "\x1b[K\n" +
                                 "\n".join(line + "\x1b[K" for line in text.splitlines()) + "\n\x1b[J")
            else:
                sys.stdout.write(("" if args.json else header + "\n") + text + "\n\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return rc
