"""Query semantics of the catalogue store: cones against brute force, boxes, ellipses,
footprints, flux floors, limits and missing catalogues."""

from __future__ import annotations

import types

import numpy as np
import pytest
from astropy.coordinates import angular_separation
from astropy.table import Table
from astropy.wcs import WCS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsa110_contimg.store.catalogs import SURVEYS, CatalogStore
from dsa110_contimg.core.errors import CatalogError, CatalogMissing, UnknownCatalog


def _sky(seed=7, n=30_000):
    """All-sky sources plus dense clusters at both poles and across RA 0/360."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    m = 3000
    pole_n = 90 - np.degrees(np.arccos(1 - rng.uniform(0, 1 - np.cos(np.radians(8)), m)))
    pole_s = -pole_n
    strip_ra = np.mod(rng.uniform(-3, 3, m), 360)
    strip_dec = rng.uniform(-60, 60, m)
    ra = np.r_[ra, rng.uniform(0, 360, m), rng.uniform(0, 360, m), strip_ra, [0.0, 359.9999999]]
    dec = np.r_[dec, pole_n, pole_s, strip_dec, [0.0, 0.0]]
    flux = np.round(rng.uniform(2.5, 500, ra.size), 1)  # ties are possible on purpose
    t = Table({"_RAJ2000": ra, "_DEJ2000": dec, "S1.4": flux, "e_S1.4": 0.5 + 0.02 * flux})
    t["S1.4"].unit = "mJy"
    t["e_S1.4"].unit = "mJy"
    return t


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    d = tmp_path_factory.mktemp("sky")
    t = _sky()
    path = d / "allsky.fits"
    t.write(path)
    store = CatalogStore(d / "cat")
    store.ingest("nvss", [path])
    return store.survey("nvss"), np.asarray(t["_RAJ2000"]), np.asarray(t["_DEJ2000"]), \
        np.asarray(t["S1.4"])


def _brute(ra, dec, ra0, dec0, r):
    sep = np.degrees(angular_separation(*np.radians([ra0, dec0]), np.radians(ra), np.radians(dec)))
    return np.flatnonzero(sep <= r)


centres = st.tuples(
    st.one_of(st.floats(0, 360, exclude_max=True), st.sampled_from([0.0, 359.99, 0.01, 180.0])),
    st.one_of(st.floats(-90, 90), st.floats(85, 90), st.floats(-90, -85)),
    st.one_of(st.floats(0.01, 3.5), st.floats(3.5, 20.0)),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=centres)
def test_cone_equals_brute_force(sky, c):
    cat, ra, dec, flux = sky
    ra0, dec0, r = c
    got = cat.cone(ra0, dec0, r)
    exp = _brute(ra, dec, ra0, dec0, r)
    assert len(got) == exp.size
    np.testing.assert_allclose(np.sort(got["ra_deg"]), np.sort(ra[exp]))
    np.testing.assert_allclose(np.sort(got["dec_deg"]), np.sort(dec[exp]))
    f = np.asarray(got["flux_mjy"])
    assert np.all(np.diff(f) <= 0)  # brightest first


@pytest.mark.parametrize("ra0,dec0,r", [(0.0, 0.0, 1.0), (359.8, 30.0, 2.0), (0.2, -45, 3.5),
                                        (123.0, 89.9, 2.0), (10.0, -88.5, 3.0), (250, 86, 4.5),
                                        (0.0, 90.0, 1.0), (0.0, -90.0, 8.0)])
def test_cone_edge_cases(sky, ra0, dec0, r):
    cat, ra, dec, _ = sky
    got = cat.cone(ra0, dec0, r)
    assert len(got) == _brute(ra, dec, ra0, dec0, r).size > 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=centres, min_flux=st.floats(2.5, 400), n=st.integers(0, 50))
def test_min_flux_and_max_sources(sky, c, min_flux, n):
    cat, ra, dec, flux = sky
    ra0, dec0, r = c
    exp = _brute(ra, dec, ra0, dec0, r)
    exp = exp[flux[exp] >= min_flux]
    got = cat.cone(ra0, dec0, r, min_flux_mjy=min_flux, max_sources=n)
    # Exactly min(n, all matches) rows: the radius cut comes before the limit, so corner
    # sources of the search box never push real members out.
    assert len(got) == min(n, exp.size)
    if n:
        top = np.sort(flux[exp])[::-1][:n]
        np.testing.assert_allclose(got["flux_mjy"], top)
    assert np.all(np.asarray(got["flux_mjy"]) >= min_flux)


def test_box_wraps_ra_and_reaches_poles(sky):
    cat, ra, dec, _ = sky
    got = cat.box(350.0, 10.0, -20.0, 20.0)
    exp = ((ra >= 350) | (ra <= 10)) & (dec >= -20) & (dec <= 20)
    assert len(got) == exp.sum() > 0
    got = cat.box(0, 360, 87.0, 90.0)
    assert len(got) == (dec >= 87).sum() > 0
    with pytest.raises(CatalogError, match="Dec range"):
        cat.box(0, 10, 5, -5)


@pytest.mark.parametrize("ra0,dec0,rr,rd", [(100.0, 30.0, 2.0, 0.5), (0.3, -10.0, 1.0, 3.0),
                                            (200.0, 70.0, 3.0, 1.0)])
def test_ellipse_definition(sky, ra0, dec0, rr, rd):
    cat, ra, dec, _ = sky
    got = cat.ellipse(ra0, dec0, rr, rd)
    dra = (np.mod(ra - ra0 + 180, 360) - 180) * np.cos(np.radians(dec0))
    exp = (dra / rr) ** 2 + ((dec - dec0) / rd) ** 2 <= 1
    assert len(got) == exp.sum() > 0


def _image(nx, ny, ra0, dec0, pix_deg, proj="SIN"):
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [nx / 2 + 0.5, ny / 2 + 0.5]
    w.wcs.cdelt = [-pix_deg, pix_deg]
    return w


@pytest.mark.parametrize("ra0,dec0,nx,ny", [(0.5, 20.0, 400, 60), (150.0, -30.0, 400, 60),
                                            (40.0, 88.0, 400, 60),
                                            (10.0, -89.5, 300, 300)])  # contains the pole
def test_in_footprint_elongated_mosaic_with_blanked_border(tmp_path, ra0, dec0, nx, ny):
    pix = 30 / 3600  # 400 x 60 pixels: a 3.3 x 0.5 deg strip
    w = _image(nx, ny, ra0, dec0, pix)
    rng = np.random.default_rng(5)
    # Truth by construction: sources at known pixel positions, in and around the image.
    x = rng.uniform(-60, nx + 60, 3000)
    y = rng.uniform(-40, ny + 40, 3000)
    sra, sdec = w.pixel_to_world_values(x, y)
    data = np.ones((ny, nx))
    data[:, :50] = np.nan      # blanked left border
    data[-8:, :] = np.nan      # blanked top rows
    inside = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    ix, iy = np.clip(np.round(x).astype(int), 0, nx - 1), np.clip(np.round(y).astype(int), 0, ny - 1)
    expected = inside & np.isfinite(data[iy, ix])
    t = Table({"ra": np.mod(sra, 360), "dec": sdec, "flux": rng.uniform(1, 100, x.size)})
    path = tmp_path / "src.ecsv"
    t.write(path)
    store = CatalogStore(tmp_path / "cat")
    store.ingest("vlass", [path], flux_unit="mJy")
    image = types.SimpleNamespace(wcs=w, shape=(ny, nx), data=data)
    got = store.survey("vlass").in_footprint(image)
    assert len(got) == expected.sum() > 100
    assert np.all(np.isfinite(data[np.round(got["y_pix"]).astype(int),
                                   np.round(got["x_pix"]).astype(int)]))
    # A margin keeps sources away from the array edges and from blanked pixels.
    got_m = store.survey("vlass").in_footprint(image, margin_pix=5, max_sources=10_000)
    assert len(got_m) < len(got)
    assert np.all(got_m["x_pix"] >= 4.5) and np.all(got_m["y_pix"] <= ny - 5.5)
    assert np.all(got_m["x_pix"] >= 54.5)
    top = store.survey("vlass").in_footprint(image, max_sources=5)
    np.testing.assert_allclose(top["flux_mjy"], np.sort(got["flux_mjy"])[::-1][:5])


def test_in_footprint_with_radio_image(tmp_path):
    """The footprint query accepts the service's RadioImage."""
    from dsa110_contimg.science.image import RadioImage

    w = _image(100, 80, 210.0, -19.0, 10 / 3600)
    header = w.to_header()
    header["BMAJ"] = header["BMIN"] = 30 / 3600
    header["BPA"] = 0.0
    header["BUNIT"] = "Jy/beam"
    img = RadioImage.from_array(np.ones((80, 100), dtype=np.float32), header)
    ra, dec = w.pixel_to_world_values([10, 50, 200], [10, 40, 40])
    t = Table({"ra": ra, "dec": dec, "flux": [1.0, 2.0, 3.0]})
    t.write(tmp_path / "s.csv")
    store = CatalogStore(tmp_path / "cat")
    store.ingest("first", [tmp_path / "s.csv"], flux_unit="mJy")
    got = store.survey("first").in_footprint(img)
    assert list(got["flux_mjy"]) == [2.0, 1.0]


