"""``contimg-photometry sources``: catalogue, monitor and blindly found sources.

``sources list [--new | --monitor | --variable] [--name TEXT] [--near 'RA DEC' [--radius R]] [--sort KEY]
[--min-epochs N] [--json]`` lists them (new sources by significance; the search of the web
site's ``/sources``; ``--variable``: the variables of each field, the list of the web
site's ``/variables``);
``sources show ID [--json]`` one source with its associations (every blind detection that
fed it or was a duplicate of it); ``sources backfill ID | --monitor`` measures positions in
the earlier images that cover them (a batch job through the queue). Filters of ``list``
are fields of :class:`dsa110_contimg.store.sources.SourceQuery`.
"""

from __future__ import annotations

import json
import math
import sys

from dsa110_contimg.cli import common
from dsa110_contimg.store.sources import ORDERS

#: ``sources list`` filter options -> (kinds, order)
KIND_FILTERS = {"new": (("new",), "significance"), "monitor": (("monitor",), "name")}


def register(sub) -> None:
    p = sub.add_parser("sources", help="sources: catalogue, monitor list and found by blind detection")
    ssub = p.add_subparsers(dest="sources_command", metavar="ACTION", required=True)
    ls = ssub.add_parser("list", help="list sources (id order; --new: by new_high_sigma)")
    common.add_db_options(ls, registry=False)
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--new", action="store_true", help="only new sources (found by blind "
                       "detection where earlier images were deep enough to see them)")
    which.add_argument("--monitor", action="store_true", help="only monitor-list positions")
    which.add_argument("--variable", action="store_true",
                       help="variable sources per field: the eta-V selection (Rowlinson et al. 2019) or "
                            "the two-epoch |Vs|/|m| criterion (Mooley et al. 2016), thresholds from "
                            "[photometry] variable_*; with eta, V, Vs, m, epochs and why each was selected")
    ls.add_argument("--name", metavar="TEXT", help="designation starting with TEXT (any case; a bare "
                    "'J...' under any survey prefix)")
    ls.add_argument("--near", metavar="'RA DEC'", help="within --radius of a position: degrees "
                    "('149.48 +36.57'), sexagesimal ('09:57:55.1 +36:34:15.6', RA in hours) or with units "
                    "('09h57m55.1s +36d34m15.6s')")
    ls.add_argument("--radius", metavar="R", default="30 arcsec",
                    help="radius of --near: a number with arcsec (default unit), arcmin or deg, e.g. 10\" "
                         "1.5' 0.1deg (default 30 arcsec, at most 2 deg)")
    ls.add_argument("--sort", choices=tuple(ORDERS), default=None,
                    help="order: eta, v, flux (weighted mean), epochs (highest first; sources without "
                         "the metric left out), name, id, significance (new sources), distance (--near; "
                         "its default)")
    ls.add_argument("--min-epochs", type=int, default=None, metavar="N", help="at least N measurements")
    ls.add_argument("--limit", type=int, default=100, metavar="N", help="at most N rows (0: all)")
    ls.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N rows")
    ls.add_argument("--json", action="store_true", help="JSON output (a list of objects)")
    ls.set_defaults(func=list_sources)
    sh = ssub.add_parser("show", help="one source and its associations")
    common.add_db_options(sh, registry=False)
    sh.add_argument("source_id", type=int, metavar="ID", help="source id (from `sources list`)")
    sh.add_argument("--json", action="store_true", help="JSON output")
    sh.set_defaults(func=show_source)
    bf = ssub.add_parser("backfill", help="measure sources in the stored images that cover them "
                         "(a batch job through the queue; the daemon or `worker` runs it)")
    common.add_db_options(bf, registry=False)
    bf.add_argument("--catalog-dir", default=None, metavar="DIR",
                    help="catalogue directory holding the monitor list (default: from the "
                         "configuration, else $CONTIMG_CATALOG_DIR, else ./catalogs)")
    target = bf.add_mutually_exclusive_group(required=True)
    target.add_argument("source_id", type=int, nargs="?", metavar="ID", help="source id")
    target.add_argument("--monitor", action="store_true",
                        help="every position of the monitor list (`catalog ingest monitor`), "
                             "measured before or not")
    bf.set_defaults(func=backfill_sources)


def query_from_args(args):
    """The :class:`~dsa110_contimg.store.sources.SourceQuery` of ``sources list`` options (the
    query the web site's ``/sources`` runs). Raises UsageError for a position, radius or
    combination it cannot use."""
    from dsa110_contimg.catalogs.positions import parse_position, parse_radius
    from dsa110_contimg.store.sources import SourceQuery

    kinds, order = (), "id"
    for flag, (k, o) in KIND_FILTERS.items():
        if getattr(args, flag, False):
            kinds, order = k, o
    fields = {}
    try:
        if getattr(args, "near", None):
            fields["ra_deg"], fields["dec_deg"] = parse_position(args.near)
            fields["radius_deg"] = parse_radius(args.radius)
            order = "distance"
        return SourceQuery(kinds=kinds, order=getattr(args, "sort", None) or order,
                           limit=None if args.limit == 0 else args.limit, offset=args.offset,
                           name=getattr(args, "name", None), min_epochs=getattr(args, "min_epochs", None),
                           **fields)
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None


