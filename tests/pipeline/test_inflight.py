"""Own sources created while an image is in flight (measured, not yet stored).

Two workers interleave without timing luck: image M is measured (its positions -- the
catalogue and the service's own sources -- read then), another image N is stored and
creates a new source that M covers, then M is stored. M must hold exactly one measurement
of the new source, whatever the order of the epochs; and an image stored before N but
later than it gets the new source through N's backfill job.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

ON = 3              # the transient is on from this epoch
EPOCHS = 6


@pytest.fixture
def season(sim_field, tmp_path, databases):
    """Images e0..e5 of the simulated field with a 40 mJy source in no catalogue, on from
    epoch ON (``peaks`` per epoch, Jy/beam), and a manager on a fresh database of the
    test's backend."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.science.simulate import simulate_image, sky_wcs

    wcs = sky_wcs(sim_field.ra0, sim_field.dec0, sim_field.pixscale, sim_field.shape)
    cx, cy = wcs.wcs_world2pix(sim_field.ra_deg, sim_field.dec_deg, 0)
    gx, gy = np.meshgrid(np.arange(40, 216, 4.0), np.arange(40, 216, 4.0))
    far = np.argmax(np.min(np.hypot(gx.ravel()[:, None] - cx, gy.ravel()[:, None] - cy), axis=1))
    t_ra, t_dec = wcs.wcs_pix2world([gx.ravel()[far]], [gy.ravel()[far]], 0)

    def images(peaks):
        paths = []
        for k, peak in enumerate(peaks):
            sim = simulate_image(sim_field.shape, ra0_deg=sim_field.ra0, dec0_deg=sim_field.dec0,
                                 pixscale_arcsec=sim_field.pixscale, beam_arcsec=sim_field.beam,
                                 ra_deg=np.r_[sim_field.ra_deg, t_ra],
                                 dec_deg=np.r_[sim_field.dec_deg, t_dec],
                                 peak_jyb=np.r_[sim_field.flux_mjy / 1e3, peak],
                                 noise_rms=1e-3, mjd=60676.0 + k, seed=k)
            sim.write(tmp_path / f"e{k}.fits")
            paths.append(tmp_path / f"e{k}.fits")
        return paths

    db = databases.new("products")
    manager = PhotometryManager(db, catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig())
    return manager, images, db


def _new_source_rows(manager):
    """``(source id, {image path name: number of its measurements of the source})``."""
    from dsa110_contimg.store.schema import images, measurements, sources

    with manager.products.engine.connect() as conn:
        (sid,) = conn.execute(sa.select(sources.c.id).where(sources.c.kind == "new")).scalars().all()
        rows = conn.execute(sa.select(images.c.path, sa.func.count())
                            .select_from(measurements.join(images, images.c.id == measurements.c.image_id))
                            .where(measurements.c.source_id == sid)
                            .group_by(images.c.path)).all()
    return sid, {str(p).rsplit("/", 1)[-1]: int(n) for p, n in rows}


def _run_worker(db, tmp_path):
    from dsa110_contimg.cli.main import main

    assert main(["worker", "--once", "--products-db", str(db),
                 "--catalog-dir", str(tmp_path / "catalogs")]) == 0


@pytest.mark.parametrize("backend,m", [("sqlite", ON + 1), ("sqlite", ON - 1),
                                       ("postgresql", ON + 1)],
                         ids=["later", "earlier", "later-postgresql"])
def test_an_image_measured_before_a_new_source_existed_and_stored_after_measures_it(
        season, tmp_path, m):
    manager, images, db = season
    cfg = manager.default_config
    paths = images([0.04 * (k >= ON) for k in range(EPOCHS)])
    for k in range(ON):
        if k != m:
            manager.run_image(paths[k], "image", cfg)
    in_flight = manager.measure_image(paths[m], "image", cfg)      # worker B: measured ...
    manager.run_image(paths[ON], "image", cfg)                     # worker A: creates it
    manager.store_measured(in_flight, cfg)                         # worker B: ... stored
    for k in range(ON + 1, EPOCHS):
        if k != m:
            manager.run_image(paths[k], "image", cfg)
    _run_worker(db, tmp_path)                                      # the backfill job
    _, counts = _new_source_rows(manager)
    assert counts == {p.name: 1 for p in paths}



