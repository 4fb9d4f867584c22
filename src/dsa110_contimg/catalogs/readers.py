"""Readers of the catalogue layouts users download, normalised to one column set.

Every reader returns a :class:`NormalisedTable` with the core columns
(:data:`CORE_COLUMNS`) in fixed units -- positions in deg, fluxes in mJy,
sizes in arcsec, PA in deg east of north -- plus every input column kept as it
is ("extras"). Layouts:

========== ================================ ======================================
survey     layout                           columns (flux unit when the file has none)
========== ================================ ======================================
nvss       VizieR VIII/65, HEASARC          ``_RAJ2000/_DEJ2000`` deg or sexagesimal
                                            ``RAJ2000/DEJ2000``; ``S1.4``, ``e_S1.4``
                                            (mJy); ``MajAxis``, ``MinAxis``, ``PA``;
                                            name ``NVSS``
first      VizieR VIII/92, survey FITS      ``Fint``/``FINT``, ``Fpeak``/``FPEAK`` (mJy);
                                            ``Maj``/``DECONV_MAJ``...
vlass      Gordon et al. 2021 components    ``Total_flux``, ``E_Total_flux``,
                                            ``Peak_flux`` (mJy); ``DC_Maj``...;
                                            ``Component_name``
rax        Aegean components                ``ra``, ``dec``, ``int_flux``,
                                            ``err_int_flux``, ``peak_flux`` (**Jy**),
                                            ``a``, ``b``, ``pa``
rax        CASDA Selavy components          ``ra_deg_cont``, ``dec_deg_cont``,
                                            ``flux_int``, ``flux_peak`` (mJy)
any        generic CSV/ECSV/FITS/VOTable    ``--ra-column/--dec-column/--flux-column``
                                            and ``--flux-unit`` (or guessed)
========== ================================ ======================================

Units are converted exactly once: a column's own unit (FITS ``TUNIT``, VOTable
``unit``, ECSV) wins; a unitless column takes ``flux_unit`` or the layout's
documented unit. An explicit ``flux_unit`` that contradicts the column's own
unit is a :class:`ColumnError` (the double-conversion trap, docs/science.md, Known pitfalls).
``flux_mjy`` is the integrated flux density where the survey has one, else
the peak.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table

from dsa110_contimg.catalogs.naming import NAME_FORMATS, disambiguate, iau_names
from dsa110_contimg.core.errors import CatalogError, ColumnError

#: Normalised columns of every survey table, in order.
CORE_COLUMNS = ("source_id", "ra_deg", "dec_deg", "flux_mjy", "flux_err_mjy", "peak_flux_mjy",
                "int_flux_mjy", "maj_arcsec", "min_arcsec", "pa_deg")
#: Column names the store uses internally (never taken by an extra column).
RESERVED = {c.lower() for c in CORE_COLUMNS} | {"zone", "rid", "file_id"}

_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".csv": "ascii.csv",
            ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable", ".votable": "votable",
            ".tsv": "ascii.tab", ".txt": "ascii"}


@dataclass
class Layout:
    """Where the columns of one catalogue layout live (ordered candidate names)."""

    name: str
    positions: list[tuple[str, str]]
    flux: list[str]
    flux_unit: str | None  # unit of unitless flux columns; None = must be given
    flux_is_peak: bool = False
    err: list[str] = field(default_factory=list)
    peak: list[str] = field(default_factory=list)
    integ: list[str] = field(default_factory=list)
    peak_err: list[str] = field(default_factory=list)
    maj: list[str] = field(default_factory=list)
    min: list[str] = field(default_factory=list)
    pa: list[str] = field(default_factory=list)
    name_col: list[str] = field(default_factory=list)
    required: tuple[str, ...] = ()  # extra columns that must exist for this layout to apply


_VIZIER_POS = [("_RAJ2000", "_DEJ2000"), ("RAJ2000", "DEJ2000")]

LAYOUTS: dict[str, list[Layout]] = {
    "nvss": [
        Layout("nvss-vizier", _VIZIER_POS + [("RA", "DEC")], ["S1.4"], "mJy", err=["e_S1.4"],
               maj=["MajAxis"], min=["MinAxis"], pa=["PA"], name_col=["NVSS"]),
        Layout("nvss-heasarc", [("ra", "dec")], ["flux_20_cm"], "mJy", err=["flux_20_cm_error"],
               maj=["major_axis"], min=["minor_axis"], pa=["position_angle"], name_col=["name"]),
    ],
    "first": [
        Layout("first-vizier", _VIZIER_POS, ["Fint"], "mJy", peak=["Fpeak"], integ=["Fint"],
               maj=["Maj"], min=["Min"], pa=["PA"], name_col=["FIRST", "Name"]),
        Layout("first-fits", [("RA", "DEC")], ["FINT"], "mJy", peak=["FPEAK"], integ=["FINT"],
               maj=["DECONV_MAJ", "MAJOR", "Maj"], min=["DECONV_MIN", "MINOR", "Min"],
               pa=["DECONV_PA", "POSANG", "PA"],
               name_col=["FIRST", "Name"]),
    ],
    "vlass": [
        Layout("vlass-gordon2021", [("RA", "DEC")] + _VIZIER_POS, ["Total_flux"], "mJy",
               err=["E_Total_flux"], peak=["Peak_flux"], integ=["Total_flux"],
               peak_err=["E_Peak_flux"], maj=["DC_Maj", "Maj"], min=["DC_Min", "Min"],
               pa=["DC_PA", "PA"], name_col=["Component_name"]),
        Layout("vlass-vizier", _VIZIER_POS, ["Ftot"], "mJy", err=["e_Ftot"], peak=["Fpeak"],
               integ=["Ftot"], peak_err=["e_Fpeak"], maj=["DCMaj", "Maj"], min=["DCMin", "Min"],
               pa=["DCPA", "PA"], name_col=["CompName", "Name"]),
    ],
    "rax": [
        Layout("racs-aegean", [("ra", "dec")], ["int_flux"], "Jy", err=["err_int_flux"],
               peak=["peak_flux"], integ=["int_flux"], peak_err=["err_peak_flux"], maj=["a"],
               min=["b"], pa=["pa"], name_col=[], required=("peak_flux", "int_flux", "local_rms")),
        Layout("racs-selavy", [("ra_deg_cont", "dec_deg_cont")], ["flux_int"], "mJy",
               err=["flux_int_err"], peak=["flux_peak"], integ=["flux_int"],
               peak_err=["flux_peak_err"], maj=["maj_axis"], min=["min_axis"], pa=["pos_ang"],
               name_col=["component_name"]),
        Layout("racs-vizier", _VIZIER_POS, ["Ftot", "Stot"], "mJy", err=["e_Ftot", "e_Stot"],
               peak=["Fpk", "Fpeak", "Speak"], integ=["Ftot", "Stot"], maj=["Maj", "amaj"],
               min=["Min", "bmin"], pa=["PA"], name_col=["RACS", "ID", "Name"]),
    ],
}
LAYOUTS["master"] = []
#: Monitor lists: a name, RA and Dec in any layout (degrees or sexagesimal); no flux needed.
LAYOUTS["monitor"] = []

#: Names the generic reader recognises when no column is given explicitly.
GENERIC_RA = ["ra_deg", "ra", "raj2000", "_raj2000", "ra_j2000", "ra_icrs", "right_ascension"]
GENERIC_DEC = ["dec_deg", "dec", "dej2000", "_dej2000", "dec_j2000", "de_icrs", "declination"]
GENERIC_NAME = ["name", "source", "source_name", "source_id", "id", "object", "target", "psrj",
                "psr", "designation"]
GENERIC_FLUX = ["flux_mjy", "flux", "int_flux", "total_flux", "flux_int", "fint", "ftot",
                "s_int", "peak_flux", "flux_peak", "fpeak"]


@dataclass
class NormalisedTable:
    """A catalogue table in the store's units.

    Attributes
    ----------
    core : dict of str -> ndarray
        :data:`CORE_COLUMNS` (``source_id`` str; the rest float, NaN where absent).
    extras : dict of str -> ndarray or MaskedArray
        Every input column, kept as it is (renamed ``orig_<name>`` if its name
        collides with a core or reserved name).
    layout : str
        Which layout was recognised, e.g. ``"nvss-vizier"``.
    """

    core: dict[str, np.ndarray]
    extras: dict[str, np.ndarray]
    layout: str

    def __len__(self) -> int:
        return len(self.core["ra_deg"])


# --- reading files ---------------------------------------------------------------
def read_table(path: str | Path) -> Table:
    """Read a CSV/ECSV/FITS/VOTable file (optionally ``.gz``) into an astropy Table."""
    path = Path(path)
    if not path.exists():
        raise CatalogError("catalogue file does not exist", path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise CatalogError(f"unknown table format {ext or '(no extension)'!r}; expected one of "
                           f"{sorted(set(_FORMATS))} (optionally .gz)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # VizieR/VOTable unit and W-series chatter
            if fmt == "fits":
                table = Table.read(path, format="fits", hdu=_first_table_hdu(path))
            elif fmt == "votable":
                table = Table.read(path, format="votable")
            else:
                table = Table.read(path, format=fmt)
    except CatalogError:
        raise
    except Exception as exc:  # astropy raises many types; name the file and the cause
        raise CatalogError(f"cannot read table ({fmt}): {exc}", path) from exc
    return table


def _first_table_hdu(path: Path) -> int:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        for i, hdu in enumerate(hdul):
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                return i
    raise CatalogError("FITS file has no table extension", path)


# --- column lookup ---------------------------------------------------------------
def _index(table: Table) -> dict[str, list[str]]:
    idx: dict[str, list[str]] = {}
    for name in table.colnames:
        idx.setdefault(name.lower(), []).append(name)
    return idx


def _find(table: Table, candidates: list[str], idx=None, path=None) -> str | None:
    idx = idx if idx is not None else _index(table)
    for cand in candidates:
        if cand in table.colnames:
            return cand
        hits = idx.get(cand.lower(), [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ColumnError(f"column {cand!r} is ambiguous: the table has {hits}", path)
    return None


def _explicit(table: Table, name: str, role: str, path) -> str:
    if name in table.colnames:
        return name
    hits = _index(table).get(name.lower(), [])
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ColumnError(f"{role} column {name!r} is ambiguous: the table has {hits}", path)
    raise ColumnError(f"{role} column {name!r} not found; the table has {table.colnames}", path)


def _guess_unique(table: Table, candidates: list[str], role: str, option: str, path) -> str:
    idx = _index(table)
    hits = [h for c in candidates for h in idx.get(c.lower(), [])]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ColumnError(f"no {role} column: looked for {candidates} (case-insensitive); the "
                          f"table has {table.colnames}; pass {option}", path)
    raise ColumnError(f"ambiguous {role} column: candidates {hits}; pass {option}", path)


# --- value conversion ------------------------------------------------------------
def _float(col, path=None) -> np.ndarray:
    """A column as float64 with masked entries as NaN."""
    try:
        arr = np.ma.asarray(getattr(col, "value", col) if not hasattr(col, "mask") else col)
        return np.ma.filled(arr.astype(float), np.nan)
    except (TypeError, ValueError) as exc:
        raise ColumnError(f"column {getattr(col, 'name', '?')!r} is not numeric: {exc}", path) from exc


_FLUX_UNITS = {"jy": u.Jy, "mjy": u.mJy, "ujy": u.uJy, "µjy": u.uJy, "microjy": u.uJy,
               "millijy": u.mJy}


def _parse_unit(text, path=None, what: str = "unit") -> u.UnitBase:
    """Parse a unit string leniently: case-insensitive Jy/mJy/uJy, ``/beam`` dropped."""
    t = re.sub(r"/\s*beam", "", str(text), flags=re.IGNORECASE).strip()
    if t.lower() in _FLUX_UNITS:
        return _FLUX_UNITS[t.lower()]
    try:
        unit = u.Unit(t)
    except Exception as exc:
        raise ColumnError(f"cannot parse {what} {text!r}: {exc}", path) from exc
    if isinstance(unit, u.UnrecognizedUnit):
        raise ColumnError(f"unrecognised {what} {text!r}", path)
    return unit


def _unit_of(col, path=None) -> u.UnitBase | None:
    unit = getattr(col, "unit", None)
    if unit is None or str(unit).strip() == "":
        return None
    return _parse_unit(unit.to_string() if hasattr(unit, "to_string") else unit, path,
                       f"unit of column {col.name!r}")


def _flux_to_mjy(col, unit_name: str | None, role: str, path, *, explicit: bool) -> np.ndarray:
    """Convert a flux column to mJy once: the column's unit, else ``unit_name``."""
    col_unit = _unit_of(col, path)
    given = None if unit_name is None else _parse_unit(unit_name, path, "flux unit")
    if col_unit is not None:
        if explicit and given is not None and (
                not given.is_equivalent(col_unit) or not np.isclose(given.to(col_unit), 1.0)):
            raise ColumnError(f"{role} column {col.name!r} is in {col_unit} but --flux-unit says "
                              f"{unit_name}; drop --flux-unit (the column's unit is used)", path)
        unit = col_unit
    elif given is not None:
        unit = given
    else:
        raise ColumnError(f"{role} column {col.name!r} has no unit; pass --flux-unit "
                          "(Jy, mJy or uJy)", path)
    try:
        factor = unit.to(u.mJy)
    except u.UnitConversionError as exc:
        raise ColumnError(f"{role} column {col.name!r} has unit {unit}, not a flux density",
                          path) from exc
    return _float(col, path) * factor


