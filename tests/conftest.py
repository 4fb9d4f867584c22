"""Shared fixtures: paths to the shared test data and small image generators."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data relative to the project root (never copied into the repository).
SHARED_DATA = Path(os.environ.get(
    "CONTIMG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared test-data folder; tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (fresh clone without ../shared)")
    return SHARED_DATA


# --- a simulated field: catalogue + images ------------------------------------------
import numpy as np  # noqa: E402

from dsa110_contimg.science.simulate import random_sky_positions, simulate_image, sky_wcs  # noqa: E402


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


@pytest.fixture
def sim_field(tmp_path):
    """A 30-source simulated field with its catalogue ingested into ``tmp_path/catalogs``."""
    field = SimulatedField(tmp_path)
    field.ingest(tmp_path / "catalogs")
    return field


# --- databases: SQLite and a throw-away PostgreSQL cluster -----------------------------
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_cluster():
    """The session's PostgreSQL cluster (tests/pgcluster.py); fails loudly if it cannot start."""
    from pgcluster import SKIP_ENV, PostgresCluster

    if os.environ.get(SKIP_ENV):
        pytest.skip(f"PostgreSQL variants skipped: {SKIP_ENV} is set")
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


class DatabaseFactory:
    """Makes fresh databases of one backend: ``new("products")`` -> path or URL string."""

    def __init__(self, backend, tmp_path, request):
        self.backend, self.tmp_path, self._request = backend, tmp_path, request
        self._made: list[str] = []
        self._n = 0
        self.cluster = request.getfixturevalue("postgres_cluster") if backend == "postgresql" else None

    def new(self, which: str = "products", *, migrated: bool = True) -> str:
        self._n += 1
        if self.cluster is None:
            return str(self.tmp_path / f"{which}{self._n}.sqlite3")
        url = self.cluster.new_database(which, migrated=migrated)
        self._made.append(url)
        return url

    def close(self):
        for url in self._made:
            self.cluster.drop_database(url)


@pytest.fixture
def backend():
    """Database backend of a test; tests run on both with
    ``@pytest.mark.parametrize("backend", BACKENDS)`` (overrides this default)."""
    return "sqlite"


@pytest.fixture
def databases(backend, tmp_path, request):
    """Factory of fresh databases of the test's backend (see :class:`DatabaseFactory`)."""
    factory = DatabaseFactory(backend, tmp_path, request)
    yield factory
    factory.close()


@pytest.fixture
def service(tmp_path, databases):
    """Makes daemons; on the ``postgresql`` backend each gets fresh server databases
    (pass ``products_db=`` to make several daemons share one)."""
    from harness import Service

    made = []

    def make(**kw):
        if databases.backend == "postgresql":
            kw.setdefault("products_db", databases.new("products"))
            kw.setdefault("registry_db", databases.new("registry"))
        s = Service(tmp_path / f"svc{len(made)}", **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop_all()
