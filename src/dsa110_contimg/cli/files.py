"""``contimg-photometry files list``: the files the daemon skipped or is waiting on, and why.

The daemon records each version of every file it sees in the ``files`` table: queued
(a job exists: see ``jobs list``), skipped (a residual, a PSF, a FIFO, a symlink
leaving the watched folders, ...) or waiting (not complete yet, or a restored image
waiting for its primary-beam-corrected sibling). This lists the skipped and waiting
ones, most recently decided first, with the reason. Read-only.
"""

from __future__ import annotations

import json

#: How a ``files.decision`` is named to an operator.
SHOWN_AS = {"skipped": "skipped", "incomplete": "waiting", "queued": "queued"}


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("files", help="files the daemon skipped or is waiting on, with the reasons",
                       description="List the files the daemon did not queue: skipped (with why: "
                                   "residual, PSF, FIFO, symlink leaving the watched folders, "
                                   "superseded by a PB-corrected sibling, ...) and waiting (still "
                                   "being written, or waiting for a PB-corrected sibling). Read-only.")
    fsub = p.add_subparsers(dest="files_command", metavar="ACTION", required=True)
    lp = fsub.add_parser("list", help="skipped and waiting files, most recent first, with the reasons")
    which = lp.add_mutually_exclusive_group()
    which.add_argument("--skipped", action="store_true", help="only the skipped files")
    which.add_argument("--waiting", action="store_true", help="only the files being waited on")
    lp.add_argument("--limit", type=common.non_negative_int, default=50, metavar="N",
                    help="at most N files (default 50; 0 lists every one)")
    lp.add_argument("--json", action="store_true", help="one JSON object: files, count")
    common.add_db_options(lp, registry=False)
    lp.set_defaults(func=run)


def run(args) -> int:
    from dsa110_contimg.cli import common
    from dsa110_contimg.core.paths import printable
    from dsa110_contimg.service.status import iso
    from dsa110_contimg.store.files import list_files

    decisions = ("skipped",) if args.skipped else ("incomplete",) if args.waiting else \
        ("skipped", "incomplete")
    db = common.open_products(args)
    try:
        rows = list_files(db, decisions=decisions, limit=args.limit)
    finally:
        db.dispose()
    out = [{"path": r["path"], "state": SHOWN_AS[r["decision"]], "reason": r["reason"],
            "kind": r["kind"], "size": r["size"], "first_seen": iso(r["first_seen"]),
            "decided_at": iso(r["updated_at"])} for r in rows]
    if args.json:
        print(json.dumps({"files": out, "count": len(out)}, indent=2))
        return common.EXIT_OK
    if not out:
        print("no skipped or waiting files" if len(decisions) == 2 else f"no {SHOWN_AS[decisions[0]]} files")
        return common.EXIT_OK
    print(f"{'state':<8} {'decided (UTC)':<19}  path / reason")
    for r in out:
        when = (r["decided_at"] or "-").replace("T", " ").split("+")[0]
        print(f"{r['state']:<8} {when:<19}  {printable(r['path'])}  [{r['reason'] or 'no reason recorded'}]")
    return common.EXIT_OK