def test_query_reads_any_region_value(sky):
    # the public queries build a Region; query() takes any, including one of a caller's own
    from dsa110_contimg.catalogs.region import Box, Cone, Ellipse

    cat, ra, dec, _ = sky
    for region, direct in ((Cone(100.0, 10.0, 2.0), cat.cone(100.0, 10.0, 2.0, max_sources=40)),
                           (Box(350.0, 10.0, -5.0, 5.0), cat.box(350.0, 10.0, -5.0, 5.0,
                                                                 max_sources=40)),
                           (Ellipse(0.3, -10.0, 1.0, 3.0), cat.ellipse(0.3, -10.0, 1.0, 3.0,
                                                                       max_sources=40))):
        got = cat.query(region, max_sources=40)
        assert list(got["source_id"]) == list(direct["source_id"]) and len(got) > 0

    class Ring(Cone):
        def contains(self, ra_deg, dec_deg):
            sep = angular_separation(*np.radians([self.ra_deg, self.dec_deg]),
                                     np.radians(ra_deg), np.radians(dec_deg))
            return (np.degrees(sep) <= self.radius_deg) & (np.degrees(sep) >= self.radius_deg / 2)

    ring = cat.query(Ring(200.0, -30.0, 3.0))
    sep = np.degrees(angular_separation(*np.radians([200.0, -30.0]), np.radians(ra),
                                        np.radians(dec)))
    assert len(ring) == ((sep >= 1.5) & (sep <= 3.0)).sum() > 0
    assert np.all(np.diff(np.asarray(ring["flux_mjy"])) <= 0)