def _angle(col, default: u.UnitBase, to: u.UnitBase, path, role: str) -> np.ndarray:
    unit = _unit_of(col, path) or default
    try:
        factor = unit.to(to)
    except u.UnitConversionError as exc:
        raise ColumnError(f"{role} column {col.name!r} has unit {unit}, not an angle", path) from exc
    return _float(col, path) * factor


_SEXA_SPLIT = re.compile(r"[\s:hmsdHMSD°'\"]+")


def parse_sexagesimal(values, *, hours: bool) -> np.ndarray:
    """Parse ``"HH MM SS.s"`` / ``"+DD:MM:SS"`` strings to degrees (RA if ``hours``)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii")
    out = np.empty(arr.shape, dtype=float)
    for i, s in enumerate(arr.tolist()):
        s = str(s).strip()
        if not s:
            out[i] = np.nan
            continue
        neg = s.startswith("-")
        parts = [p for p in _SEXA_SPLIT.split(s.lstrip("+-")) if p]
        try:
            vals = [float(p) for p in parts[:3]] + [0.0] * (3 - len(parts[:3]))
        except ValueError as exc:
            raise ColumnError(f"cannot parse sexagesimal value {s!r}") from exc
        v = vals[0] + vals[1] / 60.0 + vals[2] / 3600.0
        out[i] = (-v if neg else v) * (15.0 if hours else 1.0)
    return out


def _position(table: Table, ra_name: str, dec_name: str, path) -> tuple[np.ndarray, np.ndarray]:
    ra_col, dec_col = table[ra_name], table[dec_name]
    if ra_col.dtype.kind in "SU":
        ra = parse_sexagesimal(ra_col, hours=True)
    else:
        ra = _angle(ra_col, u.deg, u.deg, path, "RA")
    if dec_col.dtype.kind in "SU":
        dec = parse_sexagesimal(dec_col, hours=False)
    else:
        dec = _angle(dec_col, u.deg, u.deg, path, "Dec")
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ColumnError(f"{int(bad.sum())} rows have no valid position (first: row {i}, "
                          f"{ra_name}={table[ra_name][i]!r}, {dec_name}={table[dec_name][i]!r})", path)
    return np.mod(ra, 360.0), dec


def _survey_name(raw: np.ndarray, survey: str) -> np.ndarray:
    """Prefix a catalogue's own names with the survey acronym where they lack it."""
    prefix = NAME_FORMATS[survey][0]
    names = np.char.strip(np.asarray(raw).astype(str))
    starts_digit = np.char.str_len(names) > 0
    first = np.array([n[:1] for n in names.tolist()], dtype=str) if names.size else names
    starts_digit &= np.char.isdigit(first)
    starts_j = np.array([len(n) > 1 and n[0] == "J" and n[1].isdigit() for n in names.tolist()],
                        dtype=bool)
    out = names.astype(object)
    out[starts_digit] = np.char.add(f"{prefix} J", names[starts_digit])
    out[starts_j] = np.char.add(f"{prefix} ", names[starts_j])
    return out.astype(str)


