"""``contimg-photometry catalog``: ingest, list, build the master list, query.

Sub-commands::

    catalog ingest SURVEY FILE [FILE ...] [--ra-column C --dec-column C
                                           --flux-column C --flux-unit U] [--progress]
    catalog list [--json]
    catalog build-master [--match-radius ARCSEC]
    catalog cone SURVEY RA DEC RADIUS [--min-flux MJY] [--max-sources N] [-o OUT] [--json]
                                      [--online]

Every sub-command takes ``--catalog-dir DIR`` (default: the ``catalog_dir`` of the service
configuration given by ``--config`` or ``$CONTIMG_PHOTOMETRY_CONFIG``, else
``$CONTIMG_CATALOG_DIR``, else ``./catalogs``).
Exit codes: 0 success; 1 error (one line on stderr, e.g. a missing column or
catalogue); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path


from dsa110_contimg.cli import common as cli_common
from dsa110_contimg.core.errors import CatalogError

def _store(args, *, allow_online: bool = False):
    from dsa110_contimg.store.catalogs import CatalogStore

    return CatalogStore(cli_common.catalog_dir(args), allow_online=allow_online)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


#: The accepted forms of each angle, as error messages name them.
_ANGLE_FORMS = {"RA": "degrees (150.25), sexagesimal hours (10:01:00) or units (10h01m00s)",
                "Dec": "degrees (37.5), sexagesimal degrees (+37:30:00) or units (+37d30m)",
                "radius": "degrees (0.5) or units (30arcmin, 30', 90arcsec, 1.5deg)"}


def _angle_deg(text: str, *, sexagesimal_unit: str, what: str) -> float:
    """An angle in degrees from a number (deg), a sexagesimal value (``10:00:00``,
    ``10 00 00``: in ``sexagesimal_unit``) or a value with units (``10h00m00s``,
    ``+37d30m``, ``30arcmin``, ``30'``, ``1.5deg``)."""
    import astropy.units as u
    from astropy.coordinates import Angle

    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            if ":" in text or len(text.split()) == 3:
                value = Angle(text, unit=getattr(u, sexagesimal_unit)).deg
            else:
                value = Angle(text).deg
        except (ValueError, u.UnitsError, TypeError):
            raise argparse.ArgumentTypeError(f"{what}: expected {_ANGLE_FORMS[what]}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what}: must be finite, got {text!r}")
    return float(value)


def _ra(text: str) -> float:
    return _angle_deg(text, sexagesimal_unit="hourangle", what="RA") % 360.0


def _dec(text: str) -> float:
    value = _angle_deg(text, sexagesimal_unit="deg", what="Dec")
    if abs(value) > 90.0:
        raise argparse.ArgumentTypeError(f"Dec: must be within [-90, +90] deg, got {text!r}")
    return value


def _radius(text: str) -> float:
    value = _angle_deg(text, sexagesimal_unit="deg", what="radius")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"radius: must be > 0, got {text!r}")
    return value