def list_variables(args) -> int:
    """``sources list --variable``: the variables of every field (docs/science.md §10.1)."""
    from dsa110_contimg.store.variables import field_variables

    cfg = common.service_config(args)
    db = common.open_products(args)
    with db.engine.connect() as conn:
        rows = field_variables(conn, cfg.photometry if cfg is not None else None)
    if args.limit:
        rows = rows[args.offset:args.offset + args.limit]
    if _printed_json_or_nothing(rows, args.json, "no variable sources"):
        return 0
    print(f"{'id':>6} {'name':<30} {'field':<14} {'n':>4} {'eta':>8} {'V':>7} {'|Vs|':>7} {'m':>7}  why")
    for r in rows:
        print(f"{r['source_id']:>6} {r['catalog_id']:<30} {r['field']:<14} {r['n_epochs']:>4} "
              f"{_fmt(r['eta'], 8, '.3g')} {_fmt(r['v'], 7, '.3f')} {_fmt(r['vs'], 7, '.1f')} "
              f"{_fmt(r['m'], 7, '+.2f')}  {r['reason']}")
    return 0


def _printed_json_or_nothing(rows: list, as_json: bool, empty: str) -> bool:
    """Print ``rows`` as JSON, or ``empty`` when there are none; False when a table is due."""
    if as_json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return True
    if not rows:
        print(empty)
        return True
    return False


def list_sources(args) -> int:
    from dsa110_contimg.store.sources import list_sources as query

    if getattr(args, "variable", False):
        return list_variables(args)
    db = common.open_products(args)
    with db.engine.connect() as conn:
        rows = query(conn, query_from_args(args))
    if _printed_json_or_nothing(rows, args.json, "no sources"):
        return 0
    print(f"{'id':>6} {'name':<30} {'kind':<9} {'ra_deg':>10} {'dec_deg':>10} {'first_mjd':>10} "
          f"{'new_sigma':>9} {'n_det':>5} {'n_meas':>6}")
    for r in rows:
        print(f"{r['id']:>6} {r['name']:<30} {r['kind']:<9} {r['ra_deg']:10.5f} {r['dec_deg']:10.5f} "
              f"{_fmt(r['first_detected_mjd'], 10, '.2f')} {_fmt(r['new_high_sigma'], 9, '.1f')} "
              f"{r['n_detections']:>5} {r['n_measurements']:>6}")
    return 0


def _fmt(v, width, spec) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def source_document(conn, source_id: int) -> dict:
    """A source's row with ``associations``: its detections in the images of its field."""
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store import lightcurves as lc_store
    from dsa110_contimg.store.detections import source_detections_in
    from dsa110_contimg.store.sources import source_by_id

    row = source_by_id(conn, source_id)
    if row is None:
        raise PhotometryError(f"no source with id {source_id}")
    near = lc_store.images_near(conn, row["ra_deg"], row["dec_deg"],
                                lc_store.neighbourhood_radius(conn, 0.0), exclude_qc_failed=False)
    keep = ("image_id", "path", "mjd", "status", "ra_deg", "dec_deg", "ra_err_arcsec",
            "dec_err_arcsec", "peak_jyb", "peak_err_jyb", "snr", "de_ruiter_r", "n_candidates",
            "reason")
    row["associations"] = [{k: d[k] for k in keep}
                           for d in source_detections_in(conn, source_id, near["id"].tolist())]
    return row


def show_source(args) -> int:
    db = common.open_products(args)
    with db.engine.connect() as conn:
        doc = source_document(conn, args.source_id)
    if args.json:
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    for key in ("id", "name", "survey", "kind", "ra_deg", "dec_deg", "first_detected_mjd",
                "new_high_sigma", "likely_transient", "n_detections", "n_measurements"):
        print(f"{key:<20} {doc[key]}")
    print(f"associations ({len(doc['associations'])}):")
    for a in doc["associations"]:
        print(f"  {_fmt(a['mjd'], 10, '.3f')} {a['status']:<12} "
              f"{_fmt(a['peak_jyb'] * 1e3 if a['peak_jyb'] is not None else None, 9, '.3f')} mJy/beam "
              f"r={_fmt(a['de_ruiter_r'], 5, '.2f')} {a['path']}"
              + (f"  ({a['reason']})" if a["reason"] else ""))
    return 0


def backfill_sources(args) -> int:
    """Queue a backfill job (exit 1 when no source or no covering image is found)."""
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.pipeline.backfill import queue_backfill, sources_to_backfill
    from dsa110_contimg.store.engine import serialise_writes

    from dsa110_contimg.store.catalogs import CatalogStore

    cfg = _photometry_config(args)
    catalogs = CatalogStore(common.catalog_dir(args)) if args.monitor else None
    db = common.open_products(args, write=True, migrate=True)
    with db.engine.begin() as conn:
        serialise_writes(conn)
        sources = sources_to_backfill(conn, None if args.monitor else [args.source_id],
                                      monitor=args.monitor, catalogs=catalogs)
        if not sources:
            raise PhotometryError(f"no monitor list in {catalogs.catalog_dir} (catalog ingest "
                                  "monitor FILE)" if args.monitor
                                  else f"no source with id {args.source_id}")
        job = queue_backfill(conn, sources, cfg, origin="cli")
    if job is None:
        raise PhotometryError("no stored image covers " + ("the monitor list" if args.monitor
                                                         else f"source {args.source_id}"))
    print(f"backfill job {job} queued for {len(sources)} source(s)")
    return 0


def _photometry_config(args):
    """The deployment's photometry configuration (defaults without a configuration file)."""
    from dsa110_contimg.core.config import PhotometryConfig

    scfg = common.service_config(args)
    return scfg.photometry if scfg is not None else PhotometryConfig()
