"""``contimg-photometry jobs list|show|retry|cancel``: inspect and steer the job queue."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("jobs", help="list, show, retry or cancel queued jobs",
                       description="Inspect the durable job queue in the products database. "
                                   "list/show are read-only; retry puts a failed, dead or cancelled "
                                   "job back to pending with fresh attempts; cancel cancels a pending "
                                   "job (a running one stops between images). Exit 1 when the job "
                                   "does not exist or is in the wrong state, 4 when the database is "
                                   "missing.")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    lp = jsub.add_parser("list", help="most recent jobs first")
    lp.add_argument("--state", default=None, help="only jobs in this state")
    lp.add_argument("--limit", type=int, default=50)
    sp = jsub.add_parser("show", help="one job with its items")
    sp.add_argument("job_id", type=int)
    rp = jsub.add_parser("retry", help="retry a failed/dead/cancelled job (or --all-dead)")
    rp.add_argument("job_id", type=int, nargs="?")
    rp.add_argument("--all-dead", action="store_true", help="retry every dead job")
    cp = jsub.add_parser("cancel", help="cancel a pending or running job")
    cp.add_argument("job_id", type=int)
    for q in (lp, sp, rp, cp):
        common.add_db_options(q, registry=False)
        q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _open(args, *, write: bool):
    from pathlib import Path

    from dsa110_contimg.cli import common
    from dsa110_contimg.photometry.errors import StoreError
    from dsa110_contimg.store.engine import open_products_db

    path = common.products_db(args)
    if "://" not in path and not Path(path).exists():
        raise StoreError("products database does not exist", path)
    return open_products_db(path, read_only=not write, migrate=False)


def _row(job: dict) -> dict:
    from dsa110_contimg.service.status import iso

    out = {k: job[k] for k in ("id", "status", "origin", "attempts", "max_attempts", "error",
                               "lease_owner", "total_items", "completed_items", "failed_items")}
    for k in ("created_at", "updated_at", "started_at", "finished_at", "not_before", "lease_until"):
        out[k] = iso(job[k]) if job.get(k) else None
    out["idempotency_key"] = job["idempotency_key"]
    return out


def run(args) -> int:
    from dsa110_contimg.photometry.errors import StoreError
    from dsa110_contimg.store.queue import JobQueue

    try:
        db = _open(args, write=args.jobs_command in ("retry", "cancel"))
    except StoreError as exc:
        print(f"contimg-photometry jobs: error: {exc}", file=sys.stderr)
        return 4
    try:
        queue = JobQueue(db)
        cmd = args.jobs_command
        if cmd == "list":
            rows = [_row(j) for j in queue.list(state=args.state, limit=args.limit)]
            if args.json:
                print(json.dumps({"jobs": rows}, indent=2))
            else:
                for r in rows:
                    print(f"#{r['id']:<6} {r['status']:<9} attempts {r['attempts']}/{r['max_attempts']}  "
                          f"{r['idempotency_key'] or ''}  {r['error'] or ''}")
            return 0
        if cmd == "show":
            job = queue.get(args.job_id)
            if job is None:
                print(f"contimg-photometry jobs: error: no job {args.job_id}", file=sys.stderr)
                return 1
            out = _row(job)
            out["params"] = job["params"]
            out["items"] = [{k: i[k] for k in ("id", "fits_path", "kind", "status", "error", "image_id",
                                               "n_measurements")} for i in job["items"]]
            from dsa110_contimg.store.images import image_outcome

            with db.engine.connect() as conn:   # each item's image outcome (images show ID)
                for item in out["items"]:
                    item["outcome"] = image_outcome(conn, item["image_id"], item["fits_path"])
            print(json.dumps(out, indent=2) if args.json else
                  "\n".join(f"{k}: {v}" for k, v in out.items() if k != "params"))
            return 0
        if cmd == "retry":
            if args.all_dead:
                ids = [j["id"] for j in queue.list(state="dead", limit=1_000_000)]
            elif args.job_id is not None:
                ids = [args.job_id]
            else:
                print("contimg-photometry jobs retry: error: give a JOB_ID or --all-dead", file=sys.stderr)
                return 2
            done = [i for i in ids if queue.retry(i)]
            print(json.dumps({"retried": done}) if args.json else f"retried {len(done)} job(s): {done}")
            return 0 if len(done) == len(ids) else 1
        if cmd == "cancel":
            ok = queue.cancel(args.job_id)
            print(json.dumps({"cancelled": ok, "id": args.job_id}) if args.json else
                  (f"job {args.job_id}: cancelled (or cancel requested)" if ok
                   else f"job {args.job_id}: not pending or running"))
            return 0 if ok else 1
    finally:
        db.dispose()
    return 2
