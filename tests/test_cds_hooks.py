"""CDS Hooks 2.0.1: discovery, cards, prefetch and FHIR fetch, 412, order-select, feedback, JWT."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
import conftest_service
from conftest_service import (
    BASE_URL,
    ISS,
    Signer,
    load_fixture_bundle,
    make_settings,
)
from sarcoma_cds.interfaces.api import cds_hooks, create_app

service_app = conftest_service.service_app
signer = conftest_service.signer

TREAT = "/cds-services/sarcoma-treatment"
ORDER = "/cds-services/sarcoma-order-check"


def _split(bundle: dict[str, Any]) -> dict[str, Any]:
    res = [e["resource"] for e in bundle["entry"]]
    sb = lambda rt: {"resourceType": "Bundle", "type": "searchset",  # noqa: E731
                     "entry": [{"resource": r} for r in res if r["resourceType"] == rt]}
    return {"patient": next(r for r in res if r["resourceType"] == "Patient"),
            "conditions": sb("Condition"), "observations": sb("Observation")}


def hook_request(
    hook: str, fixture: str | None = "gist-pdgfra-d842v", prefetch: bool = True, **kw: Any
) -> dict[str, Any]:
    req: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()),
                           "context": {"userId": "Practitioner/1", "patientId": "p1"}}
    if fixture and prefetch:
        req["prefetch"] = _split(load_fixture_bundle(fixture))
    req.update(kw)
    return req


def call(client: TestClient, signer: Signer, path: str, body: Any, **claims: Any) -> Any:
    tok = signer.token(BASE_URL + path, **claims)
    return client.post(path, json=body, headers={"Authorization": f"Bearer {tok}"})


def check_card(card: dict[str, Any]) -> None:
    uuid.UUID(card["uuid"])
    assert 0 < len(card["summary"]) <= 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and card["source"]["topic"]["code"]
    for k, v in card.items():
        assert v not in (None, [], "", {}), f"empty optional field {k}"
    for s in card.get("suggestions", []):
        uuid.UUID(s["uuid"])
        assert s["label"] and s["actions"]
        for a in s["actions"]:
            assert a["type"] in ("create", "update", "delete") and a["description"]
    for link in card.get("links", []):
        assert link["type"] in ("absolute", "smart") and link["url"].startswith(BASE_URL + "/")
        if link["type"] == "absolute":
            assert link["url"].startswith(BASE_URL + "/cases/")


# ------------------------------------------------------------------ discovery & cards

def test_discovery(service_app: TestClient) -> None:
    services = {s["id"]: s for s in service_app.get("/cds-services").json()["services"]}
    t = services["sarcoma-treatment"]
    assert t["hook"] == "patient-view" and t["description"] and t["title"]
    assert {"patient", "conditions", "observations", "medicationRequests", "procedures"} <= set(
        t["prefetch"]
    )
    assert t["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    # EHR servers refuse Observation searches without a category
    assert all("category=" in q for k, q in t["prefetch"].items() if q.startswith("Observation?"))
    assert services["sarcoma-order-check"]["hook"] == "order-select"
    assert services["sarcoma-order-sign"]["hook"] == "order-sign"


def test_patient_view_cards(service_app: TestClient, signer: Signer) -> None:
    r = call(service_app, signer, TREAT, hook_request("patient-view"))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert cards
    for c in cards:
        check_card(c)
    main = cards[0]
    assert (
        "GIST" in main["summary"]
        and main["source"]["topic"]["code"] == "gist.recurrent_or_metastatic"
    )
    assert "not an order" in main["detail"]
    assert any("avapritinib" in s["label"] for s in main["suggestions"])
    audit_id = main["links"][0]["url"].rsplit("/", 1)[1]
    rec = service_app.app_services.store.get_record(audit_id)  # type: ignore[attr-defined]
    assert rec["interface"] == "cds-hooks" and rec["caller"] == f"cds:{ISS}"


def test_missing_facts_give_an_info_card(service_app: TestClient, signer: Signer) -> None:
    req = hook_request("patient-view")
    req["prefetch"]["conditions"] = None  # the client found no conditions
    r = call(service_app, signer, TREAT, req)
    (card,) = r.json()["cards"]
    check_card(card)
    assert card["indicator"] == "info" and "histology" in card["summary"]


def test_candidate_groups_ask_for_facts(service_app: TestClient, signer: Signer) -> None:
    r = call(service_app, signer, TREAT, hook_request("patient-view", "extremity-stage-iii"))
    cards = r.json()["cards"]
    for c in cards:
        check_card(c)
    assert "more facts" in cards[0]["summary"] and "resectability" in cards[0]["detail"]


def test_wrong_hook_or_bad_request_is_400(service_app: TestClient, signer: Signer) -> None:
    assert call(service_app, signer, TREAT, hook_request("order-select")).status_code == 400
    req = hook_request("patient-view")
    del req["context"]["patientId"]
    assert call(service_app, signer, TREAT, req).status_code == 400
    assert (
        call(service_app, signer, "/cds-services/nope", hook_request("patient-view")).status_code
        == 404
    )


def test_412_when_not_prefetched_and_no_fhir_server(
    service_app: TestClient, signer: Signer
) -> None:
    r = call(service_app, signer, TREAT, hook_request("patient-view", prefetch=False))
    assert r.status_code == 412


def test_412_when_fhir_server_unreachable(service_app: TestClient, signer: Signer) -> None:
    r = call(service_app, signer, TREAT, hook_request("patient-view", prefetch=False,
                                                      fhirServer="http://127.0.0.1:9"))
    assert r.status_code == 412


# ------------------------------------------------------------------ local FHIR server

class _FhirHandler(BaseHTTPRequestHandler):
    data: ClassVar[dict[str, Any]] = {}
    jwks: ClassVar[dict[str, Any]] = {}
    seen_auth: ClassVar[list[str]] = []

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        routes = {"/fhir/Patient/p1": self.data.get("patient"),
                  "/fhir/Condition?patient=p1": self.data.get("conditions"),
                  "/fhir/Observation?patient=p1&category=laboratory": self.data.get("observations"),
                  "/jwks.json": self.jwks}
        if (
            self.path.startswith("/fhir/")
            and self.headers.get("Authorization") != "Bearer fhir-token"
        ):
            self.send_response(401)
            self.end_headers()
            return
        body = routes.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        if body is not None:
            self.wfile.write(json.dumps(body).encode())


@pytest.fixture
def fhir_server() -> Any:
    _FhirHandler.data = _split(load_fixture_bundle("gist-pdgfra-d842v"))
    _FhirHandler.seen_auth = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FhirHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fhir_app(tmp_path: Path, signer: Signer, fhir_server: str) -> Any:
    """The service with a client whose allow-list names the local FHIR server (plain http: dev
    mode; issue 12, the fhirServer allow-list)."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"iss": signer.iss, "jwks": signer.jwks, "fhir_servers": [fhir_server + "/fhir"]}]}))
    settings = make_settings(tmp_path, base_url=BASE_URL, clients_file=clients, dev_mode=True)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        yield client


