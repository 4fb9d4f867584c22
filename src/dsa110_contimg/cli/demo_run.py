"""The end-to-end demo: a simulated sky, a catalogue, the daemon, ~30 epochs, one ESE.

Steps (:func:`run_demo`):

1. ``init`` a service in the work directory (images/, mosaics/, state/, catalogs/)
   with normalisation and ESE detection on;
2. make a small NVSS-like catalogue (a CSV of positions and 1.4 GHz fluxes in mJy)
   and ingest it through :class:`~dsa110_contimg.store.catalogs.CatalogStore`;
3. start ``contimg-photometry run`` as a subprocess (the real daemon);
4. drop ``epochs`` simulated DSA-110-like images (PB-corrected WSClean names,
   written to a hidden temporary file and renamed into place): every source
   scaled by a per-epoch gain jitter (3 % rms), one source with an injected
   extreme-scattering-event dip;
5. wait until every job is settled, print the status, the ESE candidates and the new
   sources (a source in no catalogue switches on 60 % of the way through the season),
   write the best candidate's light curve as a PNG;
6. wait until the daemon has delivered the alerts (``[alerts] voevent_dir`` is the
   work directory's ``alerts/`` spool), list them and print the VOEvent written for the
   injected source; stop the daemon (SIGTERM).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RA0, DEC0 = 150.0, 37.0
SHAPE = (192, 192)
PIXSCALE_ARCSEC = 20.0
BEAM = (60.0, 45.0, 20.0)     # arcsec, arcsec, deg E of N (a coarse, fast DSA-110-like beam)
NOISE_JYB = 1.5e-3
GAIN_JITTER = 0.03
ESE_DEPTH = 0.50              # fractional dip at the minimum
ESE_DURATION_DAYS = 45.0      # full duration of the event (ESEs last weeks to months)
ESE_CAUSTIC = 0.10            # fractional height of the caustic brightenings at its edges
CADENCE_DAYS = 4.0            # 30 epochs span ~4 months
TRANSIENT_MJY = 80.0          # a source in no catalogue that switches on ...
TRANSIENT_ON = 0.6            # ... 60 % of the way through the season


def make_sky(n_sources: int = 24, seed: int = 110):
    """Catalogue positions (deg) and fluxes (mJy) inside the simulated field."""
    rng = np.random.default_rng(seed)
    half_deg = 0.40 * SHAPE[0] * PIXSCALE_ARCSEC / 3600.0
    # on a jittered grid so the sources are isolated (>= 4 beams apart)
    side = int(np.ceil(np.sqrt(n_sources)))
    g = np.linspace(-half_deg, half_deg, side)
    dx, dy = np.meshgrid(g, g)
    dx = dx.ravel()[:n_sources] + rng.uniform(-0.01, 0.01, n_sources)
    dy = dy.ravel()[:n_sources] + rng.uniform(-0.01, 0.01, n_sources)
    dec = DEC0 + dy
    ra = RA0 + dx / np.cos(np.deg2rad(dec))
    flux_mjy = np.round(10 ** rng.uniform(np.log10(60), np.log10(600), n_sources), 1)
    return ra, dec, flux_mjy


def ese_profile(epochs: int) -> np.ndarray:
    """Multiplicative flux factor per epoch for the ESE source: the library's ESE model
    (a tapered dip with caustic brightenings, Fiedler et al. 1987) centred 40 % of the way,
    so that the season also shows its recovery (the shape detector requires dip AND
    recovery, watched for max(duration, 30 d) after the event)."""
    from dsa110_contimg.science.ese import ese_model

    t = np.arange(epochs, dtype=float) * CADENCE_DAYS
    return ese_model(t, 0.4 * t[-1], ESE_DURATION_DAYS, ESE_DEPTH, ESE_CAUSTIC * ESE_DEPTH)


def write_catalog(path: Path, ra, dec, flux_mjy) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["NVSS", "RAJ2000", "DEJ2000", "S1.4"])
        for r, d, f in zip(ra, dec, flux_mjy):
            w.writerow([f"DEMO J{r:08.4f}{d:+08.4f}", f"{r:.6f}", f"{d:.6f}", f"{f:.2f}"])


def transient_position(ra, dec) -> tuple[float, float]:
    """A position in no catalogue: half-way between the first two catalogue sources of the
    grid (more than two beams from each)."""
    return float((ra[0] + ra[1]) / 2), float((dec[0] + dec[1]) / 2)


def write_epoch(images: Path, i: int, ra, dec, flux_mjy, factor, rng, transient_on=False) -> Path:
    """One epoch: gain jitter for every source, the ESE factor for source 0, and the source in
    no catalogue (last position) once it has switched on."""
    from astropy.io import fits

    from dsa110_contimg.science.simulate import simulate_image

    gain = 1.0 + rng.normal(0.0, GAIN_JITTER)
    peaks = flux_mjy / 1000.0 * gain
    peaks = peaks.copy()
    peaks[0] *= factor
    peaks[-1] = TRANSIENT_MJY / 1000.0 if transient_on else 0.0
    mjd = 60676.25 + i * CADENCE_DAYS
    sim = simulate_image(SHAPE, ra0_deg=RA0, dec0_deg=DEC0, pixscale_arcsec=PIXSCALE_ARCSEC,
                         beam_arcsec=BEAM, ra_deg=ra, dec_deg=dec, peak_jyb=peaks, noise_rms=NOISE_JYB,
                         mjd=mjd, seed=1000 + i)
    name = f"{sim.header['DATE-OBS'][:19]}.img-image-pb.fits"   # named after its epoch
    final = images / name
    tmp = images / f".{name}.part"
    fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(tmp, overwrite=True)
    os.replace(tmp, final)   # the producer contract: rename into place
    return final


def _config_text(root: Path, workers: int) -> str:
    from dsa110_contimg.service.config import render_config

    return render_config(
        root,
        photometry={"normalize": True, "detect_ese": True, "ese_preset": "moderate",
                    "norm_min_snr": 20.0, "norm_baseline_epochs": 5},
        daemon={"workers": workers, "settle_s": 5.0, "pbcor_wait_s": 0.0, "heartbeat_interval_s": 1.0,
                "drain_timeout_s": 20.0, "rescan_interval_s": 30.0, "stale_after_s": 30.0},
        logging={"format": "json"},
        alerts={"voevent_dir": str(root / "alerts"), "poll_interval_s": 1.0})


def run_demo(*, workdir: str | os.PathLike | None = None, epochs: int = 30, workers: int = 2,
             timeout_s: float = 110.0, out=None) -> int:
    """Run the demo; returns 0 when the ESE source is flagged and its light curve written."""
    from dsa110_contimg.store.catalogs import CatalogStore
    from dsa110_contimg.service.config import load_config
    from dsa110_contimg.service.status import collect_status, format_status
    from dsa110_contimg.store.engine import open_products_db

    out = out or sys.stdout
    t_start = time.monotonic()
    root = Path(workdir).resolve() if workdir else Path(tempfile.mkdtemp(prefix="contimg-demo-"))
    for sub in ("images", "mosaics", "state", "catalogs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config = root / "photometry.toml"
    config.write_text(_config_text(root, workers))
    cfg = load_config(config)
    print(f"demo: work directory {root}", file=out)

    ra, dec, flux = make_sky()
    cat_csv = root / "catalogs" / "demo_nvss.csv"
    write_catalog(cat_csv, ra, dec, flux)
    store = CatalogStore(cfg.paths.catalog_dir)
    n = store.ingest("nvss", [cat_csv], ra_column="RAJ2000", dec_column="DEJ2000", flux_column="S1.4",
                     flux_unit="mJy", progress=False)
    store.close()
    print(f"demo: a {TRANSIENT_MJY:.0f} mJy source in no catalogue switches on at epoch "
          f"{int(TRANSIENT_ON * epochs)}", file=out)
    print(f"demo: catalogue of {n} sources ingested; ESE injected on "
          f"DEMO J{ra[0]:08.4f}{dec[0]:+08.4f} ({flux[0]:.0f} mJy, dip {ESE_DEPTH:.0%})", file=out)

    log_path = root / "daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "run", "--config",
                                 str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_log(log_path, '"event": "ready"', proc, 60)
        print(f"demo: daemon running (pid {proc.pid}, log {log_path}); dropping {epochs} epochs",
              file=out)
        rng = np.random.default_rng(7)
        factors = ese_profile(epochs)
        t_ra, t_dec = transient_position(ra, dec)
        for i in range(epochs):
            write_epoch(root / "images", i, np.r_[ra, t_ra], np.r_[dec, t_dec], np.r_[flux, 0.0],
                        factors[i], rng, transient_on=i >= int(TRANSIENT_ON * epochs))
        db = open_products_db(cfg.paths.products_db, read_only=True)
        deadline = t_start + timeout_s
        st = collect_status(db)
        while time.monotonic() < deadline:
            st = collect_status(db)
            j = st["jobs"]
            settled = j["done"] + j["failed"] + j["dead"]
            if settled >= epochs and not j["pending"] and not j["running"]:
                # one more heartbeat, so the daemon's own status line is as settled as the jobs
                beat_at = time.time()
                while time.monotonic() < deadline and proc.poll() is None:
                    st = collect_status(db)
                    if (st["daemon"]["heartbeat_age_s"] or 0.0) < time.time() - beat_at:
                        break
                    time.sleep(0.2)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        print("\n" + format_status(st) + "\n", file=out)
        rc = _report_candidates(db, root, ra[0], dec[0], out)
        rc = max(rc, _report_new_sources(db, t_ra, t_dec, out))
        rc = max(rc, _report_alerts(db, root / "alerts", ra[0], dec[0], deadline + 30.0, out))
        db.dispose()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"demo: finished in {time.monotonic() - t_start:.0f} s (daemon exit code {proc.returncode})",
          file=out)
    return rc


def _report_new_sources(db, ra_t: float, dec_t: float, out) -> int:
    """Print the new sources (blind detections no earlier image explains); 0 when the
    injected source in no catalogue is among them."""
    from dsa110_contimg.core.geometry import angular_separation_deg
    from dsa110_contimg.store.sources import SourceQuery, list_sources

    with db.engine.connect() as conn:
        rows = list_sources(conn, SourceQuery(kinds=("new",), order="significance"))
        conn.rollback()
    if not rows:
        print("demo: no new source was found", file=out)
        return 1
    print("new sources (in no catalogue; most significant first):", file=out)
    sep = angular_separation_deg([r["ra_deg"] for r in rows], [r["dec_deg"] for r in rows],
                                 ra_t, dec_t) * 3600.0
    for r, s in zip(rows, sep):
        tag = "  <- injected source switching on" if s < BEAM[0] else ""
        print(f"  #{r['id']} {r['name']}: first detected MJD {r['first_detected_mjd']:.2f}, "
              f"new_high_sigma {r['new_high_sigma']:.1f}, {r['n_measurements']} measurements"
              f"{tag}", file=out)
    return 0 if bool((sep < BEAM[0]).any()) else 1


def _wait_log(path: Path, needle: str, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {path.read_text()[-2000:]}")
        if needle in path.read_text():
            return
        time.sleep(0.1)
    raise RuntimeError(f"daemon not ready after {timeout} s; see {path}")


def _report_candidates(db, root: Path, ra_ese: float, dec_ese: float, out) -> int:
    from dsa110_contimg.cli.main import main as cli_main
    from dsa110_contimg.core.geometry import angular_separation_deg
    from dsa110_contimg.store.lightcurves import list_candidates

    with db.engine.connect() as conn:
        rows = list_candidates(conn)
        conn.rollback()
    if not rows:
        print("demo: no ESE candidate was flagged", file=out)
        return 1
    print("ESE candidates (best first):", file=out)
    sep = angular_separation_deg([r["ra_deg"] for r in rows], [r["dec_deg"] for r in rows],
                                 ra_ese, dec_ese) * 3600.0
    for r, s in zip(rows, sep):
        tag = "  <- injected ESE" if s < 10 else ""
        print(f"  #{r['id']} {r['catalog_id']}: score {r['score']:.2f} ({r['confidence']}), "
              f"sigma {_sigma_text(r)}, "
              f"depth {r['depth'] or float('nan'):.2f}{tag}", file=out)
    best = rows[0]
    png = root / "ese_candidate_lightcurve.png"
    rc = cli_main(["lightcurve", str(best["source_id"]), "-o", str(png), "--products-db",
                   str(root / "state" / "products.sqlite3")])
    if rc == 0 and png.exists():
        print(f"demo: light curve of {best['catalog_id']} written to {png}", file=out)
    found = bool((sep < 10).any())
    return 0 if (found and rc == 0 and png.exists()) else 1


def _report_alerts(db, spool: Path, ra_ese: float, dec_ese: float, deadline: float, out) -> int:
    """Wait (until ``deadline``, monotonic) for the daemon to write every alert into the
    spool; list them and print the VOEvent of the injected source's first alert."""
    from dsa110_contimg.core.geometry import angular_separation_deg
    from dsa110_contimg.store.alerts import find_alerts

    rows: list[dict] = []
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            rows = find_alerts(conn, limit=None)
            conn.rollback()
        if rows and all(a["deliveries"] and all(d["state"] == "sent" for d in a["deliveries"])
                        for a in rows):
            break
        time.sleep(0.5)
    written = [a for a in reversed(rows) if (spool / f"{a['key']}.xml").exists()]
    if not written:
        print(f"demo: no alert was written to {spool}", file=out)
        return 1
    print(f"\nAlerts written to {spool} (VOEvent 2.0, role test):", file=out)
    for a in written:
        print(f"  {a['key']}.xml  {a['event']}  {a['source_name']}", file=out)
    sep = angular_separation_deg([a["payload"].get("ra_deg", np.nan) for a in written],
                                 [a["payload"].get("dec_deg", np.nan) for a in written],
                                 ra_ese, dec_ese) * 3600.0
    injected = [a for a, s in zip(written, sep) if s < 10]
    if not injected:
        print("demo: no alert names the injected ESE source", file=out)
        return 1
    path = spool / f"{injected[0]['key']}.xml"
    print(f"\ndemo: the alert for the injected ESE ({path}):\n{path.read_text()}", file=out)
    return 0


def _sigma_text(candidate: dict) -> str:
    """The candidate's detection significance as ``ese list`` prints it."""
    from dsa110_contimg.store.lightcurves import detection_sigma

    sig = detection_sigma(candidate)
    return "-" if sig is None else f"{sig:.1f}"
