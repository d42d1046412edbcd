"""Audit store privacy (issue 12, privacy): what someone who reads the database (a copy, a
backup) without the data key learns.

Records are written by the real service over HTTP (TestClient) into a real SQLite file (and
PostgreSQL when configured); the attacker then reads that file with the plain ``sqlite3`` module
and tries to recover the facts: from the stored columns, and by brute-forcing the facts digest
over the candidates the stored group and statuses leave.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sarcoma_cds import recommend
from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.store import AuditStore, canonical_facts
from sarcoma_cds.store.crypto import DataCipher
from tests.conftest_service import make_settings, pg_url_or_skip

BASE = "http://127.0.0.1:8000"
LABEL = "Jane Q. Example, MRN 4711-0815"
FACTS = {"histology": "gist", "primary_site": "stomach", "size_cm": 8.4,
         "mitotic_rate_per_5mm2": 7, "metastasis": "M0", "resectability": "unresectable",
         "disease_status": "primary", "pdgfra_mutation": "d842v"}
FORM = {k: str(v) for k, v in FACTS.items()}


def _db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sarcoma-cds.sqlite3"


def _rows(db: Path) -> list[dict[str, Any]]:
    """The attacker's view: every audit row as stored, read without the service."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM audit_records ORDER BY seq")]
    finally:
        con.close()


