"""Benchmark: the web pages on a database of 100,000 sources x 50 epochs (1,000 images).

Fills the database in bulk (prints the fill time), starts ``contimg-photometry serve`` as a
subprocess and times each page over HTTP (first request and median of 5). The same-run
baseline is what the pages avoid: loading the light curves of every ESE candidate (as an
unpaginated candidates page with thumbnails would), timed in process.

Budget: every page < 0.5 s.

Run: .venv/bin/python bench/web.py [--sources 100000] [--epochs 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 0.5
# the scale database and the server process are the web tests' own (tests/web_harness.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the database")
    args = ap.parse_args()

    from dsa110_contimg.store import review
    from dsa110_contimg.store.engine import open_products_db
    from web_harness import ServeProcess, fill_scale_db

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-web-"))
    root.mkdir(parents=True, exist_ok=True)
    db = root / "products.sqlite3"
    if not db.exists():
        info = fill_scale_db(db, n_sources=args.sources, n_epochs=args.epochs, n_fields=20,
                             n_candidates=args.candidates)
        print(f"fill: {info['n_sources']} sources x {args.epochs} epochs = {info['n_measurements']} "
              f"measurements, {info['n_images']} images in {info['seconds']:.1f} s")
        top = info["top_candidate_source"]
    else:
        d = open_products_db(db, read_only=True)
        with d.engine.connect() as conn:
            top = review.candidates_page(conn, limit=1)[0][0]["source_id"]
        d.dispose()
    srv = ServeProcess("--products-db", str(db), log=root / "serve.log")
    try:
        results = {}
        for path in ("/", "/candidates", "/candidates?page=30", f"/sources/{top}", f"/sources/{top}?page=1",
                     "/images", "/images?page=15", "/images/500", "/api/candidates", f"/api/sources/{top}"):
            code, _, first = srv.get(path)
            assert code == 200, path
            times = [srv.get(path)[2] for _ in range(5)]
            results[path] = (first, statistics.median(times))
    finally:
        srv.stop()
    # baseline: every candidate's light curve (what pagination avoids)
    d = open_products_db(db, read_only=True)
    with d.engine.connect() as conn:
        rows, _ = review.candidates_page(conn)
        t0 = time.perf_counter()
        review.thumbnail_series(conn, rows)
        baseline = time.perf_counter() - t0
    d.dispose()
    print(f"baseline: light curves of all {len(rows)} candidates in {baseline * 1000:.0f} ms")
    print(f"{'page':<28} {'first (ms)':>10} {'median (ms)':>12} {'/budget':>8} {'/baseline':>10}")
    for path, (first, med) in results.items():
        print(f"{path:<28} {first * 1000:10.1f} {med * 1000:12.1f} {med / BUDGET_S:8.2f} {med / baseline:10.3f}")
    print(f"budget {BUDGET_S * 1000:.0f} ms per page; worst median "
          f"{max(m for _, m in results.values()) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
