"""Backfill jobs of several sources: each image measures only the positions it covers.

Two monitor positions, one (``EDGE``) covered only by the images centred on the field and
not by those pointed aside: after ``sources backfill --monitor`` each position has exactly
one measurement on every image that covers it and none on the others, and its
``n_measurements`` says so; images stored after the backfill measure the list forward by
the same rule.
"""

from __future__ import annotations

import json
import sqlite3

import sqlalchemy as sa

from rank_key_check import assert_rank_keys_true

#: pointing offset of the images aside, pixels along x
SHIFT_PIX = 90


def _monitor_rows(manager):
    """``{monitor name: sorted image file names of its measurement rows}`` (one per row)."""
    from dsa110_contimg.store.schema import images, measurements, sources

    with manager.products.engine.connect() as conn:
        rows = conn.execute(sa.select(sources.c.catalog_id, images.c.path)
                            .select_from(measurements
                                         .join(images, images.c.id == measurements.c.image_id)
                                         .join(sources, sources.c.id == measurements.c.source_id))
                            .where(sources.c.kind == "monitor")).all()
    out: dict[str, list[str]] = {}
    for name, path in rows:
        out.setdefault(str(name), []).append(str(path).rsplit("/", 1)[-1])
    return {k: sorted(v) for k, v in out.items()}


def test_a_monitor_backfill_measures_each_position_only_on_the_images_covering_it(
        sim_field, tmp_path, capsys):
    from dsa110_contimg.cli.main import main
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.science.simulate import simulate_image, sky_wcs

    f = sim_field
    ny, nx = f.shape
    centred = sky_wcs(f.ra0, f.dec0, f.pixscale, f.shape)
    ra_c, _ = centred.wcs_pix2world([(nx - 1) / 2 + SHIFT_PIX], [(ny - 1) / 2], 0)
    ra_aside = float(ra_c[0])                       # the pointing aside: SHIFT_PIX along x
    aside = sky_wcs(ra_aside, f.dec0, f.pixscale, f.shape)
    # EDGE: 30 pixels inside the centred images' edge away from the pointing aside
    e_ra, e_dec = centred.wcs_pix2world([30.0], [(ny - 1) / 2], 0)
    ex, _ = aside.wcs_world2pix(e_ra, e_dec, 0)
    assert ex[0] < -30                              # far off the images aside
    b_ra, b_dec = centred.wcs_pix2world([(nx - 1) / 2 + SHIFT_PIX / 2], [(ny - 1) / 2], 0)

    def image(k, ra0):
        sim = simulate_image(f.shape, ra0_deg=ra0, dec0_deg=f.dec0, pixscale_arcsec=f.pixscale,
                             beam_arcsec=f.beam, ra_deg=f.ra_deg, dec_deg=f.dec_deg,
                             peak_jyb=f.flux_mjy / 1e3, noise_rms=1e-3, mjd=60676.0 + k, seed=k)
        sim.write(tmp_path / f"e{k}.fits")
        return tmp_path / f"e{k}.fits"

    pointings = [f.ra0, ra_aside, f.ra0, ra_aside, f.ra0]
    paths = [image(k, ra0) for k, ra0 in enumerate(pointings)]
    db = str(tmp_path / "products.sqlite")
    cats = ["--catalog-dir", str(tmp_path / "catalogs")]
    manager = PhotometryManager(db, catalog_dir=tmp_path / "catalogs",
                                default_config=PhotometryConfig())
    cfg = manager.default_config
    for p in paths[:3]:                              # stored before the list exists
        manager.run_image(p, "image", cfg)
    mon = tmp_path / "monitor.csv"
    mon.write_text(f"name,ra,dec\nBOTH,{b_ra[0]:.6f},{b_dec[0]:.6f}\n"
                   f"EDGE,{e_ra[0]:.6f},{e_dec[0]:.6f}\n")
    assert main(["catalog", "ingest", "monitor", str(mon), *cats]) == 0
    assert main(["sources", "backfill", "--monitor", "--products-db", db, *cats]) == 0
    assert main(["worker", "--once", "--products-db", db, *cats]) == 0
    with sqlite3.connect(db) as conn:
        assert assert_rank_keys_true(conn)          # the backfill keeps the rank keys
    for p in paths[3:]:                              # measured forward
        manager.run_image(p, "image", cfg)

    covering = sorted(p.name for p, ra0 in zip(paths, pointings) if ra0 == f.ra0)
    assert _monitor_rows(manager) == {"BOTH": sorted(p.name for p in paths), "EDGE": covering}
    capsys.readouterr()
    assert main(["sources", "list", "--monitor", "--json", "--products-db", db]) == 0
    listed = {r["name"]: r["n_measurements"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"BOTH": len(paths), "EDGE": len(covering)}
