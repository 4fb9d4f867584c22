"""``contimg-photometry measure`` and the positions reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.cli.main import main
from dsa110_contimg.core.errors import ColumnError
from dsa110_contimg.catalogs.positions import read_positions
from dsa110_contimg.science.simulate import simulate_image

RA = np.array([150.0, 150.01, 149.995])
DEC = np.array([37.0, 37.02, 36.99])
PEAK = np.array([0.02, 0.01, 0.005])


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    sim = simulate_image((256, 256), ra_deg=RA, dec_deg=DEC, peak_jyb=PEAK, naxis=4, seed=7)
    return sim.write(d / "field.img-image-pb.fits")


def test_csv_positions_to_stdout_table(image, tmp_path, capsys):
    pos = tmp_path / "pos.csv"
    Table({"name": ["a", "b", "c"], "RA_deg": RA, "Dec_Deg": DEC}).write(pos)
    assert main(["measure", str(image), "--positions", str(pos)]) == 0
    out = capsys.readouterr().out.splitlines()
    # the input's name column first; fluxes in mJy/beam with 3 decimals
    assert out[0].split()[:2] == ["name", "ra_deg"] and "peak_mjyb" in out[0] and len(out) == 3 + 3
    assert "mJy / beam" in out[1]
    assert [line.split()[0] for line in out[3:]] == ["a", "b", "c"]
    values = [line.split()[5] for line in out[3:]]
    assert all(len(v.split(".")[1]) == 3 for v in values)
    np.testing.assert_allclose([float(v) / 1e3 for v in values], PEAK, atol=5e-3)


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".fits", ".vot"])
def test_exports_keep_input_ids_units_and_metadata(image, tmp_path, suffix):
    import astropy.units as u

    pos = tmp_path / "pos.csv"
    Table({"id": [11, 12, 13], "name": ["src a", "src,b", "c"], "ra": RA, "dec": DEC}).write(pos)
    out = tmp_path / f"out{suffix}"
    assert main(["measure", str(image), "--positions", str(pos), "-o", str(out)]) == 0
    t = Table.read(out)
    assert list(t["id"]) == [11, 12, 13] and [str(x) for x in t["name"]] == ["src a", "src,b", "c"]
    np.testing.assert_allclose(np.asarray(t["peak_jyb"], float), PEAK, atol=5e-3)
    if suffix == ".csv":   # no metadata block in CSV: survey as a column, units in the names
        assert set(t["survey"]) == {"positions from pos.csv"}
        return
    assert t["peak_jyb"].unit == u.Jy / u.beam and t["ra_deg"].unit == u.deg
    meta = {k.lower(): v for k, v in t.meta.items()}
    if suffix == ".vot":
        from astropy.io.votable import parse_single_table

        meta = {p.name: p.value for p in parse_single_table(out).params}
    assert meta["survey"] == "positions from pos.csv" and meta["source_column"] == "name"


def test_every_position_failed_exits_1(image, tmp_path, capsys):
    pos = tmp_path / "off.csv"
    Table({"ra": [10.0, 11.0], "dec": [-20.0, -21.0]}).write(pos)   # far off the image
    out = tmp_path / "off.ecsv"
    assert main(["measure", str(image), "--positions", str(pos), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len([e for e in err if "error:" in e]) == 1 and "none of the 2 positions" in err[-1]
    assert len(Table.read(out)) == 2          # the flagged rows are still written
    assert main(["measure", str(image), "--positions", str(pos), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["success"] for r in rows] == [False, False]


def test_sexagesimal_vizier_columns_json(image, tmp_path, capsys):
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    c = SkyCoord(RA * u.deg, DEC * u.deg)
    pos = tmp_path / "viz.ecsv"
    Table({"RAJ2000": c.ra.to_string(u.hour, sep=":", precision=3),
           "DEJ2000": c.dec.to_string(sep=":", precision=2, alwayssign=True)}).write(pos)
    assert main(["measure", str(image), "--positions", str(pos), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["method"] == "forced"
    rows = doc["rows"]
    assert len(rows) == 3 and all(r["success"] for r in rows)
    np.testing.assert_allclose([r["ra_deg"] for r in rows], RA, atol=1e-5)
    np.testing.assert_allclose([r["peak_jyb"] for r in rows], PEAK, atol=5e-3)


@pytest.mark.parametrize("suffix,fmt", [(".csv", "ascii.csv"), (".ecsv", "ascii.ecsv"),
                                        (".fits", "fits"), (".vot", "votable")])
def test_output_formats_follow_suffix(image, tmp_path, suffix, fmt):
    pos = tmp_path / "pos.fits"
    Table({"_RAJ2000": RA, "_DEJ2000": DEC}).write(pos)
    out = tmp_path / f"out{suffix}"
    assert main(["measure", str(image), "--positions", str(pos), "-o", str(out),
                 "--method", "peak"]) == 0
    t = Table.read(out, format=fmt)
    assert len(t) == 3 and "local_rms_jyb" in t.colnames
    assert np.all(t["peak_jyb"] > 0)


def test_votable_positions_and_explicit_columns(image, tmp_path, capsys):
    pos = tmp_path / "p.vot"
    Table({"lon": RA, "lat": DEC}).write(pos, format="votable")
    assert main(["measure", str(image), "--positions", str(pos), "--ra-column", "LON",
                 "--dec-column", "lat", "--json", "--nbeam", "4",
                 "--cluster-threshold", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["nbeam"] == 4.0 and len(doc["rows"]) == 3


def test_beam_option_for_image_without_beam(tmp_path, capsys):
    sim = simulate_image((128, 128), ra_deg=[150.0], dec_deg=[37.0], peak_jyb=[0.05],
                         include_beam=False, naxis=2)
    img = sim.write(tmp_path / "mosaic.fits")
    pos = tmp_path / "p.csv"
    Table({"ra": [150.0], "dec": [37.0]}).write(pos)
    assert main(["measure", str(img), "--positions", str(pos)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mosaic.fits" in err[0] and "beam" in err[0]
    assert main(["measure", str(img), "--positions", str(pos), "--json",
                 "--beam", "15", "10", "30"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["peak_jyb"] == pytest.approx(0.05, abs=5e-3)


@pytest.mark.parametrize("content,match", [
    ("x,y\n1,2\n", "no RA column"),
    ("ra,dec\nfoo,bar\n", "not an angle"),
])
def test_bad_tables_exit_1_one_line(image, tmp_path, capsys, content, match):
    pos = tmp_path / "bad.csv"
    pos.write_text(content)
    assert main(["measure", str(image), "--positions", str(pos)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and "bad.csv" in err[0]


def test_missing_positions_and_files_exit_codes(image, tmp_path, capsys):
    assert main(["measure", str(image)]) == 2          # usage: neither --positions nor --catalog
    assert "--positions" in capsys.readouterr().err
    assert main(["measure", str(image), "--positions", str(tmp_path / "none.csv")]) == 1
    assert "does not exist" in capsys.readouterr().err
    pos = tmp_path / "p.csv"
    Table({"ra": RA, "dec": DEC}).write(pos)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"\x00" * 3000)
    assert main(["measure", str(garbage), "--positions", str(pos)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a FITS" in err[0]
    assert main(["measure", str(image), "--positions", str(pos), "-o",
                 str(tmp_path / "out.xlsx")]) == 2   # usage: unknown output suffix


def test_read_positions_units_and_ranges(tmp_path):
    import astropy.units as u

    t = Table({"RA": np.array([10.0, 20.0]) * u.hourangle.to(u.deg) * u.deg,
               "DEC": [-30.0, 95.0]})
    t.write(tmp_path / "bad_dec.ecsv")
    with pytest.raises(ColumnError, match="outside"):
        read_positions(tmp_path / "bad_dec.ecsv")
    t2 = Table({"ra": ["12h00m00s", "150.5"], "dec": ["-30d30m00s", "-1.5"]})
    t2.write(tmp_path / "mixed.ecsv")
    ra, dec, table = read_positions(tmp_path / "mixed.ecsv")
    np.testing.assert_allclose(ra, [180.0, 150.5])
    np.testing.assert_allclose(dec, [-30.5, -1.5])
    assert len(table) == 2


def test_read_positions_real_nvss_extract(shared_data):
    ra, dec, table = read_positions(shared_data / "real" / "nvss_vizier_VIII65_extract.fits")
    assert len(ra) == 639
    assert np.all((ra > 89) & (ra < 106)) and np.all((dec > -33) & (dec < -30))
    # the sexagesimal columns give the same positions as the degree columns
    ra2, dec2, _ = read_positions(shared_data / "real" / "nvss_vizier_VIII65_extract.fits",
                                  "RAJ2000", "DEJ2000")
    np.testing.assert_allclose(ra2, ra, atol=2e-4)
    np.testing.assert_allclose(dec2, dec, atol=2e-4)