def test_missing_catalogue_and_unknown_names(tmp_path, sky):
    store = CatalogStore(tmp_path / "empty")
    with pytest.raises(CatalogMissing, match="never ingested"):
        store.survey("first").cone(10, 10, 1)
    with pytest.raises(UnknownCatalog) as err:
        store.survey("sumss")
    for s in SURVEYS:
        assert s in str(err.value)
    assert store.survey("RACS").name == "rax"
    assert not (tmp_path / "empty" / "first.sqlite3").exists()  # reading never creates files
    with pytest.raises(CatalogError, match="radius"):
        sky[0].cone(10, 10, 0)
    with pytest.raises(CatalogError, match="Dec"):
        sky[0].cone(10, 95, 1)


def test_region_outside_coverage(tmp_path):
    t = Table({"_RAJ2000": [10.0, 11.0, 12.0], "_DEJ2000": [0.0, 1.0, 2.0], "S1.4": [5.0, 6, 7]})
    t["S1.4"].unit = "mJy"
    t.write(tmp_path / "n.fits")
    store = CatalogStore(tmp_path / "cat")
    store.ingest("nvss", [tmp_path / "n.fits"])
    cat = store.survey("nvss")
    with pytest.raises(CatalogMissing, match="does not cover"):
        cat.cone(200.0, 40.0, 1.0)
    full = cat.cone(11.0, 1.0, 0.5)
    assert full.meta["coverage"] == "full" and len(full) == 1
    part = cat.cone(12.0, 2.0, 2.0)  # the padded coverage box ends at Dec 3
    assert part.meta["coverage"] == "partial" and part.meta["notes"]
    assert sorted(part["flux_mjy"]) == [6.0, 7.0]


def test_list_reports_rows_and_coverage(sky):
    cat = sky[0]
    info = cat.store.list()
    assert [i["survey"] for i in info] == ["nvss"]
    assert info[0]["n_rows"] == len(sky[1])
    # Coverage is the sources' extent padded by a few mean spacings (<= 1 deg).
    assert sky[2].min() - 1.0 <= info[0]["dec_min"] <= sky[2].min()
    assert info[0]["files"][0]["path"].endswith("allsky.fits")


