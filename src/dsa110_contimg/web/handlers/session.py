"""Signing in and out on the pages: ``POST /login`` finds the reviewer whose token was
entered and sets the session cookie naming them (:mod:`dsa110_contimg.web.auth`),
``POST /logout`` forgets it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from dsa110_contimg.web.auth import COOKIE
from dsa110_contimg.web.handlers.review import local_path, with_message
from dsa110_contimg.web.state import site

#: How long a sign-in lasts (s).
SESSION_S = 12 * 3600


async def login(request: Request):
    s = site(request)
    form = await request.form()
    back = local_path(form.get("next"), "/")
    if s.access.read_only:
        return s.render(request, "refused.html", 403, reason="the site is read-only: no token is configured")
    name = s.access.reviewer_of(str(form.get("token") or ""))
    if name is None:
        return s.render(request, "refused.html", 403, reason="invalid token", back=back)
    resp = RedirectResponse(with_message(back, f"signed in as {name}"), 303)
    resp.set_cookie(COOKIE, s.access.session_value(name), httponly=True, samesite="strict", max_age=SESSION_S)
    return resp


def logout(request: Request):
    resp = RedirectResponse("/", 303)
    resp.delete_cookie(COOKIE)
    return resp


ROUTES = [
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
