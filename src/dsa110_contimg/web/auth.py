"""Who may review, and who did: the reviewers of ``[web] token_file``.

The file holds one ``name:token`` line per reviewer (blank lines and ``#`` comments
skipped); a file holding a single bare token is one reviewer named ``anonymous``. Names
are letters, digits and ``._@-``; tokens at least :data:`MIN_TOKEN_CHARS` characters,
each used once. The API takes ``Authorization: Bearer <token>``; the pages take the token
once (``POST /login``) and keep a session cookie ``name:HMAC(token, name)``, which says
who signed in and is worth nothing without the token (never stored in it).

Without a token file the site is read-only (403 on every write); a write without a token
gets 401, with an unknown one 403, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from starlette.requests import Request

from dsa110_contimg.core.errors import ConfigError

COOKIE = "contimg_review"
#: Shortest token accepted (characters).
MIN_TOKEN_CHARS = 8
#: The reviewer a file holding a single bare token stands for.
ANONYMOUS = "anonymous"
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
READ_ONLY = "the site is read-only: no [web] token_file is configured"


def _reviewer_line(line: str, path, number: int) -> tuple[str, str]:
    name, sep, token = line.partition(":")
    if not sep:
        raise ConfigError("web.token_file", f"{path} line {number}",
                          "'name:token' lines (a bare token only as the file's single line)")
    name, token = name.strip(), token.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError("web.token_file", f"{path} line {number}",
                          "a reviewer name of letters, digits and ._@- (at most 64)")
    return name, token


def read_reviewers(path: str | Path | None) -> dict[str, str] | None:
    """``{name: token}`` of the reviewers in ``path``; None when no file is configured.

    Raises ConfigError (naming the file and line) when the file is unreadable or empty,
    a line is malformed, a token is shorter than :data:`MIN_TOKEN_CHARS`, or a name or a
    token appears twice.
    """
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("web.token_file", str(path), f"a readable file ({exc.strerror or exc})") from None
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) == 1 and ":" not in lines[0][1]:
        pairs = [(ANONYMOUS, lines[0][1])]
    else:
        pairs = [_reviewer_line(ln, path, n) for n, ln in lines]
    if not pairs:
        raise ConfigError("web.token_file", str(path), "a token, or 'name:token' lines")
    if any(len(token) < MIN_TOKEN_CHARS for _, token in pairs):
        raise ConfigError("web.token_file", str(path), f"tokens of >= {MIN_TOKEN_CHARS} characters")
    names, tokens = [n for n, _ in pairs], [t for _, t in pairs]
    if len(set(names)) != len(names) or len(set(tokens)) != len(tokens):
        raise ConfigError("web.token_file", str(path), "each reviewer name and each token once")
    return dict(pairs)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Access:
    """The reviewers (None = read-only site) and the checks of a request against them."""

    def __init__(self, reviewers: dict[str, str] | None):
        self.reviewers = dict(reviewers) if reviewers else None

    @property
    def read_only(self) -> bool:
        return self.reviewers is None

    def reviewer_of(self, token: str) -> str | None:
        """The name of the reviewer holding ``token``, or None (every token compared in
        constant time, so the answer's timing tells nothing)."""
        found = None
        for name, known in (self.reviewers or {}).items():
            if _same(token, known):
                found = name
        return found

    def session_value(self, name: str) -> str:
        """The cookie value of reviewer ``name`` (``name:HMAC``)."""
        mac = hmac.new(self.reviewers[name].encode(), b"contimg-web-session:" + name.encode(), hashlib.sha256)
        return f"{name}:{mac.hexdigest()}"

    def signed_in(self, request: Request) -> str | None:
        """Who the request's session cookie says signed in (None when nobody or invalid)."""
        name, _, _ = (request.cookies.get(COOKIE) or "").partition(":")
        if not self.reviewers or name not in self.reviewers:
            return None
        return name if _same(request.cookies[COOKIE], self.session_value(name)) else None

    def bearer(self, request: Request) -> tuple[str | None, tuple[int, str] | None]:
        """(reviewer, None) when the request may write, else (None, (HTTP status, reason))."""
        if self.reviewers is None:
            return None, (403, READ_ONLY)
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None, (401, "a review needs 'Authorization: Bearer <token>'")
        name = self.reviewer_of(auth[7:].strip())
        return (name, None) if name is not None else (None, (403, "invalid token"))
