"""Classification of pipeline products (dsa110.md section 2): WSClean, tclean, mosaic builder, BANE."""

from __future__ import annotations

import pytest
from astropy.io import fits

from dsa110_contimg.service.classify import (
    classify_name, header_kind, pb_sibling, restored_counterparts, under_any,
)
from dsa110_contimg.service.watcher import is_fits_name

CASES = [
    # WSClean
    ("2025-01-01T00:00:00.img-image-pb.fits", "pbcor"),
    ("grp.img-image.fits", "restored"),
    ("grp.img-MFS-image-pb.fits", "pbcor"),
    ("grp.img-MFS-image.fits", "restored"),
    ("grp.img-residual.fits", "skip"),
    ("grp.img-MFS-residual.fits", "skip"),
    ("grp.img-psf.fits", "skip"),
    ("grp.img-MFS-psf.fits", "skip"),
    ("grp.img-model.fits", "skip"),
    ("grp.img-dirty.fits", "skip"),
    ("grp.img-beam-0.fits", "skip"),
    ("grp.img-0003-image.fits", "skip"),
    ("grp.img-0003-image-pb.fits", "skip"),
    # per-SPW imaging
    ("spw3.img-image-pbcor.fits", "pbcor"),
    # CASA tclean exports
    ("grp.img.image.fits", "restored"),
    ("grp.img.pbcor.fits", "pbcor"),
    ("grp.img.image.pbcor.fits", "pbcor"),
    ("grp.img.pb.fits", "skip"),
    ("grp.img.residual.fits", "skip"),
    ("grp.img.model.fits", "skip"),
    ("grp.img.psf.fits", "skip"),
    ("grp.img.sumwt.fits", "skip"),
    ("grp.img.mask.fits", "skip"),
    # GPU dirty imager
    ("grp.dirty.fits", "skip"),
    # BANE
    ("grp.img-image-pb_rms.fits", "skip"),
    ("grp.img-image-pb_bkg.fits", "skip"),
    # mosaic builder
    ("nightly_20250101.fits", "other"),
    ("nightly_20250101.weights.fits", "skip"),
    ("mosaic_grp_1735689600.fits", "other"),
    ("daily_mosaic_20250101.fits", "other"),
    # temporary / hidden / case
    (".grp.img-image-pb.fits", "skip"),
    ("grp.img-image-pb.fits.part", "skip"),
    ("grp.part.fits", "skip"),
    ("GRP.IMG-IMAGE-PB.FITS", "pbcor"),
    ("notes.txt", "skip"),
]


@pytest.mark.parametrize("name, role", CASES)
def test_suffix_table(name, role):
    nc = classify_name(f"/data/images/{name}")
    assert nc.role == role, (name, nc)
    assert nc.reason


def test_skip_reasons_say_what_the_product_is():
    assert "residual" in classify_name("a-residual.fits").reason
    assert "PSF" in classify_name("a.psf.fits").reason
    assert "weight" in classify_name("m.weights.fits").reason
    assert "BANE" in classify_name("a_rms.fits").reason


def test_pb_siblings_prefer_the_corrected_product(tmp_path):
    wsc = tmp_path / "g.img-image.fits"
    wsc.write_bytes(b"")
    assert pb_sibling(wsc) is None
    (tmp_path / "g.img-image-pb.fits").write_bytes(b"")
    assert pb_sibling(wsc) == tmp_path / "g.img-image-pb.fits"
    cas = tmp_path / "h.img.image.fits"
    cas.write_bytes(b"")
    (tmp_path / "h.img.pbcor.fits").write_bytes(b"")
    assert pb_sibling(cas) == tmp_path / "h.img.pbcor.fits"
    assert restored_counterparts(tmp_path / "g.img-image-pb.fits") == (wsc,)
    assert restored_counterparts(tmp_path / "h.img.pbcor.fits") == (cas,)
    assert restored_counterparts(tmp_path / "h.img.image.pbcor.fits") == (cas,)


def test_mosaic_by_header_or_directory(tmp_path):
    img = fits.Header({"BMAJ": 0.004, "BMIN": 0.003})
    assert header_kind(img) == "image"
    assert header_kind(fits.Header({"NIMAGES": 10, "BMAJ": 0.004})) == "mosaic"
    # a missing beam does not make a mosaic (one rule with the manager)
    assert header_kind(fits.Header({"NAXIS": 2})) == "image"
    from dsa110_contimg.service.classify import file_kind

    assert file_kind(tmp_path / "m" / "x.fits", fits.Header({"NAXIS": 2}), [tmp_path / "m"]) == "mosaic"
    assert file_kind(tmp_path / "i" / "x.fits", fits.Header({"NAXIS": 2}), [tmp_path / "m"]) == "image"
    assert file_kind(tmp_path / "i" / "x.fits", fits.Header({"NIMAGES": 3}), [tmp_path / "m"]) == "mosaic"
    assert under_any(tmp_path / "m" / "x.fits", [tmp_path / "m"])
    assert not under_any(tmp_path / "i" / "x.fits", [tmp_path / "m"])


def test_watchdog7_pattern_matches_nested_fits():
    assert is_fits_name("/a/b/c/x-image-pb.fits")
    assert is_fits_name("/a/X.FITS")
    assert not is_fits_name("/a/x.fits.part")
