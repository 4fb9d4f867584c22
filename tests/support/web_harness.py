"""Helpers for the web tests and ``bench/web.py``: a large synthetic products database
filled in bulk, the site in process (:func:`site_client`), and ``contimg-photometry
serve`` as a real subprocess on a free port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np


def fill_scale_db(path: str | Path, *, n_sources: int = 100_000, n_epochs: int = 50, n_fields: int = 20,
                  n_candidates: int = 1000, seed: int = 0) -> dict:
    """Create a products database of ``n_sources`` x ``n_epochs`` measurements.

    ``n_fields`` fields (centres 8 deg apart in RA at Dec +30, image radius 1 deg), each
    observed ``n_epochs`` times (so ``n_fields * n_epochs`` images) with every one of its
    ``n_sources / n_fields`` sources measured on each; variability metrics for every
    source, ``n_candidates`` ESE candidates, one done job per image (finished over the
    last day) and a few QC-failed images. Rows go in through ``sqlite3`` ``executemany``
    in one transaction (schema from the Alembic migrations); the status counters are then
    compacted.

    Returns ``{"seconds": fill time, "n_measurements": ..., "top_candidate_source": id}``.
    """
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.rank_keys import as_sql, rank_key

    t0 = time.perf_counter()
    path = Path(path)
    open_products_db(path).dispose()           # schema through the migrations
    rng = np.random.default_rng(seed)
    per_field = n_sources // n_fields
    n_sources = per_field * n_fields
    now = time.time()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")      # one bulk write, no WAL copy (back to WAL below)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")
    with con:
        src_rows, field_src = [], []
        sid = 0
        for k in range(n_fields):
            ra0, dec0 = 10.0 + 8.0 * k, 30.0
            dra = rng.uniform(-0.7, 0.7, per_field) / np.cos(np.deg2rad(dec0))
            ddec = rng.uniform(-0.7, 0.7, per_field)
            flux = 10 ** rng.uniform(1, 3, per_field)
            ids = np.arange(sid + 1, sid + per_field + 1)
            sid += per_field
            field_src.append((ids, ra0 + dra, dec0 + ddec, flux / 1000.0))
            src_rows.extend(zip(["NVSS"] * per_field, [f"SIM J{r:09.5f}{d:+09.5f}" for r, d in zip(ra0 + dra, dec0 + ddec)],
                                (ra0 + dra).tolist(), (dec0 + ddec).tolist(), flux.tolist(), [0] * per_field))
        con.executemany("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, "
                        "reference_ok) VALUES (?,?,?,?,?,?)", src_rows)
        img_rows, image_id = [], 0
        # measurements computed inside SQLite (INSERT ... SELECT over the field's sources):
        # raw = catalogue flux x gain + uniform noise of +-1 mJy/beam, normalised = raw / gain
        sql = ("INSERT INTO measurements (image_id, source_id, ra_deg, dec_deg, peak_jyb, peak_err_jyb, "
               "flags, success, norm_flux_jyb, norm_err_jyb) "
               "SELECT :img, id, ra_deg, dec_deg, p, 0.001, 0, 1, p / :gain, 0.001 FROM "
               "(SELECT id, ra_deg, dec_deg, catalog_flux_mjy * :gain / 1000.0 "
               "+ ((abs(random()) % 2001) - 1000) * 1e-6 AS p FROM sources WHERE id BETWEEN :lo AND :hi)")
        job_rows = []
        for k, (ids, _ra, _dec, _peak) in enumerate(field_src):
            for e in range(n_epochs):
                image_id += 1
                mjd = 60000.0 + 3.0 * e + 0.01 * k
                qc = "failed" if e == n_epochs // 2 and k % 5 == 0 else "passed"
                gain = 1.0 + rng.normal(0, 0.03)
                img_rows.append((image_id, f"/data/images/field{k:02d}/epoch{e:03d}.img-image-pb.fits", "x",
                                 "image", mjd, 1.4e9, 15.0, 10.0, 0.0, "header", 10.0 + 8.0 * k, 30.0, 1.0,
                                 1e-3, "forced", "nvss", ids.size, ids.size, qc,
                                 json.dumps(["rms 3.1x the field median"] if qc == "failed" else []),
                                 "ok" if qc == "passed" else "failed", gain, 0.002, 0.01, 20,
                                 None if qc == "passed" else "image failed QC", now - 86400 + 80 * image_id))
                con.execute(sql, {"img": image_id, "gain": gain, "lo": int(ids[0]),
                                  "hi": int(ids[-1])})
                job_rows.append(("photometry", "done", "daemon", "{}", 1, 1, 0, 1, 3, 0.0, now - 86400 + 80 * image_id,
                                 now - 86400 + 80 * image_id + 20, now - 86400 + 80 * image_id + 20))
        con.executemany(
            "INSERT INTO images (id, path, content_id, kind, mjd, freq_hz, beam_major_arcsec, beam_minor_arcsec, "
            "beam_pa_deg, beam_source, ra_center_deg, dec_center_deg, radius_deg, median_rms_jyb, "
            "method, catalog, n_sources, n_success, qc_status, qc_reasons, norm_status, norm_factor, "
            "norm_factor_err, norm_scatter, norm_n_refs, norm_reason, measured_at) VALUES "
            f"({','.join('?' * 27)})", img_rows)
        con.executemany("INSERT INTO batch_jobs (type, status, origin, params, total_items, completed_items, "
                        "failed_items, attempts, max_attempts, not_before, created_at, updated_at, finished_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        job_rows)
        eta = 10 ** rng.normal(0, 0.3, n_sources)
        v = 10 ** rng.normal(-1.6, 0.2, n_sources)
        mean = np.concatenate([f[3] for f in field_src])
        keys = [as_sql(rank_key(a)) for a in (eta, v, mean, np.full(n_sources, float(n_epochs)))]
        con.executemany("INSERT INTO variability_stats (source_id, flux_kind, n, eta, v, chi2_nu, "
                        "sigma_deviation, weighted_mean, updated_at, eta_key, v_key, weighted_mean_key, "
                        "n_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        zip(range(1, n_sources + 1), ["normalized"] * n_sources, [n_epochs] * n_sources,
                            eta.tolist(), v.tolist(), eta.tolist(), rng.uniform(0, 3, n_sources).tolist(),
                            mean.tolist(), [now] * n_sources, *keys))
        cand_src = rng.choice(np.arange(1, n_sources + 1), n_candidates, replace=False)
        score = np.sort(rng.uniform(0, 10, n_candidates))[::-1]
        catalog_jy = np.concatenate([f[3] for f in field_src])
        # every candidate a detected dip with its fitted template stored (drawn on its page)
        con.executemany("INSERT INTO ese_candidates (source_id, status, flagged_by, criteria, preset, score, "
                        "confidence, sigma_deviation, chi2_nu, eta, v, shape_significance, depth, "
                        "duration_days, t_min_mjd, template, baseline_jyb, caustic_amp, n_epochs, "
                        "first_flagged_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [(int(s), "active", "auto", '["shape"]', "moderate", float(sc),
                          "high" if sc > 7 else "medium" if sc > 4 else "low", 5.0, 3.0, 3.0, 0.1, float(sc),
                          0.4, 40.0, 60080.0, "dip", float(catalog_jy[s - 1]), 0.0, n_epochs, now, now)
                         for s, sc in zip(cand_src, score)])
        _store_sparklines(con, cand_src, per_field, n_epochs)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    # the status counters' deltas of the bulk load folded, as the daemon's housekeeping does
    from dsa110_contimg.store.counters import try_compact

    db = open_products_db(path)
    assert try_compact(db)
    db.dispose()
    return {"seconds": time.perf_counter() - t0, "n_measurements": n_sources * n_epochs,
            "n_images": n_fields * n_epochs, "n_sources": n_sources, "top_candidate_source": int(cand_src[0])}


def _store_sparklines(con, cand_src, per_field: int, n_epochs: int) -> None:
    """Each candidate's stored sparkline, as the ESE step writes it: the summary
    (science/sparkline.py) of its normalised light curve on the images that passed QC (field
    k's images are ids k * n_epochs + 1 ... (k + 1) * n_epochs)."""
    from dsa110_contimg.science.sparkline import encode_all

    sids = [int(s) for s in cand_src]
    mjd = np.full((len(sids), n_epochs), np.nan)
    flux = np.full((len(sids), n_epochs), np.nan)
    sql = ("SELECT i.mjd, m.norm_flux_jyb FROM measurements m JOIN images i ON i.id = m.image_id "
           f"WHERE m.image_id IN ({','.join('?' * n_epochs)}) AND m.source_id = ? "
           "AND i.qc_status != 'failed' ORDER BY i.mjd")
    for row, sid in enumerate(sids):
        k = (sid - 1) // per_field
        ids = tuple(range(k * n_epochs + 1, (k + 1) * n_epochs + 1))
        got = np.array(con.execute(sql, ids + (sid,)).fetchall(), float).reshape(-1, 2)
        mjd[row, :len(got)], flux[row, :len(got)] = got[:, 0], got[:, 1]
    con.executemany("UPDATE ese_candidates SET sparkline = ? WHERE source_id = ?",
                    zip(encode_all(mjd, flux), sids))


def scale_db(tmp_path_factory, name: str, **sizes) -> tuple[Path, dict]:
    """A fresh database of :func:`fill_scale_db` (``sizes``: its keyword arguments) in a
    temporary folder ``name``: (path, what ``fill_scale_db`` returned)."""
    path = tmp_path_factory.mktemp(name) / "products.sqlite3"
    return path, fill_scale_db(path, **sizes)


def site_client(db_path, **options):
    """A Starlette test client of the site reading ``db_path`` (``options``: those of
    :func:`dsa110_contimg.web.app.create_app`, e.g. ``reviewers``, ``stamp_cache_dir``)."""
    import warnings

    from dsa110_contimg.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # starlette's note about httpx versions
        from starlette.testclient import TestClient

        return TestClient(create_app(str(db_path), **options))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``contimg-photometry serve`` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, *args: str, log: Path, env: dict | None = None, timeout: float = 90.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        fh = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "serve", *args,
                                      "--listen", f"127.0.0.1:{self.port}"], stdout=fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        fh.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/status", timeout=10) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"serve not answering after {timeout} s: {self.log.read_text()[-3000:]}")

    def get(self, path: str, timeout: float = 60.0) -> tuple[int, bytes, float]:
        """(HTTP status, body, seconds) of a GET."""
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                body, code = r.read(), r.status
        except urllib.error.HTTPError as exc:
            body, code = exc.read(), exc.code
        return code, body, time.perf_counter() - t0

    def post_json(self, path: str, obj, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=json.dumps(obj).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
