"""The candidates page (store/review.py ``candidates_page``, behind ``ese list``, ``/``,
``/candidates`` and ``/api/candidates``): its pages, concatenated, are every candidate in the
rank order of ``candidate_order`` (stage, shape search, highest score, oldest) under each
filter, with the total of the filter; and a page is read from the rank index in that order,
then its own sources by key, on SQLite and PostgreSQL (the plans say so), the whole list
(``ese list``) as well."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from pgcluster import BACKENDS

STAGES = (None, "confirmed", "recovering", "dip_in_progress", "retired")
CRITERIA = ('["shape"]', '["sigma","shape"]', '["sigma"]', '["eta_v"]', "[]")
RANK = {"confirmed": 0, "recovering": 1, "dip_in_progress": 2, "retired": 5}


def fill(db, n: int, others: int = 0) -> list[dict]:
    """``n`` sources with a candidate each (random stage, criteria, status and score, ties
    in score on purpose) and ``others`` sources without one; the candidates as written."""
    from dsa110_contimg.store import bulk

    rng = np.random.default_rng(5)
    cands = [dict(id=i, source_id=1000 + i, stage=STAGES[rng.integers(len(STAGES))],
                  criteria=CRITERIA[rng.integers(len(CRITERIA))],
                  status=("active", "investigated", "dismissed")[rng.integers(3)],
                  score=float(rng.integers(0, 20)) / 2.0) for i in range(1, n + 1)]
    with db.engine.begin() as conn:
        bulk.executemany(conn, "INSERT INTO sources (id, survey, catalog_id, ra_deg, dec_deg, "
                         "reference_ok) VALUES (?, 'nvss', ?, ?, 30.0, ?)",
                         [(c["source_id"], f"N{c['source_id']}", c["id"] * 0.01, True)
                          for c in cands] + [(100_000 + i, f"X{i}", i * 0.001, True)
                                             for i in range(others)])
        bulk.executemany(conn, "INSERT INTO ese_candidates (id, source_id, status, flagged_by, "
                         "criteria, score, confidence, first_flagged_at, updated_at, stage) "
                         "VALUES (?, ?, ?, 'auto', ?, ?, 'low', 0, 0, ?)",
                         [(c["id"], c["source_id"], c["status"], c["criteria"], c["score"],
                           c["stage"]) for c in cands])
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return cands


def ranked(cands, *, status=None, min_score=None, include_all=False) -> list[int]:
    """Candidate ids in the documented order (the specification, in Python)."""
    def rank(c):
        if c["stage"] in RANK:
            return RANK[c["stage"]]
        return 3 if "shape" in json.loads(c["criteria"]) else 4
    keep = [c for c in cands if (status is None or c["status"] == status)
            and (min_score is None or c["score"] >= min_score)
            and (include_all or c["criteria"] != "[]")]
    return [c["id"] for c in sorted(keep, key=lambda c: (rank(c), -c["score"], c["id"]))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pages_are_the_ranked_candidates_with_their_total(databases):
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.review import candidates_json, candidates_page

    db = open_products_db(databases.new("products"))
    try:
        cands = fill(db, 120)
        with db.engine.connect() as conn:
            for filters in ({}, {"status": "active"}, {"min_score": 4.0}, {"include_all": True},
                            {"status": "dismissed", "min_score": 2.5, "include_all": True}):
                want = ranked(cands, **filters)
                got, totals = [], set()
                for offset in range(0, len(want) + 25, 25):
                    rows, total = candidates_page(conn, limit=25, offset=offset, **filters)
                    got += [r["id"] for r in rows]
                    totals.add(total)
                    assert all(r["catalog_id"] == f"N{r['source_id']}" for r in rows)
                assert got == want and totals == {len(want)}, filters
                doc = candidates_json(conn, **filters)
                assert [r["id"] for r in doc["candidates"]] == want and doc["count"] == len(want)
    finally:
        db.dispose()


def page_plans(db, monkeypatch, **page) -> list[str]:
    """The plans of the statements ``candidates_page`` runs for its rows (the candidates,
    then their sources, in chunks through ``bulk.fetch_in``)."""
    from dsa110_contimg.store import bulk
    from dsa110_contimg.store.review import candidates_page

    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "count(" not in statement:
            seen.append((statement, parameters))

    fetch_in = bulk.fetch_in

    def recording_fetch_in(conn, sql, values, params=(), tail_params=()):
        for start in range(0, len(values), bulk.CHUNK):
            chunk = list(values)[start:start + bulk.CHUNK]
            seen.append((bulk._sql(conn, sql.replace("{in}", ",".join("?" * len(chunk)))),
                         tuple(params) + tuple(chunk) + tuple(tail_params)))
        return fetch_in(conn, sql, values, params, tail_params)

    monkeypatch.setattr(bulk, "fetch_in", recording_fetch_in)
    sa.event.listen(db.engine, "before_cursor_execute", before)
    try:
        with db.engine.connect() as conn:
            candidates_page(conn, **page)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
        monkeypatch.undo()
    plans = []
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, params in seen:
            if db.engine.dialect.name == "sqlite":
                rows = raw.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
                plans.append("\n".join(r[-1] for r in rows))
            else:
                cur = raw.cursor()
                cur.execute("EXPLAIN " + statement, params)
                plans.append("\n".join(r[0] for r in cur.fetchall()))
    return plans


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_page_reads_the_rank_index_then_its_own_sources_by_key(databases, monkeypatch):
    from dsa110_contimg.store.engine import open_products_db

    db = open_products_db(databases.new("products"))
    try:
        fill(db, 500, others=50_000)      # 1 % of the sources are candidates
        for page in ({"limit": 25, "offset": 50}, {"limit": 10, "status": "active"}, {}):
            first, *by_key = page_plans(db, monkeypatch, **page)
            assert "sources" not in first, first
            if page:        # a page: read in order from the index, no sort of every candidate
                assert "ix_ese_candidates_rank" in first, first
                assert "TEMP B-TREE" not in first and "Sort" not in first, first
            if db.engine.dialect.name == "sqlite":
                assert by_key and all("SEARCH sources" in p for p in by_key), by_key
            else:
                assert by_key and all("Index" in p and "Seq Scan" not in p for p in by_key), by_key
    finally:
        db.dispose()
