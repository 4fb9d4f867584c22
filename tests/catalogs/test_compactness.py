"""Compactness per survey layout: one rule (deconvolved size against the image beam)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from dsa110_contimg.store.catalogs import CatalogStore
from dsa110_contimg.catalogs.compactness import (
    COMPACT, RESOLVED, UNKNOWN, compactness, source_sizes,
)
from dsa110_contimg.catalogs.readers import normalise

NVSS_REAL = "real/nvss_vizier_VIII65_extract.fits"
RACS_REAL = "real/racs_SB38959_aegean_comp.fits"
BEAM = 18.0     # arcsec, DSA-110-like BMAJ


def _query(tmp_path, survey, path, ra, dec, radius):
    store = CatalogStore(tmp_path / "cat")
    store.ingest(survey, path)
    return store.survey(survey).cone(ra, dec, radius)


def test_real_nvss_upper_limits_are_upper_limits(shared_data, tmp_path):
    cat = _query(tmp_path, "nvss", shared_data / NVSS_REAL, 97.5, -31.5, 10.0)
    assert len(cat) == 639
    raw = Table.read(shared_data / NVSS_REAL)
    lim = np.char.strip(np.asarray(raw["l_MajAxis"]).astype(str)) == "<"
    assert lim.sum() == 547
    sizes = source_sizes(cat)
    assert sizes.upper_limit.sum() == 547
    klass, why = compactness(cat, BEAM)
    maj = np.asarray(cat["maj_arcsec"], float)
    ul = sizes.upper_limit
    # an upper limit never makes a source resolved; below the beam it is compact
    assert not np.any(ul & (klass == RESOLVED))
    assert np.all(klass[ul & (maj <= BEAM)] == COMPACT)
    assert np.all(klass[ul & (maj > BEAM)] == UNKNOWN)
    assert all("upper limit" in w for w in why[ul])
    # measured (deconvolved) sizes are compared with the beam as they are
    assert np.all(klass[~ul & (maj > BEAM)] == RESOLVED)
    assert np.all(klass[~ul & (maj <= BEAM)] == COMPACT)
    # the bright sources a DSA-110 image would use: most are compact or unknown, not resolved
    bright = np.asarray(cat["flux_mjy"], float) > 50
    assert (klass[bright] != RESOLVED).sum() > (klass[bright] == RESOLVED).sum()
    # a coarser beam turns more sources compact (the comparison follows the image's beam)
    klass45, _ = compactness(cat, 45.0)
    assert (klass45 == COMPACT).sum() > (klass == COMPACT).sum()


def test_real_racs_aegean_deconvolves_a_against_psf_a(shared_data, tmp_path):
    cat = _query(tmp_path, "rax", shared_data / RACS_REAL, 209.5, -19.0, 6.0)
    assert len(cat) > 5000
    sizes = source_sizes(cat)
    a = np.asarray(cat["a"], float)
    psf = np.asarray(cat["psf_a"], float)
    np.testing.assert_allclose(sizes.major_arcsec, np.sqrt(np.clip(a**2 - psf**2, 0, None)),
                               rtol=1e-6)
    klass, why = compactness(cat, BEAM)
    assert set(np.unique(klass)) <= {COMPACT, RESOLVED}
    assert "psf_a" in why[0]
    # truth from the fits themselves: integrated/peak of resolved rows is much larger
    ratio = np.asarray(cat["int_flux_mjy"], float) / np.asarray(cat["peak_flux_mjy"], float)
    assert np.median(ratio[klass == COMPACT]) < 1.3
    assert np.median(ratio[klass == RESOLVED]) > 1.8
    assert 0.3 < (klass == COMPACT).mean() < 0.99


def _layout(tmp_path, survey, cols, name):
    t = Table(cols)
    path = tmp_path / name
    t.write(path, overwrite=True)
    norm = normalise(t, survey, path=path)
    cat = Table({**norm.core, **norm.extras})
    cat.meta["survey"] = survey
    return cat


def test_generated_first_layout_zero_means_unresolved(tmp_path):
    cat = _layout(tmp_path, "first", {"_RAJ2000": [10.0, 10.1, 10.2], "_DEJ2000": [5.0, 5.0, 5.0],
                                      "Fpeak": [50.0, 40.0, 10.0], "Fint": [50.0, 80.0, 60.0],
                                      "Maj": [0.0, 12.0, 25.0], "Min": [0.0, 3.0, 20.0],
                                      "PA": [0.0, 10.0, 20.0]}, "first.fits")
    klass, why = compactness(cat, BEAM)
    assert list(klass) == [COMPACT, COMPACT, RESOLVED]
    assert "unresolved" in why[0] and "FIRST" in why[2]


def test_generated_vlass_layout_dc_maj(tmp_path):
    cat = _layout(tmp_path, "vlass", {"RA": [10.0, 10.1], "DEC": [5.0, 5.0],
                                      "Total_flux": [5.0, 9.0], "E_Total_flux": [0.1, 0.1],
                                      "Peak_flux": [5.0, 2.0], "DC_Maj": [0.0, 30.0],
                                      "DC_Min": [0.0, 10.0], "DC_PA": [0.0, 0.0],
                                      "Maj": [2.5, 30.2], "Component_name": ["a", "b"]}, "vlass.fits")
    klass, why = compactness(cat, BEAM)
    assert list(klass) == [COMPACT, RESOLVED] and "DC_Maj" in why[1]


def test_selavy_generic_and_master(tmp_path):
    cat = _layout(tmp_path, "rax", {"ra_deg_cont": [10.0, 10.1], "dec_deg_cont": [5.0, 5.0],
                                    "flux_int": [5.0, 9.0], "flux_peak": [5.0, 3.0],
                                    "maj_axis": [26.0, 60.0], "min_axis": [25.0, 30.0],
                                    "pos_ang": [0.0, 0.0], "maj_axis_deconv": [3.0, 50.0]},
                  "selavy.fits")
    klass, why = compactness(cat, BEAM)
    assert list(klass) == [COMPACT, RESOLVED] and "Selavy" in why[0]
    # a generic table (explicit columns, no sizes): unknown, never resolved
    t = Table({"RAdeg": [10.0], "DEdeg": [5.0], "S": [30.0]})
    norm = normalise(t, "nvss", ra_column="RAdeg", dec_column="DEdeg", flux_column="S",
                     flux_unit="mJy")
    gen = Table({**norm.core, **norm.extras})
    klass, why = compactness(gen, BEAM, survey="nvss")
    assert list(klass) == [UNKNOWN] and "no size" in why[0]
    master = Table({"ra_deg": [1.0, 2.0], "dec_deg": [0.0, 0.0], "maj_arcsec": [np.nan, np.nan],
                    "resolved_flag": [False, True], "first_id": ["FIRST J1", "FIRST J2"]})
    klass, why = compactness(master, BEAM, survey="master")
    assert list(klass) == [COMPACT, RESOLVED] and "master" in why[1]


def test_no_beam_means_unknown():
    t = Table({"ra_deg": [1.0], "dec_deg": [0.0], "maj_arcsec": [5.0]})
    klass, why = compactness(t, None, survey="first")
    assert list(klass) == [UNKNOWN] and "no beam" in why[0]
