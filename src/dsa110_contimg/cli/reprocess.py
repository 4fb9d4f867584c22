"""``contimg-photometry reprocess``: re-measure an archive on a Dask cluster.

Measures every science image under the given folders (or the given files) through the
full workflow (store, QC, normalisation, variability, ESE, registry). Dask workers
measure; this process stores, one transaction per image, in epoch order. See
:mod:`dsa110_contimg.service.reprocess` and ``docs/reprocess-dask.md`` (SLURM).

Exit codes: 0 every planned image stored; 1 some images failed (listed at the end) or
an error; 130 interrupted (a re-run resumes).
"""

from __future__ import annotations

import sys

from dsa110_contimg.cli import common


def register(sub) -> None:
    p = sub.add_parser(
        "reprocess", help="re-measure images or whole folders on a Dask cluster",
        description="Re-measure every science image under PATH (folders recursively, or files) "
                    "through the full workflow. Dask workers measure; this process writes the "
                    "results in epoch order. File versions already stored are skipped unless "
                    "--force, so an interrupted run resumes.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    common.add_db_options(p)
    p.add_argument("--catalog-dir", default=None, help="catalogue directory (shared with the workers)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="existing Dask scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local cluster worker processes (default: the CPU count)")
    p.add_argument("--catalog", default=None, metavar="SURVEY", help="catalogue (default from the "
                   "configuration, else nvss)")
    p.add_argument("--method", default=None, metavar="M", help="forced | peak | adaptive | aegean")
    p.add_argument("--since", default=None, metavar="DATE", help="only epochs at or after DATE "
                   "(MJD, 2025-01-31 or an ISO time, UTC)")
    p.add_argument("--until", default=None, metavar="DATE", help="only epochs up to DATE (a date "
                   "includes that whole day)")
    p.add_argument("--force", action="store_true", help="re-measure file versions already stored")
    p.set_defaults(func=run)


def build_config(args):
    """The workflow configuration: the service configuration's [photometry] (else the full
    workflow: normalisation and ESE on), with --catalog / --method."""
    from dsa110_contimg.core.config import PhotometryConfig

    scfg = common.service_config(args)
    cfg = scfg.photometry if scfg is not None else PhotometryConfig(normalize=True, detect_ese=True)
    overrides = {k: v for k, v in (("catalog", args.catalog), ("method", args.method)) if v}
    return (cfg.replace(**overrides) if overrides else cfg), scfg


def run(args) -> int:
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.pipeline.manager import PhotometryManager
    from dsa110_contimg.service import reprocess as rp

    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers", args.workers, "an integer >= 1")
    cfg, scfg = build_config(args)
    since = rp.parse_date(args.since) if args.since else None
    until = rp.parse_date(args.until, end_of_day=True) if args.until else None
    catalog_dir = common.catalog_dir(args).resolve()
    manager = PhotometryManager(common.products_db(args), common.registry_db(args), cfg,
                                catalog_dir=catalog_dir)
    manager.catalog_store(cfg).survey(cfg.catalog)      # a missing catalogue: one line, now
    files, skipped = rp.discover(args.paths)
    plan = rp.make_plan(files, manager.products, since_mjd=since, until_mjd=until, force=args.force,
                        mosaic_dirs=scfg.paths.mosaic_dirs if scfg is not None else ())
    print(f"reprocess: {len(plan.tasks)} images to measure ({plan.already_done} already done, "
          f"{plan.outside_dates} outside the dates, {len(skipped)} files not science images)",
          file=sys.stderr)
    report = rp.Report(planned=0)
    if plan.tasks:
        client = rp.open_client(args.scheduler, workers=args.workers)
        try:
            report = rp.reprocess(plan, manager, cfg, client, catalog_dir=str(catalog_dir),
                                  progress=rp.ProgressBar(len(plan.tasks)))
        finally:
            rp.close_client(client)
    print(f"reprocess: {report.done} images stored, {len(report.failures)} failed"
          + (f" in {report.seconds:.1f} s ({report.images_per_min:.1f} images/min)"
             if report.planned else ""), file=sys.stderr)
    for f in report.failures:
        print(f"  failed {f.path}: {f.reason}", file=sys.stderr)
    if report.interrupted:
        print("reprocess: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if report.failures else 0
