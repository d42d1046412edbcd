"""Sign-in with OpenID Connect, attacked as a network attacker or a malicious user would
(issue 12): the full authorization-code flow with PKCE against a real provider (oidc-provider,
driven through its login form over HTTP), then tampered state, a replayed code, a wrong nonce,
an unlisted user, an expired session, logout, cookie flags, an open redirect, the serve
command's bind rule, and the SMART on FHIR launch (the same provider as the EHR's authorization
server, a small FHIR server holding a test record)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest_service import TEST_HOSTS, csrf_client_class, make_settings, write_api_keys
from tests.oidc_provider import PUBLIC_CLIENT_ID, Provider, running_provider, sign_in

GIST = {"histology": "gist", "primary_site": "stomach", "pdgfra_mutation": "d842v",
        "metastasis": "M1"}


def save_case(c: TestClient) -> Any:
    from sarcoma_cds.interfaces.web.forms import form_values

    return c.post("/cases", data=form_values(GIST), follow_redirects=False)


def oidc_settings(tmp_path: Path, oidc: Provider, **kw: Any) -> Any:
    from sarcoma_cds.interfaces.api.settings import Settings

    env = oidc.env()
    s = Settings.from_env({**env, "SARCOMA_CDS_DATA_DIR": str(tmp_path / "data")})
    s.allowed_hosts = TEST_HOSTS  # (the test clients' host names; issue 12 Host allow-list)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def make_client(settings: Any, base_url: str = "http://testserver") -> TestClient:
    """A browser-like client: its form posts carry the page's CSRF token (issue 12)."""
    from sarcoma_cds.interfaces.api.app import create_app

    client: TestClient = csrf_client_class()(create_app(settings), base_url=base_url)
    return client


def start(c: TestClient, next_url: str = "/cases") -> str:
    """Begin a sign-in: the app's redirect to the provider's authorization endpoint."""
    r = c.get("/login", params={"next": next_url}, follow_redirects=False)
    assert r.status_code == 302, r.text
    return str(r.headers["location"])


def session_cookie(c: TestClient) -> str | None:
    return c.cookies.get("sarcoma-session") or c.cookies.get("__Host-sarcoma-session")


def signed_in(c: TestClient, user: str, next_url: str = "/cases") -> Any:
    base = str(c.base_url).rstrip("/")
    back = sign_in(start(c, next_url), user, base + "/auth/callback")
    return c.get(back, follow_redirects=False)


def sessions_of(c: TestClient) -> int:
    ident: Any = c.app.state.identity  # type: ignore[attr-defined]
    return int(ident.sessions.count())


@pytest.fixture
def app(tmp_path: Path, oidc: Provider) -> Any:
    with make_client(oidc_settings(tmp_path, oidc)) as c:
        yield c


