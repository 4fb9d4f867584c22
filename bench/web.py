"""Benchmark: the web pages on a database of 100,000 sources x 50 epochs (1,000 images).

Fills the database in bulk (prints the fill time), starts ``contimg-photometry serve`` as a
subprocess and times each page over HTTP (first request and median of 5). The same-run
baseline is what the pages avoid: loading the light curves of every ESE candidate (as an
unpaginated candidates page with thumbnails would), timed in process.

Postage stamps: the top candidate's field gets a real 4096 x 4096 image (one file, hard
linked as each of its epochs, so each epoch is a cutout of its own); the source page with
its strip of stamps (inside the page) is timed with an empty stamp cache (cold: every
cutout read from the images) and then cached (median of 5), on the 100,000-source
database and on a one-field database of 1,000 sources.

Budget: every page < 0.5 s; a source page with its stamps < 1 s cold, < 0.2 s cached.

Run: .venv/bin/python bench/web.py [--sources 100000] [--epochs 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dsa110_contimg.store import review

BUDGET_S = 0.5
STAMPS_COLD_BUDGET_S, STAMPS_CACHED_BUDGET_S = 1.0, 0.2
# the scale database and the server process are the web tests' own (tests/web_harness.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the database")
    args = ap.parse_args()

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
    stamp_images = real_field_images(db, top, root)
    shutil.rmtree(root / "stamps", ignore_errors=True)       # the stamp cache `serve` keeps beside the db
    srv = ServeProcess("--products-db", str(db), log=root / "serve.log")
    try:
        stamp_figures = time_stamps(srv, top)
        results = {}
        for path in ("/", "/candidates", "/candidates?page=30", f"/sources/{top}", f"/sources/{top}?page=1",
                     "/images", "/images?page=15", "/images/500", "/api/candidates", f"/api/sources/{top}",
                     "/sources", "/sources?sort=flux&page=1000", "/sources?q=SIM+J01",
                     "/sources?q=10.0+%2B30.0&radius=0.5deg&sort=eta"):
            code, _, first = srv.get(path)
            assert code == 200, path
            times = [srv.get(path)[2] for _ in range(5)]
            results[path] = (first, statistics.median(times))
    finally:
        srv.stop()
    small_cold, small_cached, _ = stamps_on_a_small_database(root)
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
    cold, cached, n_stamps = stamp_figures
    print(f"the same on a database of 1,000 sources x 50 epochs (the page's own queries small): "
          f"cold {small_cold * 1000:.0f} ms (ratio {small_cold / STAMPS_COLD_BUDGET_S:.2f}), cached median "
          f"{small_cached * 1000:.0f} ms (ratio {small_cached / STAMPS_CACHED_BUDGET_S:.2f})")
    own_cold, own_cached, render = stamp_costs(db, top, root)
    print(f"the stamps' own share (in process, wall / CPU): strip of {n_stamps} from the 4096x4096 images "
          f"{own_cold[0] * 1000:.0f} / {own_cold[1] * 1000:.0f} ms cold, {own_cached[0] * 1000:.1f} / "
          f"{own_cached[1] * 1000:.1f} ms from the cache; {render[0] * 1000:.1f} / {render[1] * 1000:.1f} ms "
          f"to render the {n_stamps} PNGs")
    print(f"source page with {n_stamps} stamps of {stamp_images} 4096x4096 epochs (stamps inline): "
          f"cold {cold * 1000:.0f} ms (budget {STAMPS_COLD_BUDGET_S * 1000:.0f}, ratio "
          f"{cold / STAMPS_COLD_BUDGET_S:.2f}), cached median {cached * 1000:.0f} ms (budget "
          f"{STAMPS_CACHED_BUDGET_S * 1000:.0f}, ratio {cached / STAMPS_CACHED_BUDGET_S:.2f}); "
          f"cold/cached {cold / cached:.1f}")


def real_field_images(db: Path, source_id: int, root: Path) -> int:
    """Give the field of ``source_id`` a real 4096 x 4096 image: one FITS file centred on
    the field, hard linked under a name per epoch, the epochs' stored paths pointed at them.
    Returns the number of epochs."""
    import os
    import sqlite3

    import numpy as np

    from dsa110_contimg.science.simulate import simulate_image

    con = sqlite3.connect(db)
    ra, dec = con.execute("SELECT ra_deg, dec_deg FROM sources WHERE id = ?", (source_id,)).fetchone()
    field = con.execute("SELECT id, ra_center_deg, dec_center_deg FROM images ORDER BY "
                        "(ra_center_deg - ?) * (ra_center_deg - ?) + (dec_center_deg - ?) * (dec_center_deg - ?) "
                        "LIMIT 1", (ra, ra, dec, dec)).fetchone()
    ids = [r[0] for r in con.execute("SELECT id FROM images WHERE ra_center_deg = ? AND dec_center_deg = ?",
                                     field[1:])]
    big = root / "stamps-4096.fits"
    if not big.exists():
        simulate_image((4096, 4096), ra0_deg=field[1], dec0_deg=field[2], pixscale_arcsec=3.0,
                       beam_arcsec=(15.0, 10.0, 0.0), ra_deg=[ra], dec_deg=[dec], peak_jyb=[0.05],
                       noise_rms=1e-3, correlated=False, seed=1).write(big)
    (root / "epochs").mkdir(exist_ok=True)
    with con:
        for i in ids:
            link = root / "epochs" / f"epoch{i}.fits"
            if not link.exists():
                os.link(big, link)
            con.execute("UPDATE images SET path = ? WHERE id = ?", (str(link), i))
    con.close()
    return len(ids)


def stamps_on_a_small_database(root: Path) -> tuple[float, float, int]:
    """:func:`time_stamps` on a one-field database of 1,000 sources x 50 epochs."""
    from web_harness import ServeProcess, fill_scale_db

    small = root / "small"
    small.mkdir(exist_ok=True)
    db = small / "products.sqlite3"
    if not db.exists():
        top = fill_scale_db(db, n_sources=1000, n_epochs=50, n_fields=1, n_candidates=10)["top_candidate_source"]
    else:
        from dsa110_contimg.store.engine import open_products_db

        d = open_products_db(db, read_only=True)
        with d.engine.connect() as conn:
            top = review.candidates_page(conn, limit=1)[0][0]["source_id"]
        d.dispose()
    real_field_images(db, top, small)
    shutil.rmtree(small / "stamps", ignore_errors=True)
    srv = ServeProcess("--products-db", str(db), log=small / "serve.log")
    try:
        return time_stamps(srv, top)
    finally:
        srv.stop()


def stamp_costs(db: Path, source_id: int, root: Path) -> tuple[tuple, tuple, tuple]:
    """(strip cold, strip cached, rendering every PNG), each (wall s, CPU s of this
    process), timed in process: what the stamps add to a source page, without its other
    queries. The CPU time is what the wall time would be on an idle machine (no I/O wait
    here: the image is in the page cache)."""
    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.lightcurves import source_lightcurve
    from dsa110_contimg.web.stamp_cache import StampCache
    from dsa110_contimg.web.stamps import render_png, strip

    cache_dir = root / "stamps-inprocess"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = StampCache(cache_dir, 256 << 20)
    d = open_products_db(db, read_only=True)
    with d.engine.connect() as conn:
        summary = review.source_summary(conn, source_id)
        lc = source_lightcurve(conn, summary["source"])
    d.dispose()
    with RadioImage.open(str(lc["image_path"][0]), check_empty=False):   # astropy warmed, as in a running site
        pass
    t0, c0 = time.perf_counter(), time.process_time()
    strip(cache, lc, summary["source"], summary["candidate"], 15.0)
    cold = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    stamps, (low, high) = strip(cache, lc, summary["source"], summary["candidate"], 15.0)
    cached = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    for st in stamps:
        render_png(st.cutout, low, high)
    return cold, cached, (time.perf_counter() - t0, time.process_time() - c0)


def time_stamps(srv, source_id: int) -> tuple[float, float, int]:
    """(cold seconds, cached median seconds, number of stamps) of the source page, its stamps
    inside it."""
    import base64
    import re

    def page_and_stamps() -> tuple[float, int]:
        t0 = time.perf_counter()
        code, body, _ = srv.get(f"/sources/{source_id}")
        assert code == 200
        stamps = re.findall(r'<img src="data:image/png;base64,([^"]+)"', body.decode())   # inline: no more requests
        assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in stamps)
        return time.perf_counter() - t0, len(stamps)

    cold, n = page_and_stamps()
    cached = statistics.median(page_and_stamps()[0] for _ in range(5))
    return cold, cached, n


if __name__ == "__main__":
    main()