@pytest.mark.parametrize("ra0,dec0,r", [(100.0, 10.0, 0.5), (200.0, -30.0, 3.5), (45.0, 60.0, 2.0)])
def test_zone_index_reads_only_nearby_rows(sky, ra0, dec0, r):
    cat, ra, dec, _ = sky
    got = cat.cone(ra0, dec0, r)
    # Candidates come from a tight per-zone RA range: a few zone-heights of slack
    # around the cone, never the whole table.
    area_cone = 2 * np.pi * (1 - np.cos(np.radians(r)))
    slack = 1 + 4 * 0.25 / r
    density = ra.size / (4 * np.pi)
    assert got.meta["n_candidates"] <= slack * area_cone * density * 1.3 + 20
    assert got.meta["n_candidates"] < ra.size / 50


def test_queries_run_while_a_writer_holds_the_lock(sky):
    """WAL: a reader is never blocked by an ingest in progress."""
    import sqlite3

    cat = sky[0]
    before = len(cat.cone(100.0, 10.0, 2.0))
    writer = sqlite3.connect(cat.path, timeout=1)
    writer.isolation_level = None
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM sources WHERE zone = zone")
        assert len(cat.cone(100.0, 10.0, 2.0)) == before
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_progress_bar_on_request(tmp_path, capsys):
    t = Table({"_RAJ2000": np.linspace(1, 2, 120), "_DEJ2000": np.zeros(120), "S1.4": np.ones(120)})
    t["S1.4"].unit = "mJy"
    t.write(tmp_path / "n.fits")
    CatalogStore(tmp_path / "c").ingest("nvss", tmp_path / "n.fits", progress=True)
    err = capsys.readouterr().err
    assert "120/120 rows" in err and "#" * 30 in err
    CatalogStore(tmp_path / "c").ingest("nvss", tmp_path / "n.fits")  # not a TTY: silent
    assert capsys.readouterr().err == ""


def _count_in_child(cat, queue):
    queue.put(len(cat.cone(100.0, 10.0, 2.0)))


def test_store_survives_fork(sky):
    """A forked worker gets fresh connections, not the parent's pooled ones."""
    import multiprocessing as mp

    cat = sky[0]
    expected = len(cat.cone(100.0, 10.0, 2.0))  # the parent's pool holds a connection now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_count_in_child, args=(cat, q))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and q.get(timeout=5) == expected
    assert len(cat.cone(100.0, 10.0, 2.0)) == expected


