"""Table exports and readable tables (the command line and the web site).

One writer for both: :func:`write_table` (a file for ``-o OUT`` of the CLI, bytes for a
download from ``serve``). Every exported table (CSV, ECSV, VOTable, FITS) carries units
on its columns (from the column-name suffix: ``_jyb`` Jy/beam, ``_mjy`` mJy, ``_deg`` deg,
``_arcsec`` arcsec, ``_pix`` pix, ``mjd``/``_days`` d, ``_s`` s) and, in its metadata,
the source name(s) and the survey (``source``/``survey`` keys; for a table of many
sources the names are in a column and ``source_column`` names it). CSV has no metadata
block (and comment lines would break ``Table.read("x.csv")``): there ``source`` and
``survey`` are constant columns and the units are the column-name suffixes.

Human-readable tables (stdout) print flux densities in mJy/beam with 3 decimals
(1 µJy/beam) instead of Jy/beam with 17 digits.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

#: Export table formats by file suffix (astropy format names).
TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits",
                 ".vot": "votable", ".xml": "votable"}

#: Unit of a column by name suffix (checked in order).
_SUFFIX_UNITS = (("_jyb", "Jy / beam"), ("_mjyb", "mJy / beam"), ("_mjy", "mJy"), ("_jy", "Jy"),
                 ("_deg", "deg"), ("_arcsec", "arcsec"), ("_pix", "pix"), ("_days", "d"),
                 ("_mjd", "d"), ("_s", "s"), ("_hz", "Hz"))
_NAME_UNITS = {"mjd": "d", "snr": "", "freq_hz": "Hz"}


def unit_for(name: str) -> str | None:
    """The unit string of a column named ``name`` (None when unknown; "" dimensionless)."""
    low = name.lower()
    if low in _NAME_UNITS:
        return _NAME_UNITS[low]
    for suffix, unit in _SUFFIX_UNITS:
        if low.endswith(suffix):
            return unit
    return None


def add_units(table):
    """Set the unit of every column whose name tells it (in place; returns ``table``)."""
    import astropy.units as u

    for name in table.colnames:
        if getattr(table[name], "unit", None) is not None:
            continue
        unit = unit_for(name)
        if unit and table[name].dtype.kind in "fiu":
            table[name].unit = u.Unit(unit)
    return table


def describe(table, *, survey, source=None, source_column=None, **extra):
    """Add the export metadata: ``survey``, ``source`` (one source) or ``source_column``
    (the column holding each row's name), plus ``extra`` keys; sets the units."""
    table.meta["survey"] = survey
    if source is not None:
        table.meta["source"] = source
    if source_column is not None:
        table.meta["source_column"] = source_column
    for k, v in extra.items():
        if v is not None:
            table.meta[k] = v
    return add_units(table)


def csv_metadata_columns(table):
    """CSV has no metadata block: ``source`` and ``survey`` become constant columns (when
    the table has no such column); units are in the column-name suffixes (``_jyb``
    Jy/beam, ``_deg`` deg, ``mjd`` days), which is how the columns are named anyway."""
    from astropy.table import Column

    for key in ("source", "survey"):
        value = table.meta.get(key)
        if value is not None and key not in table.colnames:
            table.add_column(Column([str(value)] * len(table), name=key))
    return table


def format_for(suffix: str) -> str | None:
    """The astropy format of an export file suffix (``.csv``, ``.vot``, ...), or None."""
    return TABLE_FORMATS.get(suffix.lower() if suffix.startswith(".") else "." + suffix.lower())


def write_table(table, out, fmt: str) -> None:
    """Write an export table to ``out`` (a path, or a binary file object) in astropy
    format ``fmt`` (a value of :data:`TABLE_FORMATS`), with units on its columns and its
    metadata: CSV gets ``source``/``survey`` columns, VOTable one ``PARAM`` per metadata
    key, FITS the metadata as header cards. ``table`` itself is not changed.

    Raises ValueError for an unknown ``fmt`` and OSError when ``out`` cannot be written.
    """
    if fmt not in set(TABLE_FORMATS.values()):
        raise ValueError(f"unknown export format {fmt!r}")
    table = add_units(table.copy(copy_data=False))
    if fmt == "ascii.csv":
        csv_metadata_columns(table)
    if fmt in ("fits", "votable"):
        table.meta = {k: (str(v) if isinstance(v, (tuple, list, dict)) or v is None else v)
                      for k, v in table.meta.items()}
        for name in table.colnames:   # object columns (names, paths) as strings
            if table[name].dtype.kind == "O":
                table[name] = table[name].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HIERARCH cards for long meta keys
        if fmt == "votable":   # astropy drops table.meta: PARAMs and a description
            write_votable(table, out)
        elif fmt.startswith("ascii.") and not isinstance(out, (str, Path)):
            fast = _csv_text(table) if fmt == "ascii.csv" else None
            if fast is None:
                text = io.StringIO()
                table.write(text, format=fmt)
                fast = text.getvalue()
            out.write(fast.encode("utf-8"))
        else:
            table.write(out, format=fmt, **({"overwrite": True} if isinstance(out, (str, Path)) else {}))


def _csv_text(table) -> str | None:
    """The text astropy's ``ascii.csv`` writer makes of ``table``, each column converted in
    one pass and the rows joined in C (astropy formats, strips and splits value by value):
    values as ``str`` (floats as ``repr``), stripped of spaces and tabs, quoted where CSV
    needs it (then the rows go through the ``csv`` module). None (use astropy) unless every
    column is a 1-D unmasked float64, integer, boolean or text column without a format."""
    import csv

    from astropy.table import MaskedColumn

    cols, quote = [], False
    for name in table.colnames:
        col = table[name]
        kind = col.dtype.kind
        if isinstance(col, MaskedColumn) or col.ndim != 1 or col.format \
                or not (kind in "iubU" or col.dtype == np.float64):
            return None
        values = np.asarray(col).tolist()
        if kind == "U":
            # each distinct text stripped once (paths and states repeat from row to row)
            stripped = {v: v.strip(" \t") for v in set(values)}
            cols.append(list(map(stripped.__getitem__, values)))
            if not quote:       # one search per special character over the distinct texts
                joined = "\0".join(stripped.values())
                quote = any(c in joined for c in _CSV_SPECIAL)
        else:
            cols.append(list(map(str, values)))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([n.strip(" \t") for n in table.colnames])
    if quote or len(cols) < 2:
        writer.writerows(zip(*cols))
    elif len(table):
        # no field needs quoting (numbers never do): the rows as the csv module writes them
        buf.write("\n".join(map(",".join, zip(*cols))))
        buf.write("\n")
    return buf.getvalue()


#: characters that make the csv module quote a field (delimiter, quote, line ends)
_CSV_SPECIAL = (",", '"', "\r", "\n")


def table_bytes(table, fmt: str) -> bytes:
    """The export file of ``table`` in format ``fmt`` as bytes (see :func:`write_table`)."""
    buf = io.BytesIO()
    write_table(table, buf, fmt)
    return buf.getvalue()


def write_votable(table, out) -> None:
    """A VOTable with the metadata kept: one ``PARAM`` per metadata key, the table
    ``name`` = the source (one-source tables) and a ``description`` listing the metadata
    (``Table.read`` returns ``name`` and ``description`` in ``meta``)."""
    from astropy.io.votable import from_table, writeto
    from astropy.io.votable.tree import Param

    meta = {k: v for k, v in table.meta.items() if v is not None}
    plain = table.copy(copy_data=False)
    plain.meta = {}
    if meta.get("source") is not None:
        plain.meta["name"] = str(meta["source"])
    plain.meta["description"] = "; ".join(f"{k}: {v}" for k, v in meta.items())
    vot = from_table(plain)
    element = vot.get_first_table()
    for key, value in meta.items():
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            param = Param(vot, name=str(key), ID=f"meta_{key}", value=value,
                          datatype="double" if isinstance(value, float) else "long",
                          unit="deg" if str(key).endswith("_deg") else None)
        else:
            param = Param(vot, name=str(key), ID=f"meta_{key}", value=str(value),
                          datatype="char", arraysize="*")
        element.params.append(param)
    writeto(vot, str(out) if isinstance(out, (str, Path)) else out)


def carry_input_columns(table, source_table, used: tuple[str, ...]):
    """Prepend the columns of the user's positions table (ids, names, anything but the RA/Dec
    columns in ``used``) to a measurement table; a name that clashes gets ``input_``."""
    from astropy.table import Column

    skip = {c.lower() for c in used}
    carried = []
    for name in source_table.colnames:
        if name.lower() in skip:
            continue
        out = name if name not in table.colnames else f"input_{name}"
        col = source_table[name]
        values = np.asarray(col)
        if values.dtype.kind == "O":
            values = values.astype(str)
        table.add_column(Column(values, name=out, unit=getattr(col, "unit", None)),
                         index=len(carried))
        carried.append(out)
    return carried


def name_column(carried: list[str]) -> str | None:
    """The carried column holding source names/ids (name > id > source), or None."""
    low = {c.lower(): c for c in carried}
    for key in ("name", "source_name", "source", "source_id", "id", "catalog_id"):
        if key in low:
            return low[key]
    for c in carried:
        if "name" in c.lower() or c.lower().endswith("id"):
            return c
    return None


def readable_lines(table, columns: list[str]) -> list[str]:
    """A readable table of ``columns``: Jy/beam columns shown in mJy/beam (3 decimals),
    degrees with 6 decimals, pixels and SNR with 2."""
    from astropy.table import Table

    out = Table()
    for name in columns:
        if name not in table.colnames:
            continue
        col = table[name]
        if name.endswith("_jyb"):
            new = name[:-4] + "_mjyb"
            out[new] = np.asarray(col, float) * 1e3
            out[new].format = ".3f"
            out[new].unit = "mJy/beam"
        else:
            out[name] = col
            if name.endswith("_deg"):
                out[name].format = ".6f"
            elif name.endswith("_pix") or name in ("snr",):
                out[name].format = ".2f"
            elif name == "mjd":
                out[name].format = ".4f"
    return _fast_lines(out) or list(out.pformat(max_lines=-1, max_width=-1))


def _fast_lines(table) -> list[str] | None:
    """``table.pformat(max_lines=-1, max_width=-1)`` built from each column's text in one
    pass per column (astropy formats and pads value by value, several times per value):
    the header lines are astropy's own, from a one-row table holding each column's widest
    text. None (use astropy) unless every column is a 1-D unmasked number, boolean or text
    column, and every float column has a format."""
    from astropy.table import MaskedColumn, Table

    if not len(table):
        return None
    texts, widest = [], Table()
    for name in table.colnames:
        col = table[name]
        kind = col.dtype.kind
        if isinstance(col, MaskedColumn) or col.ndim != 1 or kind not in "fiubU" \
                or (kind == "f" and not col.format):
            return None
        values = np.asarray(col).tolist()
        fmt = col.format
        text = [format(v, fmt) for v in values] if fmt else [str(v) for v in values]
        texts.append(text)
        widest[name] = col[[int(np.argmax([len(t) for t in text]))]]
    head = list(widest.pformat(max_lines=-1, max_width=-1))[:-1]
    widths = [len(d) for d in head[-1].split(" ")]
    row = " ".join(f"%{w}s" for w in widths)
    return head + [row % r for r in zip(*texts)]


def lightcurve_table(source: dict, lc: dict, *, pair_metrics: bool = True):
    """The export table of one light curve (also served by the web site): one row per
    measurement, the columns of ``source_lightcurve`` (Jy/beam, MJD; ``excluded_reason`` marks
    an epoch an operator took out of the light curve), the source in ``meta`` and, with
    ``pair_metrics``, the two-epoch metrics (:func:`_pair_metrics_meta`; for the formats
    that keep metadata: CSV and the readable table have none)."""
    from astropy.table import Table

    cols = dict(lc)
    if "excluded_reason" in cols:   # the operator's reason on an excluded epoch, else empty
        cols["excluded_reason"] = ["" if r is None else str(r) for r in cols["excluded_reason"]]
    table = Table(cols)
    for k in ("image_path", "qc_status", "norm_status", "excluded_reason"):
        if k in table.colnames:
            table[k] = table[k].astype(str)
    describe(table, survey=source["survey"], source=source["catalog_id"],
                    ra_deg=source["ra_deg"], dec_deg=source["dec_deg"])
    if pair_metrics:
        table.meta.update(_pair_metrics_meta(lc))
    return table


def _pair_metrics_meta(lc) -> dict:
    """Two-epoch metrics for the export's metadata: the stored consecutive-pair ``vs_max``
    and VAST's all-pairs ``vs_max_all`` / ``m_significant`` (|Vs| >= 4.3), on the
    normalised flux when there is any, else on the raw peak flux (``metrics_flux``)."""
    import numpy as np

    from dsa110_contimg.science.variability import lightcurve_metrics

    ok = np.asarray(lc["success"], bool)
    if "excluded_reason" in lc:     # epochs an operator excluded count in no metric
        ok = ok & np.array([r is None for r in lc["excluded_reason"]], bool)
    use_norm = bool(np.any(ok & np.isfinite(np.asarray(lc["norm_flux_jyb"], float))))
    fcol, ecol = ("norm_flux_jyb", "norm_err_jyb") if use_norm else ("peak_jyb", "peak_err_jyb")
    f = np.where(ok, np.asarray(lc[fcol], float), np.nan)
    met = lightcurve_metrics(f, np.asarray(lc[ecol], float), np.asarray(lc["mjd"], float),
                             pairs="all")
    keys = ("n", "vs_max", "m_at_vs_max", "vs_max_all", "m_at_vs_max_all", "m_significant",
            "vs_at_m_significant")
    return {"metrics_flux": fcol, **{k: (int(met[k]) if k == "n" else float(met[k])) for k in keys}}


#: Columns of the candidate list export, from the objects of ``ese list --json``.
CANDIDATE_COLUMNS = ("id", "source_id", "catalog_id", "survey", "ra_deg", "dec_deg", "status", "flagged_by",
                     "criteria", "score", "confidence", "sigma", "depth", "duration_days",
                     "t_min_mjd", "max_deviation", "chi2_nu", "eta", "v", "n_epochs", "first_flagged_at_iso",
                     "updated_at_iso", "notes")
#: Review-state columns: the latest entry of each candidate's review log.
REVIEW_COLUMNS = (("last_action", "action"), ("last_reviewer", "reviewer"),
                  ("last_reviewed_at_iso", "created_at_iso"), ("last_note", "note"), ("n_reviews", "n_reviews"))


def candidates_table(rows: list[dict], reviews: dict[int, dict]):
    """The export table of a candidate list (CLI ``ese list -o``, the site's
    ``/candidates.{csv,vot,...}``): one row per candidate (the objects of ``ese list
    --json``, criteria joined by ``,``) with its review state (``reviews``: the latest
    review-log entry per candidate id, :func:`dsa110_contimg.store.review_log.latest`).
    Missing numbers are NaN (counts 0), missing text empty."""
    from astropy.table import Table

    def value(row, key):
        v = row.get(key)
        return ",".join(v) if isinstance(v, list) else v

    data = {k: [value(r, k) for r in rows] for k in CANDIDATE_COLUMNS}
    for name, key in REVIEW_COLUMNS:
        data[name] = [reviews.get(r["id"], {}).get(key) for r in rows]
    table = Table()
    for name, values in data.items():
        if name in _COUNT_COLUMNS:
            table[name] = np.array([v or 0 for v in values], dtype=np.int64)
        elif name in _NUMBER_COLUMNS:
            table[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            table[name] = np.array(["" if v is None else str(v) for v in values], dtype=str)
    surveys = sorted({str(r.get("survey")) for r in rows})
    return describe(table, survey=surveys[0] if len(surveys) == 1 else ",".join(surveys),
                    source_column="catalog_id")


_COUNT_COLUMNS = ("id", "source_id", "n_epochs", "n_reviews")
_NUMBER_COLUMNS = ("ra_deg", "dec_deg", "score", "sigma", "depth", "duration_days", "t_min_mjd",
                   "max_deviation", "chi2_nu", "eta", "v")
