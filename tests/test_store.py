"""Audit store: SQLite file and PostgreSQL, migrations, atomic writes, crash safety, export."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import pg_url_or_skip
from sarcoma_cds import recommend
from sarcoma_cds.store import AuditStore, facts_digest

FACTS = {
    "histology": "gist",
    "primary_site": "stomach",
    "pdgfra_mutation": "d842v",
    "metastasis": "M1",
    "metastatic_sites": ["lung", "liver"],
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    return pg_url_or_skip()


@pytest.fixture
def store(db_url: str) -> Any:
    s = AuditStore.open(db_url)
    yield s
    s.close()


def test_digest_is_canonical() -> None:
    a = facts_digest(FACTS)
    b = facts_digest({**FACTS, "metastatic_sites": ["liver", "lung"], "ecog": None})
    assert a == b and a.startswith("sha256:") and len(a) == 71
    assert facts_digest({**FACTS, "metastasis": "M0"}) != a


def test_record_and_read(store: AuditStore) -> None:
    rec = recommend(FACTS)
    caller = f"t-{uuid.uuid4().hex[:8]}"
    aid = store.record_recommendation(rec, FACTS, interface="rest", caller=caller, request_id="r1")
    got = store.get_record(aid)
    assert got is not None
    assert (
        got["caller"] == caller
        and got["interface"] == "rest"
        and got["kb_hash"] == rec.guideline.content_hash
    )
    assert got["kb_version"] == rec.guideline.version and got["facts_digest"] == facts_digest(FACTS)
    assert got["raw_facts"] is None and got["group_id"] == "gist.recurrent_or_metastatic"
    assert got["statuses"]["options"]["1/targeted_systemic_therapy/avapritinib"] == "preferred"
    assert got["recommendation"]["patient_group"]["id"] == "gist.recurrent_or_metastatic"
    assert got["created_at"].endswith("+00:00")
    raw = store.record_recommendation(
        rec, FACTS, interface="web", caller=caller, request_id="r2", store_raw=True
    )
    assert store.get_record(raw)["raw_facts"]["pdgfra_mutation"] == "d842v"
    d = store.record_decision(aid, outcome="overridden", caller="dr-x", treatment="imatinib",
                              override_reason={"code": "mdt-decision"}, note="tumour board")
    assert d and store.get_record(aid)["feedback"][0]["override_reason"] == {"code": "mdt-decision"}


def test_write_is_all_or_nothing(store: AuditStore) -> None:
    rec = recommend(FACTS)
    card = str(uuid.uuid4())
    store.record_recommendation(
        rec, FACTS, interface="cds-hooks", caller="c", request_id="r", card_uuids=[card]
    )
    before = store.count()
    from sqlalchemy.exc import IntegrityError

    from sarcoma_cds.store.group_commit import AuditWriteFailed

    with pytest.raises(AuditWriteFailed) as failed:
        # the duplicate card uuid fails the transaction: the audit row must not stay behind
        store.record_recommendation(rec, FACTS, interface="cds-hooks", caller="c", request_id="r2",
                                    card_uuids=[str(uuid.uuid4()), card])
    assert isinstance(failed.value.__cause__, IntegrityError)
    assert store.count() == before


def test_jti_replay(store: AuditStore) -> None:
    from datetime import UTC, datetime, timedelta

    jti = str(uuid.uuid4())
    exp = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss", jti, exp) is True
    assert store.remember_jti("iss", jti, exp) is False
    assert store.remember_jti("other-iss", jti, exp) is True


def test_paging_and_export(tmp_path: Path) -> None:
    s = AuditStore.open(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    rec = recommend(FACTS)
    ids = [
        s.record_recommendation(rec, FACTS, interface="rest", caller="c", request_id=str(i))
        for i in range(7)
    ]
    seen, after = [], 0
    while True:
        items, nxt = s.page(limit=3, after=after)
        seen += [i["id"] for i in items]
        if nxt is None:
            break
        after = nxt
    assert seen == ids
    buf = io.StringIO()
    assert s.export(buf, "csv") == 7
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["id"] for r in rows] == ids and json.loads(rows[0]["statuses"])["steps"]
    buf = io.StringIO()
    s.export(buf, "jsonl")
    assert [json.loads(x)["id"] for x in buf.getvalue().splitlines()] == ids
    with pytest.raises(ValueError):
        s.export(io.StringIO(), "xml")


def test_migrations_idempotent_and_match_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sarcoma_cds.store.models import Base

    AuditStore.open(db_url).close()
    s = AuditStore.open(db_url)  # second run: no-op
    with s.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    s.close()
    assert version == "0003"
    assert diff == [], diff


WRITER = """
import sys
from sarcoma_cds import recommend
from sarcoma_cds.store import AuditStore
s = AuditStore.open(sys.argv[1])
facts = {"histology": "gist", "primary_site": "stomach", "metastasis": "M1"}
rec = recommend(facts)
i = 0
while True:
    aid = s.record_recommendation(rec, facts, interface="rest", caller="crash-test", \
request_id=f"r{i}",
                                  card_uuids=[f"{sys.argv[2]}-{i}"], service_id="x")
    print(aid, flush=True)
    i += 1
"""


def test_sigkill_mid_run_loses_no_committed_record(db_url: str) -> None:
    AuditStore.open(db_url).close()  # migrate first
    tag = uuid.uuid4().hex[:8]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db_url, tag], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    committed: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(committed) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(committed) >= 40, proc.stderr.read() if proc.stderr else ""
    s = AuditStore.open(db_url)
    try:
        for aid in committed:
            r = s.get_record(aid)
            assert r is not None, aid
            assert (
                r["caller"] == "crash-test"
                and r["statuses"] is not None
                and r["kb_hash"].startswith("sha256:")
            )
        if s.engine.dialect.name == "sqlite":
            with s.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # the store keeps working after the crash
        s.record_recommendation(recommend({"histology": "gist", "primary_site": "stomach"}),
                                {"histology": "gist", "primary_site": "stomach"},
                                interface="rest", caller="after", request_id="z")
    finally:
        s.close()


def test_sqlite_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """The audit store holds patient data: its SQLite files are created 0600 (issue 12)."""
    import stat

    from sarcoma_cds.store import AuditStore

    db = tmp_path / "audit.sqlite3"
    AuditStore.open(f"sqlite:///{db}").close()
    for f in tmp_path.glob("audit.sqlite3*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
