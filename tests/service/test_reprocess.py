"""``contimg-photometry reprocess`` on Dask distributed: a real scheduler with two worker
processes, the default local cluster, resume after an interruption, skips and failures.

Every run must give exactly what the in-process workflow gives when the same images are
measured one by one in epoch order: the same fluxes, the same normalisation, the same
running statistics and the same ESE candidates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import sqlalchemy as sa

from fields import SimulatedField
from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager
from dsa110_contimg.science.ese import ese_model

pytestmark = pytest.mark.timeout(600)

N_EPOCHS = 24
CFG = PhotometryConfig(normalize=True, detect_ese=True, norm_min_snr=30.0)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """24 epochs over 120 days with gain jitter and one source in a 45 % ESE dip, written in
    an order unrelated to their epochs; plus the in-process reference database."""
    root = tmp_path_factory.mktemp("archive")
    field = SimulatedField(root, n_sources=30, seed=4, flux_range=(60.0, 400.0))
    field.ingest(root / "catalogs")
    mjds = 60000.0 + np.sort(np.random.default_rng(5).uniform(0, 120, N_EPOCHS))
    gains = 1.0 + np.random.default_rng(9).normal(0, 0.04, N_EPOCHS)
    target = int(np.argsort(field.flux_mjy)[len(field.flux_mjy) // 2])
    scales = np.ones((N_EPOCHS, field.flux_mjy.size))
    scales[:, target] = ese_model(mjds, 60060.0, 35.0, 0.45, 0.0)
    names = np.random.default_rng(1).permutation(N_EPOCHS)     # file names not in epoch order
    images = root / "images"
    paths = []
    for k in range(N_EPOCHS):
        night = images / f"night{k % 3}"
        night.mkdir(parents=True, exist_ok=True)
        path = night / f"obs{names[k]:03d}.img-image-pb.fits"
        field.image(path, mjd=float(mjds[k]), gain=float(gains[k]), seed=100 + k, scale=scales[k])
        paths.append(path)
    # not science images: left out with a reason
    (images / "night0" / "obs999.img-residual.fits").write_bytes(paths[0].read_bytes())
    # in-process reference: one by one, in epoch order
    ref = root / "ref.sqlite3"
    manager = PhotometryManager(ref, root / "ref_registry.sqlite3", default_config=CFG,
                                catalog_dir=root / "catalogs")
    for path in paths:
        manager.measure_for_fits(path, create_batch_job=False, data_id=path.stem)
    manager.products.dispose()
    return root, field, target, ref


def snapshot(db) -> dict:
    """Everything the light-curve maths produces, keyed by path / catalogue id."""
    engine = sa.create_engine(db if "://" in str(db) else f"sqlite:///{db}")
    out = {}
    with engine.connect() as conn:
        q = lambda sql: conn.exec_driver_sql(sql).all()  # noqa: E731
        out["measurements"] = q(
            "select i.path, s.catalog_id, m.peak_jyb, m.peak_err_jyb, m.norm_flux_jyb, m.norm_err_jyb, "
            "m.flags from measurements m join images i on i.id = m.image_id join sources s "
            "on s.id = m.source_id order by i.path, s.catalog_id")
        out["images"] = q("select path, mjd, qc_status, norm_status, norm_factor, norm_factor_err, "
                          "norm_n_refs, median_rms_jyb from images order by path")
        out["variability"] = q("select s.catalog_id, v.n, v.eta, v.v, v.chi2_nu from variability_stats v "
                               "join sources s on s.id = v.source_id order by s.catalog_id")
        out["ese"] = q("select s.catalog_id, c.status, c.criteria, c.score, c.depth, c.t_min_mjd "
                       "from ese_candidates c join sources s on s.id = c.source_id order by s.catalog_id")
    engine.dispose()
    return out


def assert_same(got: dict, want: dict) -> None:
    for key in want:
        assert len(got[key]) == len(want[key]), key
        for a, b in zip(got[key], want[key]):
            for x, y in zip(a, b):
                if isinstance(y, float) or isinstance(x, float):
                    np.testing.assert_array_equal(np.float64(x if x is not None else np.nan),
                                                  np.float64(y if y is not None else np.nan),
                                                  err_msg=f"{key}: {a} != {b}")
                else:
                    assert x == y, (key, a, b)


def cli(*argv) -> int:
    from dsa110_contimg.cli.main import main

    return main(["reprocess", *map(str, argv)])


def test_reference_has_normalisation_and_the_ese(archive):
    """The comparison is meaningful: normalised epochs and the injected ESE exist."""
    root, field, target, ref = archive
    snap = snapshot(ref)
    assert sum(1 for r in snap["images"] if r[3] == "ok") >= N_EPOCHS - 3
    flagged = {r[0] for r in snap["ese"] if json.loads(r[2])}
    assert field.names[target] in flagged


def test_local_cluster_equals_in_process_then_skips_and_forces(archive, tmp_path, capsys):
    root, field, target, ref = archive
    bad = tmp_path / "extra" / "broken.img-image-pb.fits"
    bad.parent.mkdir()
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 100)   # truncated header
    db, reg = tmp_path / "p.sqlite3", tmp_path / "r.sqlite3"
    common = ["--products-db", db, "--registry-db", reg, "--catalog-dir", root / "catalogs"]
    rc = cli(root / "images", bad, "--workers", 2, *common)
    err = capsys.readouterr().err
    assert rc == 1, err                                  # one image failed ...
    assert f"failed {bad}" in err and f"{N_EPOCHS} images stored, 1 failed" in err
    assert "1 files not science images" in err
    assert_same(snapshot(db), snapshot(ref))             # ... and the rest is exactly in-process
    from dsa110_contimg.store import open_registry_db, registry

    rdb = open_registry_db(reg)
    assert registry.get(rdb, bad.stem)["photometry_status"] == "failed"
    assert registry.get(rdb, "obs000.img-image-pb")["photometry_status"] == "completed"
    # a re-run skips every stored file version; only the broken file is tried again
    rc = cli(root / "images", "--workers", 1, *common)
    err = capsys.readouterr().err
    assert rc == 0 and f"0 images to measure ({N_EPOCHS} already done" in err
    # a dates window and --force: those epochs re-measured (replaced, not added; same raw
    # fluxes; their normalisation may change since later epochs now exist)
    rc = cli(root / "images", "--workers", 1, "--force", "--since", "60000", "--until", "60030", *common)
    err = capsys.readouterr().err
    n_window = sum(1 for r in snapshot(ref)["images"] if r[1] <= 60030)
    assert 0 < n_window < N_EPOCHS
    assert rc == 0 and f"{n_window} images to measure" in err and f"{N_EPOCHS - n_window} outside" in err
    assert f"{n_window} images stored, 0 failed" in err
    raw = lambda snap: [r[:4] for r in snap["measurements"]]  # noqa: E731 - path, id, flux, error
    assert raw(snapshot(db)) == raw(snapshot(ref))


def test_interrupted_run_resumes_to_the_same_result(archive, tmp_path):
    from dsa110_contimg.service import reprocess as rp

    root, field, target, ref = archive
    manager = PhotometryManager(tmp_path / "p.sqlite3", default_config=CFG, catalog_dir=root / "catalogs")
    files, _ = rp.discover([root / "images"])
    plan = rp.make_plan(files, manager.products)
    assert len(plan.tasks) == N_EPOCHS
    assert [t.mjd for t in plan.tasks] == sorted(t.mjd for t in plan.tasks)
    stored = []

    def stop_after_9(task, result):
        stored.append(task.path)
        if len(stored) == 9:
            raise KeyboardInterrupt

    client = rp.open_client(workers=2)
    try:
        report = rp.reprocess(plan, manager, CFG, client, catalog_dir=str(root / "catalogs"),
                              on_stored=stop_after_9)
        assert report.interrupted and report.done == 9
        plan2 = rp.make_plan(files, manager.products)
        assert plan2.already_done == 9 and len(plan2.tasks) == N_EPOCHS - 9
        assert not set(stored) & {t.path for t in plan2.tasks}
        report = rp.reprocess(plan2, manager, CFG, client, catalog_dir=str(root / "catalogs"))
    finally:
        rp.close_client(client)
    assert report.done == N_EPOCHS - 9 and not report.failures
    got, want = snapshot(tmp_path / "p.sqlite3"), snapshot(ref)
    assert_same({k: got[k] for k in ("measurements", "images")},
                {k: want[k] for k in ("measurements", "images")})


def _spawn(args, log):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ), start_new_session=True)


def test_external_scheduler_with_two_workers_equals_in_process(archive, tmp_path, capsys):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    from distributed import Client

    root, field, target, ref = archive
    sched_file = tmp_path / "scheduler.json"
    procs = []
    try:
        with open(tmp_path / "scheduler.log", "wb") as log:
            procs.append(_spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--no-dashboard", "--scheduler-file", str(sched_file)], log))
        deadline = time.monotonic() + 120
        while not sched_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, \
                (tmp_path / "scheduler.log").read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(2):
            with open(tmp_path / f"worker{i}.log", "wb") as log:
                procs.append(_spawn(["distributed.cli.dask_worker", address, "--nthreads", "1",
                                     "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                                     "--name", f"w{i}"], log))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            assert len(client.scheduler_info()["workers"]) == 2
        db = tmp_path / "p.sqlite3"
        rc = cli(root / "images", "--scheduler", address, "--products-db", db, "--registry-db",
                 tmp_path / "r.sqlite3", "--catalog-dir", root / "catalogs")
        err = capsys.readouterr().err
        assert rc == 0, err
        assert_same(snapshot(db), snapshot(ref))
        with Client(address, timeout="60s") as client:       # both workers measured images
            used = client.run(lambda: len(__import__("dsa110_contimg.service.reprocess",
                                                     fromlist=["_MEASURERS"])._MEASURERS))
        assert sorted(used.values()) == [1, 1], used
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_bad_scheduler_address_is_one_line(archive, tmp_path, capsys):
    from pgcluster import free_port

    root = archive[0]
    rc = cli(root / "images" / "night0", "--scheduler", f"tcp://127.0.0.1:{free_port()}",
             "--products-db", tmp_path / "p.sqlite3", "--catalog-dir", root / "catalogs")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "--scheduler" in err[-1] and "reachable Dask scheduler" in err[-1]
    rc = cli(tmp_path / "nowhere", "--products-db", tmp_path / "p.sqlite3")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "nowhere" in err[-1]


def test_progress_bar_only_on_a_terminal():
    import io

    from dsa110_contimg.service.reprocess import ProgressBar, parse_date

    class TTY(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = TTY(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(4, stream=stream)
        bar.update(2, 1)
        bar.close()
    assert "[" in tty.getvalue() and "3/4 images, 1 failed" in tty.getvalue()
    assert pipe.getvalue() == ""
    assert parse_date("2025-01-01") == 60676.0 and parse_date("2025-01-01", end_of_day=True) == 60677.0
    assert parse_date("60676.5") == 60676.5 and parse_date("2025-01-01T12:00:00") == 60676.5
    with pytest.raises(Exception, match="ISO date"):
        parse_date("last tuesday")


def _own_source_season(tmp_path):
    """7 epochs of a 20-source field with two sources in no catalogue (one present from the
    first epoch, one switching on at the third) and the in-process reference database."""
    from dsa110_contimg.science.simulate import simulate_image, sky_wcs

    field = SimulatedField(tmp_path, n_sources=20, seed=11, flux_range=(60.0, 300.0))
    field.ingest(tmp_path / "catalogs")
    wcs = sky_wcs(field.ra0, field.dec0, field.pixscale, field.shape)
    cx, cy = wcs.wcs_world2pix(field.ra_deg, field.dec_deg, 0)
    gx, gy = np.meshgrid(np.arange(40, 216, 4.0), np.arange(40, 216, 4.0))
    gap = np.min(np.hypot(gx.ravel()[:, None] - cx, gy.ravel()[:, None] - cy), axis=1)
    first = int(np.argmax(gap))
    far = np.hypot(gx.ravel() - gx.ravel()[first], gy.ravel() - gy.ravel()[first]) > 40
    second = int(np.flatnonzero(far)[np.argmax(gap[far])])
    extra_ra, extra_dec = wcs.wcs_pix2world(gx.ravel()[[first, second]], gy.ravel()[[first, second]], 0)
    paths = []
    for k in range(7):
        sim = simulate_image(field.shape, ra0_deg=field.ra0, dec0_deg=field.dec0,
                             pixscale_arcsec=field.pixscale, beam_arcsec=field.beam,
                             ra_deg=np.r_[field.ra_deg, extra_ra], dec_deg=np.r_[field.dec_deg, extra_dec],
                             peak_jyb=np.r_[field.flux_mjy / 1e3, 0.03, 0.04 * (k >= 2)],
                             noise_rms=1e-3, mjd=60100.0 + k, seed=300 + k)
        paths.append(tmp_path / "images" / f"e{k}.img-image-pb.fits")
        paths[-1].parent.mkdir(exist_ok=True)
        sim.write(paths[-1])
    cfg = PhotometryConfig(backfill_new_sources=False)
    ref = PhotometryManager(tmp_path / "ref.sqlite3", default_config=cfg, catalog_dir=tmp_path / "catalogs")
    for path in paths:
        ref.measure_for_fits(path, create_batch_job=False)
    ref.products.dispose()
    return cfg


def _own_rows(db):
    """Measurements and running statistics of the service's own (new, blind) sources."""
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "select s.catalog_id, s.kind, i.path, m.peak_jyb, m.peak_err_jyb from measurements m "
            "join sources s on s.id = m.source_id join images i on i.id = m.image_id "
            "where s.kind in ('new', 'blind') order by s.catalog_id, i.mjd").all()
        stats = conn.exec_driver_sql(
            "select s.catalog_id, v.n, v.weighted_mean from variability_stats v join sources s "
            "on s.id = v.source_id where s.kind in ('new', 'blind') order by s.catalog_id").all()
    engine.dispose()
    return rows, stats


