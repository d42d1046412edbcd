"""CDS Hooks clients have roles too (issue 12): a client's entry in the clients file gains
``roles`` (``viewer``: call the hooks; ``clinician``: also send feedback; default both, what a
CDS client could do before roles). A client whose entry lacks the role is refused 403 with a
problem document, with a real signed token over real HTTP, before its record is read; no CDS
client can hold ``auditor`` or ``admin`` (the audit trail is never open to a CDS token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest_service import BASE_URL, Signer, make_settings
from tests.test_cds_hooks import hook_request, order_request

TREAT = "/cds-services/sarcoma-treatment"
ORDER = "/cds-services/sarcoma-order-check"


@pytest.fixture
def signers() -> dict[str, Signer]:
    return {name: Signer(iss=f"https://{name}.example.org")
            for name in ("legacy", "viewer", "clinician", "suspended")}


@pytest.fixture
def client(tmp_path: Path, signers: dict[str, Signer]) -> Iterator[TestClient]:
    from sarcoma_cds.interfaces.api import create_app

    roles: dict[str, list[str] | None] = {"legacy": None, "viewer": ["viewer"],
                                          "clinician": ["clinician"], "suspended": []}
    entries: list[dict[str, Any]] = []
    for name, s in signers.items():
        entry: dict[str, Any] = {"iss": s.iss, "jwks": s.jwks}
        if roles[name] is not None:
            entry["roles"] = roles[name]
        entries.append(entry)
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": entries}))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients))
    with TestClient(app, base_url=BASE_URL) as c:
        yield c


def call(c: TestClient, signer: Signer, path: str, body: Any) -> Any:
    tok = signer.token(BASE_URL + path)
    return c.post(path, json=body, headers={"Authorization": f"Bearer {tok}"})


def feedback(card: str) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": "accepted",
                          "outcomeTimestamp": "2026-11-30T10:00:00Z"}]}


def records(c: TestClient) -> int:
    items, _ = c.app.state.services.store.page(limit=100)  # type: ignore[attr-defined]
    return len(items)


def test_entry_without_roles_keeps_hooks_and_feedback(client: TestClient,
                                                      signers: dict[str, Signer]) -> None:
    r = call(client, signers["legacy"], ORDER, order_request("imatinib"))
    assert r.status_code == 200, r.text
    card = r.json()["cards"][0]["uuid"]
    assert call(client, signers["legacy"], ORDER + "/feedback", feedback(card)).status_code == 200


def test_clinician_calls_and_gives_feedback(client: TestClient,
                                            signers: dict[str, Signer]) -> None:
    r = call(client, signers["clinician"], ORDER, order_request("imatinib"))
    assert r.status_code == 200, r.text
    card = r.json()["cards"][0]["uuid"]
    r = call(client, signers["clinician"], ORDER + "/feedback", feedback(card))
    assert r.status_code == 200, r.text


def test_viewer_calls_but_its_feedback_is_refused(client: TestClient,
                                                  signers: dict[str, Signer]) -> None:
    r = call(client, signers["viewer"], ORDER, order_request("imatinib"))
    assert r.status_code == 200, r.text
    card = r.json()["cards"][0]["uuid"]
    r = call(client, signers["viewer"], ORDER + "/feedback", feedback(card))
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 403 and "clinician role" in problem["detail"]
    assert client.app.state.services.store.list_feedback() == []  # type: ignore[attr-defined]


def test_client_without_viewer_is_refused_before_its_record_is_read(
        client: TestClient, signers: dict[str, Signer]) -> None:
    before = records(client)
    r = call(client, signers["suspended"], TREAT, hook_request("patient-view"))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "viewer role" in r.json()["detail"] and "Traceback" not in r.text
    assert records(client) == before  # nothing computed, nothing audited


def test_a_refused_token_is_still_401_not_403(client: TestClient,
                                              signers: dict[str, Signer]) -> None:
    """The role check comes after the token check: an unknown signer learns nothing."""
    r = call(client, Signer(iss=signers["suspended"].iss), TREAT, hook_request("patient-view"))
    assert r.status_code == 401


def test_a_cds_token_never_opens_the_audit_trail(client: TestClient,
                                                 signers: dict[str, Signer]) -> None:
    tok = signers["clinician"].token(BASE_URL + "/audit")
    assert client.get("/audit", headers={"Authorization": f"Bearer {tok}"}).status_code == 401


@pytest.mark.parametrize("roles, message", [
    (["auditor"], "cannot hold 'auditor'"), (["admin"], "cannot hold 'admin'"),
    (["surgeon"], "unknown role 'surgeon'"), ("viewer", "must be a list"),
])
def test_roles_a_cds_client_cannot_hold_stop_the_start(tmp_path: Path, roles: Any,
                                                       message: str) -> None:
    from sarcoma_cds.interfaces.api.security import JwtVerifier

    s = Signer()
    p = tmp_path / "clients.json"
    p.write_text(json.dumps({"clients": [{"iss": s.iss, "jwks": s.jwks, "roles": roles}]}))
    with pytest.raises(ValueError, match=message) as e:
        JwtVerifier.from_file(p, lambda *_: True)
    assert "clients[0]" in str(e.value)
