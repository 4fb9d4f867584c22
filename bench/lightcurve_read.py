"""One source's light curve read at two history lengths (``--epochs``, requested: the build
starts from a few real epochs, so a size may hold one or two more): does its cost follow its points,
and does a light curve of fixed length cost the same in a longer history?

Usage::

    .venv/bin/python bench/lightcurve_read.py [--epochs 13,502] [--fields 2] [--sources 1000]
                                              [--root /tmp/lcread] [--reuse]

Builds one SQLite database per history length with ``bench/growth.py``'s :class:`GrowthDB`
(``--fields`` fields of ``--sources`` catalogue sources, one epoch a day, the epochs beyond the
first real ones copied through the store's bulk path) and times, on each, what reads one
source's light curve or the service's counters: the ``lightcurve`` CLI, ``GET /sources/{src}``,
``GET /api/sources/{src}``, ``GET /sources/{src}/lightcurve.csv``, ``GET /api/status`` and the
daemon's ``/metrics`` database gauges. ``{src}`` is a source of field 0 measured on every epoch
(its light curve is the history); ``{late}`` is growth.py's late source, measured on the 13
(``LATE_EPOCHS``) newest epochs of field 0 of the first size that has them, so its light curve
is the same at every size (timed where every size has it). The sizes are timed in turn within
each round (paired, back to back) and the medians of the CPU time of this process and of wall
time printed with their ratio to the shortest history. ``--reuse`` times the databases a previous run left under
``--root``; ``--before-src DIR`` (an earlier tree's ``src``) also times that tree's code on the
same databases, in child processes alternating round by round with this tree's, and prints
both tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workerenv  # noqa: E402,F401  (before numpy)
from growth import LATE_SOURCE, LEGEND, GrowthDB, _once as once, keep_copy  # noqa: E402


def build(root: Path, epochs: list[int], args) -> dict[int, Path]:
    """SQLite databases with ``epochs`` epochs per field (paths by epoch count)."""
    work = root / "build"
    work.mkdir(parents=True, exist_ok=True)
    url = str(work / "products.sqlite3")
    gdb = GrowthDB(url, work, size=args.size, n_sources=args.sources, n_fields=args.fields)
    gdb.seed()
    out = {}
    per_epoch = len(gdb.field0_sources) * args.fields
    for n in sorted(epochs):
        gdb.grow_to(per_epoch * n, progress=lambda s: None)
        out[n] = keep_copy(gdb, root / f"products-{n}.sqlite3")
        print(f"built {out[n]}: {gdb.epochs_per_field} epochs per field, "
              f"{gdb.n_measurements():,} measurement rows", flush=True)
    gdb.db.dispose()
    return out


def field0_source(path: Path) -> int:
    """A source of field 0 measured on its newest image (the one the growth bench times)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        img = con.execute("SELECT max(id) FROM images WHERE id < 10000").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT source_id FROM measurements WHERE image_id = ? "
                                         "ORDER BY source_id", (img,))]
    finally:
        con.close()
    return ids[len(ids) // 2]


def has_late(path: Path) -> bool:
    """Whether the database holds growth.py's late source."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM sources WHERE id = ?",
                           (LATE_SOURCE,)).fetchone()[0] > 0
    finally:
        con.close()


def calls(path: Path) -> dict:
    """Name -> zero-argument callable, for one database."""
    from starlette.testclient import TestClient

    from dsa110_contimg.cli.main import main
    from dsa110_contimg.service.metrics import Metrics
    from dsa110_contimg.web.app import create_app

    src = field0_source(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = TestClient(create_app(str(path)))

    def cli(s):
        def f():
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                main(["lightcurve", "--products-db", str(path), str(s)])
        return f

    def get(p):
        def f():
            r = client.get(p)
            assert r.status_code == 200, (p, r.status_code)
        return f

    out = {}
    for s, name in ((src, "{src}"), (LATE_SOURCE, "{late}")[:2 if has_late(path) else 0]):
        out[f"lightcurve {name} (CLI)"] = cli(s)
        for p in (f"/sources/{s}", f"/api/sources/{s}", f"/sources/{s}/lightcurve.csv"):
            out["GET " + p.replace(str(s), name)] = get(p)
    out["GET /api/status"] = get("/api/status")
    out["/metrics (database gauges)"] = Metrics("", str(path)).database_snapshot
    return out


def time_rounds(dbs: dict[int, Path], repeat: int) -> dict:
    """(epochs, name) -> [(wall s, CPU s)] over ``repeat`` rounds, the sizes back to back."""
    fns = {n: calls(p) for n, p in dbs.items()}
    epochs = sorted(dbs)
    names = [k for k in fns[epochs[0]] if all(k in fns[n] for n in epochs)]
    runs = {(n, k): [] for n in epochs for k in names}
    for n in epochs:                      # one untimed call each
        for k in names:
            fns[n][k]()
    for _ in range(repeat):
        for k in names:
            for n in epochs:
                runs[n, k].append(once(fns[n][k]))
    return runs


def print_table(title: str, runs: dict) -> None:
    epochs = sorted({n for n, _ in runs})
    names = list(dict.fromkeys(k for _, k in runs))
    base = epochs[0]
    print(f"\n{title}: median CPU ms of the process (ratio to {base} epochs) | wall ms")
    print(LEGEND)
    print(f"{'':36s}" + "".join(f"{str(n) + ' epochs':>28s}" for n in epochs))
    for k in names:
        cells = []
        c0 = statistics.median(r[1] for r in runs[base, k])
        for n in epochs:
            w = statistics.median(r[0] for r in runs[n, k])
            c = statistics.median(r[1] for r in runs[n, k])
            cells.append(f"{c * 1e3:7.1f} ({c / c0:4.2f}x) | {w * 1e3:7.1f}")
        print(f"{k:36s}" + "".join(f"{c:>28s}" for c in cells))


def child_runs(src: str | None, root: Path, epochs: list[int], repeat: int) -> dict:
    """:func:`time_rounds` in a child process importing the package from ``src`` (None: this
    tree)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, __file__, "--child", "--root", str(root),
                          "--epochs", ",".join(map(str, epochs)), "--repeat", str(repeat)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return {(n, k): [tuple(r) for r in v] for n, k, v in json.loads(out.splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", default="13,502")
    ap.add_argument("--fields", type=int, default=2)
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--root", type=Path, default=Path("/tmp/lcread"))
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--before-src", help="an earlier tree's src directory, timed on the same data")
    ap.add_argument("--rounds", type=int, default=3, help="alternations with --before-src")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from dsa110_contimg.service.logging import configure_logging

    configure_logging("console", "warning", stream=sys.stderr)
    warnings.simplefilter("ignore")
    epochs = sorted(int(e) for e in args.epochs.split(","))
    dbs = {n: args.root / f"products-{n}.sqlite3" for n in epochs}
    if args.child:
        runs = time_rounds(dbs, args.repeat)
        print(json.dumps([[n, k, v] for (n, k), v in runs.items()]))
        return
    if not args.reuse:
        args.root.mkdir(parents=True, exist_ok=True)
        dbs = build(args.root, epochs, args)
    if not args.before_src:
        print_table("this tree", time_rounds(dbs, args.repeat))
        return
    per_round = max(1, args.repeat // args.rounds)
    trees = {"before (" + args.before_src + ")": args.before_src, "after (this tree)": None}
    got: dict[str, dict] = {t: {} for t in trees}
    for _ in range(args.rounds):
        for title, src in trees.items():
            for key, v in child_runs(src, args.root, epochs, per_round).items():
                got[title].setdefault(key, []).extend(v)
    for title, runs in got.items():
        print_table(title, runs)


if __name__ == "__main__":
    main()
