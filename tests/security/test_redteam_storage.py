"""Red-team review of encryption at rest (issue 12, privacy): a database reader sees no facts,
label, note or recommendation text in ANY column of ANY table.

The service is driven as its users would (a saved case with a label, an overridden decision
with a rationale on the web form, a CDS Hooks call and the EHR's feedback with a comment), over
real HTTP to the real application and SQLite file; then every table is read with ``sqlite3``,
without the service, as an attacker holding a copy of the file would.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, Signer, make_settings
from sarcoma_cds.interfaces.api import create_app
from tests.test_cds_hooks import hook_request

LABEL = "Jane Q. Example, MRN 4711-0815"
NOTE = "Mrs Example declined surgery on 2026-11-29 (daughter present)"
EHR_COMMENT = "Dr. Who: patient Example prefers trial NCT-0042"
FORM = {"histology": "gist", "primary_site": "stomach", "size_cm": "8.4",
        "mitotic_rate_per_5mm2": "7", "metastasis": "M0", "resectability": "unresectable",
        "disease_status": "primary", "pdgfra_mutation": "d842v"}
TREAT = "/cds-services/sarcoma-treatment"
#: (Not the option names: the group, the options' statuses and a decision's chosen option are
#: kept in the clear by design, for the cohort analytics: docs/security/hardening.md.)
SECRETS = ("Jane", "4711", "Example", "declined", "daughter", "NCT-0042", "d842v", "8.4",
           "pdgfra", "mitotic")


def _every_row(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, json.dumps(list(row), default=str))
                for t in tables for row in con.execute(f'SELECT * FROM "{t}"')]
    finally:
        con.close()


def test_no_column_of_any_table_holds_patient_text(tmp_path: Path) -> None:
    ehr = Signer(iss="https://ehr.example.org")
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": ehr.iss, "jwks": ehr.jwks}]}))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, clients_file=clients,
                                   store_raw_facts=True))
    with TestClient(app, base_url=BASE_URL) as c:
        page = c.get("/patient", headers={"accept": "text/html"}).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore
        r = c.post("/cases", data={**FORM, "case_label": LABEL, "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303
        case = r.headers["location"]
        options = re.findall(r'<option value="([^"]+)"', c.get(case).text)
        r = c.post(case + "/decision", follow_redirects=False, data={
            "outcome": "overridden", "chosen": options[-1], "rationale": NOTE,
            "csrf_token": token})
        assert r.status_code == 303
        assert NOTE in c.get(case).text  # the service reads its own note back
        tok = ehr.token(BASE_URL + TREAT)
        r = c.post(TREAT, json=hook_request("patient-view"),
                   headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, r.text
        card = r.json()["cards"][0]["uuid"]
        tok = ehr.token(BASE_URL + TREAT + "/feedback")
        r = c.post(TREAT + "/feedback", headers={"Authorization": f"Bearer {tok}"}, json={
            "feedback": [{"card": card, "outcome": "overridden",
                          "overrideReason": {"reason": {"code": "patient-preference"},
                                             "userComment": EHR_COMMENT}},
                         {"card": card, "outcome": "accepted", "acceptedSuggestions": [
                             {"id": "x", "note": "for Mrs Example"}]}]})
        assert r.status_code == 200, r.text
        store: Any = c.app.state.services.store  # type: ignore[attr-defined]
        comments = [(f.get("override_reason") or {}).get("userComment")
                    for f in store.list_feedback()]
        assert EHR_COMMENT in comments  # still readable through the service
        assert [{"id": "x", "note": "for Mrs Example"}] in [
            f.get("accepted_suggestions") for f in store.list_feedback()]
    rows = _every_row(tmp_path / "data" / "sarcoma-cds.sqlite3")
    assert {t for t, _ in rows} >= {"audit_records", "feedback", "cds_cards"}
    for table, row in rows:
        for secret in SECRETS:
            assert secret not in row, (table, secret, row[max(0, row.find(secret) - 300):][:600])


def test_rekey_reseals_the_override_reason(tmp_path: Path) -> None:
    """``store rekey`` moves the override reason to the first key with the rest."""
    from cryptography.fernet import Fernet

    from sarcoma_cds.store.crypto import DataCipher
    from sarcoma_cds.store.repository import AuditStore

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    store = AuditStore.open(url, cipher=DataCipher([old]))
    fid = store.record_feedback(kind="decision", outcome="overridden", caller="t",
                                override_reason={"userComment": NOTE}, note=NOTE)
    store.close()
    store = AuditStore.open(url, cipher=DataCipher([new, old]))
    assert store.rekey() >= 1
    store.close()
    store = AuditStore.open(url, cipher=DataCipher([new]))
    (fb,) = [f for f in store.list_feedback() if f["id"] == fid]
    assert fb["override_reason"] == {"userComment": NOTE} and "unreadable" not in fb
    store.close()


def test_the_audit_export_file_is_the_owners_only(tmp_path: Path) -> None:
    """``sarcoma-cds audit-log export --out`` writes the records decrypted (facts, labels) to a
    file that was created with the umask's mode (0644: readable by every local user), while the
    database it came from is 0600. Run as an operator would, as a separate process."""
    import os
    import stat
    import subprocess

    data = tmp_path / "data"
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE_URL) as c:
        page = c.get("/patient", headers={"accept": "text/html"}).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore
        assert c.post("/cases", data={**FORM, "case_label": LABEL, "csrf_token": token},
                      follow_redirects=False).status_code == 303
    exe = Path(sys.executable).parent / "sarcoma-cds"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOMA_CDS_")}
    env.update(SARCOMA_CDS_DATA_DIR=str(data))
    old_mask = os.umask(0o022)
    try:
        for out in (tmp_path / "export.jsonl", tmp_path / "export.jsonl"):  # new, then existing
            p = subprocess.run([str(exe), "audit-log", "export", "--out", str(out)], env=env,
                               capture_output=True, text=True, timeout=120, check=False)
            assert p.returncode == 0, p.stderr[-2000:]
            assert LABEL in out.read_text()  # the export is decrypted: the premise
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
            out.chmod(0o644)  # an existing, wider file is narrowed too
    finally:
        os.umask(old_mask)
