"""REST API: endpoints, problem documents, size limit, API keys, audit, FHIR endpoint, logs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
import conftest_service
from conftest_service import (
    BASE_URL,
    MCODE_DIR,
    load_fixture_bundle,
    make_settings,
    write_api_keys,
)
from sarcoma_cds.interfaces.api import create_app

service_app = conftest_service.service_app
signer = conftest_service.signer

GIST = {
    "histology": "gist",
    "primary_site": "stomach",
    "pdgfra_mutation": "d842v",
    "metastasis": "M1",
}


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["type"] and body["title"]
    assert "Traceback" not in r.text
    return body


@pytest.fixture
def keyed(tmp_path: Path) -> Any:
    settings = make_settings(
        tmp_path, api_keys_file=write_api_keys(tmp_path, {"ward": "secret-ward-key"})
    )
    with TestClient(create_app(settings), base_url=BASE_URL) as c:
        yield c


AUTH = {"Authorization": "Bearer secret-ward-key"}


def test_meta_endpoints(service_app: TestClient) -> None:
    assert service_app.get("/healthz").json()["status"] == "ok"
    v = service_app.get("/version").json()
    assert v["guideline"]["version"] and v["guideline"]["content_hash"].startswith("sha256:")
    idx = service_app.get("/api").json()
    assert "not an order" in idx["disclaimer"]
    spec = service_app.get("/openapi.json").json()
    for path in ("/recommendations", "/groups", "/groups/{group_id}", "/healthz", "/version",
                 "/fhir/recommendations", "/cds-services", "/audit"):
        assert path in spec["paths"]
    assert "PatientFacts" in spec["components"]["schemas"]
    assert service_app.get("/api/docs").status_code == 200


def test_groups(service_app: TestClient) -> None:
    gs = service_app.get("/groups").json()["groups"]
    assert len(gs) == 16 and gs[0]["id"] == "extremity.stage_i"
    g = service_app.get("/groups/gist.unresectable").json()
    assert g["pathways"][0]["steps"][0]["treatment"] == "targeted_systemic_therapy"
    _problem(service_app.get("/groups/nope"), 404)


def test_recommendation_and_audit_record(service_app: TestClient) -> None:
    r = service_app.post("/recommendations", json=GIST)
    assert r.status_code == 200
    body = r.json()
    assert body["patient_group"]["id"] == "gist.recurrent_or_metastatic"
    rec = service_app.app_services.store.get_record(r.headers["X-Audit-ID"])  # type: ignore[attr-defined]
    assert rec["interface"] == "rest" and rec["group_id"] == "gist.recurrent_or_metastatic"
    assert rec["facts_digest"].startswith("hmac-sha256:") and rec["raw_facts"] is None
    assert rec["request_id"] == r.headers["X-Request-ID"]
    assert rec["statuses"]["options"]["1/targeted_systemic_therapy/imatinib"] == "not_recommended"


def test_422_names_every_field(service_app: TestClient) -> None:
    r = service_app.post(
        "/recommendations",
        json={
            "histology": "gistt",
            "size_cm": -1,
            "colour": "x",
            "metastatic_burden": "disseminated",
            "metastasis": "M0",
        },
    )
    body = _problem(r, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"histology", "primary_site", "size_cm", "colour", "metastatic_burden"} <= fields


@pytest.mark.parametrize("payload", [b"", b"{not json", b"[1,2]", b'"x"', b"\xff\xfe"])
def test_bad_bodies(service_app: TestClient, payload: bytes) -> None:
    r = service_app.post(
        "/recommendations", content=payload, headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    _problem(r, r.status_code)


def test_413(service_app: TestClient) -> None:
    big = b'{"histology": "gist", "x": "' + b"a" * 300_000 + b'"}'
    _problem(
        service_app.post(
            "/recommendations", content=big, headers={"content-type": "application/json"}
        ),
        413,
    )

    def gen():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 10_000

    r = service_app.post(
        "/recommendations", content=gen(), headers={"content-type": "application/json"}
    )
    _problem(r, 413)
    # like every other problem document: the request id in the body and the header
    r = service_app.post("/recommendations", content=big,
                         headers={"content-type": "application/json", "X-Request-ID": "big-1"})
    assert (
        _problem(r, 413)["instance"] == "urn:request:big-1" and r.headers["X-Request-ID"] == "big-1"
    )
    r = service_app.post(
        "/recommendations", content=gen(), headers={"content-type": "application/json"}
    )
    assert _problem(r, 413)["instance"] == f"urn:request:{r.headers['X-Request-ID']}"


def test_unexpected_error_is_a_problem_without_trace(
    service_app: TestClient, monkeypatch: Any
) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service_app.app_services, "prepare", boom)  # type: ignore[attr-defined]
    with TestClient(service_app.app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        r = c.post("/recommendations", json=GIST)
    body = _problem(r, 500)
    assert "secret internals" not in r.text and body["instance"].startswith("urn:request:")


def test_no_patient_data_in_logs(service_app: TestClient, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    service_app.post("/recommendations", json={**GIST, "size_cm": 42.4242, "age_years": 77})
    service_app.post(
        "/recommendations",
        json={"histology": "gist", "primary_site": "stomach", "size_cm": 98.7654},
    )
    text = caplog.text
    assert "42.4242" not in text and "98.7654" not in text and "d842v" not in text
    assert "route=/recommendations" in text and "status=200" in text


def test_api_keys(keyed: TestClient) -> None:
    _problem(keyed.post("/recommendations", json=GIST), 401)
    _problem(
        keyed.post("/recommendations", json=GIST, headers={"Authorization": "Bearer wrong"}), 401
    )
    _problem(keyed.get("/groups"), 401)
    assert keyed.post("/recommendations", json=GIST, headers=AUTH).status_code == 200
    assert keyed.get("/healthz").status_code == 200  # probes stay open


def test_audit_needs_a_key_even_without_keys(service_app: TestClient) -> None:
    _problem(service_app.get("/audit"), 401)


def test_audit_paging(keyed: TestClient) -> None:
    for _ in range(5):
        assert keyed.post("/recommendations", json=GIST, headers=AUTH).status_code == 200
    _problem(keyed.get("/audit"), 401)
    p1 = keyed.get("/audit?limit=2", headers=AUTH).json()
    assert len(p1["items"]) == 2 and p1["next_after"]
    assert p1["items"][0]["caller"] == "apikey:ward"
    p2 = keyed.get(p1["next"], headers=AUTH).json()
    p3 = keyed.get(p2["next"], headers=AUTH).json()
    ids = [i["id"] for i in p1["items"] + p2["items"] + p3["items"]]
    assert len(set(ids)) == 5 and p3["next_after"] is None
    one = keyed.get(f"/audit/{ids[0]}", headers=AUTH).json()
    assert one["recommendation"]["patient_group"]["id"] == "gist.recurrent_or_metastatic"
    _problem(keyed.get("/audit?limit=0", headers=AUTH), 422)
    _problem(keyed.get("/audit/nope", headers=AUTH), 404)


def test_raw_facts_only_when_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_raw_facts=True)
    with TestClient(create_app(settings), base_url=BASE_URL) as c:
        r = c.post("/recommendations", json=GIST)
        rec = c.app.state.services.store.get_record(r.headers["X-Audit-ID"])
    assert rec["raw_facts"]["pdgfra_mutation"] == "d842v"


def test_fhir_recommendations(service_app: TestClient) -> None:
    r = service_app.post("/fhir/recommendations", json=load_fixture_bundle("gist-pdgfra-d842v"),
                         headers={"content-type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["facts"]["pdgfra_mutation"] == "d842v"
    assert body["provenance"]["histology"][0] == {
        "resourceType": "Condition",
        "id": "primary",
        "element": "extension[histology-morphology-behavior]",
    }
    assert isinstance(body["gaps"], list)
    assert body["recommendation"]["patient_group"]["id"] == "gist.recurrent_or_metastatic"
    assert body["fhir"]["resourceType"] == "Bundle"
    from sarcoma_cds.adapters.fhir import validate_bundle

    validate_bundle(body["fhir"])
    rec = service_app.app_services.store.get_record(body["audit_id"])  # type: ignore[attr-defined]
    assert rec["interface"] == "fhir"


def test_fhir_non_sarcoma_bundle_is_422_with_gaps(service_app: TestClient) -> None:
    import json

    b = json.loads((MCODE_DIR / "Bundle-mcode-patient-bundle-jenny-m.json").read_text())
    body = _problem(service_app.post("/fhir/recommendations", json=b), 422)
    assert {"histology", "primary_site"} <= {e["field"] for e in body["errors"]}
    # Jenny's N0 belongs to her breast cancer and is not a sarcoma fact (issue 11).
    assert body["gaps"] and "nodes" not in body["facts"] and body["facts"]["ecog"] == 0


def test_root_is_left_to_the_web_app(service_app: TestClient) -> None:
    try:
        import sarcoma_cds.interfaces.web  # noqa: F401
    except ModuleNotFoundError:
        assert service_app.get("/").status_code == 404
    assert all(
        getattr(r, "path", None) != "/"
        or r.endpoint.__module__.startswith("sarcoma_cds.interfaces.web")
        for r in service_app.app.routes
    )
