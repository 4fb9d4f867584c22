"""A simulated field for the benchmarks: a catalogue of random sources written as an
NVSS-like CSV and ingested into a catalogue store, and a season of images of it (shared by
pipeline.py, daemon.py and reprocess.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

RA0, DEC0 = 150.0, 37.0
#: restoring beam of the simulated images (BMAJ, BMIN arcsec, BPA deg), DSA-110-like
BEAM = (18.0, 13.0, 20.0)


def field_catalogue(root: Path, size: int, n_sources: int, pix_arcsec: float, rng, *,
                    min_separation_pix: float = 12.0):
    """Random positions (deg) inside a ``size``² image at (RA0, DEC0) and fluxes (mJy, log-uniform
    5–500), written to ``root/nvss_bench.csv``. Returns ``(ra_deg, dec_deg, flux_mjy, csv_path)``."""
    from dsa110_contimg.science.simulate import random_sky_positions, sky_wcs

    wcs = sky_wcs(RA0, DEC0, pix_arcsec, (size, size))
    ra, dec, _, _ = random_sky_positions(wcs, (size, size), n_sources, rng, margin_pix=30,
                                         min_separation_pix=min_separation_pix)
    flux_mjy = 10 ** rng.uniform(np.log10(5), np.log10(500), n_sources)
    path = Path(root) / "nvss_bench.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["NVSS", "RAJ2000", "DEJ2000", "S1.4"])
        for i, (r, d, f) in enumerate(zip(ra, dec, flux_mjy)):
            w.writerow([f"B{i:05d}", r, d, f])
    return ra, dec, flux_mjy, path


def ingest(csv_path: Path, catalog_dir: Path) -> None:
    """Ingest the benchmark catalogue as the ``nvss`` survey of ``catalog_dir``."""
    from dsa110_contimg.store.catalogs import CatalogStore

    Path(catalog_dir).mkdir(parents=True, exist_ok=True)
    store = CatalogStore(catalog_dir)
    store.ingest("nvss", [csv_path], ra_column="RAJ2000", dec_column="DEJ2000", flux_column="S1.4",
                 flux_unit="mJy", progress=False)
    store.close()


def write_epochs(paths, size: int, pix_arcsec: float, ra, dec, flux_mjy, rng, *, gain_sd: float,
                 **simulate_options) -> list[Path]:
    """Write one float32 image of the field per path: epoch ``i`` at MJD 60676.25 + i (noise
    seed ``i``, 1 mJy/beam), every source scaled by one gain drawn with ``gain_sd`` per epoch.
    ``simulate_options`` go to ``simulate_image`` (e.g. ``naxis=2``). Returns the paths."""
    from astropy.io import fits

    from dsa110_contimg.science.simulate import simulate_image

    out = []
    for i, p in enumerate(paths):
        sim = simulate_image((size, size), ra0_deg=RA0, dec0_deg=DEC0, pixscale_arcsec=pix_arcsec,
                             beam_arcsec=BEAM, ra_deg=ra, dec_deg=dec,
                             peak_jyb=flux_mjy / 1000 * (1 + rng.normal(0, gain_sd)),
                             noise_rms=1e-3, mjd=60676.25 + i, seed=i, **simulate_options)
        fits.PrimaryHDU(sim.data.astype(np.float32), sim.header).writeto(p)
        out.append(Path(p))
    return out


def stored_field(root: Path, size: int, n_sources: int, n_epochs: int, n_stored: int, rng, *,
                 pix_arcsec: float = 6.0):
    """A field with blind detection on: its catalogue ingested, ``n_epochs`` images written
    and the first ``n_stored`` run through a :class:`PhotometryManager` on ``root/p.sqlite3``.
    Returns ``(ra_deg, dec_deg, paths, cfg, manager)``."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.photometry import PhotometryManager

    root = Path(root)
    ra, dec, flux, csv_path = field_catalogue(root, size, n_sources, pix_arcsec, rng)
    ingest(csv_path, root / "catalogs")
    paths = write_epochs([root / f"e{i}.fits" for i in range(n_epochs)], size, pix_arcsec,
                         ra, dec, flux, rng, gain_sd=0.02)
    cfg = PhotometryConfig(detect=True)
    manager = PhotometryManager(root / "p.sqlite3", catalog_dir=root / "catalogs",
                                default_config=cfg)
    for p in paths[:n_stored]:
        manager.run_image(p, "image", cfg)
    return ra, dec, paths, cfg, manager


def alternate(run, variants, rounds: int) -> dict:
    """CPU seconds of ``run(variant)`` (which returns them), each variant in turn, back to
    back, ``rounds`` times: ``{variant: [seconds, ...]}``."""
    times = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            times[v].append(run(v))
    return times


def print_ratios(times: dict, base: str, rows: dict | None = None) -> None:
    """Median and minimum CPU seconds per variant and their ratios to ``base``'s (one line
    each; ``rows`` adds a column of row counts)."""
    import statistics

    rows_head = f" {'rows':>5s}" if rows is not None else ""
    print(f"{'variant':8s}{rows_head} {'median':>8s} {'min':>8s} {'ratio(med)':>11s} {'ratio(min)':>11s}")
    base_med, base_min = statistics.median(times[base]), min(times[base])
    for v, t in times.items():
        med, mn = statistics.median(t), min(t)
        cell = f" {rows[v]:5d}" if rows is not None else ""
        print(f"{v:8s}{cell} {med:8.4f} {mn:8.4f} {med / base_med:11.3f} {mn / base_min:11.3f}")