def test_fetches_from_fhir_server_when_not_prefetched(
    fhir_app: TestClient, signer: Signer, fhir_server: str
) -> None:
    req = hook_request(
        "patient-view",
        prefetch=False,
        fhirServer=fhir_server + "/fhir",
        fhirAuthorization={
            "access_token": "fhir-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds",
        },
    )
    r = call(fhir_app, signer, TREAT, req)
    assert r.status_code == 200, r.text
    assert r.json()["cards"][0]["source"]["topic"]["code"] == "gist.recurrent_or_metastatic"
    # the searches this server does not answer are named on an info card (never silence)
    assert "could not read the whole record" in r.json()["cards"][-1]["summary"]
    # every prefetch template is fetched; the optional ones this server does not answer (404) are
    # gaps
    assert _FhirHandler.seen_auth.count("Bearer fhir-token") == len(cds_hooks.PREFETCH)


def test_fhir_server_refusing_is_412(
    fhir_app: TestClient, signer: Signer, fhir_server: str
) -> None:
    req = hook_request("patient-view", prefetch=False, fhirServer=fhir_server + "/fhir",
                       fhirAuthorization={"access_token": "wrong", "token_type": "Bearer"})
    assert call(fhir_app, signer, TREAT, req).status_code == 412
    assert _FhirHandler.seen_auth  # the server was asked (and refused)


def test_jwks_url_client(tmp_path: Path, fhir_server: str) -> None:
    s = Signer(iss="https://other-ehr.example.org", kid="remote")
    _FhirHandler.jwks = s.jwks
    clients = tmp_path / "clients.json"
    clients.write_text(
        json.dumps({"clients": [{"iss": s.iss, "jwks_url": fhir_server + "/jwks.json"}]})
    )
    with TestClient(create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients)),
                    base_url=BASE_URL) as c:
        assert call(c, s, TREAT, hook_request("patient-view")).status_code == 200


# ------------------------------------------------------------------ order-select

