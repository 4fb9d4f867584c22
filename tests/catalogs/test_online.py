"""Opt-in online source: astroquery's Vizier replaced at its boundary (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from astropy.table import Table

from dsa110_contimg.catalogs.online import OnlineRegion, VizierSource
from dsa110_contimg.catalogs.readers import normalise
from dsa110_contimg.store.catalogs import CatalogStore
from dsa110_contimg.catalogs.spatial import angular_separation_deg, wrap_delta_ra
from dsa110_contimg.core.errors import CatalogMissing, OnlineCatalogError

RNG = np.random.default_rng(11)
SKY_RA = np.mod(RNG.uniform(-10, 10, 5000), 360)
SKY_DEC = RNG.uniform(-10, 10, 5000)
SKY_S = RNG.uniform(3, 300, 5000)


class FakeVizier:
    """Stands in for astroquery.vizier.Vizier: serves a VIII/65-like table from SKY_*."""

    calls: list = []
    fail: Exception | None = None

    def __init__(self, columns=None, row_limit=None, timeout=None, **kw):
        self.timeout = timeout
        self.row_limit = row_limit

    def query_region(self, coord, radius, catalog):
        FakeVizier.calls.append((float(coord.ra.deg), float(coord.dec.deg), float(radius.to("deg").value),
                                 catalog, self.timeout, self.row_limit))
        if FakeVizier.fail is not None:
            raise FakeVizier.fail
        sep = angular_separation_deg(coord.ra.deg, coord.dec.deg, SKY_RA, SKY_DEC)
        m = sep <= radius.to("deg").value
        t = Table({"_RAJ2000": SKY_RA[m], "_DEJ2000": SKY_DEC[m], "S1.4": SKY_S[m],
                   "e_S1.4": np.full(m.sum(), 0.5)})
        t["S1.4"].unit = "mJy"
        t["e_S1.4"].unit = "mJy"
        return [t] if m.any() else []


@pytest.fixture()
def fake_vizier(monkeypatch):
    import astroquery.vizier

    FakeVizier.calls = []
    FakeVizier.fail = None
    monkeypatch.setattr(astroquery.vizier, "Vizier", FakeVizier)
    return FakeVizier


def test_offline_by_default(tmp_path, fake_vizier):
    with pytest.raises(CatalogMissing, match="never ingested"):
        CatalogStore(tmp_path).survey("nvss").cone(1.0, 1.0, 0.5)
    assert fake_vizier.calls == []


def test_online_fetch_is_cached(tmp_path, fake_vizier):
    store = CatalogStore(tmp_path / "cat", allow_online=True, online_timeout_s=5.0)
    got = store.survey("nvss").cone(359.5, 2.0, 1.0)
    sep = angular_separation_deg(359.5, 2.0, SKY_RA, SKY_DEC)
    assert len(got) == (sep <= 1.0).sum() > 10
    assert len(fake_vizier.calls) == 1
    ra, dec, radius, catalog, timeout, row_limit = fake_vizier.calls[0]
    assert catalog == "VIII/65/nvss" and timeout == 5.0 and row_limit == -1
    assert radius >= 1.0
    # Same and smaller regions are now served locally, also by an offline store.
    store.survey("nvss").cone(359.5, 2.0, 1.0)
    store.survey("nvss").cone(359.7, 2.2, 0.3)
    assert len(fake_vizier.calls) == 1
    offline = CatalogStore(tmp_path / "cat")
    again = offline.survey("nvss").cone(359.5, 2.0, 1.0)
    assert sorted(again["source_id"]) == sorted(got["source_id"])
    assert offline.list()[0]["files"][0]["path"].startswith("vizier:VIII/65/nvss")
    # A region elsewhere triggers one more fetch.
    store.survey("nvss").cone(5.0, -5.0, 0.5)
    assert len(fake_vizier.calls) == 2


def test_empty_region_is_cached_too(tmp_path, fake_vizier):
    store = CatalogStore(tmp_path, allow_online=True)
    assert len(store.survey("first").cone(180.0, 60.0, 0.5)) == 0
    assert len(store.survey("first").cone(180.0, 60.0, 0.5)) == 0
    assert len(fake_vizier.calls) == 1 and fake_vizier.calls[0][3] == "VIII/92/first14"


@pytest.mark.parametrize("exc", [requests.exceptions.ConnectionError("unreachable"),
                                 requests.exceptions.ReadTimeout("timed out"),
                                 OSError("Network is unreachable")])
def test_network_failure_is_a_clear_error(tmp_path, fake_vizier, exc):
    fake_vizier.fail = exc
    store = CatalogStore(tmp_path, allow_online=True, online_timeout_s=2.0)
    with pytest.raises(OnlineCatalogError, match="VIII/65/nvss") as err:
        store.survey("nvss").cone(10.0, 10.0, 1.0)
    assert "timeout 2.0 s" in str(err.value)
    assert not store.list() or store.list()[0]["n_rows"] == 0


def test_master_is_never_fetched(tmp_path, fake_vizier):
    with pytest.raises(CatalogMissing, match="build-master"):
        CatalogStore(tmp_path, allow_online=True).survey("master").cone(1, 1, 1)
    assert fake_vizier.calls == []


def test_huge_regions_are_not_fetched(tmp_path, fake_vizier):
    store = CatalogStore(tmp_path, allow_online=True)
    with pytest.raises(OnlineCatalogError, match="too large"):
        store.survey("vlass").box(0, 360, -40, 90)
    assert fake_vizier.calls == []


class _SkySource:
    """An online source of our own behind the store's interface: serves the SKY_* table and
    records the cones it is asked for."""

    def __init__(self):
        self.cones = []

    def fetch(self, survey, cone):
        self.cones.append(cone)
        ra, dec, radius = cone
        m = angular_separation_deg(ra, dec, SKY_RA, SKY_DEC) <= radius
        t = Table({"_RAJ2000": SKY_RA[m], "_DEJ2000": SKY_DEC[m], "S1.4": SKY_S[m]})
        t["S1.4"].unit = "mJy"
        return OnlineRegion(f"sky:{survey}:{ra},{dec},{radius}", normalise(t, survey), cone)


def test_the_store_asks_its_source_for_the_region_bounding_cone(tmp_path, fake_vizier):
    source = _SkySource()
    store = CatalogStore(tmp_path, online_source=source)
    got = store.survey("nvss").ellipse(2.0, 1.0, 1.5, 0.5)
    assert fake_vizier.calls == [] and len(source.cones) == 1
    ra, dec, radius = source.cones[0]
    assert (ra, dec) == (2.0, 1.0) and 1.5 <= radius < 1.6
    dra = wrap_delta_ra(SKY_RA, 2.0) * np.cos(np.radians(1.0))
    inside = (dra / 1.5) ** 2 + ((SKY_DEC - 1.0) / 0.5) ** 2 <= 1
    assert sorted(got["flux_mjy"]) == sorted(SKY_S[inside]) and inside.sum() > 5
    store.survey("nvss").cone(2.5, 1.2, 0.4)            # inside the cached cone: local
    assert len(source.cones) == 1
    assert store.list()[0]["files"][0]["path"] == f"sky:nvss:{ra},{dec},{radius}"


def test_vizier_source_normalises_and_names_what_it_fetched(fake_vizier):
    fetched = VizierSource(timeout_s=4.0).fetch("nvss", (359.5, 2.0, 1.0))
    assert fetched.key == "vizier:VIII/65/nvss:cone(359.500000,2.000000,1.000000)"
    assert fetched.cone == (359.5, 2.0, 1.0) and fake_vizier.calls[0][4] == 4.0
    sep = angular_separation_deg(359.5, 2.0, SKY_RA, SKY_DEC)
    np.testing.assert_allclose(np.sort(fetched.table.core["flux_mjy"]), np.sort(SKY_S[sep <= 1.0]))
    empty = VizierSource().fetch("first", (180.0, 60.0, 0.5))
    assert len(empty.table.core["ra_deg"]) == 0 and empty.table.layout == "vizier-empty"
