"""The image pages: latest observation first, one image's QC checks and numbers readable,
in mJy/beam, and ISO 8601 times beside the Unix ones in the API."""

from __future__ import annotations

import json
import sqlite3

import pytest
from web_harness import scale_db, site_client


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return scale_db(tmp_path_factory, "webimages", n_sources=40, n_epochs=30, n_fields=2, n_candidates=2)[0]


client = site_client


def test_images_latest_observation_first(db):
    c = client(db)
    first, second = c.get("/api/images").json(), c.get("/api/images?page=2").json()
    mjd = [im["mjd"] for im in first["images"] + second["images"]]
    assert len(mjd) == 60 and mjd == sorted(mjd, reverse=True)
    ids = [im["id"] for im in first["images"]]
    assert ids != sorted(ids, reverse=True)          # the ids (processing order) differ from MJD order
    assert all(im["measured_at_iso"].endswith("Z") for im in first["images"])
    assert "latest observation first" in c.get("/images").text


def test_image_page_checks_and_units(db):
    metrics = {"median_rms_jyb": 0.00123, "beam_major_arcsec": 15.2, "dynamic_range": 250.0,
               "checks": {"rms": "passed", "beam_history": "warning"}}
    with sqlite3.connect(db) as con:
        con.execute("UPDATE images SET qc_metrics = ? WHERE id = 3", (json.dumps(metrics),))
    page = client(db).get("/images/3").text
    assert "{&#39;" not in page and "{'" not in page             # no raw Python dict
    checks = page.split('id="qc-checks"')[1].split("</table>")[0]
    assert "<td>beam history</td><td><span class=\"state state-warning\">warning</span>" in checks
    numbers = page.split('id="qc-metrics"')[1].split("</table>")[0]
    assert "<td>median rms</td><td class=\"num\">1.23</td><td>mJy/beam</td>" in numbers
    assert "<td>beam major</td><td class=\"num\">15.2</td><td>arcsec</td>" in numbers
    assert "Jy/beam" not in page.replace("mJy/beam", "")


def test_excluded_and_duplicate_images_say_so(db):
    with sqlite3.connect(db) as con:
        con.execute("UPDATE images SET excluded = 1, excluded_reason = 'RFI storm', "
                    "excluded_at = 1.7e9 WHERE id = 4")
        con.execute("UPDATE images SET duplicate_of = 4 WHERE id = 5")
    c = client(db)
    page = c.get("/images/4").text
    assert 'id="excluded"' in page and "RFI storm" in page and "images include 4" in page
    assert 'href="/images/4">image #4</a>: the same data' in c.get("/images/5").text
    listed = c.get("/api/images").json()["images"] + c.get("/api/images?page=2").json()["images"]
    by_id = {im["id"]: im for im in listed}
    assert by_id[4]["excluded_reason"] == "RFI storm" and by_id[5]["duplicate_of"] == 4
    pages = c.get("/images").text + c.get("/images?page=2").text
    assert "excluded</span> RFI storm" in pages and 'of <a href="/images/4">#4</a>' in pages


def test_image_page_lists_its_references_with_role_and_ratio(db):
    """Used, clipped (with the ratio) and rejected references, on the page and in the API."""
    with sqlite3.connect(db) as con:
        sids = [s for (s,) in con.execute("SELECT id FROM sources ORDER BY id LIMIT 3")]
        con.executemany(
            "INSERT INTO reference_choices (image_id, source_id, chosen, compactness, snr, reason, "
            "role, ratio) VALUES (6, ?, ?, 'compact', ?, ?, ?, ?)",
            [(sids[0], True, 120.0, "used: ratio 1.0120; chosen: compact", "used", 1.012),
             (sids[1], False, 90.0, "clipped: ratio 1.2000 against the factor 1.0100", "clipped", 1.2),
             (sids[2], False, 70.0, "rejected: resolved in this beam", "rejected", None)])
    c = client(db)
    table = c.get("/images/6").text.split('id="references"')[1].split("</table>")[0]
    rows = table.split("<tr class=")[1:]
    assert [r.split('"')[1] for r in rows] == ["ref-used", "ref-clipped", "ref-rejected"]
    assert '<td class="num">1.2000</td>' in rows[1] and "against the factor" in rows[1]
    refs = c.get("/api/images/6").json()["references"]
    assert [(r["role"], r["ratio"]) for r in refs] == [("used", 1.012), ("clipped", 1.2),
                                                       ("rejected", None)]