def _extra_values(col):
    """An input column as a numpy (masked) array of storable values."""
    data = col
    if col.ndim > 1:
        return np.array([json.dumps(np.asarray(v).tolist()) for v in col], dtype=object)
    if col.dtype.kind == "S":
        data = np.char.decode(np.asarray(col.filled(b"") if hasattr(col, "filled") else col),
                              "utf-8", errors="replace")
        return np.asarray(data, dtype=str)
    if col.dtype.kind == "U":
        return np.asarray(col.filled("") if hasattr(col, "filled") else col, dtype=str)
    if hasattr(col, "mask") and np.ma.is_masked(col):
        return np.ma.MaskedArray(np.asarray(col.data), mask=np.asarray(col.mask))
    return np.asarray(getattr(col, "value", col))


def extras_of(table: Table) -> dict[str, np.ndarray]:
    """All columns of ``table`` as extras, renamed away from reserved names."""
    out: dict[str, np.ndarray] = {}
    taken = set(RESERVED)
    for name in table.colnames:
        key = name
        if key.lower() in taken:
            key = f"orig_{name}"
            k = 2
            while key.lower() in taken:
                key = f"orig{k}_{name}"
                k += 1
        taken.add(key.lower())
        out[key] = _extra_values(table[name])
    return out


# --- normalisation ---------------------------------------------------------------
def normalise(table: Table, survey: str, *, path=None, ra_column: str | None = None,
              dec_column: str | None = None, flux_column: str | None = None,
              flux_unit: str | None = None, keep_extras: bool = True) -> NormalisedTable:
    """Recognise ``table``'s layout for ``survey`` and convert it to the store's columns.

    Parameters
    ----------
    table : astropy.table.Table
        The input catalogue.
    survey : str
        Canonical survey key (``nvss``, ``first``, ``rax``, ``vlass``).
    path : str or Path, optional
        The file, for error messages.
    ra_column, dec_column, flux_column : str, optional
        Explicit column names (override the layout; required together with
        ``flux_unit`` for tables no layout recognises, unless guessable).
    flux_unit : str, optional
        Unit of a unitless flux column (``Jy``, ``mJy``, ``uJy``).

    Raises
    ------
    ColumnError
        A required column is missing or ambiguous (the message names the candidates).
    """
    layout, cols = _columns_of(table, survey, path, ra_column, dec_column, flux_column)
    ra, dec = _position(table, cols["ra"], cols["dec"], path)
    core = _core_columns(table, cols, layout, ra, dec, path, flux_unit=flux_unit,
                         explicit_flux=flux_column is not None)
    core = {"source_id": _source_names(table, cols, survey, ra, dec), **core}
    extras = extras_of(table) if keep_extras else {}
    return NormalisedTable(core=core, extras=extras,
                           layout=layout.name if layout else "generic")


