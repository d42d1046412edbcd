"""Group commit of audit records (issue 13): many requests' rows in one transaction, each
request answered only after the transaction holding its row committed.

* many concurrent writers: every id returned is in the database (SQLite and PostgreSQL);
* a real server SIGKILLed mid-load (between batches) loses no answered record;
* a batch whose transaction fails answers exactly its requests with an error and no id, and
  the writer goes on with the next batch; through HTTP the answer is a 503 problem without
  ``X-Audit-ID``.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import make_settings, pg_url_or_skip, write_api_keys
from sarcoma_cds import recommend
from sarcoma_cds.store import AuditStore
from sarcoma_cds.store.group_commit import AuditWriteFailed, GroupCommitWriter
from sarcoma_cds.store.models import AuditRecord, CdsCard
from server_process import Server

FACTS = {"histology": "gist", "primary_site": "stomach", "size_cm": 6.0,
         "mitotic_rate_per_5mm2": 4, "disease_status": "primary", "metastasis": "M0"}


def varied(i: int) -> dict[str, Any]:
    """A different patient for each i (size and mitotic rate vary)."""
    return {**FACTS, "size_cm": 1.0 + (i % 23), "mitotic_rate_per_5mm2": i % 11}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    return pg_url_or_skip()


def _ids_in_db(store: AuditStore, caller: str) -> set[str]:
    with store.sessions() as s:
        return set(s.scalars(select(AuditRecord.id).where(AuditRecord.caller == caller)))


def test_many_concurrent_writers_every_returned_id_is_committed(db_url: str) -> None:
    store = AuditStore.open(db_url)
    caller = f"gc-{uuid.uuid4().hex[:8]}"
    rec = recommend(FACTS)

    def client(t: int) -> list[str]:
        ids = []
        for i in range(40):
            row = store.build_record(rec, FACTS, interface="rest", caller=caller,
                                     request_id=f"{t}-{i}")
            ids.append(store.write_record(row, [str(uuid.uuid4())], "svc"))
        return ids

    try:
        with ThreadPoolExecutor(16) as ex:
            returned = [a for ids in ex.map(client, range(16)) for a in ids]
        assert len(returned) == len(set(returned)) == 640
        assert _ids_in_db(store, caller) == set(returned)
        with store.sessions() as s:  # each row's card was written with it
            cards = s.scalar(select(func.count()).select_from(CdsCard)
                             .where(CdsCard.audit_id.in_(returned)))
        assert cards == 640
        # the rows were grouped: fewer transactions than rows
        assert store.writer.rows >= 640 and store.writer.batches < store.writer.rows
    finally:
        store.close()


def test_a_token_id_is_accepted_once_among_concurrent_replays(db_url: str) -> None:
    """The replay store goes through the group commit: 16 threads presenting the same JWT id at
    once (in one batch or several) get exactly one acceptance."""
    from datetime import UTC, datetime, timedelta

    store = AuditStore.open(db_url)
    jti, exp = str(uuid.uuid4()), datetime.now(UTC) + timedelta(minutes=5)
    start = threading.Barrier(16)

    def present(_: int) -> bool:
        start.wait(30)
        return store.remember_jti("https://ehr.example.org", jti, exp)

    try:
        with ThreadPoolExecutor(16) as ex:
            answers = list(ex.map(present, range(16)))
        assert answers.count(True) == 1
        assert store.remember_jti("https://other.example.org", jti, exp) is True
    finally:
        store.close()


def test_one_token_id_twice_in_one_batch_is_accepted_once(db_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    store = AuditStore.open(db_url)
    iss, exp = "https://ehr.example.org", datetime.now(UTC) + timedelta(minutes=5)
    j, k = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        batch = [(iss, j, exp), (iss, j, exp), (iss, k, exp)]
        assert store.writer.write_batch([], batch) == [True, False, True]
        assert store.writer.write_batch([], batch) == [False, False, False]
    finally:
        store.close()


def _writer_is_committing(writer: GroupCommitWriter) -> bool:
    """True once the writer thread is inside a batch's transaction (past taking its rows)."""
    thread = writer._thread
    frame = sys._current_frames().get(thread.ident) if thread and thread.ident else None
    while frame is not None:
        if frame.f_code.co_name in ("write_batch", "_write"):  # (its transaction)
            return True
        frame = frame.f_back
    return False


