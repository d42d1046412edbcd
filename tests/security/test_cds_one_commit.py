"""A CDS Hooks call stores its token id and its audit record in one group commit (issue 13).

The replay check is not weakened by it: the token id is inserted first in the transaction and
the audit row (with its cards) only when the id was new. A replayed token gets a bare 401, no
cards, and leaves no audit record and no card; a token that needs a FHIR fetch is spent before
anything is fetched (no request to the EHR on a replay); a refused call (400) spends its token
too. Real HTTP, a real store (SQLite, and PostgreSQL when configured).
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, Signer, make_settings, pg_url_or_skip
from sarcoma_cds import recommend
from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.store import AuditStore
from sarcoma_cds.store.models import AuditRecord, CdsCard
from tests.security.fhir_servers import recorder, split_fixture
from tests.security.uvicorn_live import live_server
from tests.test_cds_hooks import hook_request

TREAT = "/cds-services/sarcoma-treatment"


def _counts(store: AuditStore) -> tuple[int, int]:
    with store.sessions() as s:
        return (int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0),
                int(s.scalar(select(func.count()).select_from(CdsCard)) or 0))


@pytest.fixture
def ehr() -> Signer:
    return Signer(iss="https://ehr.example.org")


@pytest.fixture
def client(tmp_path: Path, ehr: Signer) -> Iterator[TestClient]:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": ehr.iss, "jwks": ehr.jwks}]}))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients))
    with TestClient(app, base_url=BASE_URL) as c:
        yield c


def test_a_replayed_token_gets_no_cards_and_leaves_no_record(client: TestClient,
                                                             ehr: Signer) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    h = {"Authorization": f"Bearer {ehr.token(BASE_URL + TREAT)}"}
    first = client.post(TREAT, json=hook_request("patient-view"), headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["cards"]
    after_first = _counts(store)
    assert after_first[0] == 1 and after_first[1] == len(first.json()["cards"])
    for _ in range(3):  # the same token again, with another (valid) request
        again = client.post(TREAT, json=hook_request("patient-view"), headers=h)
        assert again.status_code == 401
        assert "cards" not in again.text
    assert _counts(store) == after_first  # no audit record, no card of the replays


def test_concurrent_replays_of_one_token_are_answered_once(tmp_path: Path, ehr: Signer) -> None:
    """Eight calls with one token at once (they share group commits): one 200, seven 401, one
    audit record."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": ehr.iss, "jwks": ehr.jwks}]}))
    app = create_app(make_settings(tmp_path, clients_file=clients))
    store = app.state.services.store
    with live_server(app) as url:
        aud = url + TREAT
        h = {"Authorization": f"Bearer {ehr.token(aud)}"}
        start = threading.Barrier(8)

        def post(_: int) -> int:
            start.wait(30)
            return httpx.post(aud, json=hook_request("patient-view"), headers=h,
                              timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(post, range(8)))
    assert codes == [200] + [401] * 7
    assert _counts(store)[0] == 1


def test_a_replayed_token_fetches_nothing_from_the_ehr(tmp_path: Path, ehr: Signer) -> None:
    """A call that needs a FHIR fetch spends its token before fetching: its replay is refused
    without a request to the EHR's FHIR server."""
    with recorder(routes=split_fixture()) as server:
        clients = tmp_path / "clients.json"
        clients.write_text(json.dumps({"clients": [
            {"iss": ehr.iss, "jwks": ehr.jwks, "fhir_servers": [server.base + "/fhir"]}]}))
        app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                                       dev_mode=True))
        with TestClient(app, base_url=BASE_URL) as c:
            req = hook_request("patient-view", prefetch=False, fhirServer=server.base + "/fhir",
                               fhirAuthorization={"access_token": "t", "token_type": "Bearer"})
            h = {"Authorization": f"Bearer {ehr.token(BASE_URL + TREAT)}"}
            r = c.post(TREAT, json=req, headers=h)
            assert r.status_code == 200, r.text
            fetched = len(server.hits)
            assert fetched > 0
            again = c.post(TREAT, json=req, headers=h)
            assert again.status_code == 401
            assert len(server.hits) == fetched  # nothing fetched for the replay
            assert _counts(c.app.state.services.store)[0] == 1  # type: ignore[attr-defined]


def test_a_refused_call_spends_its_token(client: TestClient, ehr: Signer) -> None:
    h = {"Authorization": f"Bearer {ehr.token(BASE_URL + TREAT)}"}
    bad = client.post(TREAT, json={"hook": "patient-view"}, headers=h)  # no hookInstance...
    assert bad.status_code == 400
    again = client.post(TREAT, json=hook_request("patient-view"), headers=h)
    assert again.status_code == 401  # the token was presented once already
    assert _counts(client.app.state.services.store)[0] == 0  # type: ignore[attr-defined]


def test_an_info_card_answer_spends_its_token(client: TestClient, ehr: Signer) -> None:
    """A call whose record lacks what a recommendation needs gets an info card and no audit
    record; its token is spent all the same."""
    h = {"Authorization": f"Bearer {ehr.token(BASE_URL + TREAT)}"}
    req = hook_request("patient-view", fixture=None)
    req["prefetch"] = {"patient": {"resourceType": "Patient", "id": "p1"},
                       "conditions": {"resourceType": "Bundle", "type": "searchset",
                                      "entry": []},
                       "observations": {"resourceType": "Bundle", "type": "searchset",
                                        "entry": []}}
    first = client.post(TREAT, json=req, headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["cards"][0]["indicator"] == "info"
    assert client.post(TREAT, json=req, headers=h).status_code == 401


def _row(store: AuditStore, caller: str) -> AuditRecord:
    facts = {"histology": "gist", "primary_site": "stomach", "size_cm": 6.0,
             "mitotic_rate_per_5mm2": 4, "disease_status": "primary", "metastasis": "M0"}
    return store.build_record(recommend(facts), facts, interface="cds-hooks", caller=caller,
                              request_id="r")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_in_one_batch_only_the_row_of_a_new_token_id_is_written(tmp_path: Path,
                                                                backend: str) -> None:
    """The writer's own contract: rows with one token id in one batch (and a row with a token
    id stored earlier): only the first row of a new id is written, with its cards."""
    url = pg_url_or_skip() if backend == "postgresql" else f"sqlite:///{tmp_path / 'a.sqlite3'}"
    store = AuditStore.open(url)
    try:
        exp = datetime.now(UTC) + timedelta(minutes=5)
        iss = "https://ehr.example.org"
        old, new = f"old-{uuid.uuid4()}", f"new-{uuid.uuid4()}"  # (a database kept between runs)
        assert store.remember_jti(iss, old, exp) is True
        rows = [_row(store, "a"), _row(store, "b"), _row(store, "c")]
        before = _counts(store)
        from sarcoma_cds.store.group_commit import _Pending
        from sarcoma_cds.store.repository import _jti_digest

        batch = [_Pending(rows[0], (str(uuid.uuid4()),), "s", jti=(iss, _jti_digest(new), exp)),
                 _Pending(rows[1], (str(uuid.uuid4()),), "s", jti=(iss, _jti_digest(new), exp)),
                 _Pending(rows[2], (str(uuid.uuid4()),), "s", jti=(iss, _jti_digest(old), exp))]
        assert store.writer._write(batch) == [rows[0].id, None, None]
        assert _counts(store) == (before[0] + 1, before[1] + 1)
        with store.sessions() as s:
            ids = set(s.scalars(select(AuditRecord.id).where(
                AuditRecord.id.in_([r.id for r in rows]))))
        assert ids == {rows[0].id}
    finally:
        store.close()
