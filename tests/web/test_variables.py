"""``/variables``: the variables of each field beside its eta-V diagram, and its JSON."""

from __future__ import annotations

from web_harness import site_client

from variable_seasons import season, store_season


def test_variables_page_lists_the_variables_beside_the_diagram(tmp_path):
    t, flux, err = season(n_steady=150, seed=5)
    sid = store_season(tmp_path / "p.sqlite3", t, flux, err)
    c = site_client(tmp_path / "p.sqlite3")
    api = c.get("/api/variables").json()
    assert {r["source_id"] for r in api["variables"]} == {int(s) for s in sid[:3]}
    page = c.get("/variables")
    assert page.status_code == 200
    html = page.text
    assert 'href="/variables"' in html                        # in the navigation
    assert html.count('class="variable"') == 3
    assert 'class="plot etav"' in html and 'class="selected"' in html
    assert html.count('stroke-dasharray="4 3"') >= 2         # the eta and V thresholds drawn