def _assert_own_rows_equal(got_db, want_db):
    (got, got_stats), (want, want_stats) = _own_rows(got_db), _own_rows(want_db)
    per_source = {}
    for name, kind, *_ in want:
        per_source[(name, kind)] = per_source.get((name, kind), 0) + 1
    # both injected sources are found (blind from the first epoch, new when it switches on)
    # and measured in that image and every later one: 7 and 5 measurements
    assert sorted(per_source.values())[-2:] == [5, 7] and {k for _, k in per_source} >= {"new", "blind"}
    assert [r[:3] for r in got] == [r[:3] for r in want]
    np.testing.assert_allclose([r[3:] for r in got], [r[3:] for r in want], rtol=1e-6, atol=1e-7)
    assert [r[:2] for r in got_stats] == [r[:2] for r in want_stats]
    np.testing.assert_allclose([r[2] for r in got_stats], [r[2] for r in want_stats], rtol=1e-6)


def test_own_sources_are_measured_forward_as_in_process(tmp_path):
    """Sources in no catalogue: the Dask workers have no database, yet every image after a
    source's first detection has its measurement, as when the images are measured one by
    one in process (same rows, same fluxes, same running statistics)."""
    from dsa110_contimg.service import reprocess as rp

    cfg = _own_source_season(tmp_path)
    manager = PhotometryManager(tmp_path / "p.sqlite3", default_config=cfg, catalog_dir=tmp_path / "catalogs")
    plan = rp.make_plan(rp.discover([tmp_path / "images"])[0], manager.products)
    client = rp.open_client(workers=2)
    try:
        report = rp.reprocess(plan, manager, cfg, client, catalog_dir=str(tmp_path / "catalogs"))
    finally:
        rp.close_client(client)
    assert report.done == 7 and not report.failures
    _assert_own_rows_equal(tmp_path / "p.sqlite3", tmp_path / "ref.sqlite3")