def test_an_image_that_cannot_be_read_again_at_its_store_gets_a_backfill_job(season, tmp_path):
    """The in-flight image's file is gone when it is stored: it is stored all the same, with
    a backfill job for the new source in the same transaction (run once the file is back)."""
    manager, images, db = season
    cfg = manager.default_config
    paths = images([0.04 * (k >= ON) for k in range(EPOCHS)])
    m = ON + 1
    for k in range(ON):
        manager.run_image(paths[k], "image", cfg)
    in_flight = manager.measure_image(paths[m], "image", cfg)
    manager.run_image(paths[ON], "image", cfg)
    aside = paths[m].rename(tmp_path / "aside.fits")
    result = manager.store_measured(in_flight, cfg)
    assert result.image_id is not None
    assert any("could not be measured at store" in n for n in result.notes), result.notes
    aside.rename(paths[m])
    for k in range(ON + 2, EPOCHS):
        manager.run_image(paths[k], "image", cfg)
    _run_worker(db, tmp_path)
    _, counts = _new_source_rows(manager)
    assert counts == {p.name: 1 for p in paths}

def test_a_later_image_stored_before_the_new_source_gets_it_from_the_backfill(season, tmp_path):
    """Epoch ON+1 (the source off again) is stored before epoch ON creates the source:
    the new source's backfill covers it too, so its light curve has every epoch."""
    manager, images, db = season
    cfg = manager.default_config
    paths = images([0.04 * (k == ON) for k in range(EPOCHS)])
    for k in [*range(ON), ON + 1, ON, *range(ON + 2, EPOCHS)]:
        manager.run_image(paths[k], "image", cfg)
    _run_worker(db, tmp_path)
    _, counts = _new_source_rows(manager)
    assert counts == {p.name: 1 for p in paths}


def test_a_monitor_list_backfilled_while_an_image_is_in_flight_reaches_that_image(season, tmp_path):
    """The image is measured before the list is ingested; `sources backfill --monitor` makes
    the positions' rows and queues the stored images; the image, stored after, measures them
    at its store: every image holds exactly one row per covered position, and none of the
    position off the field (FAR)."""
    from dsa110_contimg.cli.main import main
    from dsa110_contimg.store.schema import images, measurements, sources

    manager, images_of, db = season
    cfg = manager.default_config
    paths = images_of([0.0] * 3)
    for k in range(2):
        manager.run_image(paths[k], "image", cfg)
    in_flight = manager.measure_image(paths[2], "image", cfg)
    mon = tmp_path / "monitor.csv"
    summary = in_flight.image
    ra0, dec0 = summary.center_deg
    mon.write_text(f"name,ra,dec\nPSR_A,{ra0:.6f},{dec0:.6f}\nFAR,10.0,-60.0\n")
    cats = ["--catalog-dir", str(tmp_path / "catalogs")]
    assert main(["catalog", "ingest", "monitor", str(mon), *cats]) == 0
    assert main(["sources", "backfill", "--monitor", "--products-db", str(db), *cats]) == 0
    manager.store_measured(in_flight, cfg)
    _run_worker(db, tmp_path)
    with manager.products.engine.connect() as conn:
        rows = conn.execute(sa.select(sources.c.catalog_id, images.c.path, sa.func.count())
                            .select_from(measurements.join(images, images.c.id == measurements.c.image_id)
                                         .join(sources, sources.c.id == measurements.c.source_id))
                            .where(sources.c.kind == "monitor")
                            .group_by(sources.c.catalog_id, images.c.path)).all()
    assert sorted((c, str(p).rsplit("/", 1)[-1], n) for c, p, n in rows) == [
        ("PSR_A", p.name, 1) for p in paths]