def test_anonymous_is_sent_to_sign_in(app: TestClient) -> None:
    r = app.get("/cases?x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/cases%3Fx%3D1"
    authz = start(app)
    q = parse_qs(urlsplit(authz).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["response_type"] == ["code"] and q["state"][0] and q["nonce"][0]
    assert "code_verifier" not in authz  # (the verifier never leaves the server and cookie)


def test_full_code_flow_then_a_decision_under_the_signed_in_name(app: TestClient) -> None:
    r = signed_in(app, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/cases"
    page = app.get("/cases")
    assert page.status_code == 200 and "Signed in as <strong>Alice Clinician</strong>" in page.text
    assert 'action="/logout"' in page.text
    r = save_case(app)
    assert r.status_code == 303, r.text
    case = r.headers["location"]
    assert "Recorded by <strong>Alice Clinician</strong>" in app.get(case).text
    # a typed author name is ignored: the decision is the signed-in user's
    r = app.post(case + "/decision", data={"outcome": "accepted", "clinician": "Dr Mallory"},
                 follow_redirects=False)
    assert r.status_code == 303
    text = app.get(case).text
    assert "Alice Clinician (oidc:alice)" in text and "Dr Mallory" not in text


def test_public_client_with_pkce_signs_in(tmp_path: Path, oidc: Provider) -> None:
    s = oidc_settings(tmp_path, oidc, oidc_client_id=PUBLIC_CLIENT_ID, oidc_client_secret=None)
    with make_client(s) as c:
        assert signed_in(c, "victor").status_code == 303
        assert "Victor Viewer" in c.get("/cases").text


def _with_query(url: str, **over: str) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(over)
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_tampered_state_is_refused(app: TestClient) -> None:
    back = sign_in(start(app), "alice", "http://testserver/auth/callback")
    r = app.get(_with_query(back, state="attacker-chosen"), follow_redirects=False)
    assert r.status_code == 400 and "Sign-in failed" in r.text and "Traceback" not in r.text
    assert session_cookie(app) is None and sessions_of(app) == 0


def test_tampered_state_cookie_is_refused(app: TestClient) -> None:
    back = sign_in(start(app), "alice", "http://testserver/auth/callback")
    value = app.cookies["sarcoma-signin"]
    app.cookies.clear()
    app.cookies.set("sarcoma-signin", value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB"))
    r = app.get(back, follow_redirects=False)
    assert r.status_code == 400 and session_cookie(app) is None


def test_callback_in_another_browser_is_refused(app: TestClient, tmp_path: Path,
                                                oidc: Provider) -> None:
    """Login CSRF: an attacker's own code, sent to a victim, finds no sign-in begun there."""
    back = sign_in(start(app), "mallory", "http://testserver/auth/callback")
    with make_client(oidc_settings(tmp_path, oidc)) as victim:
        r = victim.get(back, follow_redirects=False)
        assert r.status_code == 400 and session_cookie(victim) is None


def test_replayed_code_is_refused(app: TestClient) -> None:
    back = sign_in(start(app), "alice", "http://testserver/auth/callback")
    state_cookie = app.cookies["sarcoma-signin"]
    assert app.get(back, follow_redirects=False).status_code == 303
    app.cookies.clear()
    app.cookies.set("sarcoma-signin", state_cookie)  # even with the pending sign-in restored
    r = app.get(back, follow_redirects=False)
    assert r.status_code == 400 and session_cookie(app) is None
    assert sessions_of(app) == 1


def test_wrong_nonce_is_refused(app: TestClient, tmp_path: Path) -> None:
    """A state cookie re-signed (with the server's own secret) around another nonce: the ID
    token's nonce no longer matches and the sign-in is refused."""
    from sarcoma_cds.interfaces.api.identity.oidc import Pending, StateCookie
    from sarcoma_cds.interfaces.api.secret_key import load_secret_key

    back = sign_in(start(app), "alice", "http://testserver/auth/callback")
    cookies = StateCookie(load_secret_key(tmp_path / "data"))
    p = cookies.load(app.cookies["sarcoma-signin"])
    app.cookies.clear()
    app.cookies.set("sarcoma-signin", cookies.dump(Pending(p.state, "another-nonce",
                                                           p.verifier, p.next)))
    r = app.get(back, follow_redirects=False)
    assert r.status_code == 400 and session_cookie(app) is None and sessions_of(app) == 0


def test_unlisted_user_is_refused(app: TestClient) -> None:
    r = signed_in(app, "mallory")
    assert r.status_code == 403 and "does not admit that account" in r.text
    assert session_cookie(app) is None and sessions_of(app) == 0
    assert app.get("/cases", follow_redirects=False).status_code == 303


def test_expired_session_is_refused(app: TestClient) -> None:
    assert signed_in(app, "alice").status_code == 303
    token = session_cookie(app)
    assert token and app.get("/cases").status_code == 200
    ident: Any = app.app.state.identity  # type: ignore[attr-defined]
    ident.sessions.expire(token, datetime.now(UTC) - timedelta(seconds=1))
    r = app.get("/cases", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert sessions_of(app) == 0  # (an expired row is deleted when it is presented)


def test_logout_deletes_the_session(app: TestClient) -> None:
    assert signed_in(app, "alice").status_code == 303
    token = session_cookie(app)
    assert sessions_of(app) == 1
    r = app.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and sessions_of(app) == 0
    assert "sarcoma-session=" in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    app.cookies.clear()
    app.cookies.set("sarcoma-session", token or "")  # the stolen cookie is worthless now
    assert app.get("/cases", follow_redirects=False).status_code == 303


def _provider_asks_to_log_in(browser: httpx.Client, authorize_url: str) -> bool:
    """Whether the provider, for this browser (its cookies), shows its login form again."""
    url = authorize_url
    for _ in range(10):
        r = browser.get(url)
        if r.status_code not in (302, 303):
            return 'name="prompt" value="login"' in r.text
        url = urljoin(url, r.headers["location"])
        if url.startswith("http://testserver/"):
            return False  # (straight back to the app: the provider session is alive)
    raise AssertionError("the provider kept redirecting")


def test_sign_out_at_the_provider(app: TestClient, oidc: Provider) -> None:
    """RP-initiated logout: the app deletes its session, then sends the browser to the
    provider's end_session_endpoint with id_token_hint and post_logout_redirect_uri; the
    provider's own session ends, so the next sign-in asks for the password again."""
    import jwt as pyjwt

    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        back = sign_in(start(app), "alice", "http://testserver/auth/callback", browser)
        assert app.get(back, follow_redirects=False).status_code == 303
        assert not _provider_asks_to_log_in(browser, start(app))  # (signed in at the provider)
        r = app.post("/logout", follow_redirects=False)
        assert r.status_code == 303 and sessions_of(app) == 0
        end = r.headers["location"]
        assert end.startswith(oidc.issuer + "/session/end?")
        q = parse_qs(urlsplit(end).query)
        assert q["post_logout_redirect_uri"] == ["http://testserver/"]
        assert q["client_id"] == ["sarcoma-cds"]
        hint = pyjwt.decode(q["id_token_hint"][0], options={"verify_signature": False})
        assert hint["sub"] == "alice" and hint["aud"] == "sarcoma-cds"
        page = browser.get(end)  # the provider's "sign out?" page, then its form
        assert page.status_code == 200, page.text[:300]
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text)
        assert action and xsrf
        done = browser.post(urljoin(end, unescape(action.group(1))),
                            data={"xsrf": xsrf.group(1), "logout": "yes"})
        assert done.status_code == 303 and done.headers["location"] == "http://testserver/"
        assert _provider_asks_to_log_in(browser, start(app))  # the provider forgot alice


def test_id_token_is_stored_sealed(app: TestClient) -> None:
    """The ID token kept for the sign-out hint is encrypted with the data keys (a reader of
    the database gets no token)."""
    from sqlalchemy import select

    from sarcoma_cds.store.models import WebSession

    assert signed_in(app, "alice").status_code == 303
    services: Any = app.app.state.services  # type: ignore[attr-defined]
    with services.store.sessions() as s:
        (ctx,) = s.scalars(select(WebSession.context)).all()
    assert ctx["id_token"].startswith("fernet:") and "eyJ" not in ctx["id_token"]


def test_sign_out_is_local_when_the_provider_offers_none(tmp_path: Path) -> None:
    with running_provider(RP_LOGOUT="0") as p, make_client(oidc_settings(tmp_path, p)) as c:
        assert signed_in(c, "alice").status_code == 303
        r = c.post("/logout", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert sessions_of(c) == 0 and c.get("/cases", follow_redirects=False).status_code == 303


def test_a_new_sign_in_replaces_the_previous_session(app: TestClient) -> None:
    assert signed_in(app, "alice").status_code == 303
    first = session_cookie(app)
    assert signed_in(app, "victor").status_code == 303
    assert sessions_of(app) == 1 and session_cookie(app) != first
    assert "Victor Viewer" in app.get("/cases").text


def test_idle_session_ends(app: TestClient) -> None:
    """SARCOMA_CDS_SESSION_IDLE_MINUTES (default 60): a session unused that long is refused
    (and deleted) however long its lifetime; one used within it stays."""
    assert signed_in(app, "alice").status_code == 303
    token = session_cookie(app) or ""
    ident: Any = app.app.state.identity  # type: ignore[attr-defined]
    assert ident.sessions.idle == timedelta(minutes=60)
    ident.sessions.touch(token, datetime.now(UTC) - timedelta(minutes=59))
    assert app.get("/cases").status_code == 200
    ident.sessions.touch(token, datetime.now(UTC) - timedelta(minutes=61))
    r = app.get("/cases", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert sessions_of(app) == 0


def _last_seen(c: TestClient) -> datetime:
    from sqlalchemy import select

    from sarcoma_cds.store.models import WebSession

    services: Any = c.app.state.services  # type: ignore[attr-defined]
    with services.store.sessions() as s:
        (seen,) = s.scalars(select(WebSession.last_seen_at)).all()
    return seen


def test_last_use_is_written_at_most_once_a_minute(app: TestClient) -> None:
    assert signed_in(app, "alice").status_code == 303
    ident: Any = app.app.state.identity  # type: ignore[attr-defined]
    token = session_cookie(app) or ""
    recent = datetime.now(UTC) - timedelta(seconds=30)
    ident.sessions.touch(token, recent)
    before = _last_seen(app)
    for _ in range(3):
        assert app.get("/cases").status_code == 200
    assert _last_seen(app) == before  # (no write per request)
    ident.sessions.touch(token, datetime.now(UTC) - timedelta(seconds=90))
    assert app.get("/cases").status_code == 200
    assert _last_seen(app).replace(tzinfo=UTC) > recent.replace(tzinfo=UTC)


def test_idle_minutes_setting(tmp_path: Path, oidc: Provider) -> None:
    from sarcoma_cds.interfaces.api.settings import Settings

    s = Settings.from_env({**oidc.env(), "SARCOMA_CDS_SESSION_IDLE_MINUTES": "5",
                           "SARCOMA_CDS_DATA_DIR": str(tmp_path / "data")})
    assert s.session_idle_minutes == 5.0
    s.allowed_hosts = TEST_HOSTS
    with make_client(s) as c:
        assert c.app.state.identity.sessions.idle == timedelta(minutes=5)  # type: ignore[attr-defined]
    p = _serve(tmp_path, "--host", "0.0.0.0", **oidc.env(), SARCOMA_CDS_SESSION_IDLE_MINUTES="0")
    assert p.returncode == 2 and "SARCOMA_CDS_SESSION_IDLE_MINUTES" in p.stderr, p.stderr


def _set_groups(oidc: Provider, user: str, *groups: str) -> None:
    """Change the user's groups at the provider (as its administrator would)."""
    r = httpx.post(f"{oidc.issuer}/test/groups", params={"user": user, "groups": ",".join(groups)})
    assert r.status_code == 204


def test_roles_removed_at_the_provider_are_lost_at_the_next_sign_in(
        tmp_path: Path, oidc: Provider) -> None:
    from sarcoma_cds.interfaces.web.forms import form_values

    _set_groups(oidc, "carol", "sarcoma-clinicians")
    with make_client(oidc_settings(tmp_path, oidc)) as laptop:
        assert signed_in(laptop, "carol").status_code == 303
        assert save_case(laptop).status_code == 303  # a clinician
        ward: TestClient = csrf_client_class()(laptop.app, base_url="http://testserver")
        _set_groups(oidc, "carol", "sarcoma-viewers")  # the clinician group removed
        assert signed_in(ward, "carol").status_code == 303
        r = ward.post("/cases", data=form_values(GIST), follow_redirects=False)
        assert r.status_code == 403 and "clinician role" in r.text
        # the session still open in the other browser lost the role too
        r = laptop.post("/cases", data=form_values(GIST), follow_redirects=False)
        assert r.status_code == 403 and "clinician role" in r.text
        assert laptop.get("/cases").status_code == 200  # (still a viewer)
        _set_groups(oidc, "carol")  # removed from every allowed group
        assert signed_in(ward, "carol").status_code == 403
        assert laptop.get("/cases", follow_redirects=False).status_code == 303  # signed out
        assert sessions_of(laptop) == 0


def test_session_cookie_is_not_replayable_from_another_origin(app: TestClient) -> None:
    """A page on another origin that makes the signed-in browser post (the cookie rides along
    when SameSite allows it, e.g. a top-level form post in an old browser) is refused by the
    Origin check, and without the page's CSRF token; nothing is stored and the session lives."""
    from sarcoma_cds.interfaces.web.forms import form_values

    assert signed_in(app, "alice").status_code == 303
    services: Any = app.app.state.services  # type: ignore[attr-defined]
    before = services.store.page(limit=100)[0]
    plain = TestClient(app.app)  # (no CSRF token added: the attacker's page cannot read it)
    plain.cookies.set("sarcoma-session", session_cookie(app) or "")
    for headers in ({"Origin": "https://evil.example"}, {}):
        r = plain.post("/cases", data=form_values(GIST), headers=headers, follow_redirects=False)
        assert r.status_code == 403, headers
    r = app.post("/cases", data=form_values(GIST), headers={"Origin": "https://evil.example"},
                 follow_redirects=False)
    assert r.status_code == 403  # (even with a token, from another origin)
    assert services.store.page(limit=100)[0] == before
    assert app.get("/cases").status_code == 200 and sessions_of(app) == 1


def test_sign_in_failed_page_offers_to_sign_in_again(app: TestClient) -> None:
    r = app.get("/auth/callback?code=x&state=y", follow_redirects=False)
    assert r.status_code == 400 and 'href="/login"' in r.text and "Sign in again" in r.text


def test_logout_is_post_only(app: TestClient) -> None:
    assert app.get("/logout").status_code == 405


def test_cookie_flags_over_http(app: TestClient) -> None:
    r = app.get("/login", follow_redirects=False)
    state = r.headers["set-cookie"]
    assert state.startswith("sarcoma-signin=") and "HttpOnly" in state
    assert "SameSite=lax" in state and "Path=/" in state and "Max-Age=600" in state
    back = sign_in(r.headers["location"], "alice", "http://testserver/auth/callback")
    r = app.get(back, follow_redirects=False)
    session = [h for h in r.headers.get_list("set-cookie") if h.startswith("sarcoma-session=")]
    assert session and "HttpOnly" in session[0] and "SameSite=lax" in session[0]
    assert "Max-Age=28800" in session[0]  # SARCOMA_CDS_SESSION_HOURS default: 8 hours
    token = session[0].split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 random bits


def test_cookie_flags_over_https(tmp_path: Path, oidc: Provider) -> None:
    s = oidc_settings(tmp_path, oidc, base_url="https://cds.test", session_hours=1.0)
    with make_client(s, base_url="https://cds.test") as c:
        r = c.get("/login", follow_redirects=False)
        state = r.headers["set-cookie"]
        assert state.startswith("__Host-sarcoma-signin=") and "Secure" in state
        back = sign_in(r.headers["location"], "alice", "https://cds.test/auth/callback")
        r = c.get(back, follow_redirects=False)
        cookie = next(h for h in r.headers.get_list("set-cookie") if "sarcoma-session=" in h)
        assert cookie.startswith("__Host-sarcoma-session=") and "Secure" in cookie
        assert "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
        assert "Max-Age=3600" in cookie
        assert "Alice Clinician" in c.get("/cases").text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_next_is_never_an_open_redirect(app: TestClient, target: str) -> None:
    r = signed_in(app, "alice", next_url=target)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_provider_error_is_refused_without_detail(app: TestClient) -> None:
    start(app)
    r = app.get("/auth/callback?error=access_denied&state=x", follow_redirects=False)
    assert r.status_code == 400 and "access_denied" not in r.text


# ------------------------------------------------------------------ modes and the bind rule

def test_keys_without_sign_in_close_patient_pages(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.app import create_app

    s = make_settings(tmp_path, api_keys_file=write_api_keys(tmp_path, {"ward": "k-ward"}))
    with TestClient(create_app(s)) as c:
        for path in ("/cases", "/patient", "/board", "/import"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 403 and "Sign-in is not configured" in r.text, path
        # an API key does not open the web pages either
        r = c.get("/cases", headers={"Authorization": "Bearer k-ward"})
        assert r.status_code == 403
        assert c.get("/").status_code == 200 and c.get("/search?q=imatinib").status_code == 200


def test_sign_in_without_keys_closes_the_rest_api(app: TestClient) -> None:
    r = app.post("/recommendations", json=GIST)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem")
    assert signed_in(app, "alice").status_code == 303
    assert app.post("/recommendations", json=GIST).status_code == 401  # a session is not a key


def test_local_mode_is_the_single_local_user(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.app import create_app

    with TestClient(create_app(make_settings(tmp_path))) as c:
        page = c.get("/cases")
        assert page.status_code == 200 and "Signed in as <strong>local user" in page.text
        assert 'action="/logout"' not in page.text
        assert c.get("/audit").status_code == 401  # the audit trail still needs a key
        assert "No sign-in needed" in c.get("/login").text


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "sarcoma-cds"
    e = {k: v for k, v in os.environ.items() if not k.startswith("SARCOMA_CDS_")}
    e.update(SARCOMA_CDS_DATA_DIR=str(tmp_path), **env)
    return subprocess.run([str(exe), "serve", "--port", "0", *args], env=e,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])
def test_serve_refuses_a_public_address_without_sign_in_or_keys(tmp_path: Path,
                                                                  host: str) -> None:
    p = _serve(tmp_path, "--host", host)
    assert p.returncode == 2, p.stderr
    assert f"refusing to listen on {host}" in p.stderr
    assert "SARCOMA_CDS_OIDC_ISSUER" in p.stderr and "SARCOMA_CDS_API_KEYS" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("env, names", [
    ({"SARCOMA_CDS_OIDC_ISSUER": "https://id.example.org"}, "SARCOMA_CDS_OIDC_CLIENT_ID"),
    ({"SARCOMA_CDS_OIDC_ISSUER": "https://id.example.org",
      "SARCOMA_CDS_OIDC_CLIENT_ID": "x"}, "SARCOMA_CDS_OIDC_ALLOWED"),
    ({"SARCOMA_CDS_OIDC_ISSUER": "https://id.example.org", "SARCOMA_CDS_OIDC_CLIENT_ID": "x",
      "SARCOMA_CDS_OIDC_ALLOWED": "*", "SARCOMA_CDS_OIDC_ROLES": "surgeon=g"}, "surgeon"),
])
def test_serve_refuses_incomplete_sign_in_settings(tmp_path: Path, env: dict[str, str],
                                                   names: str) -> None:
    p = _serve(tmp_path, "--host", "0.0.0.0", **env)
    assert p.returncode == 2 and names in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_principal_author_names() -> None:
    from sarcoma_cds.interfaces.api.identity.principal import Principal, local_user

    assert Principal("oidc", "alice", "Alice C").author == "Alice C (oidc:alice)"
    assert Principal("oidc", "alice", "alice").author == "oidc:alice"
    assert re.match(r"local user", local_user().author)


# ------------------------------------------------------------------ SMART on FHIR launch

class _Fhir(BaseHTTPRequestHandler):
    """A small FHIR server holding one test record (Patient/p1), which needs a bearer token,
    and whose SMART configuration names the test provider as its authorization server."""

    resources: ClassVar[list[dict[str, Any]]] = []
    smart: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *a: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        if body is not None:
            self.wfile.write(json.dumps(body).encode())

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.path, auth))
        if self.path == "/fhir/.well-known/smart-configuration":
            return self._send(200, self.smart)
        if not auth.startswith("Bearer ") or len(auth) < 20:
            return self._send(401)
        path = self.path[len("/fhir/"):]
        if path == "Practitioner/alice":
            return self._send(200, {"resourceType": "Practitioner", "id": "alice",
                                    "name": [{"given": ["Alice"], "family": "Clinician",
                                              "prefix": ["Dr"]}]})
        if path == "Patient/p1":
            return self._send(200, next(r for r in self.resources
                                        if r["resourceType"] == "Patient"))
        rtype, _, query = path.partition("?")
        if "patient=p1" not in query:
            return self._send(404)
        found = [{"resource": r} for r in self.resources if r["resourceType"] == rtype]
        return self._send(200, {"resourceType": "Bundle", "type": "searchset", "entry": found})


@pytest.fixture(scope="module")
def smart_idp() -> Iterator[Provider]:
    with running_provider(ID_TOKEN_CLAIMS="1") as p:
        yield p


@pytest.fixture
def fhir(smart_idp: Provider) -> Iterator[str]:
    from tests.conftest_service import load_fixture_bundle

    bundle = load_fixture_bundle("gist-pdgfra-d842v")
    _Fhir.resources = [e["resource"] for e in bundle["entry"]]
    i = smart_idp.issuer
    _Fhir.smart = {"issuer": i, "jwks_uri": i + "/jwks", "authorization_endpoint": i + "/auth",
                   "token_endpoint": i + "/token", "code_challenge_methods_supported": ["S256"],
                   "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                                    "sso-openid-connect", "context-ehr-patient"]}
    _Fhir.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fhir"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def smart_app(tmp_path: Path, fhir: str) -> Iterator[TestClient]:
    s = make_settings(tmp_path, smart_issuers=fhir, smart_client_id="sarcoma-cds-smart")
    with make_client(s) as c:
        yield c


def test_ehr_launch_reads_the_patient_and_knows_the_clinician(smart_app: TestClient,
                                                              fhir: str) -> None:
    r = smart_app.get("/smart/launch", params={"iss": fhir, "launch": "launch-123"},
                      follow_redirects=False)
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["scope"] == ["launch openid fhirUser patient/*.rs"] and q["aud"] == [fhir]
    assert q["launch"] == ["launch-123"] and q["code_challenge_method"] == ["S256"]
    back = sign_in(r.headers["location"], "alice", "http://testserver/smart/callback")
    page = smart_app.get(back, follow_redirects=False)
    assert page.status_code == 200, page.text[:400]
    assert "GIST: recurrent or metastatic" in page.text and "SMART on FHIR launch" in page.text
    # (the scopes give no profile: the user is named by the fhirUser resource)
    assert "Signed in as <strong>Dr Alice Clinician</strong>" in page.text
    tokens = {auth for path, auth in _Fhir.seen if "smart-configuration" not in path}
    assert ("/fhir/Practitioner/alice" in {p for p, _ in _Fhir.seen})
    assert len(tokens) == 1 and next(iter(tokens)).startswith("Bearer ")  # the launch's token
    services: Any = smart_app.app.state.services  # type: ignore[attr-defined]
    items, _ = services.store.page(limit=10, interface="web")
    assert items[-1]["caller"] == "Dr Alice Clinician (smart:Practitioner/alice)"
    assert smart_app.get("/cases").status_code == 200  # the session opens the pages


def test_standalone_launch_asks_for_a_patient(smart_app: TestClient, fhir: str) -> None:
    r = smart_app.get("/smart/launch", params={"iss": fhir}, follow_redirects=False)
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["scope"] == ["launch/patient openid fhirUser patient/*.rs"] and "launch" not in q
    back = sign_in(r.headers["location"], "victor", "http://testserver/smart/callback")
    page = smart_app.get(back)
    assert page.status_code == 200 and "Practitioner/victor" in page.text  # (no such resource)


def test_launch_from_a_server_not_on_the_allow_list_fetches_nothing(
        smart_app: TestClient, fhir: str) -> None:
    for iss in (fhir + "x", fhir.replace("127.0.0.1", "localhost"), "http://169.254.169.254/"):
        r = smart_app.get("/smart/launch", params={"iss": iss, "launch": "l"},
                          follow_redirects=False)
        assert r.status_code == 403 and "Launch refused" in r.text
    assert _Fhir.seen == []


def test_launch_with_tampered_state_is_refused(smart_app: TestClient, fhir: str) -> None:
    r = smart_app.get("/smart/launch", params={"iss": fhir, "launch": "l"},
                      follow_redirects=False)
    back = sign_in(r.headers["location"], "alice", "http://testserver/smart/callback")
    r = smart_app.get(_with_query(back, state="forged"), follow_redirects=False)
    assert r.status_code == 400 and session_cookie(smart_app) is None
    assert not [p for p, _ in _Fhir.seen if "Patient" in p]  # no record read


# ------------------------------------------------------------------ the CDS card's smart link

EHR_ISS = "https://ehr.example.org"


@pytest.fixture
def card_app(tmp_path: Path, fhir: str) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """SMART launch from the test FHIR server, and two CDS clients: the EHR of that FHIR server
    (``fhir_servers`` covers it) and another EHR (whose cards may not open there)."""
    from tests.conftest_service import Signer

    ehr, other = Signer(iss=EHR_ISS), Signer(iss="https://other-ehr.example.org")
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": ehr.iss, "jwks": ehr.jwks, "fhir_servers": [fhir]},
        {"iss": other.iss, "jwks": other.jwks, "fhir_servers": ["http://127.0.0.1:9/fhir"]}]}))
    s = make_settings(tmp_path, smart_issuers=fhir, smart_client_id="sarcoma-cds-smart",
                      clients_file=clients, dev_mode=True)
    with make_client(s) as c:
        yield c, {"ehr": ehr, "other": other}


def card_for(c: TestClient, signer: Any, patient: str) -> dict[str, Any]:
    """A treatment card the CDS service served to ``signer`` for ``patient`` (prefetched)."""
    from tests.test_cds_hooks import hook_request

    req = hook_request("patient-view")
    if patient != "p1":
        req = json.loads(json.dumps(req).replace("Patient/p1", f"Patient/{patient}"))
        req["context"]["patientId"] = patient
        req["prefetch"]["patient"]["id"] = patient
    path = "/cds-services/sarcoma-treatment"
    tok = signer.token("http://testserver" + path)
    r = c.post(path, json=req, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    card: dict[str, Any] = r.json()["cards"][0]
    return card


def launch_from_card(c: TestClient, fhir: str, patient: str, app_context: str) -> Any:
    """The EHR launches the app from the card's smart link: its launch context (token
    response) names the patient open in the EHR and gives the card's appContext back."""
    import base64

    ctx = json.dumps({"patient": patient, "appContext": app_context}).encode()
    launch = "ctx:" + base64.urlsafe_b64encode(ctx).decode().rstrip("=")
    r = c.get("/smart/launch", params={"iss": fhir, "launch": launch}, follow_redirects=False)
    assert r.status_code == 302, r.text
    back = sign_in(r.headers["location"], "alice", "http://testserver/smart/callback")
    return c.get(back, follow_redirects=False)


def smart_link(card: dict[str, Any]) -> dict[str, Any]:
    link: dict[str, Any] = next(x for x in card["links"] if x["type"] == "smart")
    return link


def test_card_smart_link_opens_the_record_it_was_made_from(
        card_app: tuple[TestClient, dict[str, Any]], fhir: str) -> None:
    c, signers = card_app
    card = card_for(c, signers["ehr"], "p1")
    link = smart_link(card)
    assert link["url"] == "http://testserver/smart/launch"
    ctx = json.loads(link["appContext"])
    audit_id = card["links"][0]["url"].rsplit("/", 1)[1]
    assert ctx["case"] == audit_id and ctx["client"] == EHR_ISS and ctx["sig"]
    assert "p1" not in link["appContext"]  # (the patient is bound by the signature only)
    _Fhir.seen.clear()
    r = launch_from_card(c, fhir, "p1", link["appContext"])
    assert r.status_code == 303 and r.headers["location"] == f"/cases/{audit_id}", r.text[:300]
    page = c.get(r.headers["location"])
    assert page.status_code == 200
    assert "Signed in as <strong>Dr Alice Clinician</strong>" in page.text
    assert "GIST: recurrent or metastatic" in page.text
    assert not [p for p, _ in _Fhir.seen if "patient=" in p]  # the record was not read again


def test_card_of_another_patient_is_never_opened(
        card_app: tuple[TestClient, dict[str, Any]], fhir: str) -> None:
    """appContext copied from patient p2's card into a launch for p1: p2's record is not
    shown; p1's record is read afresh and the page says why."""
    c, signers = card_app
    other_patient = card_for(c, signers["ehr"], "p2")
    other_id = other_patient["links"][0]["url"].rsplit("/", 1)[1]
    r = launch_from_card(c, fhir, "p1", smart_link(other_patient)["appContext"])
    assert r.status_code == 200, r.text[:300]
    assert other_id not in r.text and "location" not in r.headers
    assert "made for another patient" in r.text and "read from the EHR afresh" in r.text
    assert "GIST: recurrent or metastatic" in r.text  # p1's own fresh result


@pytest.mark.parametrize("attack", ["other-case", "other-client", "not-served-here", "junk"])
def test_forged_or_foreign_card_context_is_refused(
        card_app: tuple[TestClient, dict[str, Any]], fhir: str, attack: str) -> None:
    c, signers = card_app
    mine = json.loads(smart_link(card_for(c, signers["ehr"], "p1"))["appContext"])
    theirs = json.loads(smart_link(card_for(c, signers["other"], "p1"))["appContext"])
    forged = {
        # a signature of one record stuck on another record's id
        "other-case": {**mine, "case": theirs["case"]},
        # another EHR's record claimed for this EHR's client
        "other-client": {**theirs, "client": EHR_ISS},
        # a card genuinely served to the other EHR, launched from this EHR's FHIR server
        "not-served-here": theirs,
        "junk": "{not json",
    }[attack]
    value = forged if isinstance(forged, str) else json.dumps(forged)
    r = launch_from_card(c, fhir, "p1", value)
    assert r.status_code == 200 and "location" not in r.headers, r.text[:300]
    assert theirs["case"] not in r.text and "afresh" in r.text


def test_smart_not_configured(app: TestClient) -> None:
    assert app.get("/smart/launch?iss=http://x").status_code == 404


def test_sessions_on_postgresql() -> None:
    """The session store on PostgreSQL (shared by every replica): made, read, expired, ended."""
    from tests.conftest import require_service

    url = os.environ.get("SARCOMA_CDS_TEST_PG_URL", "")
    require_service(bool(url), "PostgreSQL (SARCOMA_CDS_TEST_PG_URL)")
    from sarcoma_cds.store import AuditStore
    from sarcoma_cds.store.sessions import WebSessionStore

    store = AuditStore.open(url)
    try:
        s = WebSessionStore(store.sessions)
        token = s.create(kind="oidc", subject="pg-user", display_name="PG User",
                         roles=["viewer"], lifetime=timedelta(hours=1))
        row = s.get(token)
        assert row is not None and row.roles == ("viewer",) and row.expires_at.tzinfo
        assert s.get(token + "x") is None
        s.expire(token, datetime.now(UTC) - timedelta(seconds=1))
        assert s.get(token) is None and not s.delete(token)
        token = s.create(kind="smart", subject="p", display_name="P", roles=["clinician"],
                         lifetime=timedelta(hours=1), context={"patient": "p1"})
        assert s.delete(token) and s.get(token) is None
        token = s.create(kind="oidc", subject="pg-user", display_name="PG User",
                         roles=["clinician", "viewer"], lifetime=timedelta(hours=1))
        assert s.reconcile("oidc", "pg-user", ["viewer"]) == 1
        row = s.get(token)
        assert row is not None and row.roles == ("viewer",)
        s.touch(token, datetime.now(UTC) - s.idle - timedelta(seconds=1))
        assert s.get(token) is None  # idle too long
        token = s.create(kind="oidc", subject="pg-user", display_name="PG User",
                         roles=["viewer"], lifetime=timedelta(hours=1))
        assert s.reconcile("oidc", "pg-user", None) == 1 and s.get(token) is None
        popped = s.create(kind="oidc", subject="pg-user", display_name="PG User",
                          roles=["viewer"], lifetime=timedelta(hours=1), context={"id_token": "x"})
        gone = s.pop(popped)
        assert gone is not None and gone.context == {"id_token": "x"} and s.pop(popped) is None
    finally:
        store.close()
