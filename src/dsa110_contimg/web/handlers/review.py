"""Review actions on an ESE candidate (investigating, dismissed, reactivated, with a note):
``POST /api/candidates/{id}`` with a bearer token and a JSON body, or the form of a source
page (``POST /candidates/{id}/review``) after signing in (:mod:`.session`). Each action is
appended to the candidate's review log with the reviewer the token names
(:mod:`dsa110_contimg.store.review_log`); the answer is the candidate with its history."""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from dsa110_contimg.store import review, review_log
from dsa110_contimg.web.auth import READ_ONLY
from dsa110_contimg.web.state import Site, site

#: Longest note stored with a review (characters).
MAX_NOTE_CHARS = 4000
log = logging.getLogger("dsa110_contimg.web")


def candidate_with_history(conn, candidate_id: int) -> dict | None:
    """A candidate as the API shows it: the object of ``ese list --json`` and its review
    log (``history``: ``reviewer``, ``action``, ``status``, ``note``, ``created_at`` and
    ``created_at_iso``, oldest first)."""
    cand = review.candidate(conn, candidate_id)
    return None if cand is None else {**cand, "history": review_log.history(conn, candidate_id)}


def apply_review(s: Site, candidate_id: int, action, note, reviewer: str) -> dict:
    """Store a review action by ``reviewer``; returns the candidate with its history.
    Raises HTTPException 400 (unknown action, bad note) or 404 (no such candidate)."""
    state = review.REVIEW_ACTIONS.get(str(action))
    if state is None:
        raise HTTPException(400, "status must be one of investigating, dismissed, reactivated")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise HTTPException(400, f"note must be a string of at most {MAX_NOTE_CHARS} characters")
    with s.write() as conn:
        if not review_log.review(conn, candidate_id, state, reviewer=reviewer, note=note or None):
            raise HTTPException(404, f"no ESE candidate with id {candidate_id}")
    log.info("candidate %d set to %s by %s%s", candidate_id, state, reviewer,
             f" (note: {note})" if note else "")
    with s.read() as conn:
        return candidate_with_history(conn, candidate_id)


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
    reviewer = s.access.signed_in(request)
    if reviewer is None:
        return s.render(request, "refused.html", 401, back=back,
                        reason="reviewing needs the token: enter it first")
    cand = await run_in_threadpool(apply_review, s, cid, str(form.get("status", "")),
                                   str(form.get("note") or "") or None, reviewer)
    return RedirectResponse(with_message(back, f"candidate {cid} is now {cand['status']}"), 303)


async def api_review(request: Request):
    s = site(request)
    reviewer, refused = s.access.bearer(request)
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
                                   body.get("status"), body.get("note"), reviewer)
    return JSONResponse(cand)


ROUTES = [
    Route("/candidates/{candidate_id:int}/review", review_form, methods=["POST"]),
    Route("/api/candidates/{candidate_id:int}", api_review, methods=["POST"]),
]
