"""Review actions by named reviewers: the append-only history on the page and in the API,
the pipeline's own flagging kept beside them, and the candidate list with its review state
as a file (the same bytes from the site and from ``ese list -o``)."""

from __future__ import annotations

import io
import logging
import math
import warnings

import pytest
from web_harness import scale_db, site_client

REVIEWERS = {"alice": "token-of-alice-0001", "bob": "token-of-bob-00002"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return scale_db(tmp_path_factory, "webreview", n_sources=60, n_epochs=6, n_fields=1, n_candidates=4)[0]


def client(db_path):
    return site_client(db_path, reviewers=REVIEWERS)


def test_two_reviewers_make_a_history(db, caplog):
    c = client(db)
    cand = c.get("/api/candidates").json()["candidates"][0]
    cid, sid = cand["id"], cand["source_id"]
    with caplog.at_level(logging.INFO, logger="dsa110_contimg.web"):
        r = c.post(f"/api/candidates/{cid}", headers={"Authorization": f"Bearer {REVIEWERS['alice']}"},
                   json={"status": "investigating", "note": "looks real; follow up with VLA"})
    assert r.status_code == 200 and r.json()["history"][-1]["reviewer"] == "alice"
    assert any("by alice" in m and f"candidate {cid}" in m for m in caplog.messages)
    # bob signs in on the page (the cookie names him) and dismisses from the form
    r = c.post("/login", data={"token": REVIEWERS["bob"], "next": f"/sources/{sid}"})
    assert r.status_code == 200 and 'id="signed-in-as">bob<' in r.text
    r = c.post(f"/candidates/{cid}/review", data={"status": "dismissed", "note": "second note",
                                                  "next": f"/sources/{sid}"})
    assert r.status_code == 200
    got = c.get(f"/api/candidates/{cid}").json()
    assert got["status"] == "dismissed" and got["flagged_by"] == "auto"      # who found it is kept
    entries = [(e["reviewer"], e["action"], e["status"], e["note"]) for e in got["history"]]
    assert entries[-2:] == [("alice", "investigating", "investigated", "looks real; follow up with VLA"),
                            ("bob", "dismissed", "dismissed", "second note")]
    times = [e["created_at"] for e in got["history"]]
    assert times == sorted(times) and all(e["created_at_iso"].endswith("Z") for e in got["history"])
    page = c.get(f"/sources/{sid}").text
    history = page.split('id="review-history"')[1].split("</table>")[0]
    assert "looks real; follow up with VLA" in history and "second note" in history
    assert history.index(">alice<") < history.index(">bob<")


def test_the_pipeline_flagging_is_the_first_entry(db):
    import sqlalchemy as sa

    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.lightcurves import upsert_ese_candidates
    from dsa110_contimg.store.schema import ese_candidates

    store = open_products_db(db)
    with store.engine.begin() as conn:
        taken = {r[0] for r in conn.execute(sa.select(ese_candidates.c.source_id))}
        sid = next(s for s in range(1, 61) if s not in taken)
        upsert_ese_candidates(conn, [{"source_id": sid, "criteria": '["shape", "preset"]', "score": 8.0,
                                      "confidence": "high"}])
        cid = conn.execute(sa.select(ese_candidates.c.id).where(ese_candidates.c.source_id == sid)).scalar()
        upsert_ese_candidates(conn, [{"source_id": sid, "criteria": '["shape"]', "score": 9.0, "confidence": "high"}])
    store.dispose()
    history = client(db).get(f"/api/candidates/{cid}").json()["history"]
    assert [(e["reviewer"], e["action"], e["note"]) for e in history] == [
        ("pipeline", "flagged", "criteria: shape, preset")]     # a refresh is not a new flagging


def test_candidate_list_files_carry_the_review_state(db, tmp_path):
    from astropy.io.votable import parse_single_table
    from astropy.table import Table

    from dsa110_contimg.cli.main import main

    c = client(db)
    cid = next(x["id"] for x in c.get("/api/candidates").json()["candidates"]
               if len(c.get(f"/api/candidates/{x['id']}").json()["history"]) <= 1)   # not reviewed yet
    assert main(["ese", "investigate", str(cid), "--reviewer", "carol", "--note", "from the CLI",
                 "--products-db", str(db)]) == 0
    assert c.get(f"/api/candidates/{cid}").json()["history"][-1]["reviewer"] == "carol"
    csv = Table.read(c.get("/candidates.csv").text, format="ascii.csv")
    row = csv[list(csv["id"]).index(cid)]
    assert (row["last_reviewer"], row["last_action"], row["last_note"], row["n_reviews"]) == \
        ("carol", "investigating", "from the CLI", 1)
    assert row["status"] == "investigated" and len(csv) == c.get("/api/candidates").json()["total"]
    # one significance, called sigma: the API, the export and the page quote the same number
    api = {x["id"]: x for x in c.get("/api/candidates").json()["candidates"]}
    assert "shape_significance" not in api[cid] and "sigma_deviation" not in api[cid]
    assert "max_deviation" in csv.colnames
    for one in csv:                      # a candidate without a template fit: empty, not another number
        want = api[int(one["id"])]["sigma"]
        assert one["sigma"] == pytest.approx(math.nan if want is None else want, nan_ok=True)
    shown = next(x for x in api.values() if x["sigma"] is not None)
    page = c.get("/candidates").text
    assert "<th>sigma</th>" in page and f'<td class="num sigma">{shown["sigma"]:.1f}</td>' in page
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vot = parse_single_table(io.BytesIO(c.get("/candidates.vot").content)).to_table()
    assert list(vot["id"]) == list(csv["id"])
    assert list(vot["last_reviewer"]) == list(csv["last_reviewer"].filled(""))   # CSV reads "" as masked
    assert vot["ra_deg"].unit == "deg"
    assert len(Table.read(c.get("/candidates.csv?status=investigated").text, format="ascii.csv")) == \
        c.get("/api/candidates?status=investigated").json()["total"]
    for fmt in ("csv", "vot"):
        out = tmp_path / f"cands.{fmt}"
        assert main(["ese", "list", "-o", str(out), "--products-db", str(db)]) == 0
        assert c.get(f"/candidates.{fmt}").content == out.read_bytes(), fmt
