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
