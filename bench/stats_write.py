"""The variability step's write per image against the table's size and its page indexes.

The ``variability`` step rewrites every measured source's ``variability_stats`` row on every
image (:func:`dsa110_contimg.store.lightcurves.save_running_stats`, the update-by-key path the
step takes). The table carries one index per ranking of the source pages (``eta``, ``v``,
``weighted_mean``, ``n``: ``store/sources.py`` ``METRIC_ORDERS``), and each of them changes
for every source on every image. This bench times that write (CPU of this process,
``time.process_time``, commit included) for an image of ``K`` sources (one field's
contiguous block of ids, its sums and metrics drifting by 2 % and ``n`` + 1, as a new epoch
moves them) in a SQLite products database of ``N`` sources' rows:

* **as built** -- the schema's indexes;
* **without the page indexes** -- the same database with the four metric indexes dropped
  (what the write would cost if the pages ranked without per-row index maintenance).

Medians of ``--repeat`` images, the two databases alternating; the ratio is the share of the
write that is index maintenance. ``bench/pipeline.py`` runs on a database of one field (``N``
= ``K``); a service holds 10^5 sources and more.

Usage::

    .venv/bin/python bench/stats_write.py [--sizes 1000:1000,4000:4000,1000:100000,4000:100000]
                                          [--repeat 7]
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

from dsa110_contimg.store import lightcurves as lc_store
from dsa110_contimg.store import open_products_db
from dsa110_contimg.store import products as ps
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


def drop_page_indexes(path: Path) -> list[str]:
    """Drop the metric indexes of ``variability_stats`` (the primary key stays)."""
    import sqlite3

    con = sqlite3.connect(path)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                       "tbl_name = 'variability_stats' AND sql IS NOT NULL")]
    for name in names:
        con.execute(f'DROP INDEX "{name}"')
    con.commit()
    con.close()
    return names


def one_image(db, sid, sums, mets, k: int, rng) -> float:
    """CPU seconds of one image's write of ``k`` sources (commit included)."""
    n = sid.size
    s0 = int(rng.integers(0, n - k + 1))
    idx = np.arange(s0, s0 + k)
    for c in RUNNING_SUM_COLUMNS:
        sums[c][idx] *= 1 + 0.02 * rng.standard_normal(k)
    for c in METRIC_COLUMNS:
        mets[c][idx] *= 1 + 0.02 * rng.standard_normal(k)
    sums["n"][idx] += 1
    sub_s = {c: sums[c][idx] for c in sums}
    sub_m = {c: mets[c][idx] for c in mets}
    with db.engine.connect() as conn:
        c0 = time.process_time()
        with conn.begin():
            lc_store.save_running_stats(conn, sid[idx], sub_s, sub_m, "normalized",
                                        present=np.ones(k, bool))
        return time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000:1000,4000:4000,1000:100000,4000:100000",
                    help="SOURCES_PER_IMAGE:SOURCES_IN_TABLE,...")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    print("# variability_stats write per image (save_running_stats, update by key, commit "
          "included), SQLite, CPU ms, medians of %d images" % args.repeat)
    print(f"{'per image':>10} {'table rows':>11} {'as built':>9} {'no page idx':>12} {'ratio':>6}")
    for item in args.sizes.split(","):
        k, n = (int(v) for v in item.split(":"))
        rng = np.random.default_rng(k + n)
        with tempfile.TemporaryDirectory(prefix="bench-stats-write-") as tmp:
            built = Path(tmp) / "built.sqlite3"
            sid, sums, mets = build(built, n, rng)
            bare = Path(tmp) / "bare.sqlite3"
            shutil.copy(built, bare)
            dropped = drop_page_indexes(bare)
            state = {"built": (sums, mets), "bare": ({c: v.copy() for c, v in sums.items()},
                                                    {c: v.copy() for c, v in mets.items()})}
            dbs = {"built": open_products_db(f"sqlite:///{built}"),
                   "bare": open_products_db(f"sqlite:///{bare}")}
            times: dict[str, list[float]] = {"built": [], "bare": []}
            for rep in range(args.repeat):
                for name in (("built", "bare") if rep % 2 == 0 else ("bare", "built")):
                    s, m = state[name]
                    times[name].append(one_image(dbs[name], sid, s, m, k,
                                                 np.random.default_rng(rep)))
            for db in dbs.values():
                db.dispose()
        a, b = statistics.median(times["built"]), statistics.median(times["bare"])
        print(f"{k:>10,} {n:>11,} {a * 1e3:>9.1f} {b * 1e3:>12.1f} {a / b:>5.1f}x"
              f"   (dropped: {len(dropped)} indexes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
