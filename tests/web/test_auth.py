"""Who may review: the reviewers' token file and the session cookie naming who signed in."""

from __future__ import annotations

import pytest


def test_reviewers_file(tmp_path):
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.web.auth import read_reviewers

    assert read_reviewers(None) is None
    one = tmp_path / "single"
    one.write_text("  bare-token-0123  \n")
    assert read_reviewers(one) == {"anonymous": "bare-token-0123"}
    many = tmp_path / "many"
    many.write_text("# reviewers\nalice:token-of-alice\n\nbob.smith@obs : token-of-bob\n")
    assert read_reviewers(many) == {"alice": "token-of-alice", "bob.smith@obs": "token-of-bob"}
    for text, why in (("alice:token-of-alice\nbare-token-0123\n", "'name:token' lines"),
                      ("alice:short\n", "8 characters"), ("al ice:token-of-alice\n", "reviewer name"),
                      ("alice:token-of-alice\nalice:token-of-bob1\n", "each reviewer name and each token once"),
                      ("alice:token-of-alice\nbob:token-of-alice\n", "each reviewer name and each token once"),
                      ("# nobody\n", "a token"), ("abc\n", "8 characters")):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=why) as err:
            read_reviewers(bad)
        assert "web.token_file" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="readable"):
        read_reviewers(tmp_path / "missing")


def test_cookie_names_the_reviewer_and_is_worth_nothing_without_the_token():
    from starlette.requests import Request

    from dsa110_contimg.web.auth import COOKIE, Access

    access = Access({"alice": "token-of-alice", "bob": "token-of-bob"})

    def request(cookie=None, bearer=None):
        headers = []
        if cookie is not None:
            headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
        if bearer is not None:
            headers.append((b"authorization", f"Bearer {bearer}".encode()))
        return Request({"type": "http", "headers": headers})

    alice = access.session_value("alice")
    assert alice.startswith("alice:") and "token-of-alice" not in alice
    assert access.signed_in(request(alice)) == "alice"
    assert access.signed_in(request("bob:" + alice.split(":", 1)[1])) is None    # another's MAC
    assert access.signed_in(request("carol:" + "0" * 64)) is None
    assert access.signed_in(request()) is None
    assert access.bearer(request(bearer="token-of-bob")) == ("bob", None)
    assert access.bearer(request(bearer="token-of-nobody"))[1][0] == 403
    assert access.bearer(request())[1][0] == 401
    # a changed token invalidates the cookies made with the old one
    assert Access({"alice": "new-token-of-alice"}).signed_in(request(alice)) is None
    assert Access(None).bearer(request(bearer="token-of-bob"))[1][0] == 403