def register(subparsers) -> None:
    """Add the ``catalog`` command and its sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--catalog-dir", type=Path, default=None, metavar="DIR",
                        help="catalogue directory (default: from the configuration, else "
                             "$CONTIMG_CATALOG_DIR, else ./catalogs)")
    cli_common.add_config_option(common)
    p = subparsers.add_parser("catalog", help="local reference catalogues (NVSS, FIRST, RACS, "
                              "VLASS, master)", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)

    ing = sub.add_parser("ingest", parents=[common], help="read survey files into the store")
    ing.add_argument("survey", metavar="SURVEY", help="nvss, first, rax (racs), vlass, or monitor "
                     "(a monitor list: name, RA, Dec in degrees or sexagesimal; measured in every "
                     "covering image besides the catalogue, never a flux reference)")
    ing.add_argument("files", metavar="FILE", nargs="+", type=Path,
                     help="CSV/ECSV/FITS/VOTable, optionally .gz")
    ing.add_argument("--ra-column", help="RA column (deg or sexagesimal hours)")
    ing.add_argument("--dec-column", help="Dec column (deg or sexagesimal)")
    ing.add_argument("--flux-column", help="flux density column")
    ing.add_argument("--flux-unit", help="unit of a unitless flux column (Jy, mJy, uJy)")
    bar = ing.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar (default: on a terminal, long files)")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar")
    ing.set_defaults(func=_cmd_ingest)

    lst = sub.add_parser("list", parents=[common], help="row counts, coverage, source files")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=_cmd_list)

    bm = sub.add_parser("build-master", parents=[common],
                        help="cross-match NVSS with FIRST and VLASS into the master list")
    bm.add_argument("--match-radius", type=_positive_float, default=7.5, metavar="ARCSEC",
                    help="counterpart radius (arcsec, default 7.5)")
    bm.set_defaults(func=_cmd_build_master)

    cone = sub.add_parser("cone", parents=[common], help="sources within a radius, brightest first")
    cone.add_argument("survey", metavar="SURVEY", help="nvss, first, rax (racs), vlass or master")
    cone.add_argument("ra", type=_ra, metavar="RA",
                      help="deg (150.25), sexagesimal hours (10:01:00) or with units (10h01m00s, 150.25d)")
    cone.add_argument("dec", type=_dec, metavar="DEC",
                      help="deg (37.5), sexagesimal deg (+37:30:00, -05:00:00) or with units (+37d30m)")
    cone.add_argument("radius", type=_radius, metavar="RADIUS",
                      help="deg (0.5) or with units (30arcmin, 30', 90arcsec, 1.5deg)")
    # a negative sexagesimal Dec (-05:00:00, -5d) is a value, not an option
    cone._negative_number_matcher = re.compile(r"^-\d")
    cone.add_argument("--min-flux", type=_finite_float, default=None, metavar="MJY",
                      help="only sources at least this bright (mJy)")
    cone.add_argument("--max-sources", type=cli_common.non_negative_int, default=None, metavar="N",
                      help="at most N sources, brightest first")
    cone.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                      help="write the table (.csv, .ecsv, .fits, .vot)")
    cone.add_argument("--json", action="store_true", help="print JSON rows on stdout")
    cone.add_argument("--online", action="store_true",
                      help="fetch a region missing locally from VizieR and cache it")
    cone.set_defaults(func=_cmd_cone)


def _cmd_ingest(args) -> int:
    store = _store(args)
    n = 0
    for path in args.files:
        rows = store.ingest(args.survey, [path], ra_column=args.ra_column,
                            dec_column=args.dec_column, flux_column=args.flux_column,
                            flux_unit=args.flux_unit, progress=args.progress)
        survey = store.survey(args.survey)
        print(f"{survey.name}: {rows} rows from {path}")
        for note in survey.last_write_notes:
            print(f"  note: {note}")
        n += rows
    print(f"ingested {n} rows into {store.path_of(args.survey)}")
    return 0


def _cmd_list(args) -> int:
    store = _store(args)
    info = store.list()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    if not info:
        print(f"no catalogues in {store.catalog_dir}")
        return 0
    surveys = [(s["survey"], str(s["n_rows"]), _dec_range(s["dec_min"], s["dec_max"]), str(s["n_files"]))
               for s in info]
    print("\n".join(_aligned(("survey", "rows", "Dec range (deg)", "files"), surveys, right=(1, 3))))
    files = [(s["survey"], str(f["n_rows"]), f["layout"], _coverage(f), str(f["path"]))
             for s in info for f in s["files"]]
    if files:
        print()
        print("\n".join(_aligned(("survey", "rows", "layout", "coverage (deg)", "source file"), files,
                                 right=(1,))))
    return 0


def _dec_range(lo, hi) -> str:
    return "-" if lo is None else f"{lo:+.3f} .. {hi:+.3f}"


def _coverage(f: dict) -> str:
    """What one ingested file covers: a cone (centre, radius) or an RA/Dec box."""
    if f["cov_radius"] is not None:
        return f"cone at ({f['cov_ra']:.3f}, {f['cov_dec']:+.3f}), radius {f['cov_radius']:.3f}"
    if f["dec_min"] is None:
        return "empty"
    ra_hi = 360.0 if f["ra_hi"] == 360 else f["ra_hi"] % 360
    return f"RA {f['ra_lo']:.3f} .. {ra_hi:.3f}, Dec {f['dec_min']:+.3f} .. {f['dec_max']:+.3f}"


def _aligned(header, rows, *, right=()) -> list[str]:
    """A table with a header: every column as wide as its widest cell, the columns in
    ``right`` (numbers) right-aligned, two spaces between columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _cmd_build_master(args) -> int:
    store = _store(args)
    n = store.build_master(match_radius_arcsec=args.match_radius)
    t = store.survey("master")
    print(f"master: {n} rows (match radius {args.match_radius} arcsec) -> {t.path}")
    return 0


def _cmd_cone(args) -> int:
    store = _store(args, allow_online=args.online)
    out = args.output
    if out is not None:
        if out.suffix.lower() not in cli_common.TABLE_FORMATS:
            raise CatalogError(f"unknown output format {out.suffix!r}: use one of "
                               f"{', '.join(cli_common.TABLE_FORMATS)}", out)
    table = store.survey(args.survey).cone(args.ra, args.dec, args.radius,
                                           min_flux_mjy=args.min_flux,
                                           max_sources=args.max_sources)
    for note in table.meta.get("notes", []):
        print(f"warning: {note}", file=sys.stderr)
    if out is not None:
        t = table.copy(copy_data=False)
        t.meta = {"SURVEY": table.meta.get("survey", ""),
                  "COVERAGE": table.meta.get("coverage", "")}
        cli_common.write_table(t, out)
    if args.json:
        from dsa110_contimg.store.values import clean

        rows = [{k: clean(row[k]) for k in table.colnames} for row in table]
        print(json.dumps(rows))
    elif out is None:
        cols = ["source_id", "ra_deg", "dec_deg", "flux_mjy"]
        print(f"{'source_id':<26} {'ra_deg':>11} {'dec_deg':>11} {'flux_mjy':>10}")
        for row in table[cols]:
            print(f"{row['source_id']:<26} {row['ra_deg']:11.6f} {row['dec_deg']:11.6f} "
                  f"{row['flux_mjy']:10.3f}")
    if not args.json:
        print(f"{len(table)} sources" + (f" -> {out}" if out is not None else ""),
              file=sys.stderr if out is None else sys.stdout)
    return 0
