"""Service CLI: kb export --fhir, audit-log export, serve wiring, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarcoma_cds.interfaces.cli.main import app

runner = CliRunner()


def test_kb_export_fhir(tmp_path: Path) -> None:
    out = tmp_path / "fhir"
    r = runner.invoke(app, ["kb", "export", "--fhir", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*.json"))
    assert (out / "PlanDefinition-sts-treatment-pathway.json").exists()
    from sarcoma_cds.adapters.fhir import validate_resource

    for f in files:
        res = json.loads(f.read_text())
        if res["resourceType"] != "Bundle":
            validate_resource(res)
    bundle = json.loads((out / "Bundle-sts-treatment-definitions.json").read_text())
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    assert len(bundle["entry"]) == len(files) - 1


def test_audit_log_export(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sarcoma_cds import recommend
    from sarcoma_cds.store import AuditStore

    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    s = AuditStore.open(url)
    facts = {"histology": "gist", "primary_site": "stomach"}
    for i in range(3):
        s.record_recommendation(
            recommend(facts), facts, interface="rest", caller="c", request_id=str(i)
        )
    s.close()
    monkeypatch.setenv("DATABASE_URL", url)
    out = tmp_path / "audit.csv"
    r = runner.invoke(app, ["audit-log", "export", "--format", "csv", "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seq,id,created_at") and len(lines) == 4
    r = runner.invoke(app, ["audit-log", "export", "--format", "jsonl"])
    assert r.exit_code == 0
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("{")]) == 3


def test_serve_and_kb_registered_once() -> None:
    names = [g.name for g in app.registered_groups]
    assert names.count("kb") == 1 and "audit-log" in names
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--port" in r.output


def test_core_cli_does_not_import_service_deps() -> None:
    code = (
        "import sys, sarcoma_cds.interfaces.cli.main; "
        "print(sorted(m for m in ('fastapi','sqlalchemy','fhir','uvicorn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("content", [None, "", "# only a comment\n"])
def test_serve_refuses_an_unreadable_or_empty_key_file(tmp_path: Path, content: str | None) -> None:
    """A configured key file that gives no key fails closed: no open API by accident (issue 12)."""
    import os

    keys = tmp_path / "keys"
    if content is not None:
        keys.write_text(content)
    exe = Path(sys.executable).parent / "sarcoma-cds"
    env = dict(os.environ, SARCOMA_CDS_API_KEYS=str(keys), SARCOMA_CDS_DATA_DIR=str(tmp_path))
    p = subprocess.run(
        [str(exe), "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2, p.stderr
    assert "error:" in p.stderr and str(keys) in p.stderr and "Traceback" not in p.stderr