def _columns_of(table: Table, survey: str, path, ra_column, dec_column, flux_column):
    """The layout that fits the table (None: generic) and the column of each role: the
    layout's, overridden by explicit names, else a unique generic guess."""
    explicit = any(x is not None for x in (ra_column, dec_column, flux_column))
    layout, cols = _match_layout(table, survey, path, explicit)
    if ra_column is not None:
        cols["ra"] = _explicit(table, ra_column, "RA", path)
    if dec_column is not None:
        cols["dec"] = _explicit(table, dec_column, "Dec", path)
    if flux_column is not None:
        cols["flux"] = _explicit(table, flux_column, "flux", path)
        for role in ("integ", "peak", "err", "peak_err"):
            cols.pop(role, None)
    if "ra" not in cols:
        cols["ra"] = _guess_unique(table, GENERIC_RA, "RA", "--ra-column", path)
    if "dec" not in cols:
        cols["dec"] = _guess_unique(table, GENERIC_DEC, "Dec", "--dec-column", path)
    monitor = survey == "monitor"     # a monitor list: a name and a position, no flux needed
    if "flux" not in cols and not (monitor and _find(table, GENERIC_FLUX, _index(table), path) is None):
        cols["flux"] = _guess_unique(table, GENERIC_FLUX, "flux", "--flux-column", path)
    if monitor and "name" not in cols:
        name_col = _find(table, GENERIC_NAME, _index(table), path)
        if name_col is not None:
            cols["name"] = name_col
    return layout, cols


