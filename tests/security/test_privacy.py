"""Privacy in logs (issue 12, privacy): a CDS hook that fetches the record from a FHIR server
with a bearer token, and one whose URL carries credentials (refused), must leave no patient id,
token or password in any log line, at any level.

The hook is called over real HTTP (TestClient) with a real signed JWT, and the service fetches
from a real local FHIR server (``http.server`` on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from fastapi.testclient import TestClient

from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.interfaces.api.log_privacy import RedactFilter, redact
from sarcoma_cds.interfaces.cli.service_commands import serve_log_config
from tests.conftest_service import (
    BASE_URL,
    Signer,
    load_fixture_bundle,
    make_settings,
)

PATIENT = "pt-7f3a91c2e4"
USER, PASSWORD = "fhir-reader", "s3cret-Pa55word"
TOKEN = "fhir-access-token-9b1e44aa0c"
TREAT = "/cds-services/sarcoma-treatment"


class _Fhir(BaseHTTPRequestHandler):
    resources: ClassVar[list[dict[str, Any]]] = []
    seen: ClassVar[list[str]] = []

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        rt = self.path.split("/fhir/", 1)[-1].split("?")[0].split("/")[0]
        if self.path == f"/fhir/Patient/{PATIENT}":
            body: Any = next(r for r in self.resources if r["resourceType"] == "Patient")
        else:
            body = {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in self.resources if r["resourceType"] == rt]}
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())


@contextlib.contextmanager
def fhir_server() -> Iterator[str]:
    text = json.dumps(load_fixture_bundle("gist-pdgfra-d842v")).replace('"p1"', f'"{PATIENT}"')
    text = text.replace("Patient/p1", f"Patient/{PATIENT}")
    _Fhir.resources = [e["resource"] for e in json.loads(text)["entry"]]
    _Fhir.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fhir"
    srv.shutdown()
    srv.server_close()


class _Grab(logging.Handler):
    """Every record that reaches the root logger, as created: the first handler, it copies the
    text before any other handler's filter rewrites the record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, str]] = []

    def addFilter(self, filter: Any) -> None:
        """No filter: ``create_app`` puts the redaction filter on every root handler, this one
        must see the records unredacted."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.records.append({"name": record.name, "line": record.getMessage() + exc})


def _secrets_in(text: str) -> list[str]:
    return [s for s in (PATIENT, PASSWORD, TOKEN, f"{USER}:") if s in text]


def scenario(tmp: str) -> None:
    """Run in a fresh interpreter (the service's ``dictConfig`` replaces every handler of the
    process, pytest's too): the service's own log configuration (``serve --verbose``) with the
    root at DEBUG, a handler grabbing every raw record, the FHIR server, and two hook calls.
    Prints the raw records as JSON on stdout; the service's handler writes to stderr."""
    tmp_path = Path(tmp)
    cfg = serve_log_config(True, local_only=True, cds_clients=True)
    cfg["root"]["level"] = "DEBUG"
    logging.config.dictConfig(cfg)
    grab = _Grab()
    logging.getLogger().handlers.insert(0, grab)
    signer = Signer()
    with fhir_server() as server:
        # the client's FHIR server is allow-listed (plain http: development mode)
        clients = tmp_path / "clients.json"
        clients.write_text(json.dumps({"clients": [
            {"iss": signer.iss, "jwks": signer.jwks, "fhir_servers": [server]}]}))
        settings = make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                                 dev_mode=True)
        req = {"hook": "patient-view", "hookInstance": "5d0f1e43-0000-4000-8000-000000000001",
               "context": {"userId": "Practitioner/1", "patientId": PATIENT},
               "fhirServer": server,
               "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "cds"}}
        jwts = [signer.token(BASE_URL + TREAT), signer.token(BASE_URL + TREAT)]
        with TestClient(create_app(settings), base_url=BASE_URL) as c:
            ok = c.post(TREAT, json=req, headers={"Authorization": f"Bearer {jwts[0]}"})
            # a refused fetch (credentials in the URL: the error path) logs no password either
            bad = {**req, "hookInstance": "5d0f1e43-0000-4000-8000-000000000002",
                   "fhirServer": server.replace("http://", f"http://{USER}:{PASSWORD}@")}
            failed = c.post(TREAT, json=bad, headers={"Authorization": f"Bearer {jwts[1]}"})
    # a library that logs a URL anyway (httpx at INFO, an exception's text) is redacted by the
    # service's handler
    lib = logging.getLogger("some.fhir.client")
    lib.setLevel(logging.DEBUG)
    lib.info('HTTP Request: GET http://%s:%s@fhir.example/fhir/Patient/%s "HTTP/1.1 200 OK"',
             USER, PASSWORD, PATIENT)
    lib.info("GET /fhir/Observation?patient=%s&category=laboratory Authorization: Bearer %s",
             PATIENT, TOKEN)
    try:
        raise RuntimeError("fetch failed for Patient/" + PATIENT + " access_token=" + TOKEN)
    except RuntimeError:
        lib.exception("unexpected")
    print(json.dumps({
        "statuses": [ok.status_code, failed.status_code], "jwts": jwts, "fetched": _Fhir.seen,
        "records": [r for r in grab.records if r["name"] != "some.fhir.client"],
    }))


def test_cds_hook_fetching_with_credentials_logs_no_patient_id_token_or_password(
    tmp_path: Path,
) -> None:
    root = Path(__file__).parents[2]
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from tests.security.test_privacy import scenario; "
                               "scenario(sys.argv[1])", str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["statuses"] == [200, 412]
    assert any(p.startswith(f"/fhir/Patient/{PATIENT}") for p in out["fetched"])  # it fetched
    assert out["records"], "the capture saw no record at all"
    for rec in out["records"]:  # every record, as created, at DEBUG
        assert not _secrets_in(rec["line"]), rec
        assert not any(j in rec["line"] for j in out["jwts"]), rec
    err = run.stderr  # what the service's handler wrote
    assert "request_id=" in err  # the access lines were written
    assert not _secrets_in(err), err
    assert not any(j in err for j in out["jwts"])
    # the library's leaky lines were written, redacted
    assert "Patient/[id]" in err and "patient=[id]" in err and "[redacted]@fhir.example" in err
    assert "Bearer [redacted]" in err and "access_token=[redacted]" in err


def test_redact_keeps_the_useful_part() -> None:
    line = ("request_id=ab12 method=POST route=/cds-services/{service_id} status=200 ms=12.5 "
            "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2ln")
    out = redact(line)
    assert out.startswith("request_id=ab12 method=POST route=/cds-services/{service_id} status=200")
    assert "eyJ" not in out
    assert isinstance(RedactFilter(), logging.Filter)
