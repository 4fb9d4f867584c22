"""Postage stamps: a strip of real cutouts of the source (PNG of the stamp size, a FITS
cutout with a WCS centred on it), one colour scale, the position and the beam drawn, a
placeholder saying why when an image moved or cannot be read, and a bounded disk cache."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image
from web_harness import site_client

from dsa110_contimg.science.cutout import Cutout
from dsa110_contimg.web.png import encode_rgb
from dsa110_contimg.web.stamp_cache import StampCache
from dsa110_contimg.web.stamps import BEAM_RGB, MARK_RGB, STAMP_PX, render_png, strip_epochs


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """Six epochs of a simulated field measured by the workflow (images kept on disk)."""
    from fields import SimulatedField

    from dsa110_contimg.photometry import PhotometryConfig, PhotometryManager

    root = tmp_path_factory.mktemp("stamps")
    field = SimulatedField(root, n_sources=12, seed=5, flux_range=(80.0, 300.0))
    field.ingest(root / "catalogs")
    manager = PhotometryManager(root / "products.sqlite3", default_config=PhotometryConfig(normalize=False),
                                catalog_dir=root / "catalogs")
    for k in range(6):
        path = root / "images" / f"e{k}.fits"
        path.parent.mkdir(exist_ok=True)
        field.image(path, mjd=60000.0 + 4 * k, seed=k)
        manager.measure_for_fits(path, create_batch_job=False)
    return root, field


def client(db, cache_dir):
    return site_client(db, stamp_cache_dir=cache_dir)


def test_png_files_decode_to_the_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_rgb(rgb))).convert("RGB")), rgb)


def test_the_strip_of_a_source(season, tmp_path):
    root, field = season
    c = client(root / "products.sqlite3", tmp_path / "cache")
    sid = 3
    page = c.get(f"/sources/{sid}").text
    inline = re.findall(r'<img src="data:image/png;base64,([^"]+)" data-url="([^"]+)"', page)
    fits_links = re.findall(r'<a href="(/sources/3/stamps/\d+\.fits\?[^"]+)"', page)
    assert len(inline) == len(fits_links) == 6 and "stamp-placeholder" not in page
    assert len({re.search(r"lo=[^&]+&amp;hi=[^&]+", url).group(0) for _, url in inline}) == 1   # one colour scale
    src = c.get(f"/api/sources/{sid}").json()["source"]
    for body, url in inline[:2]:
        png = base64.b64decode(body)
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert img.shape == (STAMP_PX, STAMP_PX, 3)
        assert (img == MARK_RGB).all(axis=2).sum() > 50 and (img == BEAM_RGB).all(axis=2).sum() > 20
        r = c.get(url.replace("&amp;", "&"))                 # each stamp is also its own URL
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png
    r = c.get(fits_links[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-disposition"].endswith('.fits"')
    hdu = fits.open(io.BytesIO(r.content))[0]
    ny, nx = hdu.data.shape
    ra, dec = WCS(hdu.header).celestial.wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    assert abs(ra - src["ra_deg"]) * 3600 * np.cos(np.radians(dec)) < 3.0 and abs(dec - src["dec_deg"]) * 3600 < 3.0
    peak = np.unravel_index(np.nanargmax(hdu.data), hdu.data.shape)
    assert abs(peak[0] - (ny - 1) / 2) <= 2 and abs(peak[1] - (nx - 1) / 2) <= 2
    assert len(list((tmp_path / "cache").iterdir())) == 6        # cut once, kept


def test_a_moved_or_broken_image_gives_a_placeholder_saying_why(season, tmp_path):
    root, _ = season
    work = tmp_path / "copy"
    shutil.copytree(root, work)
    import sqlite3

    with sqlite3.connect(work / "products.sqlite3") as con:
        con.execute("UPDATE images SET path = replace(path, ?, ?)", (str(root), str(work)))
    (work / "images" / "e1.fits").rename(work / "images" / "moved.fits")
    (work / "images" / "e2.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    c = client(work / "products.sqlite3", tmp_path / "cache")
    page = c.get("/sources/3").text
    reasons = re.findall(r'<div class="stamp-placeholder">([^<]+)</div>', page)
    assert len(reasons) == 2 and len(re.findall(r"<img src=", page)) == 4
    assert reasons[0] == f"image moved or deleted: nothing at {work / 'images' / 'e1.fits'}"
    assert reasons[1].startswith("image unreadable:")
    assert c.get("/sources/3/stamps/2.png?w=60").status_code == 404


def _cutout(n=21):
    return Cutout(data=np.zeros((n, n), np.float32), header=fits.Header(), x=n // 2, y=n // 2,
                  beam_pix=(4.0, 3.0, 0.5), north_rad=np.pi / 2)


def test_the_cache_keeps_the_recently_used_within_its_bound(tmp_path):
    one = len(_npz_size(tmp_path))
    cache = StampCache(tmp_path / "c", max_bytes=5 * one)
    for k in range(5):
        cache.put(f"k{k}", _cutout())
    assert cache.get("k0") is not None                 # k0 used: k1 is now the oldest
    cache.put("k5", _cutout())
    kept = {p.name.split(".")[0] for p in (tmp_path / "c").iterdir()}
    assert "k0" in kept and "k5" in kept and "k1" not in kept
    assert cache.total_bytes <= 5 * one
    assert StampCache(tmp_path / "c", 5 * one).total_bytes == cache.total_bytes     # counted on disk
    got = cache.get("k5")
    assert got.beam_pix == (4.0, 3.0, 0.5) and got.x == 10 and got.data.shape == (21, 21)


def _npz_size(tmp_path):
    probe = StampCache(tmp_path / "probe", max_bytes=1 << 30)
    probe.put("p", _cutout())
    return (tmp_path / "probe" / "p.stamp").read_bytes()


def test_which_epochs_a_strip_shows():
    lc = {"mjd": 60000.0 + np.arange(40) * 3.0}
    around = strip_epochs(lc, {"t_min_mjd": 60060.0, "duration_days": 30.0}, n=8)
    assert len(around) == 8 and list(around) == sorted(around)
    assert lc["mjd"][around].min() <= 60033 and lc["mjd"][around].max() >= 60087     # before and after
    assert ((lc["mjd"][around] > 60045) & (lc["mjd"][around] < 60075)).sum() >= 3       # in the dip
    plain = strip_epochs(lc, None, n=8)
    assert len(plain) == 8 and plain[-1] == 39 and plain[0] == 0
    assert list(strip_epochs({"mjd": np.arange(5.0)}, None, n=8)) == [0, 1, 2, 3, 4]


def test_north_is_up_and_a_brighter_epoch_is_brighter():
    n = 41
    data = np.zeros((n, n), np.float32)
    data[30, 20] = 1.0                                       # 10 px north of the centre (row 0 = south)
    c = Cutout(data=data, header=fits.Header(), x=20, y=20, beam_pix=None, north_rad=np.pi / 2)
    img = np.asarray(Image.open(io.BytesIO(render_png(c, 0.0, 1.0))).convert("RGB")).astype(int)
    bright = np.unravel_index(np.argmax(img.sum(axis=2) * ~(img == MARK_RGB).all(axis=2)), img.shape[:2])
    assert bright[0] < STAMP_PX / 2 - 20                   # above the centre
    dim = np.asarray(Image.open(io.BytesIO(render_png(c, 0.0, 2.0))).convert("RGB")).astype(int)
    assert dim[bright].sum() < img[bright].sum()