def _core_columns(table: Table, cols: dict, layout, ra, dec, path, *, flux_unit,
                  explicit_flux: bool) -> dict[str, np.ndarray]:
    """Positions (deg), fluxes (mJy), sizes (arcsec) and PA (deg) of every row (NaN where
    the table has no such column)."""
    n = len(table)
    default_unit = flux_unit if flux_unit is not None else (layout.flux_unit if layout else None)
    nan = np.full(n, np.nan)

    def flux(role):
        name = cols.get(role)
        if name is None:
            return nan.copy()
        return _flux_to_mjy(table[name], default_unit, role, path, explicit=flux_unit is not None)

    def angle(role, unit_to):
        name = cols.get(role)
        if name is None:
            return nan.copy()
        default = u.arcsec if role in ("maj", "min") else u.deg
        return _angle(table[name], default, unit_to, path, role)

    f = flux("flux")
    # A layout's flux column is integrated unless it says otherwise; an explicit
    # or generic flux column's nature is unknown, so neither is claimed for it.
    claim = layout is not None and not explicit_flux
    return {
        "ra_deg": ra,
        "dec_deg": dec,
        "flux_mjy": f,
        "flux_err_mjy": flux("err"),
        "peak_flux_mjy": flux("peak") if "peak" in cols else (
            f.copy() if claim and layout.flux_is_peak else nan.copy()),
        "int_flux_mjy": flux("integ") if "integ" in cols else (
            f.copy() if claim and not layout.flux_is_peak else nan.copy()),
        "maj_arcsec": angle("maj", u.arcsec),
        "min_arcsec": angle("min", u.arcsec),
        "pa_deg": angle("pa", u.deg),
    }


