"""The source page: the ESE template drawn from the stored candidate (no fit per view),
the measurements one page at a time."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import pytest
from web_harness import scale_db, site_client


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return scale_db(tmp_path_factory, "websources", n_sources=200, n_epochs=60, n_fields=1, n_candidates=5)


client = site_client


def _store_template(path, source_id, **values):
    sets = ", ".join(f"{k} = ?" for k in values)
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE ese_candidates SET {sets} WHERE source_id = ?", (*values.values(), source_id))


def _points(d: str) -> np.ndarray:
    return np.array([[float(a), float(b)] for a, b in re.findall(r"[ML]([-\d.]+) ([-\d.]+)", d)])


def test_the_template_is_drawn_from_the_stored_candidate_without_fitting(db, monkeypatch):
    import dsa110_contimg.science.ese as ese

    def no_fit(*_a, **_k):
        raise AssertionError("a page view fitted the ESE template")

    monkeypatch.setattr(ese, "detect_ese_shapes", no_fit)
    monkeypatch.setattr(ese, "fit_ese", no_fit)
    path, info = db
    sid = info["top_candidate_source"]
    t_min = 60090.0   # epochs every 3 d from MJD 60000
    _store_template(path, sid, criteria='["shape"]', template="dip", depth=0.4, duration_days=40.0,
                    t_min_mjd=t_min, baseline_jyb=0.05, caustic_amp=0.0, shape_significance=9.5)
    page = client(path).get(f"/sources/{sid}").text
    assert "Fitted ESE template (dip): depth 40%, 40 d, minimum at MJD 60090.0 (2023-05-26), sigma 9.5." in page
    fit = _points(re.search(r'<path class="fit" d="([^"]+)"', page).group(1))
    # the curve's flat bottom is centred on the stored epoch of minimum: map pixels to MJD
    # through the normalised points (one square per epoch, MJD-ordered)
    squares = re.search(r'<g class="norm">(.*?)</g>', page).group(1)
    xs = np.array([float(x) + float(w) / 2 for x, w in re.findall(r'<rect x="([-\d.]+)" y="[-\d.]+" '
                                                                  r'width="([-\d.]+)"', squares)])
    mjd = 60000.0 + 3.0 * np.arange(xs.size)
    bottom = fit[fit[:, 1] >= fit[:, 1].max() - 0.5, 0]
    centre = np.interp(0.5 * (bottom.min() + bottom.max()), xs, mjd)
    assert abs(centre - t_min) < 2.0
    depth = (fit[:, 1].max() - fit[0, 1]) / (fit[:, 1].max() - fit[:, 1].min())
    assert depth == pytest.approx(1.0, abs=0.05)        # the dip is the curve's whole range


def test_no_template_without_a_detected_shape(db):
    path, info = db
    with sqlite3.connect(path) as con:
        sid = con.execute("SELECT source_id FROM ese_candidates ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert 'class="fit"' in client(path).get(f"/sources/{sid}").text
    _store_template(path, sid, criteria='["preset", "eta_v"]')
    page = client(path).get(f"/sources/{sid}").text
    assert 'class="plot lightcurve"' in page and 'class="fit"' not in page


def test_measurements_one_page_at_a_time(db):
    path, info = db
    c = client(path)
    sid = info["top_candidate_source"]
    first, second = c.get(f"/sources/{sid}").text, c.get(f"/sources/{sid}?page=2").text
    rows = lambda html: re.findall(r'<td class="num">(60\d{3}\.\d{4})</td>', html)  # noqa: E731
    assert len(rows(first)) == 50 and len(rows(second)) == 10
    assert rows(first)[0] == "60000.0000" and rows(second)[-1] == "60177.0000"
    assert "page 2 of 2" in second and 'id="previous-page"' in second and 'id="next-page"' not in second
    assert c.get(f"/sources/{sid}?page=x").status_code == 400


def test_a_page_an_astronomer_can_use(db):
    from dsa110_contimg.web.formatting import dec_dms, ra_hms

    path, info = db
    sid = info["top_candidate_source"]
    with sqlite3.connect(path) as con:
        ra, dec, flux = con.execute("SELECT ra_deg, dec_deg, catalog_flux_mjy FROM sources WHERE id = ?",
                                    (sid,)).fetchone()
        # a neighbour 20" north (within 3 beams of 15"), one 60" away (outside)
        con.executemany("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, catalog_flux_mjy, reference_ok) "
                        "VALUES ('NVSS', ?, ?, ?, ?, 0)", [("NEAR ONE", ra, dec + 20 / 3600, 12.5),
                                                           ("FAR ONE", ra, dec + 60 / 3600, 99.0)])
    page = client(path).get(f"/sources/{sid}").text
    position = re.search(r'id="position-sexagesimal">([^<]+)<', page).group(1)
    assert position == f"{ra_hms(ra)} {dec_dms(dec)}"
    assert re.fullmatch(r"\d\dh\d\dm\d\d\.\d\ds [+-]\d\d°\d\d′\d\d\.\d″", position)
    links = dict((label, href.replace("&amp;", "&")) for href, label in
                 re.findall(r'<a href="([^"]+)" rel="noopener noreferrer" target="_blank">([^<]+)</a>', page))
    assert {"SIMBAD", "NED", "VizieR", "Aladin Lite (NVSS)", "NVSS cutout", "VLASS images (CADC)"} <= set(links)
    assert f"{ra:.6f}" in links["SIMBAD"] and f"{ra:.6f}" in links["VizieR"] and ra_hms(ra, 2, (" ", " ", ""))\
        .replace(" ", "+") in links["NVSS cutout"]
    table = page.split('id="neighbours"')[1].split("</table>")[0]
    assert "NEAR ONE" in table and "FAR ONE" not in table and "<td class=\"num\">20.0</td>" in table
    assert "Neighbours within 45″ (3 beams of 15.0″)" in page
    # the catalogue flux is drawn, and every legend row fits in the plot's width
    assert 'class="catalog-flux"' in page and f"catalogue flux (NVSS) ({flux:.1f} mJy)" in page
    svg_width = float(re.search(r'class="plot lightcurve" width="(\d+)"', page).group(1))
    from dsa110_contimg.web.svg import LEGEND_CHAR_PX

    legend = page.split('<g class="legend">')[1].split("</svg>")[0]
    texts = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" class="legend">([^<]+)</text>', legend)
    assert len(texts) == 7 and len({y for _, y, _ in texts}) == 2          # two rows
    for x, _, label in texts:
        assert float(x) + LEGEND_CHAR_PX * len(label) <= svg_width, label
