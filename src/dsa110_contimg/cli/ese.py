"""``contimg-photometry ese``: list ESE candidates and move them through their lifecycle."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dsa110_contimg.cli import common
from dsa110_contimg.store.schema import ESE_STATES


def register(sub) -> None:
    p = sub.add_parser("ese", help="extreme scattering event candidates")
    esub = p.add_subparsers(dest="ese_command", metavar="ACTION", required=True)
    ls = esub.add_parser("list", help="list candidates by stage (confirmed, recovering, dip in progress, "
                                      "threshold-only, retired), then highest score")
    common.add_db_options(ls, registry=False)
    ls.add_argument("--status", choices=ESE_STATES, help="only candidates in this state")
    ls.add_argument("--min-score", type=float, default=None, metavar="X", help="composite score >= X (0-10)")
    ls.add_argument("--all", action="store_true",
                    help="include sources whose latest evaluation met no criterion")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.add_argument("-o", "--output", metavar="OUT", type=Path, default=None,
                    help="write the list with each candidate's review state (.csv .ecsv .vot .fits), "
                         "the file the web site's /candidates.{csv,vot} downloads are")
    ls.set_defaults(func=list_candidates)
    sh = esub.add_parser("show", help="one candidate: its stage, the stage history and the fit")
    common.add_db_options(sh, registry=False)
    sh.add_argument("candidate_id", type=int, metavar="ID", help="candidate id (from `ese list`)")
    sh.add_argument("--json", action="store_true", help="JSON output")
    sh.set_defaults(func=show_candidate)
    for action, status in (("investigate", "investigated"), ("dismiss", "dismissed"), ("reactivate", "active")):
        a = esub.add_parser(action, help=f"mark a candidate {status}")
        common.add_db_options(a, registry=False)
        a.add_argument("candidate_id", type=int, metavar="ID", help="candidate id (from `ese list`)")
        a.add_argument("--note", help="free-text note stored with the candidate")
        a.add_argument("--reviewer", default=None,
                       help="who reviews (recorded in the candidate's review log; default: your user name)")
        a.set_defaults(func=set_status, status=status)


def list_candidates(args) -> int:
    from dsa110_contimg.store.review import candidates_json

    db = common.open_products(args)
    with db.engine.connect() as conn:
        doc = candidates_json(conn, status=args.status, min_score=args.min_score, include_all=args.all)
    rows = doc["candidates"]
    if args.output is not None:
        from dsa110_contimg.pipeline.export import candidates_table
        from dsa110_contimg.store.review_log import latest

        with db.engine.connect() as conn:
            reviews = latest(conn, [r["id"] for r in rows])
        common.write_table(candidates_table(rows, reviews), args.output)
        print(f"{len(rows)} ESE candidates -> {args.output}", file=sys.stderr)
        return 0
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no ESE candidates" + (f" with status {args.status}" if args.status else ""))
        return 0
    head = f"{'id':>4} {'source':<26} {'status':<12} {'stage':<16} {'score':>5} {'conf':<6} {'criteria':<20} " \
           f"{'sigma':>6} {'depth':>6} {'days':>5} {'t_min':>9} {'max_dev':>7} {'chi2nu':>7} {'eta':>7} " \
           f"{'n':>4}"
    print(head)
    for r in rows:
        print(f"{r['id']:>4} {r['catalog_id']:<26} {r['status']:<12} {r.get('stage') or '-':<16} "
              f"{r['score'] or 0:5.1f} "
              f"{r['confidence']:<6} {','.join(r['criteria']):<20} {_fmt(r['sigma'], 6, '.1f')} "
              f"{_fmt(r['depth'], 6, '.0%')} {_fmt(r['duration_days'], 5, '.0f')} "
              f"{_fmt(r['t_min_mjd'], 9, '.1f')} {_fmt(r['max_deviation'])} {_fmt(r['chi2_nu'])} "
              f"{_fmt(r['eta'])} {r['n_epochs'] or 0:>4}")
    return 0


def show_candidate(args) -> int:
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store.ese_stages import stage_history
    from dsa110_contimg.store.review import candidate
    from dsa110_contimg.store.values import clean, with_iso_times

    db = common.open_products(args)
    with db.engine.connect() as conn:
        cand = candidate(conn, args.candidate_id)
        if cand is None:
            raise PhotometryError(f"no ESE candidate with id {args.candidate_id}")
        history = [with_iso_times(clean(h)) for h in stage_history(conn, args.candidate_id)]
    if args.json:
        json.dump({"candidate": cand, "stage_history": history}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"candidate {cand['id']}: {cand['catalog_id']} ({cand['ra_deg']:.5f}, {cand['dec_deg']:+.5f} deg), "
          f"status {cand['status']}")
    print(f"stage: {cand.get('stage') or 'none (flagged by thresholds only)'}"
          + (f" -- {cand['stage_reason']}" if cand.get("stage_reason") else ""))
    print(f"score {cand['score'] or 0:.2f} ({cand['confidence']}), criteria "
          f"{', '.join(cand['criteria']) or 'none'}, {cand['n_epochs'] or 0} epochs")
    print(f"fit: depth {_fmt(cand['depth'], 0, '.0%').strip()}, duration "
          f"{_fmt(cand['duration_days'], 0, '.0f').strip()} d, epoch of minimum MJD "
          f"{_fmt(cand['t_min_mjd'], 0, '.2f').strip()}, template significance "
          f"{_fmt(cand.get('sigma', cand.get('shape_significance')), 0, '.1f').strip()} sigma")
    print("stage history:" if history else "stage history: none")
    for h in history:
        print(f"  {h['created_at_iso']}  {h['previous_stage'] or '-'} -> {h['stage'] or '-'}"
              f"  data to MJD {_fmt(h['mjd'], 0, '.2f').strip()}, {_fmt(h['significance'], 0, '.1f').strip()} sigma"
              + (f"  ({h['reason']})" if h.get("reason") else ""))
    return 0


def _fmt(v, width=7, spec=".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def set_status(args) -> int:
    import getpass

    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store.review_log import review

    reviewer = args.reviewer or getpass.getuser()
    db = common.open_products(args, write=True, migrate=True)
    with db.engine.begin() as conn:
        if not review(conn, args.candidate_id, args.status, reviewer=reviewer, note=args.note):
            raise PhotometryError(f"no ESE candidate with id {args.candidate_id}")
    print(f"candidate {args.candidate_id}: {args.status} (by {reviewer})")
    return 0
