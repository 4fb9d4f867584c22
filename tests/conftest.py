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


#: fixture scopes shared by the tests of one module (built once per worker that runs them)
_MODULE_SCOPES = ("module", "class", "package")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Work units of the two xdist workers (``--dist loadgroup``).

    The tests of a module that share a module-, class- or package-scoped fixture (a built
    season, a running server) are one group, run on one worker, so that fixture is built once.
    Every other test is a work unit of its own, so a module of long independent tests
    (daemons, kills, outages) is spread over both workers. The tests under ``tests/system``
    are queued before the other single tests: the long units start first and the short ones
    fill the end of the run. Without xdist (``-p no:xdist``, ``-n 0``) nothing changes.
    """
    if not config.getoption("loadgroup", False):
        return
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d and d[-1].scope in _MODULE_SCOPES for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=lambda item: not item.nodeid.startswith("tests/system/"))


from fields import SimulatedField  # noqa: E402  (tests/support is on sys.path)
from pgcluster import BACKENDS  # noqa: E402,F401


@pytest.fixture
def sim_field(tmp_path):
    """A 30-source simulated field with its catalogue ingested into ``tmp_path/catalogs``."""
    field = SimulatedField(tmp_path)
    field.ingest(tmp_path / "catalogs")
    return field


# --- databases: SQLite and a throw-away PostgreSQL cluster -----------------------------


@pytest.fixture(scope="session")
def postgres_cluster():
    """The session's PostgreSQL cluster (tests/support/pgcluster.py); fails loudly if it cannot start."""
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

    def copy(self, source: str) -> str:
        """A fresh database holding what ``source`` (made by :meth:`new`, no connection open
        to it) holds -> path or URL string."""
        self._n += 1
        if self.cluster is None:
            import sqlite3

            target = str(self.tmp_path / f"copy{self._n}.sqlite3")
            with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
            src.close()
            dst.close()
            return target
        url = self.cluster.copy_database(source)
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