def _order(drug: str, oid: str = "draft-1") -> dict[str, Any]:
    # RxNorm 282388 is imatinib: it is given only with an imatinib text (the test data once put it
    # beside avapritinib; the order check now reads codes too and would see both drugs).
    coding = {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "282388",
        "display": drug,
    }
    return {
        "resourceType": "MedicationRequest",
        "id": oid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [coding] if "imatinib" in drug.lower() else [],
            "text": drug,
        },
    }


def order_request(drug: str, fixture: str = "gist-pdgfra-d842v") -> dict[str, Any]:
    req = hook_request("order-select", fixture)
    req["context"].update({"selections": ["MedicationRequest/draft-1"],
                           "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": _order(drug)}]}})
    return req


def test_order_check_imatinib_for_d842v(service_app: TestClient, signer: Signer) -> None:
    r = call(service_app, signer, ORDER, order_request("Imatinib 400 MG Oral Tablet"))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    check_card(card)
    assert card["indicator"] in ("warning", "critical")
    assert "imatinib" in card["summary"] and "D842V" in card["detail"]
    assert card["overrideReasons"] and all(
        o["code"] and o["display"] for o in card["overrideReasons"]
    )
    assert card["selectionBehavior"] == "at-most-one"
    sug = card["suggestions"][0]
    assert "avapritinib" in sug["label"]
    types = [a["type"] for a in sug["actions"]]
    assert types == ["delete", "create"]
    assert sug["actions"][0]["resourceId"] == "MedicationRequest/draft-1"
    assert sug["actions"][1]["resource"]["resourceType"] == "MedicationRequest"


def test_order_check_recommended_drug_gives_no_warning(
    service_app: TestClient, signer: Signer
) -> None:
    r = call(service_app, signer, ORDER, order_request("avapritinib 300 mg"))
    assert all(c["indicator"] == "info" for c in r.json()["cards"])


def test_order_check_imatinib_for_kit_exon11_is_fine(
    service_app: TestClient, signer: Signer
) -> None:
    r = call(service_app, signer, ORDER, order_request("imatinib", "gist-kit-exon11"))
    assert not [c for c in r.json()["cards"] if c["indicator"] != "info"]


# ------------------------------------------------------------------ feedback

def test_feedback_is_stored(service_app: TestClient, signer: Signer) -> None:
    cards = call(service_app, signer, ORDER, order_request("imatinib")).json()["cards"]
    cu = cards[0]["uuid"]
    fb = {
        "feedback": [
            {
                "card": cu,
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-01T10:00:00Z",
                "overrideReason": {"reason": cards[0]["overrideReasons"][0], "userComment": "MDT"},
            }
        ]
    }
    r = call(service_app, signer, ORDER + "/feedback", fb)
    assert r.status_code == 200 and r.json() == {}
    store = service_app.app_services.store  # type: ignore[attr-defined]
    audit_id = store.audit_id_for_card(cu)
    rec = store.get_record(audit_id)
    (f,) = rec["feedback"]
    assert f["outcome"] == "overridden" and f["override_reason"]["reason"]["code"] == "mdt-decision"
    ok = {"feedback": [{"card": cards[0]["uuid"], "outcome": "accepted",
                        "acceptedSuggestions": [{"id": cards[0]["suggestions"][0]["uuid"]}]}]}
    assert call(service_app, signer, ORDER + "/feedback", ok).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "x", "outcome": "maybe"}]},
        {"feedback": [{"outcome": "accepted"}]},
        [1],
    ],
)
def test_bad_feedback_is_400(service_app: TestClient, signer: Signer, body: Any) -> None:
    assert call(service_app, signer, ORDER + "/feedback", body).status_code == 400


def test_feedback_needs_a_token(service_app: TestClient) -> None:
    assert service_app.post(ORDER + "/feedback", json={"feedback": []}).status_code == 401


# ------------------------------------------------------------------ JWT

def _hs256(aud: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": ISS, "aud": aud, "iat": now, "exp": now + 60, "jti": "h"},
        "k" * 32,
        algorithm="HS256",
    )