def _save_case(c: TestClient) -> str:
    page = c.get("/patient", headers={"accept": "text/html"}).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = c.post("/cases", data={**FORM, "case_label": LABEL, "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303
    return str(r.headers["location"]).rsplit("/", 1)[1]


def test_a_database_reader_without_the_key_learns_no_facts(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE) as c:
        case_id = _save_case(c)
        r = c.post("/recommendations", json=FACTS)
        assert r.status_code == 200
        # the service itself reads everything back (the key is in its data dir)
        assert LABEL in c.get(f"/cases/{case_id}", headers={"accept": "text/html"}).text.replace(
            "&#39;", "'")
        rec = c.app.state.services.store.get_record(case_id)  # type: ignore[attr-defined]
        assert rec["label"] == LABEL and rec["raw_facts"]["pdgfra_mutation"] == "d842v"
        assert rec["recommendation"]["patient_group"]["id"] == "gist.unresectable"
    key_file = tmp_path / "data" / "data-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    rows = _rows(_db(tmp_path))
    assert len(rows) == 2
    for row in rows:
        stored = json.dumps(row, default=str)
        for secret in ("Jane", "4711", "d842v", "8.4", "pdgfra", "mitotic"):
            assert secret not in stored, (secret, stored[:300])
        assert row["facts_digest"].startswith("hmac-sha256:")
        assert json.loads(row["recommendation"]).keys() == {"fernet"}
    assert rows[0]["label"].startswith("fernet:")
    assert json.loads(rows[0]["raw_facts"]).keys() == {"fernet"}


def _candidates() -> list[dict[str, Any]]:
    """What an attacker enumerates: the group and statuses stored beside the digest say GIST,
    stomach, unresectable, D842V; sizes and mitotic rates on the usual grid remain (the true
    facts are among them)."""
    out = []
    for size, mitoses in itertools.product([x / 10 for x in range(10, 200)], range(0, 30)):
        out.append({**FACTS, "size_cm": size, "mitotic_rate_per_5mm2": mitoses})
    return out


def _sha256(facts: dict[str, Any]) -> str:
    blob = json.dumps(canonical_facts(facts), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def test_the_digest_cannot_be_brute_forced_from_the_stored_recommendation(
    tmp_path: Path,
) -> None:
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE) as c:
        assert c.post("/recommendations", json=FACTS).status_code == 200
    row = _rows(_db(tmp_path))[0]
    assert row["group_id"] == "gist.unresectable"
    digests = {_sha256(f) for f in _candidates()}
    assert _sha256(FACTS) in digests  # the attack does find the unkeyed digest of old rows ...
    assert row["facts_digest"] not in digests  # ... and not the keyed one
    # nor with a guessed key: the digest key is derived from a random data key, not a constant
    blob = json.dumps(canonical_facts(FACTS), sort_keys=True, separators=(",", ":"))
    for guess in (b"", b"sarcoma-cds", b"secret"):
        import hmac

        assert "hmac-sha256:" + hmac.new(guess, blob.encode(), "sha256").hexdigest() != row[
            "facts_digest"]


def test_rotation_keeps_old_records_readable_and_rekey_completes_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    rec = recommend(FACTS)
    s = AuditStore.open(url, cipher=DataCipher([old]))
    a = s.record_recommendation(rec, FACTS, interface="web", caller="c", request_id="r1",
                                saved=True, label=LABEL)
    fb = s.record_decision(a, outcome="deferred", caller="dr", note=f"discussed with {LABEL}")
    s.close()
    # rotation: the new key first, the old one still listed
    s = AuditStore.open(url, cipher=DataCipher([new, old]))
    got = s.get_record(a)
    assert got and got["label"] == LABEL and got["raw_facts"]["size_cm"] == 8.4
    assert got["feedback"][0]["note"] == f"discussed with {LABEL}" and fb
    b = s.record_recommendation(rec, FACTS, interface="rest", caller="c", request_id="r2")
    s.close()
    # the new key alone cannot read the old record yet: it says so instead of failing
    s = AuditStore.open(url, cipher=DataCipher([new]))
    early = s.get_record(a)
    assert early and early["label"] is None and set(early["unreadable"]) == {
        "label", "raw_facts", "recommendation"}
    assert s.get_record(b)["recommendation"] is not None  # type: ignore[index]
    s.close()
    # sarcoma-cds store rekey with both keys, then the old key can go
    from sarcoma_cds.interfaces.cli.main import app as cli

    env = {"DATABASE_URL": url, "SARCOMA_CDS_DATA_KEYS": f"{new},{old}",
           "SARCOMA_CDS_DATA_DIR": str(tmp_path / "d")}
    res = CliRunner().invoke(cli, ["store", "rekey"], env=env)
    assert res.exit_code == 0, res.output
    assert "re-encrypted" in res.output
    s = AuditStore.open(url, cipher=DataCipher([new]))
    got = s.get_record(a)
    assert got and got["label"] == LABEL and "unreadable" not in got
    assert got["feedback"][0]["note"] == f"discussed with {LABEL}"
    s.close()
    # the audit-log export decrypts with the configured keys
    env["SARCOMA_CDS_DATA_KEYS"] = new
    res = CliRunner().invoke(cli, ["audit-log", "export", "--format", "jsonl"], env=env)
    assert res.exit_code == 0 and LABEL in res.output


def test_rows_written_before_encryption_stay_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    plain = AuditStore.open(url)  # a row as written before issue 12: sha256, in the clear
    a = plain.record_recommendation(recommend(FACTS), FACTS, interface="web", caller="c",
                                    request_id="r", saved=True, label=LABEL)
    plain.close()
    s = AuditStore.open(url, cipher=DataCipher([Fernet.generate_key()]))
    got = s.get_record(a)
    assert got and got["facts_digest"] == _sha256(FACTS) and got["label"] == LABEL
    assert [r["label"] for r in s.list_cases()] == [LABEL]
    assert s.rekey() >= 1  # rekey encrypts the old clear rows too
    assert _rows(tmp_path / "audit.sqlite3")[0]["label"].startswith("fernet:")
    assert s.get_record(a)["label"] == LABEL  # type: ignore[index]
    s.close()


def test_bad_data_keys_are_refused_with_the_variable_named(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.settings import Settings
    from sarcoma_cds.store.crypto import DataKeyError

    s = Settings.from_env({"SARCOMA_CDS_DATA_DIR": str(tmp_path),
                           "SARCOMA_CDS_DATA_KEYS": "not-a-key"})
    with pytest.raises(DataKeyError, match="SARCOMA_CDS_DATA_KEYS: key 1 is not a Fernet key"):
        create_app(s)
    assert "not-a-key" not in repr(s)  # keys never in a settings dump


def test_client_request_id_is_not_the_audit_key(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE) as c:
        ids = []
        for _ in range(2):  # a client reusing one id for two requests
            r = c.post("/recommendations", json=FACTS, headers={"X-Request-ID": "same-id-1"})
            assert r.status_code == 200 and r.headers["X-Client-Request-ID"] == "same-id-1"
            assert r.headers["X-Request-ID"] != "same-id-1"
            ids.append(r.headers["X-Audit-ID"])
        store = c.app.state.services.store  # type: ignore[attr-defined]
        rids = [store.get_record(i)["request_id"] for i in ids]
    assert "same-id-1" not in rids and len(set(rids)) == 2


@pytest.mark.postgres
def test_postgres_rows_are_encrypted_too(tmp_path: Path) -> None:
    url = pg_url_or_skip()
    s = AuditStore.open(url, cipher=DataCipher([Fernet.generate_key()]))
    a = s.record_recommendation(recommend(FACTS), FACTS, interface="web", caller="c",
                                request_id="r", saved=True, label=LABEL)
    with s.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT label, raw_facts::text, recommendation::text, facts_digest "
            "FROM audit_records WHERE id = %(id)s", {"id": a}).one()
    assert all("d842v" not in str(v) and "Jane" not in str(v) for v in row)
    assert s.get_record(a)["label"] == LABEL  # type: ignore[index]
    s.close()


def test_no_key_material_leaves_the_data_dir_readable(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE):
        pass
    for name in ("data-key", "secret-key"):
        p = tmp_path / "data" / name
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, name


def test_a_case_whose_key_is_gone_is_said_unreadable_not_shown_empty(tmp_path: Path) -> None:
    """Hazard H-19: a saved case written under a data key the server no longer has is refused
    with a page naming what cannot be read, never shown as an empty (complete-looking) record."""
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE) as c:
        case_id = _save_case(c)
    (tmp_path / "data" / "data-key").unlink()  # the key that wrote it is lost
    other = Fernet.generate_key().decode()
    with TestClient(create_app(make_settings(tmp_path, data_keys=[other])), base_url=BASE) as c:
        for path in (f"/cases/{case_id}", f"/cases/{case_id}/board"):
            r = c.get(path, headers={"accept": "text/html"})
            assert r.status_code == 503, path
            assert "cannot be read" in r.text and "facts" in r.text and "d842v" not in r.text
