"""CDS Hooks details (issue 12, hardening item 5): prefetch about another patient, feedback on
cards the caller was not served, non-numeric ``exp``, and ``jti`` values that used to be cut at
200 characters. Each attack is a real HTTP call with a real signed token and a real database."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, Signer, make_settings, secondary
from sarcoma_cds.interfaces.api import create_app
from tests.security.fhir_servers import recorder, split_fixture
from tests.test_cds_hooks import hook_request, order_request

TREAT = "/cds-services/sarcoma-treatment"
ORDER = "/cds-services/sarcoma-order-check"
LUNG = "39607008"


@pytest.fixture
def ehr() -> Signer:
    return Signer(iss="https://ehr.example.org")


@pytest.fixture
def other_ehr() -> Signer:
    return Signer(iss="https://other-ehr.example.org")


@pytest.fixture
def client(tmp_path: Path, ehr: Signer, other_ehr: Signer) -> Iterator[TestClient]:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": s.iss, "jwks": s.jwks}
                                               for s in (ehr, other_ehr)]}))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                                   store_raw_facts=True))
    with TestClient(app, base_url=BASE_URL) as c:
        yield c


def call(c: TestClient, signer: Signer, path: str, body: Any, **claims: Any) -> Any:
    tok = signer.token(BASE_URL + path, **claims)
    return c.post(path, json=body, headers={"Authorization": f"Bearer {tok}"})


def facts_used(c: TestClient, cards: list[dict[str, Any]]) -> dict[str, Any]:
    audit_id = cards[0]["links"][0]["url"].rsplit("/", 1)[1]
    rec = c.app.state.services.store.get_record(audit_id)  # type: ignore[attr-defined]
    facts: dict[str, Any] = rec["raw_facts"]
    return facts


# ------------------------------------------------------------------ another patient


def test_prefetch_about_another_patient_is_not_used(client: TestClient, ehr: Signer) -> None:
    req = hook_request("patient-view")
    intruder = secondary(LUNG)
    intruder["subject"] = {"reference": "Patient/intruder"}
    dotted = secondary(LUNG) | {"id": "dotted",
                                "subject": {"reference": "Patient/p1/../intruder"}}
    absolute = secondary(LUNG) | {"id": "absolute", "subject": {
        "reference": "https://ehr.example.org/fhir/Patient/intruder/_history/3"}}
    req["prefetch"]["conditions"]["entry"] += [{"resource": r}
                                               for r in (intruder, dotted, absolute)]
    req["prefetch"]["patient"] = {"resourceType": "Patient", "id": "intruder",
                                  "birthDate": "1930-01-01"}
    r = call(client, ehr, TREAT, req)
    assert r.status_code == 200, r.text
    facts = facts_used(client, r.json()["cards"])
    assert facts["metastatic_sites"] == ["liver"]  # not the intruder's lung metastases
    assert "age_years" not in facts  # not the intruder's birth date


def test_fetched_resources_about_another_patient_are_not_used(tmp_path: Path,
                                                              ehr: Signer) -> None:
    routes = split_fixture()
    intruder = secondary(LUNG) | {"subject": {"reference": "Patient/intruder"}}
    routes["/Condition?patient=p1"]["entry"].append({"resource": intruder})
    with recorder(routes=routes) as server:
        clients = tmp_path / "clients.json"
        clients.write_text(json.dumps({"clients": [
            {"iss": ehr.iss, "jwks": ehr.jwks, "fhir_servers": [server.base + "/fhir"]}]}))
        app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                                       store_raw_facts=True, dev_mode=True))
        with TestClient(app, base_url=BASE_URL) as c:
            req = hook_request("patient-view", prefetch=False, fhirServer=server.base + "/fhir",
                               fhirAuthorization={"access_token": "t", "token_type": "Bearer"})
            r = call(c, ehr, TREAT, req)
            assert r.status_code == 200, r.text
            assert facts_used(c, r.json()["cards"])["metastatic_sites"] == ["liver"]


# ------------------------------------------------------------------ feedback


def _feedback(card: str, outcome: str = "overridden") -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": outcome,
                          "outcomeTimestamp": "2026-11-30T10:00:00Z"}]}


def _stored_feedback(c: TestClient) -> list[dict[str, Any]]:
    fb: list[dict[str, Any]] = c.app.state.services.store.list_feedback()  # type: ignore[attr-defined]
    return fb


def test_feedback_from_another_client_is_refused(client: TestClient, ehr: Signer,
                                                 other_ehr: Signer) -> None:
    cards = call(client, ehr, ORDER, order_request("imatinib")).json()["cards"]
    r = call(client, other_ehr, ORDER + "/feedback", _feedback(cards[0]["uuid"]))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _stored_feedback(client) == []
    # the client that received the card may
    assert call(client, ehr, ORDER + "/feedback", _feedback(cards[0]["uuid"])).status_code == 200
    (stored,) = _stored_feedback(client)
    assert stored["caller"] == f"cds:{ehr.iss}" and stored["audit_id"]


def test_feedback_on_cards_never_served_is_refused(client: TestClient, ehr: Signer) -> None:
    made_up = str(uuid.uuid4())
    assert call(client, ehr, ORDER + "/feedback", _feedback(made_up)).status_code == 404
    assert call(client, ehr, ORDER + "/feedback", _feedback("x" * 36)).status_code == 400
    # a served card, but fed back to another service than the one that served it
    cards = call(client, ehr, ORDER, order_request("imatinib")).json()["cards"]
    assert call(client, ehr, TREAT + "/feedback", _feedback(cards[0]["uuid"])).status_code == 404
    # one bad item refuses the whole request: nothing is stored
    both = {"feedback": [_feedback(cards[0]["uuid"])["feedback"][0],
                         _feedback(made_up)["feedback"][0]]}
    assert call(client, ehr, ORDER + "/feedback", both).status_code == 404
    assert _stored_feedback(client) == []


# ------------------------------------------------------------------ JWT claims


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_non_numeric_time_claims_are_refused(client: TestClient, ehr: Signer,
                                             claim: str) -> None:
    now = int(time.time())
    value = {"exp": now + 300, "iat": now, "nbf": now - 5}[claim]
    r = call(client, ehr, TREAT, hook_request("patient-view"), **{claim: str(value)})
    assert r.status_code == 401
    r = call(client, ehr, TREAT, hook_request("patient-view"), **{claim: True})
    assert r.status_code == 401


def test_long_jtis_are_stored_whole(client: TestClient, ehr: Signer) -> None:
    """Two tokens whose ids share their first 200 characters are two tokens (the store used to
    cut ids at 200 characters, refusing the second as a replay); each is still accepted once."""
    stem = "j" * 200
    first, second = stem + "-1", stem + "-2"
    assert call(client, ehr, TREAT, hook_request("patient-view"), jti=first).status_code == 200
    assert call(client, ehr, TREAT, hook_request("patient-view"), jti=second).status_code == 200
    aud = BASE_URL + TREAT
    replay = ehr.token(aud, jti="k" * 5000)
    h = {"Authorization": f"Bearer {replay}"}
    assert client.post(TREAT, json=hook_request("patient-view"), headers=h).status_code == 200
    assert client.post(TREAT, json=hook_request("patient-view"), headers=h).status_code == 401
