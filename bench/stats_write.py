"""The variability step's write per image against the table's size and its page indexes.

The ``variability`` step reads and rewrites every measured source's ``variability_stats`` row
on every image (:func:`dsa110_contimg.store.lightcurves.load_running_stats` then
:func:`~dsa110_contimg.store.lightcurves.save_running_stats`, the update-by-key path the step
takes). The source pages rank by ``eta``, ``v``, ``weighted_mean`` and ``n``
(``store/sources.py`` ``METRIC_ORDERS``). This bench times the read and the write (CPU of this
process, ``time.process_time``, commit included) for an image of ``K`` sources (one field's
contiguous block of ids, its sums and metrics drifting by ``--drift`` (2 %) and ``n`` + 1,
as a new epoch moves them) in a SQLite products database of ``N`` sources' rows, three layouts:

* **value idx** -- one index per ranked value, every value in the UPDATE's SET (each image
  rewrites four index entries per source): the layout before the rank keys;
* **key idx** -- the schema's layout: the indexes on the coarse rank keys
  (``store/rank_keys.py``), a key column written only where its key moved;
* **no idx** -- no page index at all (the floor of the write).

Medians of ``--repeat`` images, the layouts alternating; ``moved`` is the share of the image's
rows with at least one key moved. ``bench/pipeline.py`` runs on a database of one field
(``N`` = ``K``); a service holds 10^5 sources and more.

Usage::

    .venv/bin/python bench/stats_write.py [--sizes 1000:1000,4000:4000,1000:100000,4000:100000]
                                          [--repeat 7] [--drift 0.02]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dsa110_contimg.store import bulk
from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps
from dsa110_contimg.store.rank_keys import rank_key
from dsa110_contimg.store.schema import METRIC_COLUMNS, RUNNING_SUM_COLUMNS


def build(path: Path, n: int, rng) -> tuple[np.ndarray, dict, dict]:
    """A products database at ``path`` with ``n`` sources and their running statistics;
    returns (source ids, sums, metrics)."""
    db = open_products_db(f"sqlite:///{path}")
    with db.engine.begin() as conn:
        sid = np.asarray(ps.upsert_sources(conn, "nvss", [f"NVSS J{i:07d}" for i in range(n)],
                                           np.linspace(10, 11, n), np.full(n, 30.0),
                                           np.full(n, 5.0), np.ones(n, bool)), np.int64)
        sums = {c: rng.lognormal(0.0, 1.0, n) for c in RUNNING_SUM_COLUMNS}
        sums["n"] = rng.integers(5, 200, n)
        mets = {c: rng.lognormal(0.0, 1.0, n) for c in METRIC_COLUMNS}
        lc_store.save_running_stats(conn, sid, sums, mets, "normalized")
    db.dispose()
    return sid, sums, mets


_METRICS = ("eta", "v", "weighted_mean", "n")


def set_layout(path: Path, layout: str) -> None:
    """Put the page indexes of ``layout`` (``values``, ``keys``, ``none``) on the database."""
    import sqlite3

    con = sqlite3.connect(path)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                       "tbl_name = 'variability_stats' AND sql IS NOT NULL")]
    for name in names:
        con.execute(f'DROP INDEX "{name}"')
    for m in _METRICS if layout != "none" else ():
        col = m if layout == "values" else f"{m}_key"
        con.execute(f'CREATE INDEX "ix_variability_stats_{col}" ON variability_stats ({col})')
    con.commit()
    con.close()


#: The value layout's write: every column in the SET, no keys (what the step wrote before them).
_VALUE_UPDATE = ("UPDATE variability_stats SET " + ", ".join(
    f"{c} = ?" for c in ("n", "flux_kind", "updated_at") + RUNNING_SUM_COLUMNS + METRIC_COLUMNS)
    + " WHERE source_id = ?")


def value_write(conn, ids, sums, mets) -> None:
    order = np.argsort(ids, kind="stable")
    k = ids.size
    cols = [np.asarray(sums["n"]).astype(np.int64)[order].tolist(), ["normalized"] * k,
            [time.time()] * k, *[bulk.nullable(np.asarray(sums[c], float)[order]) for c in RUNNING_SUM_COLUMNS],
            *[bulk.nullable(np.asarray(mets[c], float)[order]) for c in METRIC_COLUMNS],
            ids[order].tolist()]
    bulk.executemany(conn, _VALUE_UPDATE, list(zip(*cols)))


def one_image(db, layout, sid, sums, mets, k: int, rng, drift: float) -> tuple[float, float]:
    """CPU seconds of one image's read and write of ``k`` sources (commit included) and the
    share of its rows whose keys moved."""
    n = sid.size
    s0 = int(rng.integers(0, n - k + 1))
    idx = np.arange(s0, s0 + k)
    before = np.column_stack([rank_key(mets[m][idx]) for m in _METRICS[:3]] + [rank_key(sums["n"][idx])])
    for c in RUNNING_SUM_COLUMNS:
        sums[c][idx] *= 1 + drift * rng.standard_normal(k)
    for c in METRIC_COLUMNS:
        mets[c][idx] *= 1 + drift * rng.standard_normal(k)
    sums["n"][idx] += 1
    sub_s = {c: sums[c][idx] for c in sums}
    sub_m = {c: mets[c][idx] for c in mets}
    after = np.column_stack([rank_key(sub_m[m]) for m in _METRICS[:3]] + [rank_key(sub_s["n"])])
    moved = float((before != after).any(axis=1).mean())
    with db.engine.connect() as conn:
        c0 = time.process_time()
        with conn.begin():
            if layout == "values":
                lc_store.load_running_stats(conn, sid[idx])
                value_write(conn, sid[idx], sub_s, sub_m)
            else:
                _, present, _, keys = lc_store.load_running_stats(conn, sid[idx], with_keys=True)
                lc_store.save_running_stats(conn, sid[idx], sub_s, sub_m, "normalized",
                                            present=present, stored_keys=keys)
        return time.process_time() - c0, moved


LAYOUTS = ("values", "keys", "none")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000:1000,4000:4000,1000:100000,4000:100000",
                    help="SOURCES_PER_IMAGE:SOURCES_IN_TABLE,...")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--drift", type=float, default=0.02,
                    help="relative scatter of each sum and metric from one image to the next")
    args = ap.parse_args(argv)
    print("# variability_stats read + write per image (load_running_stats, save_running_stats, "
          "update by key, commit included), SQLite, CPU ms, medians of %d images, metrics drifting "
          "%.1f %% per image, n + 1" % (args.repeat, 100 * args.drift))
    print(f"{'per image':>10} {'table rows':>11} {'value idx':>10} {'key idx':>8} {'no idx':>7} "
          f"{'key/value':>10} {'moved':>6}")
    for item in args.sizes.split(","):
        k, n = (int(v) for v in item.split(":"))
        rng = np.random.default_rng(k + n)
        with tempfile.TemporaryDirectory(prefix="bench-stats-write-") as tmp:
            built = Path(tmp) / "keys.sqlite3"
            sid, sums, mets = build(built, n, rng)
            dbs, state, times, moved = {}, {}, {name: [] for name in LAYOUTS}, []
            for name in LAYOUTS:
                path = Path(tmp) / f"{name}.sqlite3"
                if path != built:
                    shutil.copy(built, path)
                set_layout(path, name)
                dbs[name] = open_products_db(f"sqlite:///{path}")
                state[name] = ({c: v.copy() for c, v in sums.items()}, {c: v.copy() for c, v in mets.items()})
            for rep in range(args.repeat):
                for name in (LAYOUTS if rep % 2 == 0 else LAYOUTS[::-1]):
                    s, m = state[name]
                    t, mv = one_image(dbs[name], name, sid, s, m, k, np.random.default_rng(rep),
                                      args.drift)
                    times[name].append(t)
                    moved.append(mv)
            for db in dbs.values():
                db.dispose()
        a, b, c = (statistics.median(times[name]) * 1e3 for name in LAYOUTS)
        print(f"{k:>10,} {n:>11,} {a:>10.1f} {b:>8.1f} {c:>7.1f} {b / a:>9.2f}x {statistics.mean(moved):>6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
