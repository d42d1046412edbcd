"""Denial of service (issue 12, hardening item 3): JWKS downloads, FHIR fetches and request
headers that used to stall or bloat the service. Each test runs the attack against a real
uvicorn server (or the app over real HTTP) with real local servers that block on a
threading.Event or answer hugely, and counts at those servers; nothing here measures time."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, Signer, load_fixture_bundle, make_settings
from sarcoma_cds.interfaces.api import create_app
from tests.security.fhir_servers import Recorder, recorder, split_fixture
from tests.security.uvicorn_live import live_server

TREAT = "/cds-services/sarcoma-treatment"
FHIR_TOKEN = {"access_token": "ehr-token", "token_type": "Bearer"}


def _hook(**kw: Any) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"}, **kw}


def _prefetched() -> dict[str, Any]:
    res = [e["resource"] for e in load_fixture_bundle("gist-pdgfra-d842v")["entry"]]
    return {"patient": next(r for r in res if r["resourceType"] == "Patient"),
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": r} for r in res if r["resourceType"] == "Condition"]},
            "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": r} for r in res if r["resourceType"] == "Observation"]}}


# ------------------------------------------------------------------ JWKS


@pytest.fixture
def jwks_server() -> Iterator[Recorder]:
    with recorder(prefix="") as r:
        yield r


def test_forged_kids_neither_stall_the_service_nor_multiply_jwks_downloads(
        tmp_path: Path, jwks_server: Recorder) -> None:
    """48 tokens naming unknown key ids arrive while the client's JWKS server hangs: /healthz
    still answers, the JWK Set is downloaded once, every forged token is refused, and a genuine
    token is then accepted without another download."""
    genuine = Signer(kid="k1")
    jwks_server.routes["/jwks.json"] = genuine.jwks
    jwks_server.gate = threading.Event()
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": genuine.iss, "jwks_url": jwks_server.base + "/jwks.json"}]}))
    app = create_app(make_settings(tmp_path, clients_file=clients))
    with live_server(app) as url:
        aud = url + TREAT

        def forged(_: int) -> int:
            tok = Signer(kid=str(uuid.uuid4())).token(aud)
            r = httpx.post(aud, json=_hook(prefetch=_prefetched()), timeout=60,
                           headers={"Authorization": f"Bearer {tok}"})
            return r.status_code

        with ThreadPoolExecutor(48) as pool:
            results = pool.map(forged, range(48))
            assert jwks_server.entered.wait(30)  # the download hangs at the JWKS server
            health = httpx.get(url + "/healthz", timeout=30)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            jwks_server.gate.set()
            assert set(results) == {401}
        assert len(jwks_server.hits) == 1
        # more forged kids later: refused from the cache, no new download (rate-limited)
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(forged, range(16))) == {401}
        assert len(jwks_server.hits) == 1
        tok = genuine.token(aud)
        r = httpx.post(aud, json=_hook(prefetch=_prefetched()), timeout=30,
                       headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, r.text
        assert len(jwks_server.hits) == 1
        assert app.state.access.verifier.jwks_downloads(genuine.iss) == 1


# ------------------------------------------------------------------ FHIR fetches


def _fhir_app(tmp_path: Path, signer: Signer, ehr: Recorder, **settings: Any) -> Any:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": signer.iss, "jwks": signer.jwks, "fhir_servers": [ehr.base + "/fhir"]}]}))
    return create_app(make_settings(tmp_path, clients_file=clients, dev_mode=True, **settings))


def test_a_hanging_fhir_server_does_not_stall_the_service(tmp_path: Path) -> None:
    """One search hangs at the EHR: /healthz answers meanwhile, and the hook answers by its
    deadline with the cards it can give and an info card naming what was not read."""
    signer = Signer()
    hang = threading.Event()
    reached = threading.Event()
    with recorder(routes=split_fixture()) as ehr:
        def handler(h: BaseHTTPRequestHandler) -> bool:
            if h.path.startswith("/fhir/MedicationRequest"):
                reached.set()
                hang.wait(60)
            return False

        ehr.handler = handler
        app = _fhir_app(tmp_path, signer, ehr, fhir_deadline_s=3.0, fhir_timeout_s=30.0)
        with live_server(app) as url:
            aud = url + TREAT
            req = _hook(fhirServer=ehr.base + "/fhir", fhirAuthorization=FHIR_TOKEN)
            with ThreadPoolExecutor(1) as pool:
                call = pool.submit(httpx.post, aud, json=req, timeout=60,
                                   headers={"Authorization": f"Bearer {signer.token(aud)}"})
                assert reached.wait(30)
                assert httpx.get(url + "/healthz", timeout=30).status_code == 200
                r = call.result()
            hang.set()
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert "GIST" in cards[0]["summary"]
    info = cards[-1]
    assert info["indicator"] == "info" and "medicationRequests" in info["detail"]
    assert "could not read the whole record" in info["summary"]


def _huge(chunked: bool) -> Any:
    def handler(h: BaseHTTPRequestHandler) -> bool:
        if not h.path.startswith("/fhir/Procedure"):
            return False
        filler = {"resourceType": "Procedure", "id": "x", "status": "completed",
                  "subject": {"reference": "Patient/p1"}, "note": [{"text": "a" * 1000}]}
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        body = json.dumps({"resourceType": "Bundle", "type": "searchset",
                           "entry": [{"resource": filler}] * 3000}).encode()  # about 3 MB
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                for i in range(0, len(body), 65536):
                    part = body[i:i + 65536]
                    h.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                h.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the service hung up: it stopped reading
        else:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            with contextlib.suppress(OSError):  # the service hung up: it stopped reading
                h.wfile.write(body)
        return True
    return handler


@pytest.mark.parametrize("chunked", [True, False])
def test_an_oversized_fhir_answer_is_dropped_with_an_info_card(tmp_path: Path,
                                                               chunked: bool) -> None:
    signer = Signer()
    with recorder(routes=split_fixture()) as ehr:
        ehr.handler = _huge(chunked)
        app = _fhir_app(tmp_path, signer, ehr, fhir_max_bytes=1024 * 1024)
        with TestClient(app, base_url=BASE_URL) as c:
            req = _hook(fhirServer=ehr.base + "/fhir", fhirAuthorization=FHIR_TOKEN)
            r = c.post(TREAT, json=req,
                       headers={"Authorization": f"Bearer {signer.token(BASE_URL + TREAT)}"})
    assert r.status_code == 200, r.text
    info = r.json()["cards"][-1]
    assert info["indicator"] == "info" and "procedures" in info["detail"]


def test_an_oversized_required_answer_is_412(tmp_path: Path) -> None:
    signer = Signer()
    with recorder(routes=split_fixture()) as ehr:
        big = {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Condition", "id": f"c{i}", "note": [
                {"text": "x" * 1000}], "subject": {"reference": "Patient/p1"}}}
            for i in range(2000)]}
        ehr.routes["/Condition?patient=p1"] = big
        app = _fhir_app(tmp_path, signer, ehr, fhir_max_bytes=512 * 1024)
        with TestClient(app, base_url=BASE_URL) as c:
            req = _hook(fhirServer=ehr.base + "/fhir", fhirAuthorization=FHIR_TOKEN)
            r = c.post(TREAT, json=req,
                       headers={"Authorization": f"Bearer {signer.token(BASE_URL + TREAT)}"})
    assert r.status_code == 412
    assert "the EHR's FHIR server could not be read" in r.json()["detail"]


# ------------------------------------------------------------------ header size


def _raw_request(url: str, header_bytes: int) -> bytes:
    """Send GET /healthz with one header of ``header_bytes`` on a raw socket; the answer
    (empty when the server hung up)."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: ").encode() + b"a" * header_bytes
    out = b""
    with socket.create_connection((host, int(port)), timeout=30) as s:
        with contextlib.suppress(OSError):  # the server hung up while we were still sending
            s.sendall(head + b"\r\nConnection: close\r\n\r\n")
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def test_a_huge_request_header_is_refused_and_the_server_keeps_serving(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    with live_server(app) as url:
        answer = _raw_request(url, 1024 * 1024)
        assert answer == b"" or answer.split(b"\r\n", 1)[0].split(b" ")[1] in (b"431", b"400")
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        # a large but reasonable header (cookies, long tokens) still passes
        ok = _raw_request(url, 32 * 1024)
        assert ok.split(b"\r\n", 1)[0].split(b" ")[1] == b"200"


def test_a_failed_jwks_download_is_not_repeated_at_every_token(tmp_path: Path,
                                                               jwks_server: Recorder) -> None:
    """The JWKS server is down: tokens keep being refused without a download each; once the
    retry interval has passed (simulated, not waited for) the keys are read again."""
    genuine = Signer(kid="k1")
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": genuine.iss, "jwks_url": jwks_server.base + "/jwks.json"}]}))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients))
    with TestClient(app, base_url=BASE_URL) as c:
        def call() -> int:
            tok = genuine.token(BASE_URL + TREAT)
            return c.post(TREAT, json=_hook(prefetch=_prefetched()),
                          headers={"Authorization": f"Bearer {tok}"}).status_code

        assert [call() for _ in range(5)] == [401] * 5  # 404 at the JWKS URL
        assert len(jwks_server.hits) == 1
        jwks_server.routes["/jwks.json"] = genuine.jwks  # the server is back
        assert call() == 401 and len(jwks_server.hits) == 1  # within the retry interval
        app.state.access.verifier._tried_at.clear()  # as if the retry interval had passed
        assert call() == 200
        assert len(jwks_server.hits) == 2
