"""Web hardening (issue 12, hardening 1): security headers, Host allow-list, Origin check, CSRF.

Every attack is sent as a browser or an attacker's page would send it, over real HTTP to the
real application (FastAPI's TestClient) with its real SQLite audit store, and the refusal and
its effect (nothing stored) are asserted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.interfaces.api.settings import Settings
from tests.conftest_service import write_api_keys

LOCAL = "http://127.0.0.1:8000"  # the embedded default: loopback, no configuration
EVIL = "https://evil.example"
HTML = {"accept": "text/html"}
GIST = {
    "histology": "gist", "primary_site": "stomach", "size_cm": "8", "mitotic_rate_per_5mm2": "6",
    "metastasis": "M0", "resectability": "unresectable", "disease_status": "primary",
    "pdgfra_mutation": "d842v",
}
GIST_JSON = {**GIST, "size_cm": 8, "mitotic_rate_per_5mm2": 6}


def _app(tmp_path: Path, **kw: Any) -> Any:
    return create_app(Settings(data_dir=tmp_path / "data", **kw))  # production defaults


@pytest.fixture
def local(tmp_path: Path) -> Any:
    with TestClient(_app(tmp_path), base_url=LOCAL) as c:
        yield c


def _count(client: TestClient) -> int:
    return int(client.app.state.services.store.count())  # type: ignore[attr-defined]


def _token(client: TestClient) -> str:
    page = client.get("/patient", headers=HTML)
    m = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert m, "the patient form carries no CSRF token"
    return m.group(1)


# ------------------------------------------------------------------ headers

def test_pages_send_csp_with_nonce_and_no_inline_script(local: TestClient) -> None:
    r = local.get("/patient", headers=HTML)
    csp = r.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp)
    assert script_src and "'unsafe-inline'" not in script_src.group(1)
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "'unsafe-inline'" not in re.search(r"style-src ([^;]+)", csp).group(1)  # type: ignore
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # http base URL: no HSTS
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)  # type: ignore[union-attr]
    # every page's scripts are files of the service, or carry this response's nonce
    for path in ("/", "/patient", "/import", "/cases", "/board", "/api/docs", "/api/redoc"):
        page = local.get(path, headers=HTML)
        nonce = re.search(r"'nonce-([^']+)'",  # type: ignore[union-attr]
                          page.headers["content-security-policy"]).group(1)
        for tag in re.findall(r"<script\b[^>]*>", page.text):
            assert "src=" in tag or f'nonce="{nonce}"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", page.text), path  # no inline event handlers


def test_patient_data_is_never_cached_static_files_may_be(local: TestClient) -> None:
    r = local.post("/cases", data={**GIST, "csrf_token": _token(local)}, follow_redirects=False)
    assert r.status_code == 303
    case = r.headers["location"]
    for resp in (local.get(case, headers=HTML), local.get(case + "/board", headers=HTML),
                 local.post("/recommendations", json=GIST_JSON), local.get("/cases", headers=HTML),
                 local.get(f"/audit/{case.rsplit('/', 1)[1]}")):
        assert resp.headers.get("cache-control") == "no-store", resp.url
        assert resp.headers.get("cross-origin-resource-policy") == "same-origin", resp.url
    for path in ("/static/web/web.css", "/search"):  # (not "/": it lists saved cases)
        assert "no-store" not in local.get(path).headers.get("cache-control", ""), path


def test_hsts_and_framing_follow_the_settings(tmp_path: Path) -> None:
    s = Settings.from_env({"SARCOMA_CDS_DATA_DIR": str(tmp_path / "d"),
                           "SARCOMA_CDS_BASE_URL": "https://cds.example.org",
                           "SARCOMA_CDS_FRAME_ANCESTORS": "https://ehr.example.org"})
    with TestClient(create_app(s), base_url="https://cds.example.org") as c:
        r = c.get("/patient", headers=HTML)
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert "frame-ancestors https://ehr.example.org" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers
    cookie = r.headers["set-cookie"]  # framed cross-site by the EHR: SameSite=None, Secure
    assert cookie.startswith("__Host-sarcoma_csrf=") and "Secure" in cookie
    assert "SameSite=None" in cookie and "HttpOnly" in cookie


# ------------------------------------------------------------------ Host allow-list

def test_dns_rebinding_host_is_refused(tmp_path: Path) -> None:
    """A page on attacker.example whose name now resolves to 127.0.0.1 sends its own Host."""
    with TestClient(_app(tmp_path), base_url="http://attacker.example:8000") as c:
        r = c.get("/cases", headers=HTML)
        assert r.status_code == 400 and "Invalid host header" in r.text
        assert c.post("/recommendations", json=GIST_JSON).status_code == 400
        assert _count(c) == 0
    # TestClient's own name is not a production default either
    with TestClient(_app(tmp_path)) as c:
        assert c.get("/healthz").status_code == 400


def test_default_hosts_are_loopback_and_the_base_url(tmp_path: Path) -> None:
    app = _app(tmp_path, base_url="https://cds.example.org")
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "https://cds.example.org"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/healthz").status_code == 200, base
    s = Settings.from_env({"SARCOMA_CDS_ALLOWED_HOSTS": "cds.internal, cds.example.org"})
    assert s.hosts == ["cds.internal", "cds.example.org"]


# ------------------------------------------------------------------ Origin / Referer

def test_cross_site_text_plain_fetch_to_recommendations_is_refused(local: TestClient) -> None:
    """fetch('http://127.0.0.1:8000/recommendations', {method: 'POST', mode: 'no-cors',
    body: JSON.stringify(facts)}) from evil.example: a 'simple' request (text/plain), no
    preflight; today it is answered and audited."""
    import json

    body = json.dumps(GIST_JSON)
    r = local.post("/recommendations", content=body,
                   headers={"content-type": "text/plain;charset=UTF-8", "origin": EVIL})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert "cross-origin" in r.json()["detail"]
    # Referer only (Origin stripped by an old browser), and the opaque origin "null"
    assert local.post("/recommendations", content=body, headers={
        "content-type": "text/plain", "referer": EVIL + "/page"}).status_code == 403
    assert local.post("/recommendations", content=body, headers={
        "content-type": "text/plain", "origin": "null"}).status_code == 403
    # another port of the same host is another origin
    assert local.post("/recommendations", json=GIST_JSON,
                      headers={"origin": "http://127.0.0.1:8001"}).status_code == 403
    assert _count(local) == 0
    # the service's own pages, and clients that send no Origin, are served
    assert local.post("/recommendations", json=GIST_JSON,
                      headers={"origin": LOCAL}).status_code == 200
    assert local.post("/recommendations", json=GIST_JSON).status_code == 200


def test_authorization_header_requests_are_not_origin_checked(tmp_path: Path) -> None:
    keys = write_api_keys(tmp_path, {"ehr": "k-123"})
    with TestClient(_app(tmp_path, api_keys_file=keys), base_url=LOCAL) as c:
        r = c.post("/recommendations", json=GIST_JSON,
                   headers={"origin": EVIL, "authorization": "Bearer k-123"})
        assert r.status_code == 200  # no ambient credential: a browser cannot add this header
        assert c.post("/recommendations", json=GIST_JSON,
                      headers={"origin": EVIL}).status_code == 403


# ------------------------------------------------------------------ CSRF

def test_cross_site_form_post_does_not_store_a_case(local: TestClient) -> None:
    """<form method=post action=http://127.0.0.1:8000/cases> on evil.example, auto-submitted:
    today it stores a case."""
    local.get("/patient", headers=HTML)  # the victim has visited the service (has its cookie)
    r = local.post("/cases", data=GIST, headers={**HTML, "origin": EVIL}, follow_redirects=False)
    assert r.status_code == 403 and _count(local) == 0
    # the same form post with its Origin stripped (privacy settings): the missing token refuses
    r = local.post("/cases", data=GIST, headers=HTML, follow_redirects=False)
    assert r.status_code == 403 and "This form has expired" in r.text
    assert 'href="/cases"' in r.text  # a link back
    # a token for another browser's cookie (the attacker's own visit) is refused too
    with TestClient(local.app, base_url=LOCAL) as attacker:
        theirs = _token(attacker)
    r = local.post("/cases", data={**GIST, "csrf_token": theirs}, follow_redirects=False)
    assert r.status_code == 403 and _count(local) == 0
    # garbage tokens (non-ASCII, in the field or the header) are refused, not a crash
    for bad in ({"data": {**GIST, "csrf_token": "\u00e9t\u00e9"}},
                {"data": GIST, "headers": {"x-csrf-token": "\u00e9t\u00e9".encode()}}):
        assert local.post("/cases", follow_redirects=False, **bad).status_code == 403
    # the service's own form, with its token, works
    r = local.post("/cases", data={**GIST, "csrf_token": _token(local)}, follow_redirects=False)
    assert r.status_code == 303 and _count(local) == 1


def test_every_state_changing_form_needs_the_token(local: TestClient) -> None:
    import json

    token = _token(local)
    case = local.post("/cases", data={**GIST, "csrf_token": token},
                      follow_redirects=False).headers["location"]
    n = _count(local)
    attacks = [
        ("/patient", {"data": GIST}),
        ("/patient/what-if", {"data": GIST}),
        ("/import", {"files": {"file": ("p.json", json.dumps(GIST_JSON), "application/json")}}),
        ("/import", {"data": {"text": json.dumps(GIST_JSON)}}),
        (case + "/decision", {"data": {"outcome": "accepted"}}),
    ]
    for path, kw in attacks:
        r = local.post(path, headers=HTML, follow_redirects=False, **kw)
        assert r.status_code == 403 and "This form has expired" in r.text, path
    assert _count(local) == n
    store = local.app.state.services.store  # type: ignore[attr-defined]
    assert store.get_record(case.rsplit("/", 1)[1])["feedback"] == []  # no decision recorded
    # the multipart import with its token is served
    r = local.post("/import", data={"csrf_token": token}, headers=HTML,
                   files={"file": ("p.json", json.dumps(GIST_JSON), "application/json")})
    assert r.status_code == 200 and _count(local) == n + 1
    r = local.post(case + "/decision", data={"outcome": "deferred", "csrf_token": token},
                   follow_redirects=False)
    assert r.status_code == 303


def test_form_encoded_post_to_the_api_is_refused_with_a_clear_problem(
    local: TestClient,
) -> None:
    """<form enctype=application/x-www-form-urlencoded action=.../recommendations> whose one
    field spells a JSON body (Origin stripped): refused; the problem says what API clients do."""
    import json

    body = json.dumps(GIST_JSON)[:-1] + ', "x": "'  # name + '=' + value re-forms the JSON
    r = local.post("/recommendations", data={body: '"}'})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert "CSRF token" in r.json()["detail"] and "application/json" in r.json()["detail"]
    assert _count(local) == 0


def test_csrf_cookie_is_httponly_and_only_set_on_pages(local: TestClient) -> None:
    fresh = TestClient(local.app, base_url=LOCAL)
    r = fresh.get("/patient", headers=HTML)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("sarcoma_csrf=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "set-cookie" not in TestClient(local.app, base_url=LOCAL).get("/healthz").headers


# ------------------------------------------------------------------ in a real browser

ATTACK_PAGE = """<!doctype html><html><body>
<form id="f" method="post" action="{victim}/cases">{fields}</form>
<script>
fetch("{victim}/recommendations", {{method: "POST", mode: "no-cors",
  headers: {{"content-type": "text/plain"}}, body: {body}}})
  .finally(() => document.getElementById("f").submit());
