"""``contimg-photometry measure``: forced photometry of positions on one image.

Usage::

    contimg-photometry measure IMAGE --positions FILE [--method forced|peak|adaptive|aegean]
        [--ra-column C --dec-column C] [-o OUT] [--json]
        [--beam BMAJ_ARCSEC BMIN_ARCSEC BPA_DEG] [--nbeam N] [--cluster-threshold T]

OUT's format follows its suffix (.csv, .ecsv, .fits, .vot); without ``-o`` a
readable table goes to stdout, or JSON with ``--json``. Errors are one line on
stderr and exit code 1 (see :mod:`dsa110_contimg.cli.main`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dsa110_contimg.cli import common
from dsa110_contimg.pipeline import export
from dsa110_contimg.core.enums import DEFAULT_METHOD, METHODS
from dsa110_contimg.core.errors import ConfigError



def register(subparsers) -> None:
    """Add the ``measure`` sub-command."""
    p = subparsers.add_parser(
        "measure", help="measure fluxes at given positions on one image",
        description="Forced photometry at sky positions on one FITS image. Give the "
                    "positions with --positions FILE (CSV, ECSV, FITS or VOTable).")
    p.add_argument("image", metavar="IMAGE", help="FITS image (primary-beam corrected)")
    src = p.add_argument_group("what to measure (exactly one)").add_mutually_exclusive_group(required=True)
    src.add_argument("--positions", metavar="FILE",
                     help="table with RA/Dec columns (ra, dec, ra_deg, dec_deg, RAJ2000, "
                          "DEJ2000, _RAJ2000, _DEJ2000; any case; degrees or sexagesimal)")
    src.add_argument("--catalog", metavar="SURVEY",
                     help="run the full workflow: measure the SURVEY sources in the image footprint "
                          "(nvss, first, rax, vlass, master), store, normalise, link")
    wf = p.add_argument_group("catalogue workflow (with --catalog)")
    wf.add_argument("--data-id", metavar="ID", help="data-registry id to link the result to")
    wf.add_argument("--batch", action="store_true",
                    help="record a batch job and return at once (run it with `worker`)")
    wf.add_argument("--mosaic", action="store_true", help="treat IMAGE as a mosaic")
    wf.add_argument("--normalize", action="store_true", help="apply ensemble normalisation")
    wf.add_argument("--detect-ese", action="store_true", help="update variability and ESE candidates")
    wf.add_argument("--catalog-dir", metavar="DIR", help="catalogue directory (default: configuration, "
                                                         "else ./catalogs)")
    common.add_db_options(wf)
    p.add_argument("--ra-column", metavar="C", help="RA column name")
    p.add_argument("--dec-column", metavar="C", help="Dec column name")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help="measurement method (default: forced)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output table; format from the suffix (.csv .ecsv .fits .vot)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--beam", nargs=3, type=float, metavar=("BMAJ_ARCSEC", "BMIN_ARCSEC", "BPA_DEG"),
                   help="restoring beam to use when the header has none")
    p.add_argument("--nbeam", type=float, default=None, help="cutout side in beams (default 3)")
    p.add_argument("--cluster-threshold", type=float, default=None,
                   help="fit sources closer than this x BMAJ jointly (default 1.5; 0 disables)")
    p.set_defaults(func=run)


def _positions_from_file(args):
    from dsa110_contimg.catalogs.positions import read_positions

    ra, dec, table = read_positions(args.positions, args.ra_column, args.dec_column)
    return ra, dec, table


def _method_options(args) -> dict:
    from dsa110_contimg.science.image import Beam

    opts: dict = {}
    if args.beam is not None:
        bmaj, bmin, bpa = args.beam
        if not (bmaj > 0 and bmin > 0 and math.isfinite(bpa)):
            raise ConfigError("--beam", args.beam, "BMAJ and BMIN > 0 arcsec and a finite BPA")
        opts["beam"] = Beam.from_arcsec(max(bmaj, bmin), min(bmaj, bmin),
                                        bpa if bmaj >= bmin else bpa + 90.0)
    if args.method == "forced":
        if args.nbeam is not None:
            opts["nbeam"] = args.nbeam
        if args.cluster_threshold is not None:
            opts["cluster_threshold"] = args.cluster_threshold
    elif args.nbeam is not None or args.cluster_threshold is not None:
        if args.method == "peak":
            raise ConfigError("--method", args.method,
                              "'forced' when --nbeam or --cluster-threshold is given")
        if args.nbeam is not None:
            opts["nbeam"] = args.nbeam
        if args.cluster_threshold is not None:
            opts["cluster_threshold"] = args.cluster_threshold
    return opts


def _json_value(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "item"):
        return _json_value(v.item())
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


def run(args) -> int:
    from dsa110_contimg.science.forced import measure_positions

    if args.catalog is not None:
        return _run_catalog(args)
    ra, dec, source_table = _positions_from_file(args)
    result = measure_positions(args.image, ra, dec, method=args.method, **_method_options(args))
    table = result.to_table()
    carried = _carry(table, source_table, args)
    export.describe(table, survey=f"positions from {Path(args.positions).name}",
                    source_column=export.name_column(carried), image=str(args.image))
    if args.output:
        out = Path(args.output)
        common.write_table(table, out)
        print(f"{len(result)} positions measured ({result.n_success} successful) -> {out}",
              file=sys.stderr)
    elif args.json:
        rows = [{k: _json_value(v) for k, v in r._asdict().items()} for r in result]
        for row, i in zip(rows, range(len(table))):
            row["flag_names"] = str(table["flag_names"][i])
            for name in carried:
                row[name] = _json_value(table[name][i])
        doc = {"meta": {k: _json_value(v) for k, v in result.meta.items()}, "rows": rows}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        show = carried + ["ra_deg", "dec_deg", "x_pix", "y_pix", "peak_jyb", "peak_err_jyb",
                          "local_rms_jyb", "snr", "cluster_id", "flag_names", "success"]
        print("\n".join(export.readable_lines(table, show)))
    return _all_failed(len(table), result.n_success)


def _carry(table, source_table, args) -> list[str]:
    """The positions file's other columns (ids, names) carried into the output."""
    from dsa110_contimg.catalogs.positions import DEC_NAMES, RA_NAMES, _find

    used = (_find(source_table.colnames, RA_NAMES, args.ra_column, "RA", args.positions),
            _find(source_table.colnames, DEC_NAMES, args.dec_column, "Dec", args.positions))
    return export.carry_input_columns(table, source_table, used)


