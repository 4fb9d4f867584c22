"""A small simulated sky field: an NVSS-like catalogue and an image factory."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science.simulate import random_sky_positions, simulate_image, sky_wcs


class SimulatedField:
    """A small sky field: NVSS-like catalogue (VizieR layout CSV) and image factory.

    Attributes
    ----------
    ra_deg, dec_deg, flux_mjy, names : ndarray
        The catalogue (flux = the true peak flux density in mJy).
    csv_path : Path
        The catalogue as a VizieR VIII/65-like CSV (_RAJ2000, _DEJ2000, NVSS, S1.4, e_S1.4).
    """

    def __init__(self, root, n_sources=30, *, shape=(256, 256), ra0=150.0, dec0=37.0,
                 pixscale=3.0, beam=(15.0, 10.0, 30.0), seed=0, flux_range=(20.0, 400.0)):
        self.root = root
        self.shape, self.ra0, self.dec0, self.pixscale, self.beam = shape, ra0, dec0, pixscale, beam
        rng = np.random.default_rng(seed)
        wcs = sky_wcs(ra0, dec0, pixscale, shape)
        self.ra_deg, self.dec_deg, _, _ = random_sky_positions(
            wcs, shape, n_sources, rng, margin_pix=25, min_separation_pix=4 * beam[0] / pixscale)
        self.flux_mjy = rng.uniform(*flux_range, n_sources)
        from dsa110_contimg.catalogs.naming import iau_names

        self.names = np.asarray(iau_names("NVSS", self.ra_deg, self.dec_deg, ra_decimals=2,
                                          dec_decimals=1))
        self.csv_path = root / "nvss_field.csv"
        from astropy.table import Table

        Table({"_RAJ2000": self.ra_deg, "_DEJ2000": self.dec_deg, "NVSS": [n[5:] for n in self.names],
               "S1.4": self.flux_mjy, "e_S1.4": np.full(n_sources, 0.5)}).write(self.csv_path, overwrite=True)

    def image(self, path, *, mjd=60676.0, gain=1.0, scale=None, noise=1e-3, seed=0, **kw):
        """Write an epoch of the field; ``scale`` (array) multiplies each source's flux."""
        peaks = self.flux_mjy / 1000.0 * gain * (1.0 if scale is None else np.asarray(scale))
        sim = simulate_image(self.shape, ra0_deg=self.ra0, dec0_deg=self.dec0,
                             pixscale_arcsec=self.pixscale, beam_arcsec=self.beam,
                             ra_deg=self.ra_deg, dec_deg=self.dec_deg, peak_jyb=peaks,
                             noise_rms=noise, mjd=mjd, seed=seed, **kw)
        sim.write(path)
        return sim

    def ingest(self, catalog_dir):
        from dsa110_contimg.store.catalogs import CatalogStore

        store = CatalogStore(catalog_dir)
        store.ingest("nvss", [self.csv_path])
        return store
