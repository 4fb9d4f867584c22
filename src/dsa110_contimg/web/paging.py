"""One page of a long list: the ``?page=N`` parameter, the offset it reads and the links
to the neighbouring pages (every paginated page and API answer uses it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request


@dataclass(frozen=True)
class Paging:
    """Page ``number`` (1-based) of ``per_page`` rows; ``total`` rows in all once known;
    ``params`` the request's other query parameters (kept in the links)."""

    number: int
    per_page: int
    total: int = 0
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, request: Request, per_page: int) -> Paging:
        """The page a request asks for (``?page=``, default 1); HTTP 400 when it is not
        an integer, page 1 for anything below 1."""
        raw = request.query_params.get("page", "1") or "1"
        try:
            number = max(1, int(raw))
        except ValueError:
            raise HTTPException(400, f"page must be an integer, not {raw!r}") from None
        params = tuple((k, v) for k, v in request.query_params.multi_items() if k != "page" and v != "")
        return cls(number, per_page, 0, params)

    def counted(self, total: int) -> Paging:
        """The same page, knowing that the list has ``total`` rows."""
        return Paging(self.number, self.per_page, int(total), self.params)

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.number - 1) * self.per_page

    @property
    def pages(self) -> int:
        """Pages in all (at least 1, so an empty list still has its page 1)."""
        return max(1, math.ceil(self.total / self.per_page))

    def window(self, n_rows: int) -> range:
        """Indices of this page's rows in a list of ``n_rows`` held in memory."""
        return range(min(self.offset, n_rows), min(self.offset + self.per_page, n_rows))

    def url(self, number: int) -> str:
        """The query string (``?...``) of page ``number`` with the same other parameters."""
        return "?" + urlencode([*self.params, ("page", str(number))])

    def filters(self) -> str:
        """The query string (``?...``, or empty) of the other parameters alone: the same
        list, not paged (e.g. for a download)."""
        return "?" + urlencode(self.params) if self.params else ""

    def json(self) -> dict:
        """The paging fields of an API answer: ``page``, ``per_page``, ``total``, ``pages``."""
        return {"page": self.number, "per_page": self.per_page, "total": self.total, "pages": self.pages}