def test_an_interrupted_run_queues_the_forward_measurements_it_did_not_store(tmp_path):
    """Interrupted after 4 images: the own-source measurements of stored images not stored
    yet are backfill jobs in the queue; once a worker ran them and the run resumed, the
    result is the in-process one."""
    from dsa110_contimg.cli.main import main
    from dsa110_contimg.service import reprocess as rp

    cfg = _own_source_season(tmp_path)
    db = tmp_path / "p.sqlite3"
    manager = PhotometryManager(db, default_config=cfg, catalog_dir=tmp_path / "catalogs")
    files, _ = rp.discover([tmp_path / "images"])
    stored = []

    def stop_after_4(task, result):
        stored.append(task.path)
        if len(stored) == 4:
            raise KeyboardInterrupt

    client = rp.open_client(workers=2)
    try:
        report = rp.reprocess(rp.make_plan(files, manager.products), manager, cfg, client,
                              catalog_dir=str(tmp_path / "catalogs"), on_stored=stop_after_4)
        assert report.interrupted and report.done == 4
        with manager.products.engine.connect() as conn:
            queued = conn.exec_driver_sql("select params from batch_jobs where status = 'pending'").all()
        assert queued and all("backfill" in json.loads(p) for (p,) in queued)
        assert main(["worker", "--once", "--products-db", str(db),
                     "--catalog-dir", str(tmp_path / "catalogs")]) == 0
        plan = rp.make_plan(files, manager.products)
        assert plan.already_done == 4
        report = rp.reprocess(plan, manager, cfg, client, catalog_dir=str(tmp_path / "catalogs"))
    finally:
        rp.close_client(client)
    assert report.done == 3 and not report.failures
    _assert_own_rows_equal(db, tmp_path / "ref.sqlite3")