def _all_failed(n: int, n_success: int) -> int:
    """Exit code 1 (with a one-line error) when not one position could be measured."""
    if n and not n_success:
        print(f"contimg-photometry measure: error: none of the {n} positions could be measured "
              "(off the image, blanked or failed; see flag_names)", file=sys.stderr)
        return common.EXIT_FAILURE
    return common.EXIT_OK


def _run_catalog(args) -> int:
    """The catalogue-driven workflow through :class:`PhotometryManager`."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.manager import PhotometryManager

    scfg = common.service_config(args)
    base = scfg.photometry if scfg is not None else PhotometryConfig()
    overrides = {"catalog": args.catalog}
    if args.method != "forced" or scfg is None:
        overrides["method"] = args.method
    if args.normalize:
        overrides["normalize"] = True
    if args.detect_ese:
        overrides["detect_ese"] = True
    if args.beam is not None:
        overrides["beam_arcsec"] = tuple(args.beam)
    if args.nbeam is not None:
        overrides["nbeam"] = args.nbeam
    if args.cluster_threshold is not None:
        overrides["cluster_threshold"] = args.cluster_threshold
    manager = common.creating(PhotometryManager, common.products_db(args), common.registry_db(args),
                              base, catalog_dir=common.catalog_dir(args))
    call = manager.measure_for_mosaic if args.mosaic else manager.measure_for_fits
    result = call(Path(args.image), create_batch_job=args.batch, data_id=args.data_id, **overrides)
    if args.batch:
        print(f"batch job {result.batch_job_id} created for {args.image} "
              f"({result.sources_queried} catalogue sources); run `contimg-photometry worker`")
        return 0
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    table = result.results.to_table()
    export.describe(table, survey=result.results.meta.get("catalog") or args.catalog,
                    source_column="catalog_id" if "catalog_id" in table.colnames else None,
                    image=str(args.image), image_id=result.image_id)
    if args.output:
        common.write_table(table, Path(args.output))
        print(f"{len(table)} sources measured ({result.measurements_successful} successful), "
              f"image id {result.image_id} -> {args.output}", file=sys.stderr)
    elif args.json:
        doc = {"image_id": result.image_id, "method": result.method, "qc_status": result.qc_status,
               "normalization": {k: _json_value(v) for k, v in (result.normalization or {}).items()},
               "notes": result.notes,
               "rows": [{k: _json_value(v) for k, v in zip(table.colnames, row)} for row in table]}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        show = ["catalog_id", "ra_deg", "dec_deg", "peak_jyb", "peak_err_jyb", "snr", "flag_names"]
        print("\n".join(export.readable_lines(table, show)))
    return _all_failed(len(table), result.measurements_successful)