def test_a_failed_batch_fails_exactly_its_requests_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    store = AuditStore.open(f"sqlite:///{db}")
    with store.engine.begin() as conn:  # the database refuses one caller's rows
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_records "
            "WHEN NEW.caller = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    rec = recommend(FACTS)

    def row(caller: str) -> AuditRecord:
        return store.build_record(rec, FACTS, interface="rest", caller=caller, request_id="r")

    try:
        first = store.write_record(row("good"))  # answered before anything fails
        # another connection holds the write lock, so the next rows gather into one batch
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        a = row("good")
        fa = store.submit_record(a)
        deadline = time.monotonic() + 30
        while not _writer_is_committing(store.writer) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _writer_is_committing(store.writer)
        queued = [row("good"), row("poison"), row("good")]
        futures: list[Future[str]] = [store.submit_record(r) for r in queued]
        blocker.execute("ROLLBACK")
        blocker.close()

        assert fa.result(timeout=60) == a.id  # the batch before the failure committed
        for f in futures:  # the failed batch: every request in it gets an error, no id
            with pytest.raises(AuditWriteFailed):
                f.result(timeout=60)
        in_db = _ids_in_db(store, "good") | _ids_in_db(store, "poison")
        assert first in in_db and a.id in in_db
        assert not {r.id for r in queued} & in_db
        # the writer goes on: the next batch commits
        later = store.write_record(row("good"))
        assert later in _ids_in_db(store, "good")
    finally:
        store.close()


def test_http_answer_of_a_failed_commit_is_503_without_an_id(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sarcoma_cds.interfaces.api import create_app

    keys = write_api_keys(tmp_path, {"poison": "key-poison", "clinic": "key-clinic"})
    app = create_app(make_settings(tmp_path, api_keys_file=keys))
    store = app.state.services.store
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_records "
            "WHEN NEW.caller = 'apikey:poison' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with TestClient(app) as c:
        bad = c.post("/recommendations", json=FACTS, headers={
            "Authorization": "Bearer key-poison", "X-Request-ID": "refused1"})
        good = c.post("/recommendations", json=FACTS,
                      headers={"Authorization": "Bearer key-clinic"})
    assert bad.status_code == 503, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "X-Audit-ID" not in bad.headers and "audit record" in bad.json()["detail"]
    assert "Traceback" not in bad.text and "refused" not in bad.json()["detail"]
    assert good.status_code == 200 and store.get_record(good.headers["X-Audit-ID"]) is not None
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditRecord)
                        .where(AuditRecord.request_id == "refused1")) == 0


def test_sigkill_mid_load_loses_no_answered_record(tmp_path: Path) -> None:
    """A real server (two worker processes) under 16 concurrent clients is SIGKILLed after some
    hundreds of answers: every request answered 200 has its audit record in the database."""
    data = tmp_path / "data"
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + 90  # bounded in time and in count

    with Server(data, workers=2) as server:
        def client(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                i = n
                while not stop.is_set() and time.monotonic() < deadline and i < 100_000:
                    i += 16
                    try:
                        r = c.post("/recommendations", json=varied(i))
                    except httpx.TransportError:
                        return  # the server was killed under this request
                    if r.status_code == 200:
                        with lock:
                            answered.append(r.headers["X-Audit-ID"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        while len(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill()  # mid-load: requests are in flight and rows are queued
        stop.set()
        for t in threads:
            t.join(60)
    with lock:
        ids = list(answered)
    assert len(ids) >= 400
    store = AuditStore.open(f"sqlite:///{data / 'sarcoma-cds.sqlite3'}")
    try:
        assert set(ids) <= _ids_in_db(store, "local")
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        store.close()
