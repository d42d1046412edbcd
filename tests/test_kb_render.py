"""``kb render``: the whole knowledge base as one document for the committee."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarcoma_cds import load_kb
from sarcoma_cds.interfaces.cli.main import app
from sarcoma_cds.kb.render import render_html

KB = load_kb()


def test_every_group_with_entry_criteria_pathways_rules_and_references() -> None:
    doc = render_html(KB)
    for g in KB.data.groups:
        assert f'id="{g.id}"' in doc
    assert doc.count("Entry criteria:") == 16
    assert "AJCC 8 stage group is IA or IB" in doc  # (extremity.stage_i, in plain words)
    assert "ntrk_fusion_sts" in doc and "if NTRK gene fusion is yes" in doc
    assert "doxorubicin (primary)" in doc and "[11]" in doc
    assert "the source gives the number only" in doc  # bibliography, honestly
    assert f"Status <b>{KB.data.meta.status}</b>" in doc and KB.content_hash in doc
    every = [r.id for r in KB.data.rules.rules if not r.groups]
    assert every and all(f"<h4>{rid}" in doc for rid in every)


def test_cli_html(tmp_path: Path) -> None:
    out = tmp_path / "kb.html"
    r = CliRunner().invoke(app, ["kb", "render", "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("<!doctype html>")
    r = CliRunner().invoke(app, ["kb", "render"])
    assert r.exit_code == 2


@pytest.mark.slow
def test_cli_pdf(tmp_path: Path) -> None:
    pytest.importorskip("weasyprint")
    out = tmp_path / "kb.pdf"
    r = CliRunner().invoke(app, ["kb", "render", "--pdf", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"%PDF")
