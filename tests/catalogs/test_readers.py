"""Catalogue readers and ingest: real NVSS/RACS files, generated layouts, errors, idempotency."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.catalogs import iau_names
from dsa110_contimg.store.catalogs import CatalogStore
from dsa110_contimg.catalogs.readers import normalise, parse_sexagesimal
from dsa110_contimg.core.errors import CatalogError, ColumnError, UnknownCatalog

NVSS_REAL = "real/nvss_vizier_VIII65_extract.fits"
RACS_REAL = "real/racs_SB38959_aegean_comp.fits"


# --- names ---------------------------------------------------------------------------
def test_iau_names_use_hours_and_truncate():
    # RA 120 deg = 8h exactly; the earlier defect produced J120000+450000.
    assert iau_names("NVSS", [120.0], [45.0])[0] == "NVSS J080000+450000"
    # 06h00m02.02s -31d40m14.2s truncates (not rounds) to 060002-314014.
    ra = (6 + 0 / 60 + 2.02 / 3600) * 15
    dec = -(31 + 40 / 60 + 14.2 / 3600)
    assert iau_names("NVSS", [ra], [dec])[0] == "NVSS J060002-314014"
    # 59.99 s must not round up to 60.
    ra = (23 + 59 / 60 + 59.99 / 3600) * 15
    assert iau_names("FIRST", [ra], [-0.0001], ra_decimals=1)[0] == "FIRST J235959.9-000000"
    assert iau_names("", [0.0], [89.99999])[0] == "J000000+895959"


def test_duplicate_built_names_get_suffixes():
    from dsa110_contimg.catalogs.naming import disambiguate

    names = iau_names("NVSS", [10.0, 10.0001, 10.0002, 20.0], [5.0, 5.0, 5.0, 5.0])
    assert len(set(names[:3])) == 1
    out = disambiguate(names)
    assert list(out[:3]) == [names[0] + "a", names[0] + "b", names[0] + "c"]
    assert out[3] == names[3]


def test_sexagesimal_parser():
    ra = parse_sexagesimal(["06 00 02.02", "12:30:00"], hours=True)
    dec = parse_sexagesimal(["-31 40 14.2", "+00 30 00", "-00 00 36"], hours=False)
    np.testing.assert_allclose(ra, [90.0084167, 187.5], atol=1e-7)
    np.testing.assert_allclose(dec, [-31.6706111, 0.5, -0.01], atol=1e-7)


# --- real files ------------------------------------------------------------------------
def test_real_nvss_extract_ingests(shared_data, tmp_path):
    path = shared_data / NVSS_REAL
    raw = Table.read(path)
    store = CatalogStore(tmp_path / "cat")
    assert store.ingest("nvss", [path]) == 639
    t = store.survey("nvss").cone(97.5, -31.5, 10.0)
    assert len(t) == 639
    # Names: the catalogue's own, prefixed; every one equals the truncated IAU name in hours.
    by_name = {str(n): i for i, n in enumerate(t["source_id"])}
    for row in raw[:50]:
        name = "NVSS J" + row["NVSS"].strip()
        i = by_name[name]
        assert t["ra_deg"][i] == pytest.approx(row["_RAJ2000"], abs=1e-9)
        assert t["dec_deg"][i] == pytest.approx(row["_DEJ2000"], abs=1e-9)
        # S1.4 is already mJy: no conversion at all (double-conversion defect).
        assert t["flux_mjy"][i] == pytest.approx(row["S1.4"])
        assert t["flux_err_mjy"][i] == pytest.approx(row["e_S1.4"])
        assert t["int_flux_mjy"][i] == pytest.approx(row["S1.4"])
        assert np.isnan(t["peak_flux_mjy"][i])
        assert t["maj_arcsec"][i] == pytest.approx(row["MajAxis"])
    built = iau_names("NVSS", raw["_RAJ2000"], raw["_DEJ2000"])
    # Built from the degree columns, the names agree with the published ones.
    own = np.char.add("NVSS J", np.char.strip(raw["NVSS"].astype(str)))
    assert np.mean(built == own) > 0.99
    # Extras kept as they are (masked PA stays missing).
    assert {"S1.4", "e_S1.4", "polFlux", "Field", "RAJ2000"} <= set(t.colnames)
    assert np.isnan(np.asarray(t["PA"], float)).sum() == int(np.ma.count_masked(raw["PA"]))


def test_real_racs_aegean_converts_jy_to_mjy(shared_data, tmp_path):
    path = shared_data / RACS_REAL
    raw = Table.read(path)
    store = CatalogStore(tmp_path / "cat")
    assert store.ingest("racs", [path]) == 7225
    t = store.survey("rax").box(200, 220, -25, -10)
    assert len(t) == 7225
    order = np.argsort(raw["uuid"])
    t = t[np.argsort(t["uuid"])]
    raw = raw[order]
    np.testing.assert_allclose(t["ra_deg"], raw["ra"], atol=1e-9)
    np.testing.assert_allclose(t["dec_deg"], raw["dec"], atol=1e-9)
    np.testing.assert_allclose(t["flux_mjy"], 1000.0 * raw["int_flux"], rtol=1e-6)
    np.testing.assert_allclose(t["peak_flux_mjy"], 1000.0 * raw["peak_flux"], rtol=1e-6)
    np.testing.assert_allclose(t["maj_arcsec"], raw["a"], rtol=1e-6)
    # The original Jy columns are kept untouched next to the normalised mJy ones.
    np.testing.assert_allclose(t["int_flux"], raw["int_flux"], rtol=1e-6)
    assert all(str(s).startswith("RACS J") for s in t["source_id"])
    assert len(set(t["source_id"])) == 7225  # unique (duplicates get a/b suffixes)


# --- generated layouts --------------------------------------------------------------------
def _nvss_table(n=50, seed=1, sexagesimal_only=False):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(10, 20, n)
    dec = rng.uniform(-5, 5, n)
    t = Table()
    if not sexagesimal_only:
        t["_RAJ2000"], t["_DEJ2000"] = ra, dec
    h = ra / 15.0
    t["RAJ2000"] = [f"{int(x):02d} {int(x * 60 % 60):02d} {x * 3600 % 60:05.2f}" for x in h]
    t["DEJ2000"] = [f"{'-' if d < 0 else '+'}{int(abs(d)):02d} {int(abs(d) * 60 % 60):02d} "
                    f"{abs(d) * 3600 % 60:04.1f}" for d in dec]
    t["S1.4"] = rng.uniform(3, 300, n)
    t["S1.4"].unit = "mJy"
    t["e_S1.4"] = 0.45 + 0.03 * t["S1.4"]
    t["MajAxis"] = rng.uniform(20, 60, n)
    t["MinAxis"] = rng.uniform(15, 40, n)
    t["PA"] = rng.uniform(-90, 90, n)
    return t, ra, dec


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz", ".csv", ".csv.gz", ".ecsv", ".vot"])
def test_nvss_layout_in_every_format(tmp_path, suffix):
    t, ra, dec = _nvss_table()
    plain = tmp_path / ("nvss" + suffix.replace(".gz", ""))
    fmt = {".fits": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".vot": "votable"}[plain.suffix]
    t.write(plain, format=fmt)
    path = plain
    if suffix.endswith(".gz"):
        path = tmp_path / ("nvss" + suffix)
        with open(plain, "rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    store = CatalogStore(tmp_path / "cat")
    # CSV drops units: the NVSS layout's documented unit (mJy) applies, once.
    assert store.ingest("nvss", [path]) == 50
    out = store.survey("nvss").box(0, 30, -10, 10)
    out = out[np.argsort(out["ra_deg"])]
    i = np.argsort(ra)
    np.testing.assert_allclose(out["ra_deg"], ra[i], atol=1e-9)
    np.testing.assert_allclose(out["flux_mjy"], np.asarray(t["S1.4"])[i], rtol=1e-9)
    expected = iau_names("NVSS", ra[i], dec[i])
    assert list(out["source_id"]) == list(expected)


def test_sexagesimal_only_positions(tmp_path):
    t, ra, dec = _nvss_table(sexagesimal_only=True)
    norm = normalise(t, "nvss")
    # The strings carry 0.01 s and 0.1 arcsec: positions good to that precision.
    np.testing.assert_allclose(norm.core["ra_deg"], ra, atol=0.01 * 15 / 3600 + 1e-9)
    np.testing.assert_allclose(norm.core["dec_deg"], dec, atol=0.1 / 3600 + 1e-9)


def test_first_vlass_selavy_layouts():
    rng = np.random.default_rng(3)
    n = 10
    first = Table({"RAJ2000": rng.uniform(0, 5, n), "DEJ2000": rng.uniform(0, 5, n),
                   "Fpeak": rng.uniform(1, 10, n), "Fint": rng.uniform(1, 10, n),
                   "Rms": np.full(n, 0.15), "Maj": np.full(n, 3.0), "Min": np.full(n, 2.0),
                   "PA": np.full(n, 10.0)})
    norm = normalise(first, "first")
    assert norm.layout == "first-vizier"
    np.testing.assert_allclose(norm.core["flux_mjy"], first["Fint"])
    np.testing.assert_allclose(norm.core["peak_flux_mjy"], first["Fpeak"])
    assert norm.core["source_id"][0].startswith("FIRST J")
    vlass = Table({"Component_name": [f"VLASS1QLCIR J0000{i:02d}.00+000000.0" for i in range(n)],
                   "RA": rng.uniform(0, 5, n), "DEC": rng.uniform(0, 5, n),
                   "Total_flux": rng.uniform(1, 10, n), "E_Total_flux": np.full(n, 0.2),
                   "Peak_flux": rng.uniform(1, 10, n), "DC_Maj": np.ones(n), "DC_Min": np.ones(n),
                   "DC_PA": np.zeros(n)})
    norm = normalise(vlass, "vlass")
    assert norm.layout == "vlass-gordon2021"
    assert norm.core["source_id"][3] == "VLASS1QLCIR J000003.00+000000.0"
    np.testing.assert_allclose(norm.core["flux_mjy"], vlass["Total_flux"])
    selavy = Table({"component_name": ["J000001-000001"] * n, "ra_deg_cont": rng.uniform(0, 5, n),
                    "dec_deg_cont": rng.uniform(0, 5, n), "flux_int": rng.uniform(1, 10, n),
                    "flux_peak": rng.uniform(1, 10, n)})
    selavy["flux_int"].unit = "mJy"
    norm = normalise(selavy, "rax")
    assert norm.layout == "racs-selavy"
    assert norm.core["source_id"][0] == "RACS J000001-000001"
    np.testing.assert_allclose(norm.core["flux_mjy"], selavy["flux_int"])


def test_generic_table_with_explicit_columns(tmp_path):
    t = Table({"RA_x": [10.0, 11.0], "Dec_x": [1.0, 2.0], "S": [0.005, 0.020]})
    path = tmp_path / "mine.csv"
    t.write(path)
    store = CatalogStore(tmp_path / "cat")
    with pytest.raises(ColumnError, match="--flux-unit"):
        store.ingest("vlass", [path], ra_column="RA_x", dec_column="Dec_x", flux_column="S")
    n = store.ingest("vlass", [path], ra_column="RA_x", dec_column="Dec_x", flux_column="S",
                     flux_unit="Jy")
    assert n == 2
    out = store.survey("vlass").cone(10.5, 1.5, 2.0)
    np.testing.assert_allclose(sorted(out["flux_mjy"]), [5.0, 20.0])
    # The generic column's nature is unknown: neither peak nor integrated is claimed.
    assert np.isnan(out["peak_flux_mjy"]).all() and np.isnan(out["int_flux_mjy"]).all()


def test_missing_and_ambiguous_columns_name_candidates():
    t = Table({"x": [1.0], "y": [2.0], "z": [3.0]})
    with pytest.raises(ColumnError) as err:
        normalise(t, "nvss")
    msg = str(err.value)
    assert "S1.4" in msg and "_RAJ2000" in msg and "--ra-column" in msg
    amb = Table({"ra": [1.0], "RA_DEG": [1.0], "dec": [2.0], "flux": [3.0]})
    with pytest.raises(ColumnError, match="ambiguous RA column"):
        normalise(amb, "vlass", flux_unit="mJy")
    with pytest.raises(ColumnError, match="not found"):
        normalise(amb, "vlass", ra_column="nope", flux_unit="mJy")


def test_flux_unit_conflict_is_an_error():
    t = Table({"ra": [1.0], "dec": [2.0], "flux": [3.0]})
    t["flux"].unit = "Jy"
    with pytest.raises(ColumnError, match="drop --flux-unit"):
        normalise(t, "vlass", flux_column="flux", flux_unit="mJy")
    norm = normalise(t, "vlass", flux_column="flux", flux_unit="Jy")
    assert norm.core["flux_mjy"][0] == pytest.approx(3000.0)


def test_reingest_is_idempotent_and_keyed_by_file(tmp_path):
    store = CatalogStore(tmp_path / "cat")
    a, _, _ = _nvss_table(n=30, seed=1)
    b, _, _ = _nvss_table(n=20, seed=2)
    pa, pb = tmp_path / "a.fits", tmp_path / "b.fits"
    a.write(pa)
    b.write(pb)
    store.ingest("nvss", [pa, pb])
    store.ingest("nvss", [pa])
    assert store.list()[0]["n_rows"] == 50
    assert len(store.survey("nvss").box(0, 360, -90, 90)) == 50
    # A changed file replaces its previous rows; an identical copy elsewhere replaces too.
    a[:10].write(pa, overwrite=True)
    store.ingest("nvss", [pa])
    assert len(store.survey("nvss").box(0, 360, -90, 90)) == 30
    copy = tmp_path / "copy_of_b.fits"
    shutil.copy(pb, copy)
    store.ingest("nvss", [copy])
    info = store.list()[0]
    assert info["n_rows"] == 30 and info["n_files"] == 2


def test_progress_callback_and_bad_inputs(tmp_path):
    t, _, _ = _nvss_table(n=10)
    p = tmp_path / "n.fits"
    t.write(p)
    seen = []
    CatalogStore(tmp_path / "cat").ingest("nvss", p, progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (10, 10)
    with pytest.raises(UnknownCatalog, match="nvss, first, rax, vlass, master"):
        CatalogStore(tmp_path / "cat").ingest("sumss", p)
    with pytest.raises(CatalogError, match="does not exist"):
        CatalogStore(tmp_path / "cat").ingest("nvss", tmp_path / "missing.fits")
    bad = tmp_path / "x.dat"
    bad.write_text("hello")
    with pytest.raises(CatalogError, match="unknown table format"):
        CatalogStore(tmp_path / "cat").ingest("nvss", bad)
    with pytest.raises(CatalogError, match="built, not ingested"):
        CatalogStore(tmp_path / "cat").ingest("master", p)


@pytest.mark.parametrize("unit,factor", [("Jy/beam", 1000.0), ("JY/BEAM", 1000.0), ("mJy", 1.0),
                                         ("uJy", 1e-3), ("mJy/beam", 1.0)])
def test_column_units_are_applied_once(unit, factor):
    t = Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0], "peak_flux": [0.5, 2.0], "int_flux": [1.0, 4.0],
               "local_rms": [0.001, 0.001]})
    t["peak_flux"].unit = unit
    t["int_flux"].unit = unit
    norm = normalise(t, "rax")  # Aegean layout; the column's unit overrides the Jy default
    np.testing.assert_allclose(norm.core["flux_mjy"], np.array([1.0, 4.0]) * factor)
    np.testing.assert_allclose(norm.core["peak_flux_mjy"], np.array([0.5, 2.0]) * factor)


def test_bad_values_and_units_are_column_errors():
    t = Table({"ra": [1.0], "dec": [2.0], "flux": ["bright"]})
    with pytest.raises(ColumnError, match="not numeric"):
        normalise(t, "vlass", flux_column="flux", flux_unit="mJy")
    t = Table({"ra": [1.0], "dec": [2.0], "flux": [1.0]})
    t["flux"].unit = "furlong"
    with pytest.raises(ColumnError, match="furlong"):
        normalise(t, "vlass", flux_column="flux")
    t = Table({"ra": [1.0], "dec": [2.0], "flux": [1.0]})
    with pytest.raises(ColumnError, match="unit"):
        normalise(t, "vlass", flux_column="flux", flux_unit="parsec")
    t = Table({"ra": [1.0, 2.0], "dec": [2.0, 95.0], "flux": [1.0, 2.0]})
    with pytest.raises(ColumnError, match="no valid position"):
        normalise(t, "vlass", flux_column="flux", flux_unit="mJy")
    masked = Table({"ra": [1.0, 2.0], "dec": [2.0, 3.0], "flux": [1.0, 2.0],
                    "err": np.ma.MaskedArray([1, 2], mask=[False, True])}, masked=True)
    norm = normalise(masked, "vlass", flux_column="flux", flux_unit="mJy")
    assert np.ma.is_masked(norm.extras["err"]) or np.isnan(norm.extras["err"][1])
