"""Previewing a draft knowledge base: ``serve --kb DIR`` (through ``SARCOMA_CDS_KB_DIR``) and
``kb export --kb DIR`` use the draft, not the packaged one; a broken draft stops them at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarcoma_cds.interfaces.cli.main import app
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

pytest.importorskip("fastapi")
runner = CliRunner()


def _draft(tmp_path: Path, version: str = "1.2.0") -> Path:
    dst = tmp_path / "draft"
    shutil.copytree(DEFAULT_KB_DIR, dst)
    g = dst / "guideline.yaml"
    g.write_text(
        g.read_text().replace('version: "1.1.0"\nreleased', f'version: "{version}"\nreleased', 1)
    )
    return dst


def test_services_load_the_kb_named_by_the_setting(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.services import Services
    from sarcoma_cds.interfaces.api.settings import Settings

    settings = Settings.from_env({"SARCOMA_CDS_KB_DIR": str(_draft(tmp_path)),
                                  "SARCOMA_CDS_DATA_DIR": str(tmp_path / "data")})
    (tmp_path / "data").mkdir()
    services = Services.build(settings)
    try:
        assert services.kb.version == "1.2.0"
    finally:
        services.store.close()


def test_serve_line_names_the_preview(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.settings import Settings
    from sarcoma_cds.interfaces.cli.service_commands import serve_line

    line = serve_line(Settings.from_env({"SARCOMA_CDS_KB_DIR": "/x/draft"}), "127.0.0.1", 8000)
    assert "knowledge base /x/draft (preview)" in line


def test_serve_refuses_a_broken_draft(tmp_path: Path) -> None:
    draft = _draft(tmp_path)
    p = draft / "rules" / "personalisation.yaml"
    p.write_text(
        p.read_text().replace(
            "{fact: kit_mutation, eq: exon_9}", "{fact: kit_mutation, eq: exon_99}", 1
        )
    )
    r = runner.invoke(app, ["serve", "--kb", str(draft)])
    assert r.exit_code == 2 and "exon_99" in r.output


def test_kb_export_uses_the_draft(tmp_path: Path) -> None:
    out = tmp_path / "fhir"
    r = runner.invoke(app, ["kb", "export", "--fhir", str(out), "--kb", str(_draft(tmp_path))])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "PlanDefinition-sts-treatment-pathway.json").read_text())
    assert plan["version"] == "1.2.0"
