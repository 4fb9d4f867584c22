"""The daemon as a real subprocess: restarts that resume, arrival paths, bursts,
graceful SIGTERM, damaged files, crashing workers, two daemons on one database.

The job executor is ``fakes.FakePhotometryExecutor`` (tests/support/fakes.py)
(same contract as the photometry workflow: updates its items, upserts one
``images`` row per path, logs each execution) so that the tests exercise the
watching, queueing and pool machinery in seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from pgcluster import BACKENDS
from harness import drop, fits_bytes

pytestmark = pytest.mark.timeout(240)


both = pytest.mark.parametrize("backend", BACKENDS)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@both
def test_sigkill_five_times_every_image_measured_exactly_once(service):
    """200 images dropped while the daemon is SIGKILLed at random moments 5 times."""
    n, kills = 200, 5
    # attempts > kills: a job can never be exhausted by the kills alone
    svc = service(workers=2, max_attempts=kills + 1)
    rng = random.Random(42)
    paths = [svc.images / f"night{i // 50}" / f"2025-01-01T{i:04d}.img-image-pb.fits" for i in range(n)]
    for p in paths:
        p.parent.mkdir(exist_ok=True)
    proc = svc.start(CONTIMG_FAKE_SLEEP_S=0.02)

    def producer():
        for i, p in enumerate(paths):
            drop(p, i, how="rename" if i % 2 else "inplace")
            time.sleep(rng.uniform(0.0, 0.03))

    t = threading.Thread(target=producer)
    t.start()
    worker_pids: set[int] = set()
    for k in range(kills):
        time.sleep(rng.uniform(0.8, 2.0))
        proc.kill()
        proc.wait(10)
        time.sleep(rng.uniform(0.0, 0.5))  # files keep arriving while the daemon is down
        proc = svc.start(CONTIMG_FAKE_SLEEP_S=0.02)
    t.join()
    svc.wait_for(svc.idle_with(n), timeout=120, what="all images done")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0

    by_path = svc.jobs_by_path()
    expected = {str(p) for p in paths}
    assert set(by_path) == expected, "an image is missing or unexpected"
    for path, jobs in by_path.items():
        assert len(jobs) == 1, (path, jobs)           # one job per file version
        assert jobs[0][1] == "done", (path, jobs)
        assert 1 <= jobs[0][2] <= kills + 1
    measured = svc.sql("SELECT path FROM images")
    assert sorted(r[0] for r in measured) == sorted(expected)  # one result row per image
    execs = svc.executions()
    assert set(execs) == expected
    # an attempt interrupted by a daemon kill is not counted as an attempt but as an
    # interruption: re-executed only when an attempt was interrupted by a kill
    runs = dict(svc.sql("SELECT i.fits_path, j.attempts + j.interruptions FROM batch_jobs j "
                        "JOIN batch_job_items i ON i.batch_id = j.id"))
    for path, count in execs.items():
        assert count == 1 or count <= runs[path], (path, count, runs[path])
    if svc.backend == "sqlite":
        assert svc.sql("PRAGMA integrity_check") == [("ok",)]
    for line in (svc.out / "executions.log").read_text().splitlines():
        worker_pids.add(int(line.split()[2]))
    assert not [pid for pid in worker_pids if _pid_alive(pid)], "orphan worker processes survive"


def test_arrival_paths_and_pb_preference(service):
    # settle_s far beyond every wait below: a file queued within a wait was queued by its
    # close/rename/create event, not by quiescence (no timing assertion, robust under load)
    settle_s = 600.0
    svc = service(workers=1, settle_s=settle_s, pbcor_wait_s=3.0)
    svc.start()
    outside = svc.root / "staging"
    outside.mkdir()
    # slow chunked write in place: queued only after close
    slow = svc.images / "slow.img-image-pb.fits"
    data = fits_bytes(1)
    with open(slow, "wb") as fh:
        for i in range(4):
            fh.write(data[i * len(data) // 4:(i + 1) * len(data) // 4])
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.5)
            assert str(slow) not in svc.jobs_by_path(), f"queued before close (chunk {i})"
        time.sleep(0.5)
        assert str(slow) not in svc.jobs_by_path(), "queued before close (complete, still open)"
    # queued by the close event: a wait far shorter than settle_s (quiescence would take that long)
    svc.wait_for(lambda: str(slow) in svc.jobs_by_path(), min(120.0, settle_s / 2),
                 "slow file queued after close")
    # rename into place from a hidden temp file, os.replace from a sibling dir, hard link
    renamed = drop(svc.images / "renamed.img-image-pb.fits", 2, how="rename")
    (outside / "moved.img-image-pb.fits").write_bytes(fits_bytes(3))
    moved = svc.images / "moved.img-image-pb.fits"
    os.replace(outside / "moved.img-image-pb.fits", moved)
    (outside / "linked.img-image-pb.fits").write_bytes(fits_bytes(4))
    linked = svc.images / "linked.img-image-pb.fits"
    os.link(outside / "linked.img-image-pb.fits", linked)
    # a new sub-directory with a file written at once
    (svc.images / "sub").mkdir()
    sub = drop(svc.images / "sub" / "fresh.img-image-pb.fits", 5, how="inplace")
    # WSClean writes -image then -image-pb: only the PB-corrected one is measured
    restored = drop(svc.images / "g.img-image.fits", 6)
    time.sleep(0.5)
    pbcor = drop(svc.images / "g.img-image-pb.fits", 7)
    lonely = drop(svc.images / "lonely.img-image.fits", 8)   # no PB sibling ever: measured after the wait
    residual = drop(svc.images / "g.img-residual.fits", 9)
    mosaic = drop(svc.mosaics / "nightly_20250101.fits", 10, mosaic=True)
    weights = drop(svc.mosaics / "nightly_20250101.weights.fits", 11, mosaic=True)
    headmosaic = drop(svc.images / "mosaic_x_1.fits", 12, mosaic=True)
    measured = [slow, renamed, moved, linked, sub, pbcor, lonely, mosaic, headmosaic]
    svc.wait_for(svc.idle_with(len(measured)), 180, "arrivals done")
    time.sleep(1.0)
    by_path = svc.jobs_by_path()
    assert set(by_path) == {str(p) for p in measured}
    assert all(len(j) == 1 and j[0][1] == "done" for j in by_path.values()), \
        [(p, j) for p, j in by_path.items() if len(j) != 1 or j[0][1] != "done"]
    assert all(v == 1 for v in svc.executions().values())
    kinds = dict(svc.sql("SELECT path, kind FROM images"))
    assert kinds[str(mosaic)] == "mosaic" and kinds[str(headmosaic)] == "mosaic"
    assert kinds[str(pbcor)] == "image"
    skipped = dict(svc.sql("SELECT path, reason FROM files WHERE decision = 'skipped'"))
    assert "superseded by the primary-beam-corrected g.img-image-pb.fits" in skipped[str(restored)]
    assert "residual" in skipped[str(residual)]
    assert "weight" in skipped[str(weights)]
    # a partial file is recorded 'incomplete' with the reason; if it vanishes, so does the row
    partial = svc.images / "partial.img-image-pb.fits"
    partial.write_bytes(fits_bytes(13)[:4000])
    rows = svc.wait_for(lambda: svc.sql("SELECT reason FROM files WHERE path = ? AND decision = "
                                        "'incomplete'", str(partial)), 60, "incomplete row")
    assert "truncated" in rows[0][0] or "implies" in rows[0][0]
    partial.unlink()
    svc.wait_for(lambda: not svc.sql("SELECT 1 FROM files WHERE path = ?", str(partial)), 60,
                 "incomplete row removed")
    assert str(partial) not in svc.jobs_by_path()


def test_burst_of_small_files(service):
    """A burst of 2,000 tiny images written as fast as possible."""
    svc = service(workers=2)
    svc.start()
    n = 2000
    t0 = time.monotonic()
    blob = {i: fits_bytes(i % 7, n=8) for i in range(7)}
    for i in range(n):
        d = svc.images / f"b{i // 500}"
        d.mkdir(exist_ok=True)
        (d / f"x{i:05d}.img-image-pb.fits").write_bytes(blob[i % 7])
    write_s = time.monotonic() - t0
    svc.wait_for(lambda: svc.sql("SELECT count(*) FROM files WHERE decision='queued'")[0][0] >= n,
                 60, "all files queued")
    svc.wait_for(svc.idle_with(n), 150, "burst processed")
    assert svc.sql("SELECT count(*), count(DISTINCT path) FROM images") == [(n, n)]
    assert svc.sql("SELECT count(*) FROM batch_jobs") == [(n,)]
    print(f"burst: {n} files written in {write_s:.2f} s, processed in {time.monotonic() - t0:.1f} s")


def test_sigterm_drains_then_hands_back(service, tmp_path):
    from harness import NotifySocket

    sock = NotifySocket(tmp_path / "notify.sock")
    svc = service(workers=2, drain_timeout_s=3.0)
    proc = svc.start(NOTIFY_SOCKET=sock.path, CONTIMG_FAKE_SLEEP_S=1.5)
    sock.wait_for("READY=1", 10)
    quick = drop(svc.images / "quick.img-image-pb.fits", 1)
    stuck = drop(svc.images / "SLEEPY.img-image-pb.fits", 2)
    svc.wait_for(lambda: svc.job_states().get("running") == 2, 20, "two running jobs")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    took = time.monotonic() - t0
    assert 2.5 < took < 10, took    # waited the drain for the stuck job, not more
    sock.pump(0.5)
    assert sock.times("STOPPING=1")
    by_path = svc.jobs_by_path()
    assert by_path[str(quick)][0][1] == "done"          # finished within the drain
    assert by_path[str(stuck)][0][1:3] == ("pending", 0)  # handed back, attempt not counted
    assert svc.sql("SELECT state FROM heartbeats") == [("stopped",)]
    from dsa110_contimg.cli.main import main
    assert main(["status", "--config", str(svc.config)]) == 3   # not running
    sock.close()


@both
def test_damaged_files_fail_with_reasons_and_daemon_stays_healthy(service):
    svc = service(workers=2, max_attempts=2)
    svc.start()
    good = fits_bytes(1)
    (svc.images / "trunc-mid.img-image-pb.fits").write_bytes(good[:2880 + 100])
    (svc.images / "trunc-block.img-image-pb.fits").write_bytes(good[:2880])  # header only
    (svc.images / "garbage.img-image-pb.fits").write_bytes(os.urandom(5000))
    (svc.images / "empty.img-image-pb.fits").write_bytes(b"")
    (svc.images / "in-header.img-image-pb.fits").write_bytes(good[:1000])
    drop(svc.images / "SELFKILL.img-image-pb.fits", 3)     # kills its worker every time
    after = drop(svc.images / "after.img-image-pb.fits", 4)
    svc.wait_for(lambda: len([j for js in svc.jobs_by_path().values() for j in js
                              if j[1] in ("done", "failed", "dead")]) >= 7, 60, "all settled")
    by_path = svc.jobs_by_path()
    reasons = {os.path.basename(p).split(".")[0]: js[0] for p, js in by_path.items()}
    for name in ("trunc-mid", "trunc-block", "in-header"):
        assert reasons[name][1] == "failed" and "truncated" in reasons[name][3].lower() or \
            "ends inside the header" in reasons[name][3], reasons[name]
    assert reasons["garbage"][1] == "failed" and "not a FITS file" in reasons["garbage"][3]
    assert reasons["empty"][1] == "failed" and "empty" in reasons["empty"][3]
    assert reasons["SELFKILL"][1] == "dead" and reasons["SELFKILL"][2] == 2
    assert "SIGKILL" in reasons["SELFKILL"][3]
    assert by_path[str(after)][0][1] == "done"
    # still healthy: the heartbeat is fresh and a new image is measured
    late = drop(svc.images / "late.img-image-pb.fits", 5)
    svc.wait_for(lambda: svc.jobs_by_path().get(str(late), [(0, "")])[0][1] == "done", 20, "late done")
    out = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "status", "--json",
                          "--config", str(svc.config)], capture_output=True, text=True, env=svc.env())
    st = json.loads(out.stdout)
    assert out.returncode == 1            # degraded: failed and dead jobs
    assert st["daemon"]["running"] is True
    assert st["jobs"]["failed"] == 5 and st["jobs"]["dead"] == 1 and st["jobs"]["done"] == 2
    assert st["images"]["measured"] == 2 and st["measurements"]["total"] == 0
    assert {f["path"] for f in st["failures"]} <= set(by_path)
    assert all(f["error"] for f in st["failures"])


@both
def test_two_daemons_on_one_database_never_run_a_job_twice(service):
    svc = service(workers=2)
    a = svc.start(CONTIMG_FAKE_SLEEP_S=0.05)
    b = svc.start(CONTIMG_FAKE_SLEEP_S=0.05, node="second")   # on purpose: another node
    for p in (a, b):   # both pools warm, or the first daemon may take every job
        svc.wait_for(lambda p=p: '"event": "workers_ready"' in p.logfile.read_text(), 60, "warm workers")
    n = 60
    for i in range(n):
        drop(svc.images / f"t{i:03d}.img-image-pb.fits", i)
    svc.wait_for(svc.idle_with(n), 60, "all done")
    execs = svc.executions()
    assert len(execs) == n and set(execs.values()) == {1}
    pids = {int(line.split()[2]) for line in (svc.out / "executions.log").read_text().splitlines()}
    assert len(pids) >= 3    # both daemons' workers took jobs
    assert svc.sql("SELECT count(*) FROM batch_jobs") == [(n,)]
    assert len(svc.sql("SELECT owner FROM heartbeats")) == 2
    for p in (a, b):
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0


def test_polling_mode_waits_for_quiescence(service):
    """Polling (network filesystems): no close events; a file is checked once its size and
    mtime are stable for max(settle_s, 2 polls). A writer pausing less than that is not
    caught half-way."""
    svc = service(workers=1, polling=True, poll_interval_s=0.3, settle_s=1.5)
    svc.start()
    path = svc.images / "nfs.img-image-pb.fits"
    data = fits_bytes(1)
    with open(path, "wb") as fh:
        fh.write(data[:3000])
        fh.flush()
        time.sleep(0.6)
        fh.write(data[3000:])
    svc.wait_for(svc.idle_with(1), 20, "polled file done")
    jobs = svc.jobs_by_path()[str(path)]
    assert len(jobs) == 1 and jobs[0][1] == "done"
    assert svc.sql("SELECT content_id FROM images") == [(f"{len(data)}:{os.stat(path).st_mtime_ns}",)]


@both
def test_real_workflow_survives_sigkills(service):
    """The real executor (PhotometryManager through execute_job) under SIGKILL restarts:
    every image stored once, one measurement per image and source, variability statistics
    counting each epoch once."""
    from dsa110_contimg.store.catalogs import CatalogStore
    from dsa110_contimg.science.simulate import simulate_image
    from astropy.io import fits
    import numpy as np

    svc = service(workers=2, executor="photometry",
                  photometry={"catalog": "nvss", "method": "forced", "detect_ese": True,
                              "normalize": False})   # raw series: every epoch counts once
    ra = np.array([150.0, 150.03, 149.97, 150.02])
    dec = np.array([37.0, 37.02, 36.98, 36.97])
    flux = np.array([100.0, 50.0, 80.0, 30.0])
    cat = svc.root / "cat.csv"
    cat.write_text("NVSS,RAJ2000,DEJ2000,S1.4\n" + "".join(
        f"S{i},{r},{d},{f}\n" for i, (r, d, f) in enumerate(zip(ra, dec, flux))))
    (svc.root / "catalogs").mkdir(exist_ok=True)
    store = CatalogStore(svc.root / "catalogs")
    store.ingest("nvss", [cat], ra_column="RAJ2000", dec_column="DEJ2000", flux_column="S1.4",
                 flux_unit="mJy", progress=False)
    store.close()
    n = 30
    paths = []
    proc = svc.start()
    rng = random.Random(3)
    for i in range(n):
        sim = simulate_image((96, 96), pixscale_arcsec=6.0, beam_arcsec=(30.0, 20.0, 0.0), ra_deg=ra,
                             dec_deg=dec, peak_jyb=flux / 1000, noise_rms=1e-3, mjd=60676.0 + i, seed=i)
        p = svc.images / f"e{i:03d}.img-image-pb.fits"
        tmp = svc.images / f".e{i:03d}.part"
        fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(tmp)
        os.replace(tmp, p)
        paths.append(p)
        if i in (7, 15, 23):   # kill while a job runs, so that some are re-executed
            svc.wait_for(lambda: svc.job_states().get("running"), 20, "a running job")
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            proc.wait(10)
            proc = svc.start()
    svc.wait_for(svc.idle_with(n), 120, "all epochs done")
    by_path = svc.jobs_by_path()
    assert set(by_path) == {str(p) for p in paths}
    assert all(len(j) == 1 and j[0][1] == "done" for j in by_path.values()), \
        [(p, j) for p, j in by_path.items() if len(j) != 1 or j[0][1] != "done"]
    assert svc.sql("SELECT count(*), count(DISTINCT path) FROM images") == [(n, n)]
    assert svc.sql("SELECT count(*) FROM measurements") == [(n * len(ra),)]
    assert svc.sql("SELECT count(*) FROM sources") == [(len(ra),)]
    assert {r[0] for r in svc.sql("SELECT n FROM variability_stats")} == {n}
    print("re-executed after a kill:", sum(j[0][2] > 1 for j in by_path.values()))
    # one epoch per observation: a copy under another name (new mtime) is recorded as a
    # duplicate and adds no epoch; a changed file at the same path replaces its epoch
    copy = svc.images / "rerun_e005.img-image-pb.fits"
    shutil.copy(paths[5], svc.images / ".rerun.part")
    os.replace(svc.images / ".rerun.part", copy)
    svc.wait_for(svc.idle_with(n + 1), 120, "the copy done")
    (orig_id,) = svc.sql("SELECT id FROM images WHERE path = ?", str(paths[5]))[0]
    assert svc.sql("SELECT duplicate_of, n_sources FROM images WHERE path = ?", str(copy)) == \
        [(orig_id, 0)]
    old = svc.sql("SELECT m.peak_jyb FROM measurements m JOIN images i ON i.id = m.image_id "
                  "WHERE i.path = ? ORDER BY m.source_id", str(paths[10]))
    sim = simulate_image((96, 96), pixscale_arcsec=6.0, beam_arcsec=(30.0, 20.0, 0.0), ra_deg=ra,
                         dec_deg=dec, peak_jyb=flux / 1000, noise_rms=1e-3,
                         mjd=60686.0, seed=99)
    fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(svc.images / ".e010.part")
    os.replace(svc.images / ".e010.part", paths[10])
    svc.wait_for(svc.idle_with(n + 2), 120, "the rewritten file done")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    new = svc.sql("SELECT m.peak_jyb FROM measurements m JOIN images i ON i.id = m.image_id "
                  "WHERE i.path = ? ORDER BY m.source_id", str(paths[10]))
    assert len(new) == len(old) == len(ra) and all(b[0] != a[0] for a, b in zip(old, new))
    assert svc.sql("SELECT count(*), min(qc_status) FROM images WHERE duplicate_of IS NULL") == \
        [(n, "passed")]
    assert svc.sql("SELECT count(*) FROM measurements") == [(n * len(ra),)]
    assert {r[0] for r in svc.sql("SELECT n FROM variability_stats")} == {n}
    status = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "status",
                             "--config", str(svc.config)], capture_output=True, text=True,
                            env=svc.env())
    assert "1 image(s) duplicate of another image" in status.stdout, status.stdout + status.stderr
    if svc.backend == "sqlite":
        assert svc.sql("PRAGMA integrity_check") == [("ok",)]


def test_locked_database_loses_nothing_and_resumes(service):
    """Another process holds the write lock (BEGIN IMMEDIATE) for 8 s while files arrive."""
    import sqlite3

    svc = service(workers=2)
    p = svc.start()
    for i in range(5):
        drop(svc.images / f"pre{i}.img-image-pb.fits", seed=i)
    svc.wait_for(svc.idle_with(5), 60, "first files")
    holder = sqlite3.connect(svc.db_path, timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for i in range(20):
            drop(svc.images / f"locked{i:02d}.img-image-pb.fits", seed=100 + i)
        time.sleep(8.0)
        assert p.poll() is None, "the daemon died while the database was locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    svc.wait_for(svc.idle_with(25), 90, "files dropped during the lock")
    jobs = svc.jobs_by_path()
    assert len(jobs) == 25 and all(len(v) == 1 and v[0][1] == "done" for v in jobs.values())
    assert sorted(svc.executions().values()) == [1] * 25
    assert p.poll() is None
    age = svc.sql("SELECT max(beat_at) FROM heartbeats")[0][0]
    assert time.time() - age < 10      # the heartbeat resumed


def _scrape(port: int) -> dict:
    """``{name: value}`` of the unlabelled series of the daemon's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
        text = r.read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if not s.labels}


