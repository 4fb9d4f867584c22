"""The web application in process (Starlette TestClient) on a small synthetic database:
authorisation of review actions, the JSON API against the CLI's --json, exports, errors,
and the [web] configuration section."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from web_harness import scale_db, site_client

TOKEN = "unit-test-token-0123"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return scale_db(tmp_path_factory, "webapp", n_sources=400, n_epochs=12, n_fields=2, n_candidates=40)


def client(db_path, token=None):
    """A test client of the site; ``token``: the single bare token of one anonymous reviewer."""
    return site_client(db_path, reviewers={"anonymous": token} if token else None)


def cli_json(*args) -> dict:
    out = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", *args], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode in (0, 1, 3), out.stderr
    return json.loads(out.stdout)


def test_api_returns_the_cli_objects(db):
    path, info = db
    c = client(path)
    cli = cli_json("ese", "list", "--json", "--products-db", str(path))
    api = c.get("/api/candidates").json()
    assert api["total"] == cli["count"] == 40
    assert api["candidates"] == cli["candidates"][:25]           # first page, same objects
    assert c.get("/api/candidates?page=2").json()["candidates"] == cli["candidates"][25:]
    scored = c.get("/api/candidates?min_score=5").json()
    assert scored["total"] == sum(1 for x in cli["candidates"] if x["score"] >= 5)
    st = cli_json("status", "--json", "--products-db", str(path))
    got = c.get("/api/status").json()
    assert got.keys() == st.keys() and got["jobs"]["done"] == st["jobs"]["done"] == 24
    assert got["qc"]["failed"] == 1 and got["images"]["measured"] == 24


def test_pages_render_and_link(db):
    path, info = db
    c = client(path)
    sid = info["top_candidate_source"]
    for url in ("/", "/candidates", "/candidates?status=active&min_score=2", f"/sources/{sid}", "/images",
                "/images/1", "/images?qc=failed"):
        r = c.get(url)
        assert r.status_code == 200, url
        assert "<svg" in r.text or url.startswith("/images")
    page = c.get(f"/sources/{sid}").text
    assert 'class="plot lightcurve"' in page and 'class="plot etav"' in page and 'class="this-source"' in page
    assert "read-only site" in page and 'id="dismiss"' in page
    assert 'class="qc-failed"' in c.get("/sources/1").text     # field 0 has an image that failed QC
    assert 'class="qc-failed"' not in c.get("/sources/400").text
    failed = c.get("/images?qc=failed").text
    assert "rms 3.1x the field median" in failed and "image failed QC" in failed
    assert c.get("/sources/999999").status_code == 404
    assert c.get("/api/sources/999999").json()["error"] == "no source with id 999999"
    assert c.get("/candidates?status=bogus").status_code == 400
    assert c.get("/candidates?min_score=abc").status_code == 400


def test_exports_are_the_light_curve(db):
    from astropy.io.votable import parse_single_table
    from astropy.table import Table

    path, info = db
    c = client(path)
    sid = info["top_candidate_source"]
    lc = c.get(f"/api/sources/{sid}").json()["lightcurve"]
    assert len(lc["mjd"]) == 12
    csv = Table.read(c.get(f"/sources/{sid}/lightcurve.csv").text, format="ascii.csv")
    ecsv = Table.read(c.get(f"/sources/{sid}/lightcurve.ecsv").text, format="ascii.ecsv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vot = parse_single_table(io.BytesIO(c.get(f"/sources/{sid}/lightcurve.vot").content)).to_table()
    for t in (csv, ecsv, vot):
        assert len(t) == 12 and list(t["mjd"]) == pytest.approx(lc["mjd"])
        assert list(t["peak_jyb"]) == pytest.approx(lc["peak_jyb"])
    assert ecsv.meta["source"] == c.get(f"/api/sources/{sid}").json()["source"]["catalog_id"]
    assert c.get(f"/sources/{sid}/lightcurve.xlsx").status_code == 404


def test_downloads_are_the_files_of_the_cli(db, tmp_path):
    # one export path: `lightcurve -o OUT` and the site's download write the same bytes
    from dsa110_contimg.cli.main import main

    path, info = db
    c = client(path)
    sid = info["top_candidate_source"]
    for fmt in ("csv", "ecsv", "vot", "fits"):
        out = tmp_path / f"lc.{fmt}"
        assert main(["lightcurve", str(sid), "-o", str(out), "--products-db", str(path)]) == 0
        got = c.get(f"/sources/{sid}/lightcurve.{fmt}")
        assert got.status_code == 200 and got.content == out.read_bytes(), fmt
        assert got.headers["content-disposition"].startswith('attachment; filename="SIM_J')


def test_review_needs_the_token(db):
    path, info = db
    cand = client(path).get("/api/candidates").json()["candidates"][3]
    cid = cand["id"]
    url = f"/api/candidates/{cid}"
    ro = client(path)
    assert ro.post(url, json={"status": "dismissed"}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
    c = client(path, token=TOKEN)
    r = c.post(url, json={"status": "dismissed"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post(url, json={"status": "dismissed"}, headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 403
    assert c.post(url, json={"status": "dismissed"}, headers={"Authorization": "Basic " + TOKEN}).status_code == 401
    # the page form without the session cookie, and a wrong token at login
    assert c.post(f"/candidates/{cid}/review", data={"status": "dismissed"}).status_code == 401
    assert c.post("/login", data={"token": "nope-nope-nope"}).status_code == 403
    assert c.get(url).json()["status"] == "active"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.post(url, json={"status": "sleeping"}, headers=auth).status_code == 400
    assert c.post(url, content=b"not json", headers=auth).status_code == 400
    assert c.post("/api/candidates/999999", json={"status": "dismissed"}, headers=auth).status_code == 404
    assert c.get(url).json()["status"] == "active"
    r = c.post(url, json={"status": "investigating", "note": "check VLASS"}, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "investigated" and r.json()["notes"] == "check VLASS"
    cli = {x["id"]: x for x in cli_json("ese", "list", "--json", "--products-db", str(path))["candidates"]}
    assert cli[cid]["status"] == "investigated"
    # the page form with the session cookie set by /login
    r = c.post("/login", data={"token": TOKEN, "next": f"/sources/{cand['source_id']}"}, follow_redirects=False)
    assert r.status_code == 303 and TOKEN not in r.headers["set-cookie"]
    r = c.post(f"/candidates/{cid}/review", data={"status": "dismissed", "note": "artefact",
                                                  "next": f"/sources/{cand['source_id']}"})
    assert r.status_code == 200 and "candidate" in r.text and "dismissed" in r.text
    assert c.get(url).json()["status"] == "dismissed" and c.get(url).json()["notes"] == "artefact"
    assert c.get("/api/candidates?status=dismissed").json()["total"] == 1
    assert TOKEN not in r.text


def test_web_config_section(tmp_path):
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.service.config import config_from_dict, parse_listen

    cfg = config_from_dict({"web": {"token_file": "state/tok"}}, base_dir=tmp_path)
    assert cfg.web.listen == "127.0.0.1:8088" and cfg.web.token_file == tmp_path / "state" / "tok"
    assert config_from_dict({}).web.token_file is None
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ({"listen": "localhost"}, {"listen": "127.0.0.1:99999"}, {"listen": 8088},
                {"token_file": ""}, {"port": 1}):
        with pytest.raises(ConfigError, match=r"web\."):
            config_from_dict({"web": bad})


def test_serve_errors_are_one_line(tmp_path):
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "serve", *args],
                              capture_output=True, text=True, timeout=120)

    r = serve("--products-db", str(tmp_path / "none.sqlite3"), "--listen", "127.0.0.1:0")
    assert r.returncode == 4 and "products database does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = serve("--products-db", str(tmp_path / "none.sqlite3"), "--listen", "nowhere")
    assert r.returncode == 2 and "--listen" in r.stderr and "host:port" in r.stderr


def test_site_on_postgres(tmp_path, postgres_cluster):
    """The same pages, API and review on a PostgreSQL products database filled by the workflow."""
    import numpy as np
    import sqlalchemy as sa
    from fields import SimulatedField

    from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
    from dsa110_contimg.store.lightcurves import upsert_ese_candidates

    url = postgres_cluster.new_database("products", migrated=False)   # an empty database
    field = SimulatedField(tmp_path, n_sources=20, seed=4, flux_range=(60.0, 400.0))
    field.ingest(tmp_path / "catalogs")
    manager = PhotometryManager(url, default_config=PhotometryConfig(normalize=True, norm_min_snr=30.0),
                                catalog_dir=tmp_path / "catalogs")
    rng = np.random.default_rng(2)
    for k in range(6):
        path = tmp_path / f"e{k}.fits"
        field.image(path, mjd=60000.0 + 5 * k, gain=1 + rng.normal(0, 0.03), seed=k)
        manager.measure_for_fits(path, create_batch_job=False)
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        sid = conn.execute(sa.text("SELECT min(id) FROM sources")).scalar()
        upsert_ese_candidates(conn, [{"source_id": sid, "criteria": '["sigma"]', "score": 7.5,
                                      "confidence": "high", "depth": 0.3, "t_min_mjd": 60010.0, "n_epochs": 6}])
    eng.dispose()
    c = client(url, token=TOKEN)
    for page in ("/", "/candidates", f"/sources/{sid}", "/images", "/images/1", f"/sources/{sid}/lightcurve.csv"):
        assert c.get(page).status_code == 200, page
    assert "<svg" in c.get(f"/sources/{sid}").text
    cli = cli_json("ese", "list", "--json", "--products-db", url)
    api = c.get("/api/candidates").json()
    assert api["candidates"] == cli["candidates"] and api["total"] == 1
    assert len(c.get(f"/api/sources/{sid}").json()["lightcurve"]["mjd"]) == 6
    cid = api["candidates"][0]["id"]
    assert c.post(f"/api/candidates/{cid}", json={"status": "dismissed"}).status_code == 401
    r = c.post(f"/api/candidates/{cid}", json={"status": "dismissed", "note": "pg"},
               headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert cli_json("ese", "list", "--json", "--products-db", url)["candidates"][0]["status"] == "dismissed"
    postgres_cluster.drop_database(url)


def test_reference_baseline_is_drawn(db):
    import sqlalchemy as sa

    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.lightcurves import save_baselines, set_baseline_validity

    path, _ = db
    c = client(path)
    assert 'class="reference-baseline"' not in c.get("/sources/5").text
    store = open_products_db(path)
    with store.engine.begin() as conn:
        save_baselines(conn, [{"source_id": 5, "method": "median", "baseline_jyb": 0.05, "baseline_rms_jyb": 0.001,
                               "n_points": 10, "through_mjd": 60027.0, "valid": True}])
    page = c.get("/sources/5").text
    assert 'class="reference-baseline"' in page and "baseline 50.00 mJy/beam from 10 epochs" in page
    with store.engine.begin() as conn:
        set_baseline_validity(conn, {5: "chi2_nu 9 > 2"})
        assert conn.execute(sa.text("SELECT valid FROM reference_baselines WHERE source_id = 5")).scalar() == 0
    store.dispose()
    page = c.get("/sources/5").text
    assert 'class="reference-baseline"' not in page and "no longer used: chi2_nu 9 &gt; 2" in page


def test_names_that_are_not_utf8_are_shown_readably(tmp_path):
    # stored losslessly as fsb64:..., shown as the name with the odd byte escaped
    import sqlite3

    from web_harness import fill_scale_db

    from dsa110_contimg.core.paths import db_path

    path = tmp_path / "products.sqlite3"
    fill_scale_db(path, n_sources=10, n_epochs=2, n_fields=1, n_candidates=1)
    stored = db_path(b"/data/images/caf\xe9.img-image-pb.fits")
    assert stored.startswith("fsb64:")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE images SET path = ? WHERE id = 1", (stored,))
    c = client(path)
    for url in ("/images", "/images/1"):
        page = c.get(url).text
        assert "caf\\xe9.img-image-pb.fits" in page and "fsb64:" not in page, url
    assert c.get("/api/images/1").json()["path"] == stored     # the API stays lossless


def test_candidates_page_draws_the_stored_sparklines_and_reads_no_measurement(tmp_path):
    import re
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy.engine import Engine
    from web_harness import fill_scale_db

    path = tmp_path / "products.sqlite3"
    # one field of 6 epochs; its epoch 3 failed QC: 5 points on each candidate's sparkline
    fill_scale_db(path, n_sources=40, n_epochs=6, n_fields=1, n_candidates=3)
    c = client(path)
    c.get("/candidates")                             # the site's first-request reads

    def page():
        statements = []

        def seen(conn, cursor, statement, *args):
            statements.append(statement)

        sa.event.listen(Engine, "before_cursor_execute", seen)
        try:
            html = c.get("/candidates").text
        finally:
            sa.event.remove(Engine, "before_cursor_execute", seen)
        return html, [s for s in statements if "measurements" in s]

    html, reads = page()
    rows = dict(re.findall(r'data-source-id="(\d+)">(.*?)</tr>', html, re.S))
    assert len(rows) == 3 and all(r.count("<circle") == 5 for r in rows.values())
    assert 'id="sparkline-note"' in html and reads == []
    # a candidate without a stored sparkline is drawn from its measurements, alone
    with sqlite3.connect(path) as con:
        unset = con.execute("SELECT source_id FROM ese_candidates ORDER BY score LIMIT 1").fetchone()[0]
        con.execute("UPDATE ese_candidates SET sparkline = NULL WHERE source_id = ?", (unset,))
    html, reads = page()
    assert len(reads) == 1
    drawn = dict(re.findall(r'data-source-id="(\d+)">(.*?)</tr>', html, re.S))
    assert drawn.keys() == rows.keys()
    # the same drawing to within the stored summary's precision (6 significant digits of
    # the flux: up to 0.05 px on this thumbnail, which may flip a coordinate's last digit)
    number = r"-?\d+\.\d+"
    for sid, row in rows.items():
        assert re.sub(number, "#", drawn[sid]) == re.sub(number, "#", row)
        got = np.array(re.findall(number, drawn[sid]), float)
        want = np.array(re.findall(number, row), float)
        assert got.shape == want.shape and np.abs(got - want).max() <= 0.1 + 1e-9
    # the JSON objects stay those of `ese list --json`: no sparkline in them
    assert all("sparkline" not in x for x in c.get("/api/candidates").json()["candidates"])
