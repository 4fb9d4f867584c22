"""Readable tables of the command line (``pipeline/export.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from dsa110_contimg.pipeline import export


def _table(n: int) -> Table:
    rng = np.random.default_rng(n)
    t = Table({"mjd": 60000.0 + np.arange(n) / 3, "peak_jyb": rng.normal(0.01, 0.02, n),
               "peak_err_jyb": np.full(n, 1e-3), "ra_deg": rng.uniform(0, 360, n),
               "x_pix": rng.uniform(0, 4096, n), "snr": rng.normal(10, 30, n),
               "image_id": np.arange(n) * 977, "success": np.arange(n) % 3 > 0,
               "qc_status": np.array(["passed", "warning", "failed"])[np.arange(n) % 3]})
    t["peak_jyb"][::5] = np.nan
    t["mjd"].unit = "d"
    return t


def test_readable_lines_are_astropys_table_text():
    """Each value formatted and padded as astropy's ``pformat`` pads it (names and units
    centred, values right-aligned, mJy/beam with 3 decimals), for long and short tables."""
    for n in (1, 4, 600):
        table = _table(n)
        cols = table.colnames + ["missing"]
        shown = export.readable_lines(table, cols)
        out = Table()
        for name in table.colnames:
            src = table[name]
            if name.endswith("_jyb"):
                out[name[:-4] + "_mjyb"] = np.asarray(src, float) * 1e3
                out[name[:-4] + "_mjyb"].format, out[name[:-4] + "_mjyb"].unit = ".3f", "mJy/beam"
            else:
                out[name] = src
                out[name].format = {"mjd": ".4f", "ra_deg": ".6f", "x_pix": ".2f",
                                    "snr": ".2f"}.get(name)
        assert shown == list(out.pformat(max_lines=-1, max_width=-1))
        assert len(shown) == n + 3 and "nan" in shown[3]


def test_readable_lines_of_masked_or_unformatted_columns_are_astropys():
    t = Table({"a": MaskedColumn([1.5, 2.0], mask=[True, False]), "b": [0.1, 0.2]})
    assert export.readable_lines(t, ["a", "b"]) == list(t.pformat(max_lines=-1, max_width=-1))


def _astropy_csv(table) -> bytes:
    import io

    buf = io.StringIO()
    export.add_units(table.copy(copy_data=False)).write(buf, format="ascii.csv")
    return buf.getvalue().encode("utf-8")


def test_csv_download_is_astropys_csv():
    """The CSV bytes (the site's downloads) are those astropy's writer makes: floats in
    full precision, text stripped of spaces and tabs and quoted where CSV needs it."""
    table = _table(300)
    table["note"] = np.array(["", " padded ", "a,b", 'say "x"', "two\nlines", "é"] * 50)
    table.meta.clear()
    assert export.table_bytes(table, "ascii.csv") == _astropy_csv(table)
    table["snr"].format = ".1f"                  # a format: astropy's own writer
    assert export.table_bytes(table, "ascii.csv") == _astropy_csv(table)
    assert b"10.0" in export.table_bytes(Table({"snr": [10.0]}), "ascii.csv")


@pytest.mark.parametrize("notes", [["", " /data/a.fits\t", "passed", "é"],   # nothing quoted
                                   ["x", "carriage\rreturn", "", "y"], ["", "", "", ""]])
def test_csv_rows_are_astropys_with_and_without_quoting(notes):
    """Rows whose text needs no quoting are joined directly, the others written by the csv
    module: the bytes are astropy's either way."""
    table = _table(40)
    table["note"] = np.array(notes * 10)
    table["flag"] = np.arange(40) % 3 == 0
    table.meta.clear()
    assert export.table_bytes(table, "ascii.csv") == _astropy_csv(table)
    assert export.table_bytes(table[:0], "ascii.csv") == _astropy_csv(table[:0])


def test_light_curve_csv_is_the_same_without_the_metadata_only_metrics():
    """The two-epoch metrics go to the formats with metadata (ECSV here); the CSV, which has
    none, is the same bytes whether they were computed or not."""
    n = 40
    lc = {"mjd": 60000.0 + np.arange(n), "peak_jyb": 0.05 + 0.001 * np.sin(np.arange(n)),
          "peak_err_jyb": np.full(n, 1e-3), "norm_flux_jyb": np.full(n, np.nan),
          "norm_err_jyb": np.full(n, np.nan), "success": np.ones(n, bool),
          "qc_status": np.array(["passed"] * n, dtype=object),
          "excluded_reason": np.array([None] * n, dtype=object)}
    source = {"survey": "nvss", "catalog_id": "NVSS J000000+300000", "ra_deg": 0.0, "dec_deg": 30.0}
    full = export.lightcurve_table(source, lc)
    bare = export.lightcurve_table(source, lc, pair_metrics=False)
    assert full.meta["metrics_flux"] == "peak_jyb" and full.meta["n"] == n
    assert "vs_max_all" in full.meta and "vs_max_all" not in bare.meta
    assert export.table_bytes(full, "ascii.csv") == export.table_bytes(bare, "ascii.csv")
    assert b"vs_max_all" in export.table_bytes(full, "ascii.ecsv")