</script></body></html>"""


@pytest.mark.browser
def test_cross_site_attack_page_in_chromium_stores_nothing(tmp_path: Path,
                                                          chromium_browser: Any) -> None:
    """The clinician has the service open in Chromium; a page of another origin auto-submits a
    form to /cases and posts facts to /recommendations with a no-cors text/plain fetch. Before
    issue 12 both were stored; now both are refused (the browser suite in tests/browser saves
    cases through the service's own forms, which carry their token)."""
    import html as html_mod
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.security.uvicorn_live import live_server

    app = _app(tmp_path)
    store = app.state.services.store

    class Attacker(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html)

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)  # another port: another origin
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    ctx = chromium_browser.new_context()  # (the session's Chromium: tests/conftest.py)
    try:
        with live_server(app) as victim:
            fields = "".join(f'<input name="{k}" value="{html_mod.escape(v)}">'
                             for k, v in GIST.items())
            page_html = ATTACK_PAGE.format(victim=victim, fields=fields,
                                           body=json.dumps(json.dumps(GIST_JSON))).encode()
            page = ctx.new_page()
            page.goto(victim + "/patient")  # the clinician's session: the CSRF cookie is set
            with page.expect_navigation(url=victim + "/cases"):
                page.goto(f"http://localhost:{evil.server_address[1]}/attack")
            assert "Request refused" in page.content() or "expired" in page.content()
            assert store.count() == 0
            # the service's own form, in the same browser, carries its token
            page.goto(victim + "/patient")
            assert page.locator('input[name="csrf_token"]').count() >= 1
    finally:
        ctx.close()
        evil.shutdown()
        evil.server_close()
