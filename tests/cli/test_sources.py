"""``sources list|show`` and ``catalog ingest monitor``: the JSON fields, the filters, the
associations, sexagesimal monitor lists."""

from __future__ import annotations

import json

import numpy as np

from dsa110_contimg.cli.main import main
from dsa110_contimg.store import detections as ds
from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps

FIELDS = {"id", "name", "kind", "ra_deg", "dec_deg", "first_detected_mjd", "new_high_sigma",
          "n_detections", "n_measurements"}


def _database(tmp_path):
    path = tmp_path / "products.sqlite3"
    db = open_products_db(path)
    with db.engine.begin() as conn:
        image = ps.store_image_measurements(conn, {
            "path": "/d/a.fits", "content_id": "x", "kind": "image", "method": "forced",
            "catalog": "nvss", "mjd": 60010.0, "ra_center_deg": 150.0, "dec_center_deg": 37.0,
            "radius_deg": 0.5}, np.zeros(0, np.int64), {k: np.zeros(0) for k in ps.MEASUREMENT_COLUMNS})
        cat = ps.upsert_sources(conn, "nvss", ["NVSS J100000+370000"], [150.0], [37.0], [20.0])
        new = ps.upsert_sources(conn, "dsa110", ["DSA110 J100010.00+370100.0"], [150.04], [37.02],
                                kind="new")
        faint = ps.upsert_sources(conn, "dsa110", ["DSA110 J100020.00+370200.0"], [150.08], [37.03],
                                  kind="new")
        mon = ps.upsert_sources(conn, "monitor", ["PSR X"], [150.1], [37.1], kind="monitor")
        ds.save_detection_positions(conn, [(int(new[0]), 150.0401, 37.0201, 4.0, 4.0, 1, 60010.0,
                                            60010.0)])
        cols = {c: [None] for c in ds.DETECTION_COLUMNS}
        cols.update(source_id=[int(new[0])], ra_deg=[150.0401], dec_deg=[37.0201], flags=[0],
                    status=["new_source"], n_candidates=[0], peak_jyb=[0.05], mjd=[60010.0])
        ds.replace_detections(conn, image, cols)
        ds.record_new_sources(conn, [
            {"source_id": int(new[0]), "image_id": image, "mjd": 60010.0, "peak_jyb": 0.05,
             "new_high_sigma": 50.0, "likely_transient": True, "n_earlier_images": 3},
            {"source_id": int(faint[0]), "image_id": image, "mjd": 60010.0, "peak_jyb": 0.008,
             "new_high_sigma": 8.0, "likely_transient": False, "n_earlier_images": 3}])
    return path, int(cat[0]), int(new[0]), int(faint[0]), int(mon[0])