def _none(aud: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": ISS, "aud": aud, "iat": now, "exp": now + 60, "jti": "n"}, None, algorithm="none"
    )


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "bad_signature",
        "wrong_aud",
        "aud_other_path",
        "expired",
        "no_exp",
        "no_iat",
        "no_jti",
        "unknown_iss",
        "hs256",
        "none",
        "future_iat",
        "basic",
    ],
)
def test_jwt_failures_are_401(
    service_app: TestClient, signer: Signer, case: str, caplog: Any
) -> None:
    aud = BASE_URL + TREAT
    now = int(time.time())
    tokens = {
        "missing": None,
        "garbage": "not.a.jwt",
        "bad_signature": Signer(kid="k1").token(aud),
        "wrong_aud": signer.token("http://evil.test" + TREAT),
        "aud_other_path": signer.token(BASE_URL + ORDER),
        "expired": signer.token(aud, iat=now - 600, exp=now - 300),
        "no_exp": signer.token(aud, exp=None),
        "no_iat": signer.token(aud, iat=None),
        "no_jti": signer.token(aud, jti=None),
        "unknown_iss": Signer(iss="https://stranger.example.org").token(aud),
        "hs256": _hs256(aud),
        "none": _none(aud),
        "future_iat": signer.token(aud, iat=now + 600, exp=now + 900),
    }
    headers = {}
    if case == "basic":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    elif tokens[case] is not None:
        headers["Authorization"] = f"Bearer {tokens[case]}"
    caplog.set_level("WARNING")
    r = service_app.post(TREAT, json=hook_request("patient-view"), headers=headers)
    assert r.status_code == 401
    assert "token refused" in caplog.text  # the reason is logged ...
    assert "audience" not in r.text and "expired" not in r.text  # ... not returned


def test_replayed_jti_is_401(service_app: TestClient, signer: Signer) -> None:
    tok = signer.token(BASE_URL + TREAT)
    h = {"Authorization": f"Bearer {tok}"}
    assert service_app.post(TREAT, json=hook_request("patient-view"), headers=h).status_code == 200
    assert service_app.post(TREAT, json=hook_request("patient-view"), headers=h).status_code == 401


def test_extra_claims_and_rs384_accepted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "r1", "alg": "RS384"})
    clients = tmp_path / "c.json"
    clients.write_text(json.dumps({"clients": [{"iss": "rsa-ehr", "jwks": {"keys": [jwk]}}]}))
    with TestClient(create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients)),
                    base_url=BASE_URL) as c:
        now = int(time.time())
        tok = jwt.encode({"iss": "rsa-ehr", "aud": BASE_URL + TREAT, "iat": now, "exp": now + 60,
                          "jti": "r-1", "sub": "x", "nbf": now - 5, "tenant": "t"}, key,
                         algorithm="RS384", headers={"kid": "r1"})
        r = c.post(
            TREAT, json=hook_request("patient-view"), headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200


def test_dev_mode_key_pair(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.security import mint_dev_token

    settings = make_settings(tmp_path, base_url=BASE_URL, dev_mode=True)
    with TestClient(create_app(settings), base_url=BASE_URL) as c:
        tok = mint_dev_token(settings.data_dir / "dev-client-key.pem", BASE_URL + TREAT)
        r = c.post(
            TREAT, json=hook_request("patient-view"), headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200
    # not the default: without dev mode the same token is refused
    with TestClient(create_app(make_settings(tmp_path, base_url=BASE_URL)), base_url=BASE_URL) as c:
        tok = mint_dev_token(settings.data_dir / "dev-client-key.pem", BASE_URL + TREAT)
        assert c.post(TREAT, json=hook_request("patient-view"),
                      headers={"Authorization": f"Bearer {tok}"}).status_code == 401


# ----------------------------------------------------------------- issue 11: orders on real records

SIGN = "/cds-services/sarcoma-order-sign"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _sign_request(
    order: dict[str, Any], fixture: str = "gist-pdgfra-d842v", **extra: Any
) -> dict[str, Any]:
    req = hook_request("order-sign", fixture)
    req["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                     "entry": [{"resource": order}, *extra.get("more", [])]}
    return req


def _warned(cards: list[dict[str, Any]], drug: str) -> bool:
    return any(c["indicator"] in ("warning", "critical") and drug in c["summary"] for c in cards)


@pytest.mark.parametrize(
    "med",
    [
        {
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": "282388"}]}
        },  # ingredient code only
        {
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": RX,
                        "code": "999999",
                        "display": "imatinib mesylate 400 MG Oral Tablet [Gleevec]",
                    }
                ]
            }
        },
        {"medicationCodeableConcept": {"text": "Glivec 400mg"}},  # brand name
        {"medicationReference": {"reference": "Medication/m1"}},
    ],
)
def test_order_sign_recognises_imatinib_however_coded(
    service_app: TestClient, signer: Signer, med: Any
) -> None:
    order = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/p1"}, **med}
    medication = {
        "resource": {
            "resourceType": "Medication",
            "id": "m1",
            "code": {"coding": [{"system": RX, "code": "282388", "display": "imatinib"}]},
        }
    }
    r = call(service_app, signer, SIGN, _sign_request(order, more=[medication]))
    assert r.status_code == 200, r.text
    assert _warned(r.json()["cards"], "imatinib")


def test_order_is_never_silently_unchecked_when_facts_are_missing(
    service_app: TestClient, signer: Signer
) -> None:
    req = _sign_request(_order("imatinib 400 mg"))
    for e in req["prefetch"]["conditions"]["entry"]:
        e["resource"].pop("bodySite", None)  # the primary site is now missing: no recommendation
    cards = call(service_app, signer, SIGN, req).json()["cards"]
    assert any(c["indicator"] == "warning" and "NOT checked" in c["summary"] for c in cards)


def test_prefetch_about_another_patient_is_rejected(
    service_app: TestClient, signer: Signer
) -> None:
    req = hook_request("patient-view")
    intruder = {"resourceType": "Observation", "id": "other-n", "status": "final",
                "subject": {"reference": "Patient/someone-else"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "21900-6"}]},
                "valueCodeableConcept": {"text": "pN1"}}
    req["prefetch"]["observations"]["entry"].append({"resource": intruder})
    bundle, gaps = cds_hooks.gather_bundle(req)
    assert all(e["resource"].get("id") != "other-n" for e in bundle["entry"])
    assert any("someone-else" in g["problem"] for g in gaps)


