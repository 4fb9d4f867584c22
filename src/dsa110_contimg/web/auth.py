"""Who may review: the token of ``[web] token_file``, as a bearer token for the API and as
a session cookie for the pages.

The cookie holds an HMAC of the token (never the token). Without a configured token the
site is read-only (403 on every write); a write without a token gets 401, with a wrong
one 403, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from starlette.requests import Request

from dsa110_contimg.core.errors import ConfigError

COOKIE = "contimg_review"
#: Shortest token accepted (characters).
MIN_TOKEN_CHARS = 8
READ_ONLY = "the site is read-only: no [web] token_file is configured"


def read_token(path: str | Path | None) -> str | None:
    """The review token in ``path`` (first line, stripped); None when no file is configured.

    Raises ConfigError when the file is configured but unreadable or empty.
    """
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise ConfigError("web.token_file", str(path), f"a readable file ({exc.strerror or exc})") from None
    if not lines or len(lines[0].strip()) < MIN_TOKEN_CHARS:
        raise ConfigError("web.token_file", str(path),
                          f"a file whose first line is a token of >= {MIN_TOKEN_CHARS} characters")
    return lines[0].strip()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Access:
    """The review token (None = read-only site) and the checks of a request against it."""

    def __init__(self, token: str | None):
        self.token = token
        self.session_value = (hmac.new(token.encode(), b"contimg-web-session", hashlib.sha256).hexdigest()
                              if token else None)

    @property
    def read_only(self) -> bool:
        return self.token is None

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the review token."""
        return self.token is not None and _same(given, self.token)

    def session_ok(self, request: Request) -> bool:
        """Whether the request carries the session cookie set by a login."""
        cookie = request.cookies.get(COOKIE)
        return bool(self.session_value and cookie and _same(cookie, self.session_value))

    def bearer_refusal(self, request: Request) -> tuple[int, str] | None:
        """None when the request may write, else (HTTP status, reason)."""
        if self.token is None:
            return 403, READ_ONLY
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return 401, "a review needs 'Authorization: Bearer <token>'"
        if not self.token_ok(auth[7:].strip()):
            return 403, "invalid token"
        return None
