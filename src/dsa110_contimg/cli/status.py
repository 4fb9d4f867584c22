"""``contimg-photometry status``: daemon liveness, queue and results (read-only)."""

from __future__ import annotations

import json
from pathlib import Path

EPILOG = ("exit codes: 0 healthy; 1 degraded (failed or dead jobs, stale heartbeat); "
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
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from dsa110_contimg.cli import common
    from dsa110_contimg.photometry.errors import StoreError
    from dsa110_contimg.service.status import (
        EXIT_NO_DB, collect_status, format_status, status_exit_code,
    )
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.urls import error_line, mask_url

    cfg = common.service_config(args)
    stale = cfg.daemon.stale_after_s if cfg is not None else 60.0
    path = common.products_db(args)
    try:
        if "://" not in path and not Path(path).exists():
            raise StoreError("products database does not exist", path)
        db = open_products_db(path, read_only=True)
        try:
            st = collect_status(db, stale_after_s=stale)
        finally:
            db.dispose()
    except StoreError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "daemon": {"running": False}}))
        print(f"contimg-photometry status: error: {exc}", file=sys.stderr)
        return EXIT_NO_DB
    except Exception as exc:  # noqa: BLE001 - unreadable database (not a DB, no schema)
        print(f"contimg-photometry status: error: cannot read {mask_url(path)}: "
              f"{error_line(exc, path)}", file=sys.stderr)
        return EXIT_NO_DB
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return status_exit_code(st)
