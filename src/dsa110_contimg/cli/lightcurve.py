"""``contimg-photometry lightcurve``: plot or export one source's light curve."""

from __future__ import annotations

import sys
from pathlib import Path

from dsa110_contimg.cli import common
from dsa110_contimg.pipeline import export
from dsa110_contimg.pipeline.export import lightcurve_table

_FORMATS = {"csv": ".csv", "ecsv": ".ecsv", "vot": ".vot"}


def register(sub) -> None:
    p = sub.add_parser("lightcurve", help="plot (png/pdf/svg) or export (csv/ecsv/fits/vot) a source's "
                                          "light curve",
                       description="SOURCE_ID is the catalogue id (e.g. 'NVSS J123456+123456') or "
                                   "the numeric source id of the products database.")
    common.add_db_options(p, registry=False)
    p.add_argument("source_id", metavar="SOURCE_ID",
                   help="catalogue id (e.g. 'NVSS J123456+123456') or numeric source id")
    p.add_argument("--survey", help="disambiguate a catalogue id present in several surveys")
    p.add_argument("-o", "--output", metavar="OUT", help="output file: a plot (.png .pdf .svg) or a "
                   "table (.csv .ecsv .fits .vot); default: a table on stdout")
    p.add_argument("--format", choices=sorted(_FORMATS), help="table format (default from OUT's suffix)")
    p.set_defaults(func=run)


def _is_plot(out: Path) -> bool:
    """True for a plot suffix, False for a table one; any other suffix is a usage error
    listing both (plots only where matplotlib can write them)."""
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.pipeline.plotting import PLOT_SUFFIXES, plot_suffixes

    suffix = out.suffix.lower()
    if suffix in PLOT_SUFFIXES:
        if suffix not in plot_suffixes():
            raise ConfigError("-o", str(out), "a table (.csv .ecsv .fits .vot): plots need "
                              "matplotlib (pip install 'dsa110-contimg-photometry[plot]')")
        return True
    if export.format_for(suffix) is None:
        plots = " ".join(plot_suffixes())
        raise ConfigError("-o", str(out), (f"a plot ({plots}) or " if plots else "")
                          + "a table (" + " ".join(common.TABLE_FORMATS) + ")")
    return False


def run(args) -> int:
    from dsa110_contimg.core.errors import ConfigError, PhotometryError
    from dsa110_contimg.store.lightcurves import find_source, source_lightcurve

    out = Path(args.output) if args.output else None
    plot = out is not None and _is_plot(out)
    db = common.open_products(args)
    with db.engine.connect() as conn:
        try:
            source = find_source(conn, args.source_id, args.survey)
        except LookupError as exc:
            raise PhotometryError(str(exc)) from None
        lc = source_lightcurve(conn, source)
    if lc["mjd"].size == 0:
        raise PhotometryError(f"source {source['catalog_id']} has no measurements")
    title = f"{source['catalog_id']} ({source['ra_deg']:.5f}, {source['dec_deg']:+.5f})"
    if plot:
        if args.format:
            raise ConfigError("--format", args.format, f"no --format with a {out.suffix} plot")
        from dsa110_contimg.core.config import PhotometryConfig
        from dsa110_contimg.pipeline.plotting import plot_lightcurve, stored_ese_fit
        from dsa110_contimg.store.review import candidate_of_source

        with db.engine.connect() as conn:
            cand = candidate_of_source(conn, source["id"])
        from dsa110_contimg.pipeline.plotting import plot_title

        title = plot_title(title, cand)
        scfg = common.service_config(args)
        phot = scfg.photometry if scfg is not None else PhotometryConfig()
        plot_lightcurve(lc, out, title=title, ese_fit=stored_ese_fit(cand),
                        baseline_epochs=phot.norm_baseline_epochs, candidate=cand)
        print(f"light curve of {source['catalog_id']} ({lc['mjd'].size} epochs) -> {out}", file=sys.stderr)
        return 0
    named = args.format or (out.suffix if out else None)     # None: the readable table
    fmt = export.format_for(named) if named else None
    table = lightcurve_table(source, lc, pair_metrics=fmt not in (None, "ascii.csv"))
    if out is None:
        if args.format == "vot":
            raise ConfigError("--format", "vot", "-o OUT.vot (VOTable is not written to stdout)")
        if args.format:
            sys.stdout.flush()
            export.write_table(table, sys.stdout.buffer, export.format_for(args.format))
        else:
            print(f"# {source['catalog_id']} ({source['survey']}), {len(table)} epochs; "
                  "fluxes in mJy/beam")
            print("\n".join(export.readable_lines(
                table, ["mjd", "peak_jyb", "peak_err_jyb", "norm_flux_jyb", "norm_err_jyb",
                        "qc_status", "success"])))
        return 0
    if args.format and out.suffix.lower() != _FORMATS[args.format]:
        raise ConfigError("--format", args.format, f"a format matching the suffix of {out}")
    common.write_table(table, out)
    print(f"light curve of {source['catalog_id']} ({len(table)} epochs) -> {out}", file=sys.stderr)
    return 0