def test_sources_list_json_fields_and_filters(tmp_path, capsys):
    path, cat, new, faint, mon = _database(tmp_path)
    assert main(["sources", "list", "--json", "--products-db", str(path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [cat, new, faint, mon]
    assert all(FIELDS <= set(r) for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id[cat]["kind"] == "catalogue" and by_id[cat]["new_high_sigma"] is None
    assert by_id[cat]["first_detected_mjd"] is None and by_id[cat]["n_detections"] == 0
    assert by_id[new]["ra_deg"] == 150.0401 and by_id[new]["first_detected_mjd"] == 60010.0
    assert main(["sources", "list", "--new", "--json", "--products-db", str(path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["new_high_sigma"]) for r in rows] == [(new, 50.0), (faint, 8.0)]
    assert main(["sources", "list", "--monitor", "--json", "--products-db", str(path)]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["PSR X"]
    assert main(["sources", "list", "--new", "--monitor", "--products-db", str(path)]) == 2


def test_sources_show_lists_associations(tmp_path, capsys):
    path, cat, new, faint, mon = _database(tmp_path)
    assert main(["sources", "show", str(new), "--json", "--products-db", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "new" and doc["likely_transient"] is True
    assert [(a["status"], a["path"]) for a in doc["associations"]] == [("new_source", "/d/a.fits")]
    assert main(["sources", "show", str(new), "--products-db", str(path)]) == 0
    assert "new_source" in capsys.readouterr().out
    assert main(["sources", "show", "999", "--products-db", str(path)]) == 1
    assert "no source with id 999" in capsys.readouterr().err


def test_catalog_ingest_monitor_reads_sexagesimal_lists(tmp_path, capsys):
    lst = tmp_path / "monitor.csv"
    lst.write_text("name,RA,Dec\nPSR B0329+54,03:32:59.37,+54:34:43.6\nT2,10:00:02.4,+37:01:12\n")
    assert main(["catalog", "ingest", "monitor", str(lst), "--catalog-dir",
                 str(tmp_path / "cat")]) == 0
    from dsa110_contimg.store.catalogs import CatalogStore

    t = CatalogStore(tmp_path / "cat").survey("monitor").cone(150.0, 37.0, 0.5)
    assert list(t["source_id"]) == ["T2"]
    assert np.isclose(t["ra_deg"][0], 150.01) and np.isclose(t["dec_deg"][0], 37.02)
    # a list is exhaustive: no position far away is an empty answer, not a coverage error
    assert len(CatalogStore(tmp_path / "cat").survey("monitor").cone(300.0, -20.0, 1.0)) == 0


def test_a_transient_through_the_command_line(sim_field, tmp_path, capsys):
    """A source in no catalogue switching on: sources list/show, images show, lightcurve,
    status counts, and sources backfill run by `worker`."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.science.simulate import simulate_image, sky_wcs

    db = tmp_path / "p.sqlite3"
    manager = PhotometryManager(db, catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig(backfill_new_sources=False))
    wcs = sky_wcs(sim_field.ra0, sim_field.dec0, sim_field.pixscale, sim_field.shape)
    cx, cy = wcs.wcs_world2pix(sim_field.ra_deg, sim_field.dec_deg, 0)
    gx, gy = np.meshgrid(np.arange(40, 216, 4.0), np.arange(40, 216, 4.0))
    far = np.argmax(np.min(np.hypot(gx.ravel()[:, None] - cx, gy.ravel()[:, None] - cy), axis=1))
    t_ra, t_dec = wcs.wcs_pix2world([gx.ravel()[far]], [gy.ravel()[far]], 0)
    for k in range(6):
        sim = simulate_image(sim_field.shape, ra0_deg=sim_field.ra0, dec0_deg=sim_field.dec0,
                             pixscale_arcsec=sim_field.pixscale, beam_arcsec=sim_field.beam,
                             ra_deg=np.r_[sim_field.ra_deg, t_ra], dec_deg=np.r_[sim_field.dec_deg, t_dec],
                             peak_jyb=np.r_[sim_field.flux_mjy / 1e3, 0.04 * (k >= 3)],
                             noise_rms=1e-3, mjd=60676.0 + k, seed=k)
        sim.write(tmp_path / f"e{k}.fits")
        manager.measure_for_fits(tmp_path / f"e{k}.fits", create_batch_job=False)
    args = ["--products-db", str(db)]
    capsys.readouterr()
    assert main(["sources", "list", "--new", "--json", *args]) == 0
    (new,) = json.loads(capsys.readouterr().out)
    assert new["kind"] == "new" and new["first_detected_mjd"] == 60679.0
    assert new["n_detections"] == 3 and new["n_measurements"] == 3
    assert main(["images", "show", "4", "--json", *args]) == 0
    det = json.loads(capsys.readouterr().out)["detections"]
    assert [d["status"] for d in det].count("new_source") == 1
    assert main(["status", "--json", *args]) in (0, 1, 3)
    tr = json.loads(capsys.readouterr().out)["transients"]
    assert tr["new_sources"] == 1 and tr["detections"] >= 6 * len(sim_field.ra_deg)
    # backward fill on request, run by a worker: the light curve then starts at the first epoch
    assert main(["sources", "backfill", str(new["id"]), *args]) == 0
    assert "backfill job" in capsys.readouterr().out
    assert main(["worker", "--once", *args, "--catalog-dir", str(tmp_path / "catalogs")]) == 0
    out = tmp_path / "lc.csv"
    assert main(["lightcurve", str(new["id"]), "-o", str(out), "--format", "csv", *args]) == 0
    from astropy.table import Table

    lc = Table.read(out, format="ascii.csv")
    assert len(lc) == 6
    flux = np.asarray(lc[[c for c in lc.colnames if c.startswith("peak") and c.endswith("_jyb")][0]])
    assert np.all(np.abs(flux[:3]) < 5e-3) and np.all(flux[3:] > 0.03)
    cats = ["--catalog-dir", str(tmp_path / "catalogs")]
    assert main(["sources", "backfill", "--monitor", *args, *cats]) == 1
    assert "no monitor list" in capsys.readouterr().err
    # a monitor list ingested after the images: its positions were never measured, and
    # `sources backfill --monitor` measures them in every stored image that covers them
    blank_ra, blank_dec = wcs.wcs_pix2world([gx.ravel()[far] + 12], [gy.ravel()[far] - 12], 0)
    mon = tmp_path / "monitor.csv"
    mon.write_text(f"name,ra,dec\nPSR_A,{t_ra[0]:.6f},{t_dec[0]:.6f}\n"
                   f"BLANK,{blank_ra[0]:.6f},{blank_dec[0]:.6f}\nFAR,10.0,-60.0\n")
    assert main(["catalog", "ingest", "monitor", str(mon), *cats]) == 0
    assert main(["sources", "backfill", "--monitor", *args, *cats]) == 0
    assert "queued for 3 source(s)" in capsys.readouterr().out
    assert main(["worker", "--once", *args, *cats]) == 0
    capsys.readouterr()
    assert main(["sources", "list", "--monitor", "--json", *args]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["BLANK", "FAR", "PSR_A"]
    assert [rows[n]["kind"] for n in ("BLANK", "FAR", "PSR_A")] == ["monitor"] * 3
    assert rows["PSR_A"]["n_measurements"] == 6 and rows["BLANK"]["n_measurements"] == 6
    assert rows["FAR"]["n_measurements"] == 0            # covered by no image
    curves = {}
    for name in ("PSR_A", "BLANK"):
        out = tmp_path / f"{name}.csv"
        assert main(["lightcurve", str(rows[name]["id"]), "-o", str(out), "--format", "csv",
                     *args]) == 0
        lc = Table.read(out, format="ascii.csv")
        curves[name] = np.asarray(lc[[c for c in lc.colnames
                                      if c.startswith("peak") and c.endswith("_jyb")][0]])
    assert np.all(np.abs(curves["PSR_A"][:3]) < 5e-3) and np.all(curves["PSR_A"][3:] > 0.03)
    assert np.all(np.abs(curves["BLANK"]) < 5e-3)
