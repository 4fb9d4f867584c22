"""Master reference list: NVSS x FIRST x VLASS on generated tables with known counterparts."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.store.catalogs import CatalogStore
from dsa110_contimg.core.errors import CatalogMissing


def _offset(ra, dec, arcsec, pa_deg):
    """Move (ra, dec) by ``arcsec`` towards position angle ``pa_deg`` (small-angle)."""
    d = arcsec / 3600.0
    pa = np.radians(pa_deg)
    return ra + d * np.sin(pa) / np.cos(np.radians(dec)), dec + d * np.cos(pa)


@pytest.fixture()
def truth(tmp_path):
    rng = np.random.default_rng(42)
    n = 200
    ra = np.mod(rng.uniform(-4, 4, n), 360)  # across RA 0/360
    dec = rng.uniform(20, 28, n)
    s_nvss = rng.uniform(5, 500, n)
    err = np.where(np.arange(n) % 2 == 0, s_nvss / 100.0, s_nvss / 30.0)  # SNR 100 or 30
    alpha = rng.uniform(-1.6, 0.6, n)
    nvss = Table({"NVSS": [f"{i:06d}+000000" for i in range(n)], "_RAJ2000": ra,
                  "_DEJ2000": dec, "S1.4": s_nvss, "e_S1.4": err})
    # FIRST: 0-99 within 2", 100-119 at 10" (outside 7.5"), 120-199 none; 20-29 resolved.
    f_idx = np.arange(120)
    f_sep = np.where(f_idx < 100, rng.uniform(0.1, 2.0, 120), 10.0)
    fra, fdec = _offset(ra[f_idx], dec[f_idx], f_sep, rng.uniform(0, 360, 120))
    f_int = s_nvss[f_idx] * rng.uniform(0.8, 1.0, 120)
    f_peak = f_int * np.where((f_idx >= 20) & (f_idx < 30), 0.5, 0.95)
    maj = np.where((f_idx >= 20) & (f_idx < 30), 8.0, 1.0)
    first = Table({"RAJ2000": fra, "DEJ2000": fdec, "Fpeak": f_peak, "Fint": f_int,
                   "Maj": maj, "Min": np.full(120, 0.5), "PA": np.zeros(120)})
    # VLASS: 0-149 at 1" with S = S_nvss (3/1.4)^alpha; 0-9 get a second component at 5".
    v_idx = np.arange(150)
    vra, vdec = _offset(ra[v_idx], dec[v_idx], 1.0, 45.0)
    s_v = s_nvss[v_idx] * (3.0 / 1.4) ** alpha[v_idx]
    dra, ddec = _offset(ra[:10], dec[:10], 5.0, 200.0)
    vlass = Table({"Component_name": [f"VLASS1QLCIR J{i:06d}" for i in range(160)],
                   "RA": np.r_[vra, dra], "DEC": np.r_[vdec, ddec],
                   "Total_flux": np.r_[s_v, np.full(10, 1.0)],
                   "Peak_flux": np.r_[s_v * 0.9, np.full(10, 1.0)]})
    d = tmp_path
    nvss.write(d / "nvss.fits")
    first.write(d / "first.fits")
    vlass.write(d / "vlass.csv")
    store = CatalogStore(d / "cat")
    store.ingest("nvss", [d / "nvss.fits"])
    store.ingest("first", [d / "first.fits"])
    store.ingest("vlass", [d / "vlass.csv"])
    return store, dict(n=n, s_nvss=s_nvss, err=err, alpha=alpha, f_int=f_int, f_peak=f_peak,
                       s_v=s_v)


def _master_by_index(store):
    m = store.survey("master").box(0, 360, -90, 90)
    idx = np.array([int(str(s).split("J")[1][:6]) for s in m["source_id"]])
    return m[np.argsort(idx)]


def test_master_matches_and_spectral_indices(truth):
    store, tr = truth
    n = store.build_master()
    assert n == tr["n"]
    m = _master_by_index(store)
    assert len(m) == tr["n"]  # unmatched NVSS sources stay
    assert m["source_id"][7] == "NVSS J000007+000000"
    np.testing.assert_allclose(m["flux_mjy"], tr["s_nvss"])
    np.testing.assert_allclose(m["snr_nvss"], tr["s_nvss"] / tr["err"])
    # FIRST: matched within 7.5", not at 10".
    np.testing.assert_allclose(m["s_first_mjy"][:100], tr["f_int"][:100])
    assert np.isnan(m["s_first_mjy"][100:]).all()
    # VLASS and alpha = log(S_VLASS/S_NVSS)/log(3.0/1.4); the nearest of two counterparts wins.
    np.testing.assert_allclose(m["s_vlass_mjy"][:150], tr["s_v"])
    np.testing.assert_allclose(m["alpha"][:150], tr["alpha"][:150], atol=1e-9)
    assert np.isnan(m["alpha"][150:]).all() and np.isnan(m["s_vlass_mjy"][150:]).all()
    # Flags.
    assert list(np.flatnonzero(m["confusion_flag"])) == list(range(10))
    assert list(np.flatnonzero(m["n_vlass"] == 2)) == list(range(10))
    assert list(np.flatnonzero(m["resolved_flag"])) == list(range(20, 30))
    np.testing.assert_allclose(m["compactness"][:100], tr["f_peak"][:100] / tr["f_int"][:100])
    np.testing.assert_allclose(m["compactness"][120:150], 0.9)
    assert np.isnan(m["compactness"][150:]).all()
    idx = np.arange(tr["n"])
    alpha = np.where(idx < 150, tr["alpha"], np.nan)
    expected = ((tr["s_nvss"] / tr["err"]) > 50) & ~((idx >= 20) & (idx < 30)) & (idx >= 10) & \
        (alpha >= -1.2) & (alpha <= 0.2)
    assert expected.sum() > 10
    np.testing.assert_array_equal(np.asarray(m["reference_ok"], bool), expected)
    assert m["reference_ok"].dtype == bool


def test_match_radius_is_configurable_and_rebuild_replaces(truth):
    store, tr = truth
    store.build_master(match_radius_arcsec=12.0)
    m = _master_by_index(store)
    assert len(m) == tr["n"]  # rebuilt, not appended
    np.testing.assert_allclose(m["s_first_mjy"][:120], tr["f_int"])
    np.testing.assert_allclose(m["sep_first_arcsec"][100:120], 10.0, atol=0.01)


def test_master_needs_nvss_and_tolerates_missing_vlass(tmp_path):
    store = CatalogStore(tmp_path / "cat")
    with pytest.raises(CatalogMissing, match="nvss"):
        store.build_master()
    t = Table({"_RAJ2000": [1.0, 2.0], "_DEJ2000": [3.0, 4.0], "S1.4": [100.0, 200.0],
               "e_S1.4": [1.0, 1.0]})
    t["S1.4"].unit = t["e_S1.4"].unit = "mJy"
    t.write(tmp_path / "n.fits")
    store.ingest("nvss", tmp_path / "n.fits")
    assert store.build_master() == 2
    m = store.survey("master").cone(1.5, 3.5, 2.0)
    assert np.isnan(m["alpha"]).all() and not m["reference_ok"].any()
    assert list(m["flux_mjy"]) == [200.0, 100.0]
