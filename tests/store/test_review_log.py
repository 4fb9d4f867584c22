"""The review log: entries appended, never replaced; the pipeline's flagging beside the
reviews; and a database reviewed before the log existed keeps what it knew."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa


def _at(path, revision: str):
    from dsa110_contimg.store.engine import make_engine
    from dsa110_contimg.store.migrate import upgrade

    engine = make_engine(path)
    upgrade(engine, "products", revision)
    engine.dispose()


def test_reviews_append_and_keep_who_flagged(tmp_path):
    from dsa110_contimg.store import review_log
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.lightcurves import upsert_ese_candidates

    db = open_products_db(tmp_path / "p.sqlite3")
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, reference_ok) VALUES "
                             "('nvss', 'NVSS J000000+000000', 0, 0, 0), ('nvss', 'NVSS J000100+000000', 0.25, 0, 0)"))
        upsert_ese_candidates(conn, [{"source_id": 1, "criteria": '["shape"]', "score": 7.0, "confidence": "high"},
                                     {"source_id": 2, "criteria": '["preset"]', "score": 5.0, "confidence": "medium"}])
    with db.engine.begin() as conn:
        assert review_log.review(conn, 1, "investigated", reviewer="alice", note="first", at=100.0)
        assert review_log.review(conn, 1, "dismissed", reviewer="bob", note="second", at=200.0)
        assert review_log.review(conn, 1, "active", reviewer="alice", at=300.0)
        assert not review_log.review(conn, 99, "dismissed", reviewer="alice")
    with db.engine.connect() as conn:
        h = review_log.history(conn, 1)
        assert [(e["reviewer"], e["action"], e["status"], e["note"]) for e in h] == [
            ("pipeline", "flagged", "active", "criteria: shape"), ("alice", "investigating", "investigated", "first"),
            ("bob", "dismissed", "dismissed", "second"), ("alice", "reactivated", "active", None)]
        assert h[1]["created_at_iso"] == "1970-01-01T00:01:40Z"
        row = conn.execute(sa.text("SELECT status, flagged_by, notes FROM ese_candidates WHERE id = 1")).one()
        assert tuple(row) == ("active", "auto", "second")       # the latest note; nothing re-attributed
        latest = review_log.latest(conn, [1, 2])
        assert latest[1]["reviewer"] == "alice" and latest[1]["n_reviews"] == 3
        assert latest[2]["action"] == "flagged" and latest[2]["n_reviews"] == 0
    db.dispose()


def test_a_database_reviewed_before_the_log_keeps_its_review(tmp_path):
    from dsa110_contimg.store import review_log
    from dsa110_contimg.store.engine import open_products_db

    path = tmp_path / "old.sqlite3"
    _at(path, "0008")
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, reference_ok) VALUES "
                    "('nvss', 'A', 0, 0, 0), ('nvss', 'B', 1, 0, 0)")
        con.executemany("INSERT INTO ese_candidates (source_id, status, flagged_by, criteria, score, confidence, "
                        "first_flagged_at, updated_at, notes) VALUES (?,?,?,?,?,?,?,?,?)",
                        [(1, "dismissed", "operator", '["shape"]', 7.0, "high", 10.0, 50.0, "second note"),
                         (2, "active", "auto", '["preset"]', 4.0, "low", 20.0, 20.0, None)])
    db = open_products_db(path)     # migrates to head
    with db.engine.connect() as conn:
        assert [(e["created_at"], e["reviewer"], e["action"], e["status"], e["note"])
                for e in review_log.history(conn, 1)] == [
            (10.0, "pipeline", "flagged", "active", None), (50.0, "unknown", "dismissed", "dismissed", "second note")]
        assert [e["action"] for e in review_log.history(conn, 2)] == ["flagged"]
        assert {r[0] for r in conn.execute(sa.text("SELECT flagged_by FROM ese_candidates"))} == {"auto"}
    db.dispose()