def test_files_waiting_gauge_and_status_line_count_the_files_the_daemon_waits_on(service):
    """A restored image waiting for its primary-beam-corrected partner and an image still
    being written are two files waiting: on /metrics and in the heartbeat's status line;
    both are zero again once the partner arrives and the write completes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    svc = service(workers=1, pbcor_wait_s=120.0, settle_s=120.0, metrics_listen=f"127.0.0.1:{port}")
    svc.start()
    drop(svc.images / "field.img-image.fits", 1)                   # waits for field.img-image-pb
    partial = svc.images / "writing.img-image-pb.fits"
    partial.write_bytes(fits_bytes(2)[:2880 + 100])               # header and a little data
    svc.wait_for(lambda: len(svc.sql("SELECT path FROM files WHERE decision = 'incomplete'")) == 2,
                 30, "both files recorded as waiting")
    svc.wait_for(lambda: _scrape(port)["contimg_files_waiting"] == 2, 10, "files_waiting = 2")
    svc.wait_for(lambda: "2 files waiting" in (svc.sql("SELECT status_text FROM heartbeats")[0][0] or ""),
                 10, "the status line says 2 files waiting")
    drop(svc.images / "field.img-image-pb.fits", 3)               # the partner: restored one skipped
    partial.write_bytes(fits_bytes(2))                            # the writer finishes
    svc.wait_for(svc.idle_with(2), 60, "partner and finished image measured")
    svc.wait_for(lambda: _scrape(port)["contimg_files_waiting"] == 0, 10, "files_waiting = 0")
    line = svc.sql("SELECT status_text FROM heartbeats")[0][0]
    svc.wait_for(lambda: "0 files waiting" in svc.sql("SELECT status_text FROM heartbeats")[0][0],
                 10, f"the status line says 0 files waiting (last: {line})")
    skipped = svc.sql("SELECT reason FROM files WHERE path LIKE '%field.img-image.fits'")
    assert skipped and "superseded" in skipped[0][0], skipped
