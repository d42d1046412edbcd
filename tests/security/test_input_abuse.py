"""Input that crashes (issue 12, denial of service): deeply nested JSON and lone surrogates.

Before the fix, ``[[[[...]]]]`` 100 000 levels deep made Python's JSON parser hit its recursion
limit and every JSON endpoint answered 500. Each attack is sent over HTTP (TestClient) to the
real application with a real signed CDS Hooks token; the answer must be a 4xx with a message
that names the problem, never a 500 or a stack trace.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sarcoma_cds.interfaces.api import create_app
from tests.conftest_service import (
    BASE_URL,
    Signer,
    load_fixture_bundle,
    make_settings,
    write_clients,
)

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_IN_OBJECT = b'{"histology": "gist", "x": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}"
SURROGATE = b'{"histology": "gist\\ud800", "primary_site": "stomach"}'
SURROGATE_KEY = b'{"\\udfff": 1, "histology": "gist"}'
ENDPOINTS = ["/recommendations", "/fhir/recommendations", "/cds-services/sarcoma-treatment",
             "/cds-services/sarcoma-order-check", "/cds-services/sarcoma-treatment/feedback"]


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> Any:
    tmp = tmp_path_factory.mktemp("abuse")
    app = create_app(make_settings(tmp, base_url=BASE_URL,
                                   clients_file=write_clients(tmp, signer)))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


def _post(c: TestClient, signer: Signer, path: str, body: bytes) -> Any:
    headers = {"content-type": "application/json"}
    if path.startswith("/cds-services"):
        headers["authorization"] = "Bearer " + signer.token(BASE_URL + path)
    return c.post(path, content=body, headers=headers)


def _problem(r: Any, *codes: int) -> dict[str, Any]:
    assert r.status_code in codes, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize("path", ENDPOINTS)
def test_deeply_nested_json_is_400(client: TestClient, signer: Signer, path: str) -> None:
    for body in (DEEP, DEEP_IN_OBJECT):
        p = _problem(_post(client, signer, path, body), 400)
        assert "nested deeper than 64 levels" in p["detail"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_lone_surrogates_are_422_naming_the_field(
    client: TestClient, signer: Signer, path: str
) -> None:
    p = _problem(_post(client, signer, path, SURROGATE), 422)
    assert "histology" in p["detail"] and "surrogate" in p["detail"]
    assert p["errors"] == [{"field": "histology", "message": p["errors"][0]["message"]}]
    p = _problem(_post(client, signer, path, SURROGATE_KEY), 422)
    assert "surrogate" in p["detail"]


def test_a_surrogate_deep_in_a_real_cds_request_is_refused(
    client: TestClient, signer: Signer
) -> None:
    """A real patient-view request whose prefetched Condition carries a lone surrogate in a
    free-text note (an EHR's broken text encoding)."""
    bundle = load_fixture_bundle("gist-pdgfra-d842v")
    res = [e["resource"] for e in bundle["entry"]]
    cond = next(r for r in res if r["resourceType"] == "Condition")
    cond["note"] = [{"text": "biopsy \ud800 report"}]
    req = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
           "context": {"userId": "Practitioner/1", "patientId": "p1"},
           "prefetch": {"patient": next(r for r in res if r["resourceType"] == "Patient"),
                        "conditions": {"resourceType": "Bundle", "type": "searchset",
                                       "entry": [{"resource": cond}]},
                        "observations": {"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": r} for r in res
                                                   if r["resourceType"] == "Observation"]}}}
    body = json.dumps(req).encode()  # ensure_ascii: the surrogate travels as \ud800
    assert b"\\ud800" in body
    p = _problem(_post(client, signer, "/cds-services/sarcoma-treatment", body), 422)
    assert p["errors"][0]["field"] == "prefetch.conditions.entry[0].resource.note[0].text"
    # the same request without the bad character is answered
    ok = body.replace(b"\\ud800", b"x")
    assert _post(client, signer, "/cds-services/sarcoma-treatment", ok).status_code == 200


def test_web_import_refuses_them_on_its_page(client: TestClient) -> None:
    page = client.get("/import", headers={"accept": "text/html"}).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    for raw, words in ((DEEP, "nested deeper than 64 levels"),
                       (SURROGATE, "histology: contains a lone UTF-16 surrogate")):
        for kw in ({"files": {"file": ("p.json", raw, "application/json")}},
                   {"data": {"text": raw.decode()}}):
            data = {"csrf_token": token, **kw.pop("data", {})}  # type: ignore[dict-item]
            r = client.post("/import", data=data, headers={"accept": "text/html"}, **kw)
            assert r.status_code == 422, r.text[:300]
            assert words in r.text and "Traceback" not in r.text


def test_reasonable_nesting_still_works(client: TestClient, signer: Signer, tmp_path: Path) -> None:
    bundle = load_fixture_bundle("gist-pdgfra-d842v")
    r = client.post("/fhir/recommendations", json=bundle)
    assert r.status_code == 200, r.text[:300]
    emoji = {"histology": "gist", "primary_site": "stomach", "note_\U0001f600": 1}
    r = client.post("/recommendations", content=json.dumps(emoji).encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" not in r.text  # a proper pair is just text
