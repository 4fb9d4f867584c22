"""``/new-sources``: ranked by significance with light curves, linked from the navigation,
its JSON the objects of ``sources list --new --json``."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np


def _db(tmp_path):
    from web_harness import fill_scale_db

    from dsa110_contimg.store import detections as ds
    from dsa110_contimg.store import open_products_db
    from dsa110_contimg.store import products as ps

    path = tmp_path / "products.sqlite3"
    fill_scale_db(path, n_sources=20, n_epochs=4, n_fields=1, n_candidates=2)
    db = open_products_db(path)
    with db.engine.begin() as conn:
        ids = []
        for k, sigma in enumerate((9.0, 55.0, 20.0)):
            (sid,) = ps.upsert_sources(conn, "dsa110", [f"DSA110 J10000{k}.00+370000.0"],
                                       [150.0 + 0.01 * k], [37.0], kind="new")
            ds.record_new_sources(conn, [{"source_id": int(sid), "image_id": 1, "mjd": 60680.0,
                                          "peak_jyb": sigma * 1e-3, "new_high_sigma": sigma,
                                          "likely_transient": sigma > 10, "n_earlier_images": 2}])
            ids.append(int(sid))
    return path, ids


def test_new_sources_page_ranks_by_significance_and_is_linked(tmp_path):
    from dsa110_contimg.web.app import create_app

    path, ids = _db(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        c = TestClient(create_app(str(path)))
    page = c.get("/new-sources")
    assert page.status_code == 200
    order = [int(x.split('"')[0]) for x in page.text.split('class="new-source" data-source-id="')[1:]]
    assert order == [ids[1], ids[2], ids[0]]                     # 55, 20, 9 sigma
    assert page.text.count("<svg") >= 3                            # a light curve each
    assert 'href="/new-sources"' in c.get("/").text                # in the navigation
    api = c.get("/api/new-sources").json()
    out = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "sources", "list", "--new",
                          "--json", "--products-db", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert api["sources"] == json.loads(out.stdout) and api["total"] == 3
    assert np.isclose(api["sources"][0]["new_high_sigma"], 55.0)
