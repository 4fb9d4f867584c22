"""``/sources``: any source found by name or by a position and radius written as people
write them, ranked and paged; the same rows as ``sources list --json``."""

from __future__ import annotations

import json
import re

import pytest
from web_harness import scale_db, site_client


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return scale_db(tmp_path_factory, "websearch", n_sources=600, n_epochs=5, n_fields=3, n_candidates=5)


client = site_client


def _candidate(c, info):
    return c.get(f"/api/sources/{info['top_candidate_source']}").json()["source"]


def test_found_by_name_and_by_a_position_10_arcsec_away(db):
    from dsa110_contimg.web.formatting import dec_dms, ra_hms

    path, info = db
    c = client(path)
    src = _candidate(c, info)
    by_name = c.get("/sources", params={"q": src["catalog_id"].lower()}).text
    assert re.findall(r'class="source-link" href="/sources/(\d+)"', by_name) == [str(src["id"])]
    bare = c.get("/api/sources", params={"q": src["catalog_id"].split()[1][:8]}).json()
    assert src["id"] in [r["id"] for r in bare["sources"]]
    # 10" north of it, written three ways
    dec = src["dec_deg"] + 10 / 3600
    for text in (f"{src['ra_deg']:.6f} {dec:+.6f}", f"{ra_hms(src['ra_deg'], 3, (':', ':', ''))} "
                 f"{dec_dms(dec, 2, (':', ':', ''))}", f"{ra_hms(src['ra_deg'], 3)} {dec_dms(dec, 2, ('d', 'm', 's'))}"):
        got = c.get("/api/sources", params={"q": text, "radius": '15"'}).json()
        assert got["sources"][0]["id"] == src["id"], text
        assert got["sources"][0]["separation_arcsec"] == pytest.approx(10.0, abs=0.05)
        assert all(r["separation_arcsec"] <= 15.0 for r in got["sources"])
    assert c.get("/api/sources", params={"q": f"{src['ra_deg']} {dec}", "radius": "5 arcsec"}).json()["total"] == 0
    page = c.get("/sources", params={"q": f"{src['ra_deg']} {dec}", "radius": "0.25'"}).text
    assert "within 15.0″ of" in page and f'href="/sources/{src["id"]}"' in page


def test_the_page_is_the_cli_query(db, capsys):
    from dsa110_contimg.cli.main import main

    path, _ = db
    c = client(path)
    for params, argv in (({"sort": "eta"}, ["--sort", "eta"]),
                         ({"sort": "flux", "page": "3"}, ["--sort", "flux", "--offset", "100"]),
                         ({"q": "10.0 30.0", "radius": "0.5deg", "sort": "v"},
                          ["--near", "10.0 30.0", "--radius", "0.5deg", "--sort", "v"])):
        api = c.get("/api/sources", params=params).json()
        assert main(["sources", "list", "--json", "--limit", "50", *argv, "--products-db", str(path)]) == 0
        cli = json.loads(capsys.readouterr().out)
        assert api["sources"] == cli and len(cli) > 0, params
    ranked = c.get("/api/sources", params={"sort": "eta"}).json()
    assert ranked["total"] == 600 and ranked["pages"] == 12
    eta = [r["eta"] for r in ranked["sources"]]
    assert eta == sorted(eta, reverse=True)


def test_names_in_the_path_and_refusals(db):
    path, info = db
    c = client(path)
    src = _candidate(c, info)
    r = c.get(f"/sources/{src['catalog_id']}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/sources/{src['id']}"
    r = c.get("/sources/SIM J999", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sources?q=SIM+J999"
    for params, why in (({"q": "10 30", "radius": "5 furlongs"}, "not a radius"),
                        ({"q": "10 30", "radius": "3 deg"}, "at most 2 deg"),
                        ({"sort": "distance"}, "needs a position"), ({"kind": "star"}, "kind must be"),
                        ({"min_epochs": "many"}, "min_epochs must be an integer")):
        r = c.get("/api/sources", params=params)
        assert r.status_code == 400 and why in r.json()["error"], params
    assert "no source matches" in c.get("/sources", params={"q": "NOTHING LIKE THIS"}).text