def _source_names(table: Table, cols: dict, survey: str, ra, dec) -> np.ndarray:
    """The survey's names of the rows; a row without one (or a table without a name
    column) is named by its position (IAU style, repeated names disambiguated)."""
    prefix, rd, dd = NAME_FORMATS[survey]
    if "name" not in cols:
        return disambiguate(iau_names(prefix, ra, dec, ra_decimals=rd, dec_decimals=dd))
    raw = _extra_values(table[cols["name"]])
    # a monitor list's names are its own (pulsar or target names): kept as written
    names = (np.char.strip(np.asarray(raw).astype(str)) if survey == "monitor"
             else _survey_name(raw, survey))
    blank = np.char.str_len(names) == 0
    if blank.any():
        names = names.astype(object)
        names[blank] = disambiguate(iau_names(prefix, ra[blank], dec[blank], ra_decimals=rd,
                                              dec_decimals=dd))
        names = names.astype(str)
    return names


def _match_layout(table: Table, survey: str, path, explicit: bool):
    """The first layout of ``survey`` whose positions and flux the table has."""
    idx = _index(table)
    tried = []
    for layout in LAYOUTS.get(survey, []):
        pos = next(((r, d) for r, d in layout.positions
                    if _find(table, [r], idx, path) and _find(table, [d], idx, path)), None)
        fl = _find(table, layout.flux, idx, path)
        req = all(_find(table, [c], idx, path) for c in layout.required)
        tried.append(layout)
        if pos is None or fl is None or not req:
            continue
        cols = {"ra": _find(table, [pos[0]], idx, path), "dec": _find(table, [pos[1]], idx, path),
                "flux": fl}
        for role in ("err", "peak", "integ", "peak_err", "maj", "min", "pa"):
            name = _find(table, getattr(layout, role), idx, path)
            if name is not None:
                cols[role] = name
        name = _find(table, layout.name_col, idx, path)
        if name is not None:
            cols["name"] = name
        return layout, cols
    if not explicit:
        # No survey layout fits and nothing was given: say what each layout needs.
        wanted = "; ".join(
            f"{lay.name}: positions one of {lay.positions}, flux one of {lay.flux}"
            + (f", plus {list(lay.required)}" if lay.required else "") for lay in tried)
        try:
            _guess_unique(table, GENERIC_RA, "RA", "--ra-column", path)
            _guess_unique(table, GENERIC_DEC, "Dec", "--dec-column", path)
            if survey != "monitor":          # a monitor list needs no flux
                _guess_unique(table, GENERIC_FLUX, "flux", "--flux-column", path)
        except ColumnError as exc:
            raise ColumnError(f"no known {survey} layout matches ({wanted or 'none defined'}); "
                              f"generic guess failed: {exc.reason}", path) from exc
    return None, {}