@pytest.mark.parametrize("m,made", [(3, "after"), (1, "before")],
                         ids=["later-image-source-made-after-the-gaps-read",
                              "earlier-image-source-made-before-the-gaps-read"])
def test_a_source_made_by_a_daemon_while_a_reprocessed_image_is_in_flight_is_measured_once(
        sim_field, tmp_path, m, made):
    """A daemon writing to the same database stores epoch 2, which makes a new source S,
    while reprocess holds image ``m`` (measured on a worker, no database): after the
    coordinator read the image's gaps (``after``) or before (``before``, S first detected
    later than ``m``, so not a forward gap). Stepped by hand, without a cluster: every
    image holds exactly one measurement of S once the daemon's backfill job ran."""
    from dsa110_contimg.cli.main import main
    from dsa110_contimg.science.simulate import simulate_image, sky_wcs
    from dsa110_contimg.service import reprocess as rp
    from dsa110_contimg.store.schema import images, measurements, sources

    f, on = sim_field, 2
    wcs = sky_wcs(f.ra0, f.dec0, f.pixscale, f.shape)
    cx, cy = wcs.wcs_world2pix(f.ra_deg, f.dec_deg, 0)
    gx, gy = np.meshgrid(np.arange(40, 216, 4.0), np.arange(40, 216, 4.0))
    far = np.argmax(np.min(np.hypot(gx.ravel()[:, None] - cx, gy.ravel()[:, None] - cy), axis=1))
    t_ra, t_dec = wcs.wcs_pix2world([gx.ravel()[far]], [gy.ravel()[far]], 0)
    paths = []
    for k in range(5):
        sim = simulate_image(f.shape, ra0_deg=f.ra0, dec0_deg=f.dec0, pixscale_arcsec=f.pixscale,
                             beam_arcsec=f.beam, ra_deg=np.r_[f.ra_deg, t_ra],
                             dec_deg=np.r_[f.dec_deg, t_dec],
                             peak_jyb=np.r_[f.flux_mjy / 1e3, 0.04 * (k >= on)], noise_rms=1e-3,
                             mjd=60676.0 + k, seed=k)
        paths.append(tmp_path / f"e{k}.fits")
        sim.write(paths[-1])
    db, cats = tmp_path / "p.sqlite3", str(tmp_path / "catalogs")
    cfg = PhotometryConfig()
    manager = PhotometryManager(db, default_config=cfg, catalog_dir=cats)
    report = rp.Report(planned=1)
    forward = rp._Forward(None, None, manager, cfg, report)
    for k in range(on):
        if k != m:
            manager.run_image(paths[k], "image", cfg)                  # the daemon
    outcome = rp.measure_task(str(paths[m]), "image", cfg.to_dict(), cats)   # a Dask worker
    assert outcome[0] == "ok" and outcome[1].own_seen is None
    if made == "before":
        manager.run_image(paths[on], "image", cfg)
    assert forward.gaps(outcome) == []                  # the coordinator, before the store
    if made == "after":
        manager.run_image(paths[on], "image", cfg)
    task = rp.Task(path=paths[m], kind="image", mjd=60676.0 + m)
    assert rp._store_one(task, outcome, manager, cfg, report) is not None and not report.failures
    for k in range(on + 1, 5):
        if k != m:
            manager.run_image(paths[k], "image", cfg)
    assert main(["worker", "--once", "--products-db", str(db), "--catalog-dir", cats]) == 0
    with manager.products.engine.connect() as conn:
        (sid,) = conn.execute(sa.select(sources.c.id).where(sources.c.kind == "new")).scalars().all()
        rows = conn.execute(sa.select(images.c.path, sa.func.count())
                            .select_from(measurements.join(images, images.c.id == measurements.c.image_id))
                            .where(measurements.c.source_id == sid).group_by(images.c.path)).all()
    manager.products.dispose()
    assert {str(p).rsplit("/", 1)[-1]: int(n) for p, n in rows} == {p.name: 1 for p in paths}
