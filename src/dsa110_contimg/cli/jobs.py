"""``contimg-photometry jobs list|show|retry|requeue|cancel|ack``: inspect and steer the job queue.

* ``list``: most recent first, one line per job: id, state, attempts, created and
  finished times (UTC), the image path and the reason of a failure; ``--limit 0``
  lists every job; ``--json`` carries ``paths`` (every item's image) and ``error``.
* ``show``: one job and its items, readable (or ``--json``).
* ``retry``: a failed, dead or cancelled job back to pending with fresh attempts
  (its finished items are kept). A done job is not retried: the command says so and
  points at ``requeue``.
* ``requeue``: re-measure a finished job (done, failed, dead or cancelled): every item
  back to pending; the new measurements replace the earlier ones of the same image.
* ``cancel``: a pending job is cancelled, a running one stops between images.
* ``ack``: acknowledge a failed or dead job (or ``--all`` of them): it stays listed and
  can still be retried, but no longer makes ``status`` degraded.

What was done goes to stdout; a job that does not exist or is in the wrong state is a
one-line error on stderr. Exit codes: 0 ok; 1 the job does not exist or is in the wrong
state; 2 usage; 4 the database is missing (:mod:`dsa110_contimg.cli.common`).
"""

from __future__ import annotations

import json
import sys

from dsa110_contimg.cli import common


def register(sub) -> None:
    p = sub.add_parser("jobs", help="list, show, retry, requeue, cancel or acknowledge queued jobs",
                       description="Inspect the durable job queue in the products database. "
                                   "list/show are read-only; retry puts a failed, dead or cancelled "
                                   "job back to pending with fresh attempts; requeue re-measures a "
                                   "finished (e.g. done) job; cancel cancels a pending job (a running "
                                   "one stops between images); ack acknowledges failed or dead jobs "
                                   "so that status is no longer degraded by them. Exit 1 when the job "
                                   "does not exist or is in the wrong state (one line on stderr), 4 "
                                   "when the database is missing.")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    lp = jsub.add_parser("list", help="most recent jobs first: path, state, attempts, times, reason")
    from dsa110_contimg.store.schema import JOB_STATES

    lp.add_argument("--state", default=None, choices=JOB_STATES,
                    help="only jobs in this state")
    lp.add_argument("--limit", type=common.non_negative_int, default=50, metavar="N",
                    help="at most N jobs (default 50; 0 lists every job)")
    sp = jsub.add_parser("show", help="one job with its items")
    sp.add_argument("job_id", type=int, metavar="JOB_ID", help="job id (from `jobs list`)")
    rp = jsub.add_parser("retry", help="retry a failed/dead/cancelled job (or --all-dead)")
    rp.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID", help="job id (from `jobs list`)")
    rp.add_argument("--all-dead", action="store_true", help="retry every dead job")
    qp = jsub.add_parser("requeue", help="measure a finished (done/failed/dead/cancelled) job again",
                         description="Put a finished job back to pending with every item pending and "
                                     "fresh attempts; the daemon or `worker` measures its images again "
                                     "and the new measurements replace the earlier ones.")
    qp.add_argument("job_id", type=int, metavar="JOB_ID", help="job id (from `jobs list`)")
    cp = jsub.add_parser("cancel", help="cancel a pending or running job")
    cp.add_argument("job_id", type=int, metavar="JOB_ID", help="job id (from `jobs list`)")
    ap = jsub.add_parser("ack", help="acknowledge a failed/dead job (or --all): `status` is no "
                                     "longer degraded by it",
                         description="Acknowledge failed or dead jobs an operator has looked at. "
                                     "They stay listed (`jobs list --state failed`) and can still be "
                                     "retried, but no longer make `status` degraded (exit 1). A job "
                                     "that fails again after a retry needs a new acknowledgement.")
    ap.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID", help="job id (from `jobs list`)")
    ap.add_argument("--all", action="store_true", help="every failed or dead job not yet acknowledged")
    for q in (lp, sp, rp, qp, cp, ap):
        common.add_db_options(q, registry=False)
        q.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    p.set_defaults(func=run)


