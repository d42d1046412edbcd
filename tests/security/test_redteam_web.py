"""Red-team review of the merged web hardening (issue 12): attacks that worked on main.

Each test sends the attack as a browser or an attacker's page would, over real HTTP to the real
application (FastAPI's TestClient) with its real SQLite audit store, and asserts the refusal.
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
LABEL = "Jane Q. Example, MRN 4711-0815"
GIST = {
    "histology": "gist", "primary_site": "stomach", "size_cm": "8", "mitotic_rate_per_5mm2": "6",
    "metastasis": "M0", "resectability": "unresectable", "disease_status": "primary",
    "pdgfra_mutation": "d842v",
}
GIST_JSON = {**GIST, "size_cm": 8, "mitotic_rate_per_5mm2": 6}


@pytest.fixture
def local(tmp_path: Path) -> Any:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data")), base_url=LOCAL) as c:
        yield c


def _token(client: TestClient) -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]{64})"',
                  client.get("/patient", headers=HTML).text)
    assert m
    return m.group(1)


def _count(client: TestClient) -> int:
    return int(client.app.state.services.store.count())  # type: ignore[attr-defined]


def test_the_home_page_listing_saved_cases_is_not_cacheable(local: TestClient) -> None:
    """The home page lists the recent saved cases by label (which may name the patient) for a
    user who may see them: a shared or back-button cache must not keep it."""
    r = local.post("/cases", data={**GIST, "case_label": LABEL, "csrf_token": _token(local)},
                   follow_redirects=False)
    assert r.status_code == 303
    home = local.get("/", headers=HTML)
    assert "Jane Q. Example" in home.text  # the attack's premise: the label is on the page
    assert home.headers.get("cache-control") == "no-store"
    assert home.headers.get("cross-origin-resource-policy") == "same-origin"


@pytest.mark.parametrize("authorization", [
    "Basic dXNlcjpwYXNzd29yZA==",  # a reverse proxy's HTTP Basic sign-in, cached by the browser
    "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag",  # Windows integrated sign-in (Kerberos/NTLM)
])
def test_ambient_authorization_does_not_skip_the_origin_and_csrf_checks(
    local: TestClient, authorization: str,
) -> None:
    """A browser adds ``Authorization: Basic`` (or Negotiate) by itself to every request to a
    site it has signed in to that way, cross-site form posts included: behind a reverse proxy
    with Basic or integrated sign-in, the Origin and CSRF checks were skipped and a cross-site
    form post stored a case."""
    local.get("/patient", headers=HTML)  # the victim has the CSRF cookie
    r = local.post("/cases", data={**GIST, "case_label": "planted"}, follow_redirects=False,
                   headers={**HTML, "origin": EVIL, "authorization": authorization})
    assert r.status_code == 403 and _count(local) == 0
    # Origin stripped: the missing CSRF token refuses it
    r = local.post("/cases", data={**GIST, "case_label": "planted"}, follow_redirects=False,
                   headers={**HTML, "authorization": authorization})
    assert r.status_code == 403 and _count(local) == 0
    # the service's own form still works behind such a proxy
    r = local.post("/cases", data={**GIST, "csrf_token": _token(local)}, follow_redirects=False,
                   headers={"authorization": authorization, "origin": LOCAL})
    assert r.status_code == 303 and _count(local) == 1


def test_bearer_api_clients_are_still_not_origin_checked(tmp_path: Path) -> None:
    keys = write_api_keys(tmp_path, {"ehr": "k-123"})
    settings = Settings(data_dir=tmp_path / "data", api_keys_file=keys)
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        r = c.post("/recommendations", json=GIST_JSON,
                   headers={"origin": EVIL, "authorization": "Bearer k-123"})
        assert r.status_code == 200


def test_refusals_outside_the_app_carry_the_security_headers(local: TestClient) -> None:
    """The body-size refusal (413) and the Host refusal (400) are answered by middleware
    outside the hardening layer: they must still be no-store, nosniff and unframeable."""
    too_big = local.post("/recommendations", content=b"x" * 3_000_000,
                         headers={"content-type": "application/json"})
    page = local.post("/import", content=b"x" * 3_000_000, headers={
        **HTML, "content-type": "multipart/form-data; boundary=x"})
    host = local.get("/", headers={"host": "evil.example"})
    for r in (too_big, page, host):
        assert r.status_code in (400, 413), r.status_code
        assert r.headers.get("cache-control") == "no-store", r.status_code
        assert r.headers.get("x-content-type-options") == "nosniff", r.status_code
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", "")


# ------------------------------------------------------------------ local mode beyond loopback

def _non_loopback_ipv4() -> str | None:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.254", 9))  # (no packet is sent: picks the outgoing interface)
        ip = str(s.getsockname()[0])
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def test_local_mode_served_on_all_interfaces_answers_only_loopback(tmp_path: Path) -> None:
    """``serve`` refuses ``--host 0.0.0.0`` without sign-in or keys, but the ASGI app
    (``sarcoma_cds.interfaces.api.asgi:app``) run by uvicorn or gunicorn directly was open to
    the network: the Host allow-list checks only the Host header, which a network attacker sets
    to ``127.0.0.1``. In local mode a peer that is not loopback is now refused."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from sarcoma_cds.interfaces.api.http_limits import uvicorn_options

    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    app = create_app(Settings(data_dir=tmp_path / "data"))  # the embedded default
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on", **uvicorn_options()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.01)
    try:
        spoofed = {"host": f"127.0.0.1:{port}"}
        r = httpx.get(f"http://{ip}:{port}/cases", headers=spoofed, timeout=30)
        assert r.status_code == 403, r.status_code
        assert "Recent saved cases" not in r.text and "case-list" not in r.text
        r = httpx.post(f"http://{ip}:{port}/recommendations", json=GIST_JSON, headers=spoofed,
                       timeout=30)
        assert r.status_code == 403
        # the local user, on this computer, is served as before
        assert httpx.get(f"http://127.0.0.1:{port}/cases", timeout=30).status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_the_render_cache_shares_nothing_of_one_caller_with_another(tmp_path: Path) -> None:
    """Equal facts share one cached rendering: no audit id, caller or label of one request may
    reach another's answer."""
    keys = write_api_keys(tmp_path, {"ward-a": "key-a", "ward-b": "key-b"})
    settings = Settings(data_dir=tmp_path / "data", api_keys_file=keys)
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        a = c.post("/recommendations", json=GIST_JSON, headers={"authorization": "Bearer key-a"})
        b = c.post("/recommendations", json=GIST_JSON, headers={"authorization": "Bearer key-b"})
        assert a.status_code == b.status_code == 200
        ida, idb = a.headers["x-audit-id"], b.headers["x-audit-id"]
        assert ida != idb and a.content == b.content
        for body in (a.text, b.text):
            assert ida not in body and idb not in body and "ward-" not in body
        store: Any = c.app.state.services.store  # type: ignore[attr-defined]
        assert store.get_record(ida)["caller"] == "apikey:ward-a"
        assert store.get_record(idb)["caller"] == "apikey:ward-b"
