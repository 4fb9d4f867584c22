"""``contimg-photometry worker``: run pending batch jobs from the products database."""

from __future__ import annotations

import signal
import time

from dsa110_contimg.cli import common


def register(sub) -> None:
    p = sub.add_parser("worker", help="claim and run pending batch jobs",
                       description="Claim pending photometry batch jobs from the products database "
                                   "and run them in this process. With --once, exit 0 when none is "
                                   "due; otherwise poll until SIGTERM/SIGINT.")
    common.add_db_options(p)
    p.add_argument("--catalog-dir", default=None, help="catalogue directory when a job's config names none")
    p.add_argument("--once", action="store_true", help="run until no job is due, then exit 0")
    p.add_argument("--poll-interval", type=float, default=5.0, metavar="S", help="seconds between polls")
    p.set_defaults(func=run)


def run(args) -> int:
    from dsa110_contimg.service.runtime import run_claimed
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.queue import JobQueue

    products = common.products_db(args)
    registry = common.registry_db(args)
    catalogs = str(common.catalog_dir(args))
    queue = JobQueue(common.creating(open_products_db, products))
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    ran = 0
    while not stopping:
        queue.reap_expired()
        job = queue.claim()
        if job is None:
            if args.once:
                break
            time.sleep(args.poll_interval)
            continue
        state = run_claimed(queue, job, products, registry, catalogs)
        ran += 1
        print(f"job {job.id}: {state}")
    print(f"worker: ran {ran} job(s)")
    return 0
