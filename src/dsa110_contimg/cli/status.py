"""``contimg-photometry status``: daemon liveness, queue and results (read-only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EPILOG = ("exit codes: 0 healthy; 1 degraded (failed or dead jobs not acknowledged, stale "
          "heartbeat, the daemon's own health check) or failure; 2 usage; 3 daemon not running "
          "or not started yet (no database yet); 4 database unreadable")


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("status", help="daemon and queue status (exit 0 ok, 1 degraded, 3 not running "
                                      "or not started, 4 database unreadable)",
                       description="Show whether the daemon runs (heartbeat age), its workers, job "
                                   "counts by state (all time), the oldest pending job, what was done "
                                   "and failed in the last hour, the failures no operator acknowledged "
                                   "and the ESE candidate count. One verdict (JSON: health) decides "
                                   "the exit code. Reads the products database read-only.",
                       epilog=EPILOG)
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
    from dsa110_contimg.store.migrate import schema_state
    from dsa110_contimg.store.urls import mask_url

    cfg = common.service_config(args)
    stale = cfg.daemon.stale_after_s if cfg is not None else 60.0
    photometry = cfg.photometry if cfg is not None else None
    where = common.products_db(args)
    if _before_first_run(where):
        from dsa110_contimg.service.status import not_started_status

        st = not_started_status(where, photometry=photometry)
        return st, status_exit_code(st)
    db = common.open_products(args)
    try:
        try:
            state_dir = cfg.paths.state_dir if cfg is not None else \
                (None if "://" in where else Path(where).parent)
            current, head = schema_state(db.engine, "products")
            if current is None:   # a server database no daemon has migrated yet
                from dsa110_contimg.service.status import not_started_status

                st = not_started_status(mask_url(where), photometry=photometry)
            elif current != head:
                raise common.NoDatabase(
                    f"the products database schema is at revision {current}, this release reads "
                    f"{head}: run `contimg-photometry db upgrade` (the daemon of this release "
                    "also upgrades it when it starts)", mask_url(where))
            else:
                st = collect_status(db, stale_after_s=stale, state_dir=state_dir,
                                    photometry=photometry)
        except common.NoDatabase:
            raise
        except Exception as exc:  # noqa: BLE001 - not a database, no schema
            raise common.NoDatabase(f"cannot read the products database: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}", mask_url(where)) from None
    finally:
        db.dispose()
    return st, status_exit_code(st)


def _before_first_run(where: str) -> bool:
    """An SQLite products database that does not exist yet in an existing folder (as
    ``init`` leaves it): the daemon creates it on its first run. A missing folder is a
    wrong path instead (exit 4)."""
    if "://" in where:
        return False
    path = Path(where).expanduser()
    return not path.exists() and path.parent.is_dir()


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
    separate the snapshots with a blank line. SIGINT (Ctrl-C) and SIGTERM stop it after
    the snapshot in progress; the exit code is the last snapshot's."""
    import signal
    import threading
    import time

    from dsa110_contimg.cli import common
    from dsa110_contimg.service.status import format_status

    stop = threading.Event()
    # a flag, not KeyboardInterrupt: an interrupt raised inside a library's cleanup code
    # would be swallowed there and the loop would never end
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tty = sys.stdout.isatty()
    rc = common.EXIT_OK
    if tty:
        sys.stdout.write("\x1b[H\x1b[2J")   # clear once; later refreshes overwrite in place
    while not stop.is_set():
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
        stop.wait(args.interval)
    return rc
