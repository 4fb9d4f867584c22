"""Hostile file names and permissions through the *real* photometry workflow (issue 11):

* a good image whose name is not valid UTF-8 is opened by its filesystem form and stored
  by its database form (``fsb64:``) in ``files``, ``batch_job_items``, ``images`` and the
  data registry: done, measured, one result, in light curves;
* a regular ``*.fits`` the daemon may not read is a failed job with the reason
  ("Permission denied"), not a silent skip: the daemon runs as ``nobody`` (``setpriv``)
  on a state directory owned by ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.core.paths import db_path, fs_path, printable
from harness import Service

pytestmark = pytest.mark.timeout(300)

RA = np.array([150.0, 150.03, 149.97, 150.02])
DEC = np.array([37.0, 37.02, 36.98, 36.97])
FLUX_MJY = np.array([100.0, 50.0, 80.0, 30.0])
PHOT = {"catalog": "nvss", "method": "forced", "detect_ese": True, "normalize": False}


def make_catalog(root: Path) -> Path:
    """A 4-source NVSS catalogue store in ``root/catalogs``."""
    from dsa110_contimg.store.catalogs import CatalogStore

    cat = root / "cat.csv"
    cat.write_text("NVSS,RAJ2000,DEJ2000,S1.4\n" + "".join(
        f"S{i},{r},{d},{f}\n" for i, (r, d, f) in enumerate(zip(RA, DEC, FLUX_MJY))))
    (root / "catalogs").mkdir(exist_ok=True)
    store = CatalogStore(root / "catalogs")
    store.ingest("nvss", [cat], ra_column="RAJ2000", dec_column="DEJ2000", flux_column="S1.4",
                 flux_unit="mJy", progress=False)
    store.close()
    return root / "catalogs"


def write_image(path: str | bytes | Path, epoch: int) -> None:
    """A 96x96 simulated image of the catalogue's sources (Jy/beam, MJD 60676 + epoch),
    written to a hidden temporary file and renamed into place (bytes names accepted)."""
    from astropy.io import fits

    from dsa110_contimg.science.simulate import simulate_image

    sim = simulate_image((96, 96), pixscale_arcsec=6.0, beam_arcsec=(30.0, 20.0, 0.0), ra_deg=RA,
                         dec_deg=DEC, peak_jyb=FLUX_MJY / 1000, noise_rms=1e-3, mjd=60676.0 + epoch,
                         seed=epoch)
    raw = os.fsencode(path)
    tmp = os.path.join(os.path.dirname(raw), b".tmp-" + str(epoch).encode() + b".part")
    fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(os.fsdecode(tmp))
    os.replace(tmp, raw)


def test_non_utf8_name_through_the_executor_manager_and_registry(tmp_path):
    """In process: ``measure_for_fits`` as a batch job, run by the real PhotometryExecutor."""
    import sqlite3

    from dsa110_contimg.pipeline.manager import PhotometryManager
    from dsa110_contimg.service.runtime import run_claimed

    catalogs = make_catalog(tmp_path)
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.img-image-pb.fits"
    write_image(raw, 0)
    name = os.fsdecode(raw)                  # the surrogate-escaped str Python gives for it
    stored = db_path(name)
    assert stored.startswith("fsb64:") and fs_path(stored) == name
    products, registry = tmp_path / "products.sqlite3", tmp_path / "registry.sqlite3"
    manager = PhotometryManager(products, registry, catalog_dir=catalogs)
    queued = manager.measure_for_fits(name, create_batch_job=True, **PHOT)
    assert queued.batch_job_id is not None and not [n for n in queued.notes if "pre-check" in n]
    job = manager.queue.claim()
    assert job.items[0].fits_path == stored
    state = run_claimed(manager.queue, job, str(products), str(registry), str(catalogs))
    assert state == "done", manager.queue.get(job.id)
    con = sqlite3.connect(products)
    assert con.execute("SELECT path FROM images").fetchall() == [(stored,)]   # one result
    assert con.execute("SELECT count(*) FROM measurements").fetchone() == (len(RA),)
    assert con.execute("SELECT status, image_id IS NOT NULL, error FROM batch_job_items").fetchall() \
        == [("done", 1, None)]
    assert con.execute("SELECT count(*) FROM variability_stats WHERE n = 1").fetchone() == (len(RA),)
    reg = sqlite3.connect(registry)
    assert reg.execute("SELECT data_id, path, photometry_status FROM data_products").fetchall() == \
        [(printable(Path(name).stem), stored, "completed")]
    # a second epoch of the same name: re-measured in place, still one image row
    os.unlink(raw)
    write_image(raw, 1)
    measured = manager.measure_for_fits(stored, create_batch_job=False, **PHOT)
    assert measured.measurements_total == len(RA)
    assert con.execute("SELECT count(*), min(path) FROM images").fetchone() == (1, stored)
    # a failure naming such a file is stored printable (\xNN), never a UnicodeEncodeError
    bad = os.fsencode(tmp_path) + b"/bad-\xff.img-image-pb.fits"
    with open(bad, "wb") as fh:
        fh.write(b"SIMPLE  =                    T".ljust(80) + b" " * 2800)
    jid = manager.measure_for_fits(os.fsdecode(bad), create_batch_job=True, **PHOT).batch_job_id
    job = manager.queue.claim()
    assert job.id == jid
    assert run_claimed(manager.queue, job, str(products), str(registry), str(catalogs)) == "failed"
    err = manager.queue.get(jid)["error"]
    assert "bad-\\xff" in err and "END" in err, err


def test_daemon_measures_a_non_utf8_name_with_the_real_executor(tmp_path):
    svc = Service(tmp_path / "svc", workers=1, executor="photometry", photometry=PHOT)
    try:
        make_catalog(svc.root)
        proc = svc.start()
        raw = os.fsencode(svc.images) + b"/2025-01-01T00:00:00-\xe9\xff.img-image-pb.fits"
        plain = svc.images / "2025-01-02T00:00:00.img-image-pb.fits"
        write_image(raw, 0)
        write_image(plain, 1)
        svc.wait_for(svc.idle_with(2), 120, "both images done")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log = proc.logfile.read_text(errors="replace")
    finally:
        svc.stop_all()
    stored = db_path(os.fsdecode(raw))
    by_path = svc.jobs_by_path()
    assert set(by_path) == {stored, str(plain)}
    for path, jobs in by_path.items():
        assert len(jobs) == 1 and jobs[0][1] == "done" and jobs[0][3] is None, (path, jobs, log[-3000:])
    assert sorted(svc.sql("SELECT path, n_success FROM images")) == \
        sorted([(stored, len(RA)), (str(plain), len(RA))])
    assert svc.sql("SELECT count(*) FROM measurements") == [(2 * len(RA),)]
    assert sorted(svc.sql("SELECT path, decision FROM files")) == \
        sorted([(stored, "queued"), (str(plain), "queued")])
    assert {r[0] for r in svc.sql("SELECT n FROM variability_stats")} == {2}   # both epochs in the curves


SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _unprivileged_python() -> tuple[list[str] | None, str]:
    """``(command, PYTHONPATH)`` running this project's Python as ``nobody``, or ``(None, why)``.

    The virtualenv's interpreter may live where ``nobody`` cannot go (``/root/.pyenv``): a
    system interpreter of the same minor version is used with the virtualenv's
    site-packages on ``PYTHONPATH`` (the worker processes are spawned with it too)."""
    import sysconfig

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None, "needs root and setpriv"
    site = sysconfig.get_paths()["purelib"]
    src = str(Path(__file__).resolve().parents[2] / "src")
    pythonpath = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "support"), src, site])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in dict.fromkeys([sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]):
        if not os.path.exists(exe):
            continue
        probe = ("import multiprocessing as mp, numpy, astropy, sqlalchemy, dsa110_contimg\n"
                 "p = mp.get_context('spawn').Process(target=print)\n"    # the pool spawns workers
                 "p.start(); p.join(); raise SystemExit(p.exitcode)")
        r = subprocess.run(SETPRIV + [exe, "-c", probe],
                           capture_output=True, env={**os.environ, "PYTHONPATH": pythonpath,
                                                     "HOME": tempfile.gettempdir()}, timeout=120)
        if r.returncode == 0:
            return SETPRIV + [exe], pythonpath
    return None, "no Python interpreter usable by nobody"


def test_permission_denied_file_is_a_failed_job_when_the_daemon_runs_as_nobody():
    """A real EACCES: the daemon runs as ``nobody``; ``secret`` belongs to root, mode 0600.
    (The same decision with a simulated EACCES: test_intake.py.)"""
    python, pythonpath = _unprivileged_python()
    if python is None:
        pytest.skip(f"cannot run the daemon as nobody here ({pythonpath}); the simulated "
                    "EACCES is tested in test_intake.py")
    import pwd

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="contimg-nobody-"))   # not under pytest's 0700 tmp dir
    svc = None
    try:
        os.chmod(root, 0o755)
        svc = Service(root, workers=1, executor="photometry", photometry=PHOT, settle_s=2.0)
        make_catalog(svc.root)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
                os.chown(n, nobody.pw_uid, nobody.pw_gid)
        secret = svc.images / "2025-01-01T00:00:00.img-image-pb.fits"
        readable = svc.images / "2025-01-02T00:00:00.img-image-pb.fits"
        proc = svc.start(python=python, PYTHONPATH=pythonpath, HOME=str(root),
                         XDG_CONFIG_HOME=str(root / ".config"), XDG_CACHE_HOME=str(root / ".cache"))
        write_image(secret, 0)          # written by root, then closed: the daemon sees the event
        os.chmod(secret, 0o600)         # ... of a file it may not read
        write_image(readable, 1)
        os.chown(readable, nobody.pw_uid, nobody.pw_gid)
        svc.wait_for(svc.idle_with(2), 120, "both files decided")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        by_path = svc.jobs_by_path()
        log = proc.logfile.read_text(errors="replace")
        assert set(by_path) == {str(secret), str(readable)}, log[-3000:]
        (_, status, _, error), = by_path[str(secret)]
        assert status == "failed" and "Permission denied" in error, (status, error)
        assert [j[1] for j in by_path[str(readable)]] == ["done"]
        assert svc.sql("SELECT path FROM images") == [(str(readable),)]
        rows = svc.sql("SELECT decision, reason FROM files WHERE path = ?", str(secret))
        assert rows == [("queued", rows[0][1])] and "permission denied" in rows[0][1], rows
        assert "file_queued_unchecked" in log and "permission denied" in log
        st = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "jobs", "list", "--config",
                             str(svc.config)], capture_output=True, text=True, timeout=120, env=svc.env())
        assert "Permission denied" in st.stdout or "failed" in st.stdout, st.stdout + st.stderr
    finally:
        if svc is not None:
            svc.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_the_daemons_queue_path_imports_neither_numpy_nor_astropy():
    """Deciding a file's kind in the main loop must not import astropy (seconds under CPU
    load: a file closed right after start-up was queued 10 s late, a stalled loop)."""
    code = ("import sys\n"
            "from dsa110_contimg.service import classify, daemon, intake\n"
            "assert classify.header_kind({'NIMAGES': 4}) == 'mosaic'\n"
            "assert classify.header_kind({'BMAJ': 0.01}) == 'image'\n"
            "classify.classify_name('/x/a.img-image-pb.fits')\n"
            "print(sorted(m for m in ('numpy', 'astropy', 'dsa110_contimg.science.image') "
            "if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
    from dsa110_contimg.science.image import header_is_mosaic   # still the shared rule

    assert header_is_mosaic({"NIMAGES": 2}) and not header_is_mosaic({})
