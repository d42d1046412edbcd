"""Health and storage failures (issue 12, item 6).

* ``/healthz`` says when the database cannot be written (a read-only SQLite file; PostgreSQL in
  read-only transactions; PostgreSQL unreachable), instead of ``ok`` because ``SELECT 1`` works;
* a storage failure answers 503 (a problem document, or a page for a browser), never 500;
* NUL characters in labels, notes and feedback are stored safely on the real PostgreSQL;
* a CDS card's audit record and its card links are written in one transaction: when the card
  links cannot be written, no audit record stays behind.

Every failure is a real one (an immutable database file, a PostgreSQL session that refuses
writes, a closed port, a database trigger refusing inserts); requests go over HTTP through
TestClient.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.store import AuditStore
from tests.conftest_service import (
    BASE_URL,
    Signer,
    load_fixture_bundle,
    make_settings,
    pg_url_or_skip,
    write_clients,
)

FACTS = {"histology": "gist", "primary_site": "stomach", "size_cm": 8,
         "mitotic_rate_per_5mm2": 6, "metastasis": "M0", "resectability": "unresectable",
         "disease_status": "primary", "pdgfra_mutation": "d842v"}
FORM = {k: str(v) for k, v in FACTS.items()}
HTML = {"accept": "text/html"}
TREAT = "/cds-services/sarcoma-treatment"


def _token(c: TestClient) -> str:
    page = c.get("/patient", headers=HTML).text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def _is_503_problem(r: Any) -> dict[str, Any]:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"]
    body: dict[str, Any] = r.json()
    assert body["status"] == 503 and "Traceback" not in r.text
    return body


def _is_503_page(r: Any) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html")
    assert "Service unavailable" in r.text and "Nothing was saved" in r.text


def _hook_request() -> dict[str, Any]:
    res = [e["resource"] for e in load_fixture_bundle("gist-pdgfra-d842v")["entry"]]
    sb = lambda rt: {"resourceType": "Bundle", "type": "searchset",  # noqa: E731
                     "entry": [{"resource": r} for r in res if r["resourceType"] == rt]}
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": next(r for r in res if r["resourceType"] == "Patient"),
                         "conditions": sb("Condition"), "observations": sb("Observation")}}


# ------------------------------------------------------------------ SQLite: read-only file

def _chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Any]:
    """Makes files immutable (read-only even for root: the test may run as root) and undoes it."""
    done: list[Path] = []

    def make(*paths: Path) -> None:
        if not _chattr("+i", *paths):
            pytest.skip("chattr +i is not available here (needs root on ext4)")
        done.extend(paths)

    yield make
    if done:
        _chattr("-i", *done)


def test_read_only_sqlite_file_is_reported_and_answered_503(tmp_path: Path,
                                                            immutable: Any) -> None:
    app = create_app(make_settings(tmp_path))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
        token = _token(c)
        assert c.post("/recommendations", json=FACTS).status_code == 200
        db = tmp_path / "data" / "sarcoma-cds.sqlite3"
        immutable(db, Path(str(db) + "-wal"))  # (not -shm: SQLite maps it into memory)
        # the open connection fails with a disk I/O error ...
        _is_503_problem(c.post("/recommendations", json=FACTS))
        # ... and a new connection finds a read-only database
        app.state.services.store.engine.dispose()
        health = c.get("/healthz")
        assert _is_503_problem(health)["database"] == "read-only"
        assert "cannot be written" in health.json()["detail"]
        _is_503_problem(c.post("/recommendations", json=FACTS))
        _is_503_page(c.post("/patient", data={**FORM, "csrf_token": token}, headers=HTML))
        _is_503_page(c.post("/cases", data={**FORM, "csrf_token": token}, headers=HTML))
        assert c.get("/cases", headers=HTML).status_code == 200  # reading still works


# ------------------------------------------------------------------ PostgreSQL

def _read_only_url(url: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-c%20default_transaction_read_only%3Don"


@pytest.mark.postgres
def test_postgres_refusing_writes_is_reported_and_answered_503(tmp_path: Path) -> None:
    url = pg_url_or_skip()
    AuditStore.open(url).close()  # the schema exists
    settings = make_settings(tmp_path, database_url=_read_only_url(url), run_migrations=False)
    with TestClient(create_app(settings), base_url=BASE_URL,
                    raise_server_exceptions=False) as c:
        assert _is_503_problem(c.get("/healthz"))["database"] == "read-only"
        _is_503_problem(c.post("/recommendations", json=FACTS))
        _is_503_problem(c.post("/fhir/recommendations",
                               json=load_fixture_bundle("gist-pdgfra-d842v")))
        token = _token(c)
        _is_503_page(c.post("/cases", data={**FORM, "csrf_token": token}, headers=HTML))
        assert c.get("/cases", headers=HTML).status_code == 200


def test_unreachable_database_is_reported_and_answered_503(tmp_path: Path) -> None:
    """PostgreSQL stopped: nothing listens on the configured port."""
    dead = "postgresql+psycopg://sarcoma:sarcoma@127.0.0.1:1/sarcoma_test"
    settings = make_settings(tmp_path, database_url=dead, run_migrations=False)
    with TestClient(create_app(settings), base_url=BASE_URL,
                    raise_server_exceptions=False) as c:
        health = _is_503_problem(c.get("/healthz"))
        assert health["database"] == "unreachable" and health["detail"] == "database unavailable"
        problem = _is_503_problem(c.post("/recommendations", json=FACTS))
        assert "sarcoma:sarcoma" not in problem["detail"] and "127.0.0.1:1" not in problem["detail"]
        _is_503_page(c.post("/patient", data={**FORM, "csrf_token": _token(c)}, headers=HTML))


@pytest.mark.postgres
def test_nul_characters_are_stored_safely_on_postgres(tmp_path: Path) -> None:
    url = pg_url_or_skip()
    signer = Signer()
    settings = make_settings(tmp_path, database_url=url, base_url=BASE_URL,
                             clients_file=write_clients(tmp_path, signer))
    with TestClient(create_app(settings), base_url=BASE_URL,
                    raise_server_exceptions=False) as c:
        token = _token(c)
        r = c.post("/cases", data={**FORM, "case_label": "bed\x00 12", "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        case = r.headers["location"]
        r = c.post(case + "/decision", follow_redirects=False, data={
            "outcome": "deferred", "rationale": "MDT\x00 said so",
            "clinician": "Dr\x00 X", "csrf_token": token})
        assert r.status_code == 303, r.text[:300]
        page = c.get(case, headers=HTML)
        assert page.status_code == 200 and "MDT" in page.text
        # a CDS client's feedback with NUL in the override comment
        jwt = signer.token(BASE_URL + TREAT)
        cards = c.post(TREAT, json=_hook_request(),
                       headers={"Authorization": f"Bearer {jwt}"}).json()["cards"]
        fb = {"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden",
                            "outcomeTimestamp": "2026-01-01T10:00:00Z",
                            "overrideReason": {"userComment": "no\x00 way"}}]}
        jwt = signer.token(BASE_URL + TREAT + "/feedback")
        r = c.post(TREAT + "/feedback", json=fb, headers={"Authorization": f"Bearer {jwt}"})
        assert r.status_code == 200, r.text[:300]
        # facts with NUL are refused as invalid facts, not a database error
        r = c.post("/recommendations", json={**FACTS, "histology": "gist\x00"})
        assert r.status_code == 422
        store = c.app.state.services.store  # type: ignore[attr-defined]
        rec = store.get_record(case.rsplit("/", 1)[1])
        assert rec["label"] == "bed\ufffd 12"
        assert "MDT\ufffd said so" in rec["feedback"][0]["note"]


# ------------------------------------------------------------------ CDS: one transaction

def test_cds_audit_record_and_card_links_are_one_transaction(tmp_path: Path) -> None:
    signer = Signer()
    settings = make_settings(tmp_path, base_url=BASE_URL,
                             clients_file=write_clients(tmp_path, signer))
    with TestClient(create_app(settings), base_url=BASE_URL,
                    raise_server_exceptions=False) as c:
        store = c.app.state.services.store  # type: ignore[attr-defined]
        jwt = signer.token(BASE_URL + TREAT)
        ok = c.post(TREAT, json=_hook_request(), headers={"Authorization": f"Bearer {jwt}"})
        assert ok.status_code == 200
        for card in ok.json()["cards"]:  # every card served is linked to its record
            assert store.audit_id_for_card(card["uuid"]) is not None
        before = store.count()
        # the card table starts refusing writes (a real database error, raised by a trigger)
        con = sqlite3.connect(tmp_path / "data" / "sarcoma-cds.sqlite3")
        con.execute("CREATE TRIGGER refuse_cards BEFORE INSERT ON cds_cards "
                    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        con.commit()
        con.close()
        jwt = signer.token(BASE_URL + TREAT)
        r = c.post(TREAT, json=_hook_request(), headers={"Authorization": f"Bearer {jwt}"})
        _is_503_problem(r)
        assert store.count() == before  # no audit record without its cards