def _row(job: dict) -> dict:
    from dsa110_contimg.service.status import iso

    out = {k: job[k] for k in ("id", "status", "origin", "attempts", "max_attempts", "error",
                               "lease_owner", "total_items", "completed_items", "failed_items")}
    for k in ("created_at", "updated_at", "started_at", "finished_at", "not_before", "lease_until",
              "acknowledged_at"):
        out[k] = iso(job[k]) if job.get(k) else None
    out["idempotency_key"] = job["idempotency_key"]
    if "paths" in job:
        out["paths"] = job["paths"]
    return out


def _short_time(iso_text: str | None) -> str:
    """``2026-11-30T12:01:02+00:00`` -> ``2026-11-30 12:01:02``; ``-`` for None."""
    return "-" if not iso_text else iso_text.replace("T", " ").split("+")[0]


def format_list(rows: list[dict]) -> list[str]:
    """The readable ``jobs list`` table."""
    if not rows:
        return ["no jobs"]
    lines = [f"{'id':>6}  {'state':<9} {'tries':>5}  {'created (UTC)':<19}  {'finished (UTC)':<19}  "
             "path / reason"]
    for r in rows:
        paths = r.get("paths") or []
        path = paths[0] if paths else "-"
        if len(paths) > 1:
            path += f" (+{len(paths) - 1} more)"
        reason = f"  [{' '.join(str(r['error']).split())}]" if r.get("error") else ""
        if r.get("acknowledged_at"):
            reason += " (acknowledged)"
        lines.append(f"{r['id']:>6}  {r['status']:<9} {r['attempts']:>2}/{r['max_attempts']:<2}  "
                     f"{_short_time(r['created_at']):<19}  {_short_time(r['finished_at']):<19}  "
                     f"{path}{reason}")
    return lines


def format_show(out: dict) -> list[str]:
    """The readable ``jobs show`` text: the job's fields, then one block per item."""
    lines = []
    for k in ("id", "status", "origin", "attempts", "max_attempts", "total_items", "completed_items",
              "failed_items", "created_at", "started_at", "finished_at", "updated_at", "not_before",
              "lease_owner", "lease_until", "error", "acknowledged_at", "idempotency_key"):
        v = out.get(k)
        if v is None and k not in ("error",):
            continue
        lines.append(f"{k + ':':<17}{'-' if v is None else v}")
    lines.append(f"items ({len(out['items'])}):")
    for i in out["items"]:
        lines.append(f"  #{i['id']} {i['status']:<8} {i['kind']:<7} {i['fits_path']}")
        extra = []
        if i.get("image_id") is not None:
            extra.append(f"image id {i['image_id']}")
        if i.get("n_measurements") is not None:
            extra.append(f"{i['n_measurements']} measurements")
        if extra:
            lines.append("      " + ", ".join(extra))
        if i.get("error"):
            lines.append(f"      error: {' '.join(str(i['error']).split())}")
        o = i.get("outcome")
        if o:
            norm = o["norm_status"] + (f" ({o['norm_reason']})" if o.get("norm_reason") else "")
            lines.append(f"      outcome: QC {o['qc_status']}, normalisation {norm}, method {o['method']}"
                         f"; see `{o['see']}`")
    return lines


