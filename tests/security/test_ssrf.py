"""SSRF through CDS Hooks ``fhirServer`` (issue 12, hardening item 2).

A caller holding a valid client JWT chooses ``fhirServer`` and ``fhirAuthorization``. Each test
makes the service a request an attacker would make and checks, at real local HTTP servers that
record every request, who was contacted and with which Authorization header.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, Signer, make_settings
from sarcoma_cds.interfaces.api import create_app
from tests.security.fhir_servers import Recorder, recorder, split_fixture

TREAT = "/cds-services/sarcoma-treatment"
TOKEN = {"access_token": "secret-ehr-token", "token_type": "Bearer", "scope": "patient/*.read"}
SAYS = "the EHR's FHIR server could not be read"


def app_for(tmp_path: Path, signer: Signer, servers: list[str], *, dev_mode: bool = True,
            **entry: Any) -> TestClient:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": signer.iss, "jwks": signer.jwks, "fhir_servers": servers, **entry}]}))
    settings = make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                             dev_mode=dev_mode, fhir_timeout_s=2.0)
    return TestClient(create_app(settings), base_url=BASE_URL)


def hook(fhir_server: str, auth: Any = TOKEN) -> dict[str, Any]:
    req: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                           "context": {"userId": "Practitioner/1", "patientId": "p1"},
                           "fhirServer": fhir_server}
    if auth is not None:
        req["fhirAuthorization"] = auth
    return req


def post(client: TestClient, signer: Signer, body: Any) -> Any:
    tok = signer.token(BASE_URL + TREAT)
    return client.post(TREAT, json=body, headers={"Authorization": f"Bearer {tok}"})


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def ehr() -> Iterator[Recorder]:
    with recorder(routes=split_fixture()) as r:
        yield r


@pytest.fixture
def attacker() -> Iterator[Recorder]:
    with recorder() as r:
        yield r


def test_allow_listed_server_is_read_with_the_token(tmp_path: Path, signer: Signer,
                                                    ehr: Recorder) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    assert r.status_code == 200, r.text
    assert ehr.auth_seen() == {"Bearer secret-ehr-token"}


def test_server_not_on_the_allow_list_is_never_contacted(
        tmp_path: Path, signer: Signer, ehr: Recorder, attacker: Recorder) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(attacker.base + "/fhir"))
    assert r.status_code == 412
    assert not attacker.contacted and not ehr.contacted
    assert str(attacker.port) not in r.text


def test_port_prefix_does_not_match_a_longer_port(tmp_path: Path, signer: Signer,
                                                  attacker: Recorder) -> None:
    """The old string-prefix check let an allow-listed ``:1845`` match ``:18451``."""
    short = str(attacker.port)[:-1]
    with app_for(tmp_path, signer, [f"http://127.0.0.1:{short}"]) as c:
        r = post(c, signer, hook(attacker.base + "/fhir"))
    assert r.status_code == 412 and not attacker.contacted


@pytest.mark.parametrize("suffix", ["/fhir-admin", "/fhirX", "/fhir/../admin", "/fhir/%2e%2e/x",
                                    "/fhir%2fadmin", "/fhir?x=1", "/fhir#frag"])
def test_path_prefix_is_matched_on_segments(tmp_path: Path, signer: Signer, ehr: Recorder,
                                            suffix: str) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + suffix))
    assert r.status_code == 412 and not ehr.contacted


@pytest.mark.parametrize("trick", ["http://127.0.0.1:{ok}@127.0.0.1:{bad}/fhir",
                                   "http://user:pw@127.0.0.1:{ok}/fhir",
                                   "http://127.0.0.1:{bad}\\@127.0.0.1:{ok}/fhir",
                                   "HTTP://127.0.0.1:{bad}/fhir",
                                   "file:///etc/passwd", "gopher://127.0.0.1:{ok}/fhir"])
def test_url_tricks_are_refused(tmp_path: Path, signer: Signer, ehr: Recorder,
                                attacker: Recorder, trick: str) -> None:
    url = trick.format(ok=ehr.port, bad=attacker.port)
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(url))
    assert r.status_code == 412
    assert not attacker.contacted and not ehr.contacted


def test_redirects_are_not_followed(tmp_path: Path, signer: Signer, ehr: Recorder,
                                    attacker: Recorder) -> None:
    def redirect(h: BaseHTTPRequestHandler) -> bool:
        h.send_response(302)
        h.send_header("Location", attacker.base + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return True

    ehr.handler = redirect
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    assert r.status_code == 412 and ehr.contacted
    assert not attacker.contacted
    assert SAYS in r.text and str(attacker.port) not in r.text


def test_next_page_on_another_origin_gets_no_token(tmp_path: Path, signer: Signer,
                                                   ehr: Recorder, attacker: Recorder) -> None:
    page1 = dict(ehr.routes["/Condition?patient=p1"])
    page1["link"] = [{"relation": "next", "url": attacker.base + "/fhir/Condition?page=2"}]
    ehr.routes["/Condition?patient=p1"] = page1
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    assert r.status_code == 200, r.text
    assert not attacker.contacted  # the token never goes to another origin


def test_next_page_under_the_server_is_read(tmp_path: Path, signer: Signer,
                                            ehr: Recorder) -> None:
    page1 = dict(ehr.routes["/Condition?patient=p1"])
    ehr.routes["/Condition?patient=p1"] = {"resourceType": "Bundle", "type": "searchset",
                                           "entry": [], "link": [{"relation": "next",
                                           "url": ehr.base + "/fhir/Condition?page=2"}]}
    ehr.routes["/Condition?page=2"] = page1
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    assert r.status_code == 200, r.text
    assert ("/fhir/Condition?page=2", "Bearer secret-ehr-token") in ehr.hits
    assert "GIST" in r.json()["cards"][0]["summary"]


def test_no_fetch_without_a_token(tmp_path: Path, signer: Signer, ehr: Recorder) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir", auth=None))
        assert r.status_code == 412 and not ehr.contacted
        r = post(c, signer, hook(ehr.base + "/fhir", auth={"access_token": ""}))
        assert r.status_code == 412 and not ehr.contacted


def test_fetch_without_a_token_when_the_client_allows_it(tmp_path: Path, signer: Signer,
                                                         ehr: Recorder) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"], fhir_without_token=True) as c:
        r = post(c, signer, hook(ehr.base + "/fhir", auth=None))
    assert r.status_code == 200, r.text
    assert ehr.auth_seen() == {None}


def test_https_only_outside_development_mode(tmp_path: Path, signer: Signer,
                                             ehr: Recorder) -> None:
    with pytest.raises(ValueError, match="https only"):
        app_for(tmp_path, signer, [ehr.base + "/fhir"], dev_mode=False)
    # an https allow-list entry does not let a plain-http fhirServer through either
    with app_for(tmp_path, signer, [f"https://127.0.0.1:{ehr.port}/fhir"], dev_mode=False) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    assert r.status_code == 412 and not ehr.contacted


def test_errors_do_not_reveal_hosts_or_ports(tmp_path: Path, signer: Signer,
                                             ehr: Recorder) -> None:
    """Port scanning through the service: a closed port, a refusing server and an open one that
    is not FHIR all answer alike, naming neither host nor port."""
    ehr.server.server_close()  # nothing listens there now
    ehr.server.shutdown()
    with recorder() as not_fhir:
        not_fhir.routes.update({"/Patient/p1": "not a resource"})
        allow = [ehr.base + "/fhir", not_fhir.base + "/fhir"]
        with app_for(tmp_path, signer, allow) as c:
            closed = post(c, signer, hook(ehr.base + "/fhir"))
            other = post(c, signer, hook(not_fhir.base + "/fhir"))
    for r, port in ((closed, ehr.port), (other, not_fhir.port)):
        assert r.status_code == 412
        assert SAYS in r.json()["detail"]
        assert str(port) not in r.text and "127.0.0.1" not in r.text
        assert "Connect" not in r.text and "Error" not in r.json()["detail"]
    assert closed.json()["detail"] == other.json()["detail"]


def test_optional_keys_not_read_give_an_info_card_without_hosts(
        tmp_path: Path, signer: Signer, ehr: Recorder) -> None:
    with app_for(tmp_path, signer, [ehr.base + "/fhir"]) as c:
        r = post(c, signer, hook(ehr.base + "/fhir"))
    cards = r.json()["cards"]
    info = cards[-1]
    assert info["indicator"] == "info" and "could not read the whole record" in info["summary"]
    assert "medicationRequests" in info["detail"]
    assert str(ehr.port) not in r.text


@pytest.mark.parametrize(("entry", "asked", "covered"), [
    ("https://ehr.example.org/fhir", "https://EHR.example.org:443/fhir/r4", True),
    ("https://ehr.example.org/fhir/", "https://ehr.example.org/fhir", True),
    ("https://ehr.example.org", "https://ehr.example.org/any/path", True),
    ("https://[::1]:8443/fhir", "https://[::1]:8443/fhir", True),
    ("https://ehr.example.org/fhir", "https://ehr.example.org:4430/fhir", False),
    ("https://ehr.example.org:1845/fhir", "https://ehr.example.org:18451/fhir", False),
    ("https://ehr.example.org/fhir", "https://ehr.example.org.evil.test/fhir", False),
    ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir2", False),
])
def test_allow_list_comparison(entry: str, asked: str, covered: bool) -> None:
    from sarcoma_cds.interfaces.api.fhir_fetch import parse_server

    a, b = parse_server(entry, allow_http=False), parse_server(asked, allow_http=False)
    assert a.covers(b) is covered