def test_damaged_database_is_a_store_error(tmp_path):
    from dsa110_contimg.core.errors import StoreError

    (tmp_path / "nvss.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="nvss"):
        CatalogStore(tmp_path).survey("nvss").cone(1, 1, 1)


def test_overlapping_extracts_give_each_source_once(tmp_path, capsys):
    # two VizieR cone extracts of NVSS that overlap, as an astronomer downloads them: the
    # names both hold are one source each; the newer file's rows replace the older ones
    rng = np.random.default_rng(3)
    n = 300
    ra = 150 + rng.uniform(-2, 2, n)
    dec = 30 + rng.uniform(-2, 2, n)
    names = np.array([f"J{i:06d}+300000" for i in range(n)])
    flux = rng.uniform(3, 300, n)

    def extract(sel, path, scale=1.0):
        t = Table({"NVSS": names[sel], "_RAJ2000": ra[sel], "_DEJ2000": dec[sel],
                   "S1.4": flux[sel] * scale})
        t["S1.4"].unit = "mJy"
        t.write(path)
        return path

    a = extract(slice(0, 200), tmp_path / "a.fits")
    b = extract(slice(150, 300), tmp_path / "b.fits", scale=2.0)
    from dsa110_contimg.cli.main import main

    assert main(["catalog", "ingest", "nvss", str(a), "--catalog-dir", str(tmp_path / "cat")]) == 0
    assert main(["catalog", "ingest", "nvss", str(b), "--catalog-dir", str(tmp_path / "cat")]) == 0
    out = capsys.readouterr().out
    assert "note: 50 row(s) of earlier files had the same names and were replaced" in out
    store = CatalogStore(tmp_path / "cat")
    cone = store.survey("nvss").cone(150.0, 30.0, 5.0)
    ids = np.asarray(cone["source_id"]).astype(str)
    assert len(ids) == n and len(set(ids)) == n
    got = dict(zip(ids, np.asarray(cone["flux_mjy"])))
    assert got["NVSS J000160+300000"] == pytest.approx(2 * flux[160])   # the newer file's row
    assert got["NVSS J000010+300000"] == pytest.approx(flux[10])
    assert sorted(f["n_rows"] for f in store.survey("nvss").info()["files"]) == [150, 150]
    store.close()


def test_repeated_cone_reads_follow_every_ingest(tmp_path):
    # the same region read again gives the same rows, whatever the caller did to the
    # first table, and every ingest (by this store or another) is seen at once: a file
    # ingested again under its path with changed fluxes and as many rows, another file
    # replacing some names, a file adding rows
    rng = np.random.default_rng(5)
    n = 120
    ra, dec = 150 + rng.uniform(-1, 1, n), 30 + rng.uniform(-1, 1, n)
    names = np.array([f"J{i:06d}+300000" for i in range(n)])

    def extract(sel, path, scale):
        t = Table({"NVSS": names[sel], "_RAJ2000": ra[sel], "_DEJ2000": dec[sel],
                   "S1.4": np.arange(n, dtype=float)[sel] * scale + 3.0})
        t["S1.4"].unit = "mJy"
        t.write(path, overwrite=True)
        return path

    reader = CatalogStore(tmp_path / "cat")
    writer = CatalogStore(tmp_path / "cat")
    writer.ingest("nvss", [extract(slice(0, 80), tmp_path / "a.fits", 1.0)])
    first = reader.survey("nvss").cone(150.0, 30.0, 2.0)
    flux = dict(zip(np.asarray(first["source_id"]).astype(str), np.asarray(first["flux_mjy"])))
    first["flux_mjy"][:] = -1.0
    again = reader.survey("nvss").cone(150.0, 30.0, 2.0)
    assert dict(zip(np.asarray(again["source_id"]).astype(str), np.asarray(again["flux_mjy"]))) == flux
    assert again.meta["n_candidates"] == first.meta["n_candidates"]

    def fluxes():
        got = reader.survey("nvss").cone(150.0, 30.0, 2.0)
        return dict(zip(np.asarray(got["source_id"]).astype(str), np.asarray(got["flux_mjy"])))

    writer.ingest("nvss", [extract(slice(0, 80), tmp_path / "a.fits", 2.0)])
    assert fluxes() == {k: 2.0 * (v - 3.0) + 3.0 for k, v in flux.items()}
    writer.ingest("nvss", [extract(slice(70, 80), tmp_path / "b.fits", 10.0)])
    assert fluxes()["NVSS J000075+300000"] == 753.0
    writer.ingest("nvss", [extract(slice(80, n), tmp_path / "c.fits", 1.0)])
    assert len(fluxes()) == n
    reader.close()
    writer.close()


def test_repeated_and_blank_names_in_one_file(tmp_path):
    t = Table({"NVSS": ["J1", "J1", "", "", "J2"], "_RAJ2000": [150.0, 150.1, 150.2, 150.3, 150.4],
               "_DEJ2000": [30.0] * 5, "S1.4": [10.0, 20.0, 30.0, 40.0, 50.0]})
    t["S1.4"].unit = "mJy"
    t.write(tmp_path / "t.fits")
    store = CatalogStore(tmp_path / "cat")
    assert store.ingest("nvss", [tmp_path / "t.fits"]) == 4
    notes = store.survey("nvss").last_write_notes
    assert notes == ["1 repeated name(s) in the file: the first row of each kept"]
    cone = store.survey("nvss").cone(150.2, 30.0, 1.0)
    ids = sorted(np.asarray(cone["source_id"]).astype(str))
    # blank names are named by position, as in a table without names
    assert ids == ["NVSS J1", "NVSS J100048+300000", "NVSS J100112+300000", "NVSS J2"]
    assert dict(zip(np.asarray(cone["source_id"]).astype(str), cone["flux_mjy"]))["NVSS J1"] == 10.0
    store.close()


def test_overlapping_extracts_of_the_real_nvss_file(shared_data, tmp_path):
    # the real VizieR extract cut into two overlapping downloads: each source once in a cone
    t = Table.read(shared_data / "real" / "nvss_vizier_VIII65_extract.fits")
    t[:400].write(tmp_path / "a.fits")
    t[300:].write(tmp_path / "b.fits")
    store = CatalogStore(tmp_path / "cat")
    store.ingest("nvss", [tmp_path / "a.fits", tmp_path / "b.fits"])
    assert store.survey("nvss").last_write_notes == [
        "100 row(s) of earlier files had the same names and were replaced"]
    ra, dec = float(np.median(t["_RAJ2000"])), float(np.median(t["_DEJ2000"]))
    ids = np.asarray(store.survey("nvss").cone(ra, dec, 10.0)["source_id"]).astype(str)
    assert len(ids) == len(t) == len(set(ids))
    store.close()