def test_cards_carry_a_smart_link(service_app: TestClient, signer: Signer) -> None:
    card = call(service_app, signer, TREAT, hook_request("patient-view")).json()["cards"][0]
    smart = [lk for lk in card["links"] if lk["type"] == "smart"]
    assert smart and json.loads(smart[0]["appContext"])["case"]


class _Svc:
    """The parts of Services the card builders read."""

    def __init__(self) -> None:
        from sarcoma_cds import load_kb

        self.kb = load_kb()
        self.disclaimer = "Decision support, not an order."


def test_across_candidates_warns_on_an_incomplete_record() -> None:
    """Imatinib ordered for a PDGFRA D842V GIST whose group is not pinned: the engine's
    across_candidates says it is not recommended in every candidate group, so the check warns."""
    from sarcoma_cds import recommend
    from sarcoma_cds.domain.recommendation import Recommendation

    rec = recommend({"histology": "gist", "primary_site": "stomach", "pdgfra_mutation": "d842v"})
    assert rec.patient_group is None
    data = rec.model_dump(mode="json")
    data["across_candidates"] = [
        {
            "drugs": ["imatinib"],
            "status": "not_recommended",
            "groups": list(rec.candidate_groups),
            "reasons": ["PDGFRA D842V: imatinib does not control these tumours"],
        },
        {
            "drugs": ["avapritinib"],
            "status": "preferred",
            "groups": list(rec.candidate_groups),
            "reasons": [],
        },
    ]
    filled = Recommendation.model_validate(data)
    cards = cds_hooks.order_cards(_Svc(), filled, None, "p1", [_order("imatinib 400 mg")], {})
    assert _warned(cards, "imatinib")
    assert "avapritinib" in cards[0]["suggestions"][0]["label"]
    # and a drug whose status differs between groups only asks for the missing facts
    cards = cds_hooks.order_cards(_Svc(), filled, None, "p1", [_order("sunitinib")], {})
    assert cards and all(c["indicator"] == "info" for c in cards)


def test_end_to_end_imatinib_on_incomplete_d842v_record_warns(
    service_app: TestClient, signer: Signer
) -> None:
    req = _sign_request(_order("imatinib 400 mg"))
    req["prefetch"]["observations"]["entry"] = [e for e in req["prefetch"]["observations"]["entry"]
                                                if e["resource"]["id"] not in ("size", "tnm-cM")]
    req["prefetch"]["conditions"]["entry"] = [e for e in req["prefetch"]["conditions"]["entry"]
                                              if e["resource"]["id"] == "primary"]
    cards = call(service_app, signer, SIGN, req).json()["cards"]
    assert _warned(cards, "imatinib")


def test_patient_view_warns_on_an_active_dangerous_order(
    service_app: TestClient, signer: Signer
) -> None:
    req = hook_request("patient-view")
    active = {**_order("imatinib 400 mg", "active-1"), "status": "active"}
    req["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset",
                                             "entry": [{"resource": active}]}
    cards = call(service_app, signer, TREAT, req).json()["cards"]
    assert _warned(cards, "imatinib")
