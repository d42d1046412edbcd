"""Scale-out (issue 13): two real ``sarcoma-cds serve`` processes on one PostgreSQL behave as
one service behind a load balancer.

* a CDS Hooks token accepted by one replica is refused when replayed on the other (the JWT
  replay store is in the database, not in a process);
* the audit trail written through one replica is readable through the other.

Skipped without PostgreSQL (``SARCOMA_CDS_TEST_PG_URL``) unless
``SARCOMA_CDS_REQUIRE_SERVICES=1``, where it fails instead.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import pg_url_or_skip, write_api_keys
from sarcoma_cds.interfaces.api.security import dev_client, mint_dev_token
from server_process import Server

pytestmark = pytest.mark.postgres

#: the public URL both replicas answer for (their load balancer's): token audiences name it
PUBLIC = "https://cds.example.test"
HOOK = "/cds-services/sarcoma-treatment"
FACTS = {"histology": "gist", "primary_site": "stomach", "size_cm": 7.0,
         "mitotic_rate_per_5mm2": 8, "disease_status": "primary", "metastasis": "M0"}


def _patient_view(pid: str) -> dict[str, object]:
    patient = {"resourceType": "Patient", "id": pid, "birthDate": "1961-04-02"}
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                 "code": "C49.A2"}]}}
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": pid},
            "prefetch": {"patient": patient,
                         "conditions": {"resourceType": "Bundle", "type": "searchset",
                                        "entry": [{"resource": cond}]},
                         "observations": {"resourceType": "Bundle", "type": "searchset",
                                          "entry": []}}}


@pytest.fixture
def replicas(tmp_path: Path) -> object:
    pg = pg_url_or_skip()
    keys = write_api_keys(tmp_path, {"auditor": "key-auditor"})
    # one CDS client (the dev-mode key pair) trusted by both replicas, as every replica would
    # be configured alike; each replica has its own data directory
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    _, key_path = dev_client(dir_a)
    dir_b.mkdir()
    shutil.copy(key_path, dir_b / key_path.name)
    from cryptography.fernet import Fernet

    # every replica shares the data keys, as a deployment must (stored facts are encrypted)
    env = {"DATABASE_URL": pg, "SARCOMA_CDS_API_KEYS": str(keys), "SARCOMA_CDS_DEV_MODE": "1",
           "SARCOMA_CDS_BASE_URL": PUBLIC, "SARCOMA_CDS_DATA_KEYS": Fernet.generate_key().decode()}
    with Server(dir_a, env=env, base_url=False) as a, Server(dir_b, env=env, base_url=False) as b:
        yield a, b, key_path


def test_a_token_accepted_by_one_replica_is_refused_by_the_other(replicas: object) -> None:
    a, b, key_path = replicas  # type: ignore[misc]
    token = mint_dev_token(key_path, PUBLIC + HOOK)
    auth = {"Authorization": f"Bearer {token}"}
    first = httpx.post(a.url + HOOK, json=_patient_view("p-scale"), headers=auth, timeout=30)
    assert first.status_code == 200, first.text
    replay = httpx.post(b.url + HOOK, json=_patient_view("p-scale"), headers=auth, timeout=30)
    assert replay.status_code == 401
    again = httpx.post(a.url + HOOK, json=_patient_view("p-scale"), headers=auth, timeout=30)
    assert again.status_code == 401
    # the other replica does accept a fresh token: the refusal was the replay
    fresh = {"Authorization": f"Bearer {mint_dev_token(key_path, PUBLIC + HOOK)}"}
    assert httpx.post(b.url + HOOK, json=_patient_view("p-scale"), headers=fresh,
                      timeout=30).status_code == 200


def test_the_audit_trail_written_through_one_replica_is_read_through_the_other(
    replicas: object,
) -> None:
    a, b, key_path = replicas  # type: ignore[misc]
    key = {"Authorization": "Bearer key-auditor"}
    r = httpx.post(a.url + "/recommendations", json=FACTS, headers=key, timeout=30)
    assert r.status_code == 200, r.text
    audit_id = r.headers["X-Audit-ID"]
    got = httpx.get(f"{b.url}/audit/{audit_id}", headers=key, timeout=30)
    assert got.status_code == 200, got.text
    record = got.json()
    assert record["id"] == audit_id and record["interface"] == "rest"
    assert record["caller"] == "apikey:auditor"
    assert record["recommendation"] == r.json()  # the recommendation as served by the other
    # and the other way round, for a CDS Hooks call
    token = mint_dev_token(key_path, PUBLIC + HOOK)
    cds = httpx.post(b.url + HOOK, json=_patient_view("p-trail"),
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert cds.status_code == 200, cds.text
    link = next(lk["url"] for c in cds.json()["cards"] for lk in c.get("links", [])
                if "/cases/" in lk["url"])
    cds_id = link.rsplit("/cases/", 1)[1]
    via_a = httpx.get(f"{a.url}/audit/{cds_id}", headers=key, timeout=30)
    assert via_a.status_code == 200 and via_a.json()["interface"] == "cds-hooks"