def run(args) -> int:
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store.job_queries import list_jobs
    from dsa110_contimg.store.queue import JobQueue

    cmd = args.jobs_command
    if cmd == "retry" and (args.job_id is None) == (not args.all_dead):
        raise common.UsageError("give a JOB_ID or --all-dead")
    if cmd == "ack" and (args.job_id is None) == (not args.all):
        raise common.UsageError("give a JOB_ID or --all")
    db = common.open_products(args, write=cmd in ("retry", "requeue", "cancel", "ack"))
    try:
        queue = JobQueue(db)
        if cmd == "list":
            rows = [_row(j) for j in list_jobs(db, state=args.state, limit=args.limit)]
            if args.json:
                print(json.dumps({"jobs": rows, "count": len(rows)}, indent=2))
            else:
                print("\n".join(format_list(rows)))
            return common.EXIT_OK
        job = None
        if getattr(args, "job_id", None) is not None:
            job = queue.get(args.job_id)
            if job is None:
                raise PhotometryError(f"no job {args.job_id} (see `contimg-photometry jobs list`)")
        if cmd == "show":
            return _show(args, db, job)
        if cmd == "retry":
            return _retry(args, queue, db, job)
        if cmd == "ack":
            return _ack(args, queue, job)
        if cmd == "requeue":
            if not queue.requeue(args.job_id):
                raise PhotometryError(f"job {args.job_id} is {job['status']}: only a finished job "
                                      "(done, failed, dead, cancelled) can be requeued")
            return _report(args, {"requeued": [args.job_id]},
                           [f"job {args.job_id}: requeued; its {len(job['items'])} image(s) will be "
                            "measured again"])
        if cmd == "cancel":
            if not queue.cancel(args.job_id):
                raise PhotometryError(f"job {args.job_id} is {job['status']}: only a pending or "
                                      "running job can be cancelled")
            return _report(args, {"cancelled": True, "id": args.job_id},
                           [f"job {args.job_id}: cancelled (or cancel requested)"])
    finally:
        db.dispose()
    return common.EXIT_USAGE


def _report(args, doc: dict, messages: list[str], errors: list[str] = ()) -> int:
    """What was done on stdout (one JSON object with ``--json``), each refusal as one
    ``error:`` line on stderr; exit 1 when anything was refused."""
    if args.json:
        print(json.dumps({**doc, "messages": messages, "errors": list(errors)}))
    elif messages:
        print("\n".join(messages))
    for e in errors:
        print(f"contimg-photometry jobs: error: {e}", file=sys.stderr)
    return common.EXIT_FAILURE if errors else common.EXIT_OK


def _show(args, db, job: dict) -> int:
    from dsa110_contimg.store.images import image_outcome

    out = _row(job)
    out["params"] = job["params"]
    out["items"] = [{k: i[k] for k in ("id", "fits_path", "kind", "status", "error", "image_id",
                                       "n_measurements")} for i in job["items"]]
    out["paths"] = [i["fits_path"] for i in out["items"]]
    with db.engine.connect() as conn:   # each item's image outcome (images show ID)
        for item in out["items"]:
            item["outcome"] = image_outcome(conn, item["image_id"], item["fits_path"])
    print(json.dumps(out, indent=2) if args.json else "\n".join(format_show(out)))
    return common.EXIT_OK


def _retry(args, queue, db, job: dict | None) -> int:
    from dsa110_contimg.store.job_queries import list_jobs

    if args.all_dead:
        states = {j["id"]: "dead" for j in list_jobs(db, state="dead", limit=0)}
    else:
        states = {args.job_id: job["status"]}
    done = [i for i in states if queue.retry(i)]
    messages = [f"job {i}: retried (pending again with fresh attempts)" for i in done]
    errors = []
    for i, state in states.items():
        if i in done:
            continue
        if state == "done":
            errors.append(f"job {i} is done: nothing to retry; to measure its images again use "
                          f"`contimg-photometry jobs requeue {i}`")
        else:
            errors.append(f"job {i} is {state}: only a failed, dead or cancelled job can be retried")
    if args.all_dead and not states:
        messages.append("no dead jobs to retry")
    return _report(args, {"retried": done}, messages, errors)


def _ack(args, queue, job: dict | None) -> int:
    from dsa110_contimg.store.job_actions import ACKNOWLEDGEABLE

    acked = queue.ack(None if args.all else args.job_id)
    if args.all:
        messages = [f"acknowledged {len(acked)} failed or dead job(s)"
                    + (f": {', '.join(map(str, acked))}" if acked else "")]
        return _report(args, {"acknowledged": acked}, messages)
    if acked:
        return _report(args, {"acknowledged": acked},
                       [f"job {args.job_id} ({job['status']}): acknowledged; `status` no longer "
                        "counts it (it stays listed and can still be retried)"])
    if job["status"] in ACKNOWLEDGEABLE:
        return _report(args, {"acknowledged": []},
                       [f"job {args.job_id} was acknowledged already"])
    return _report(args, {"acknowledged": []}, [],
                   [f"job {args.job_id} is {job['status']}: only a failed or dead job can be "
                    "acknowledged"])
