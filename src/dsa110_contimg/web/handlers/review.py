"""Review actions on an ESE candidate (investigating, dismissed, reactivated, with a note):
``POST /api/candidates/{id}`` with a bearer token and a JSON body, or the form of a source
page (``POST /candidates/{id}/review``) after signing in (:mod:`.session`)."""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from dsa110_contimg.store import review
from dsa110_contimg.web.auth import READ_ONLY
from dsa110_contimg.web.state import Site, site

#: Longest note stored with a review (characters).
MAX_NOTE_CHARS = 4000
log = logging.getLogger("dsa110_contimg.web")


def apply_review(s: Site, candidate_id: int, action, note) -> dict:
    """Store a review action; returns the candidate as the API shows it.
    Raises HTTPException 400 (unknown action, bad note) or 404 (no such candidate)."""
    from dsa110_contimg.store.lightcurves import set_candidate_status

    state = review.REVIEW_ACTIONS.get(str(action))
    if state is None:
        raise HTTPException(400, "status must be one of investigating, dismissed, reactivated")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise HTTPException(400, f"note must be a string of at most {MAX_NOTE_CHARS} characters")
    with s.write() as conn:
        if not set_candidate_status(conn, candidate_id, state, note or None):
            raise HTTPException(404, f"no ESE candidate with id {candidate_id}")
    log.info("candidate %d set to %s", candidate_id, state)
    with s.read() as conn:
        return review.candidate(conn, candidate_id)


def local_path(value, default: str) -> str:
    """``value`` when it is a path on this site (``/...``, not ``//host``), else ``default``:
    where a form redirects to after it is handled."""
    value = str(value or default)
    return value if value.startswith("/") and not value.startswith("//") else default


def with_message(path: str, message: str) -> str:
    """``path`` with the ``msg`` query parameter the page frame shows."""
    return f"{path}{'&' if '?' in path else '?'}msg={message.replace(' ', '+')}"


async def review_form(request: Request):
    s = site(request)
    cid = request.path_params["candidate_id"]
    form = await request.form()
    back = local_path(form.get("next"), "/candidates")
    if s.access.read_only:
        return s.render(request, "refused.html", 403, back=back, reason=READ_ONLY)
    if not s.access.session_ok(request):
        return s.render(request, "refused.html", 401, back=back,
                        reason="reviewing needs the token: enter it first")
    cand = await run_in_threadpool(apply_review, s, cid, str(form.get("status", "")),
                                   str(form.get("note") or "") or None)
    return RedirectResponse(with_message(back, f"candidate {cid} is now {cand['status']}"), 303)


async def api_review(request: Request):
    s = site(request)
    refused = s.access.bearer_refusal(request)
    if refused is not None:
        headers = {"WWW-Authenticate": "Bearer"} if refused[0] == 401 else None
        return JSONResponse({"error": refused[1]}, refused[0], headers=headers)
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise HTTPException(400, "the body must be JSON: {\"status\": ..., \"note\": ...}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    cand = await run_in_threadpool(apply_review, s, request.path_params["candidate_id"],
                                   body.get("status"), body.get("note"))
    return JSONResponse(cand)


ROUTES = [
    Route("/candidates/{candidate_id:int}/review", review_form, methods=["POST"]),
    Route("/api/candidates/{candidate_id:int}", api_review, methods=["POST"]),
]
