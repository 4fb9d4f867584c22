"""One paging rule for every list: the page asked for, its offset, the links keeping the
other query parameters, and the answer to a page that is not a number."""

from __future__ import annotations

import warnings

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsa110_contimg.web.paging import Paging


def _client():
    def echo(request):
        p = Paging.of(request, 25).counted(101)
        return JSONResponse({**p.json(), "offset": p.offset, "next": p.url(p.number + 1),
                             "window": list(p.window(60))[:2]})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        return TestClient(Starlette(routes=[Route("/", echo)]))


@pytest.mark.parametrize("query, page, offset", [("", 1, 0), ("?page=3", 3, 50), ("?page=0", 1, 0),
                                                 ("?page=-4", 1, 0), ("?page=", 1, 0)])
def test_page_number_and_offset(query, page, offset):
    got = _client().get("/" + query).json()
    assert (got["page"], got["offset"], got["per_page"], got["total"], got["pages"]) == (page, offset, 25, 101, 5)


def test_links_keep_the_filters_and_a_bad_page_is_400():
    c = _client()
    got = c.get("/?status=active&min_score=&page=2&q=J1234%2B56").json()
    assert got["next"] == "?status=active&q=J1234%2B56&page=3"
    assert got["window"] == [25, 26]
    assert c.get("/?page=two").status_code == 400


def test_pages_and_window_edges():
    assert Paging(1, 50).counted(0).pages == 1
    assert Paging(2, 50).counted(100).pages == 2 and Paging(3, 50).counted(101).pages == 3
    assert list(Paging(3, 50).window(120)) == list(range(100, 120))
    assert list(Paging(9, 50).window(120)) == []
