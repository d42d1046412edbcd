"""Governance: the hash-chained approval ledger in the archive (``kb archive --approved-by``).

A record says who approved which version and content hash; editing, removing or reordering a
past record, or changing an approved archived copy, breaks the chain and is reported.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sarcoma_cds import load_kb
from sarcoma_cds.kb.archive import archive_kb
from sarcoma_cds.kb.governance import LEDGER, read_ledger, record_approval, verify_ledger
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

APPROVED = (
    'status: approved\napprovals:\n  - {name: "Dr A. Example", role: "chair", date: "2026-11-30"}\n'
)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _approved(tmp_path: Path, version: str, name: str = "kb") -> Path:
    dst = tmp_path / name
    shutil.copytree(DEFAULT_KB_DIR, dst)
    g = dst / "guideline.yaml"
    text = g.read_text().replace("status: draft\napprovals: []\n", APPROVED)
    text = text.replace('version: "1.1.0"\nreleased', f'version: "{version}"\nreleased', 1).replace(
        "changelog:\n",
        f'changelog:\n  - {{version: "{version}", date: "2026-11-30", changes: ["Approved."]}}\n',
        1,
    )
    g.write_text(text)
    return dst


def _ledger(tmp_path: Path) -> Path:
    arch = tmp_path / "archive"
    for i, v in enumerate(("1.1.1", "1.1.2")):
        src = _approved(tmp_path, v, f"kb{i}")
        archive_kb(src, arch)
        record_approval(arch, load_kb(src), "Dr A. Example", "chair", NOW)
    return arch


def test_records_chain_and_verify(tmp_path: Path) -> None:
    arch = _ledger(tmp_path)
    recs = read_ledger(arch)
    assert [r["version"] for r in recs] == ["1.1.1", "1.1.2"]
    assert recs[1]["prev"] == recs[0]["hash"] and recs[0]["content_hash"].startswith("sha256:")
    assert verify_ledger(arch) == []


@pytest.mark.parametrize("tamper,words", [
    (lambda lines: [lines[0].replace('"chair"', '"member"'), lines[1]], "was edited"),
    (lambda lines: lines[1:], "does not follow the previous record"),
    (lambda lines: lines[::-1], "does not follow the previous record"),
])
def test_tampering_is_detected(tmp_path: Path, tamper, words: str) -> None:  # type: ignore[no-untyped-def]
    arch = _ledger(tmp_path)
    path = arch / LEDGER
    path.write_text("".join(tamper(path.read_text().splitlines(keepends=True))))
    problems = verify_ledger(arch)
    assert any(words in p and LEDGER in p for p in problems), problems


def test_a_changed_archived_copy_is_detected(tmp_path: Path) -> None:
    arch = _ledger(tmp_path)
    p = arch / "1.1.1" / "facts.yaml"
    p.write_text(p.read_text() + "\n# edited after approval\n")
    assert any("no longer has the approved content hash" in x for x in verify_ledger(arch))


def test_only_an_approved_kb_and_a_listed_approver(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status 'draft'"):
        record_approval(tmp_path / "a", load_kb(), "Dr A. Example", "chair")
    with pytest.raises(ValueError, match="not among the approvals"):
        record_approval(tmp_path / "a", load_kb(_approved(tmp_path, "1.1.1")), "Dr B", "chair")


def test_cli_archive_approved_by_and_approvals(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sarcoma_cds.interfaces.cli.main import app

    src = _approved(tmp_path, "1.1.1")
    arch = tmp_path / "archive"
    runner = CliRunner()
    r = runner.invoke(app, ["kb", "archive", "--kb", str(src), "--kb-archive", str(arch),
                            "--approved-by", "Dr A. Example", "--role", "chair"])
    assert r.exit_code == 0, r.output
    assert "approval by Dr A. Example of 1.1.1 recorded" in r.output
    r = runner.invoke(app, ["kb", "approvals", "--kb-archive", str(arch)])
    assert r.exit_code == 0 and "1 record(s), chain intact" in r.output
    # content that fails the release gate is neither archived nor approved
    broken = _approved(tmp_path, "1.1.2", "broken")
    (broken / "cases" / "pathways.yaml").unlink()
    (broken / "cases" / "examples.yaml").write_text(
        "cases:\n  - id: x\n    description: expects too much\n"
        "    facts: {histology: gist, primary_site: stomach}\n"
        "    expect: {group: extremity.stage_i}\n"
    )
    r = runner.invoke(app, ["kb", "archive", "--kb", str(broken), "--kb-archive", str(arch),
                            "--approved-by", "Dr A. Example"])
    assert r.exit_code == 2 and "release gate" in r.output and not (arch / "1.1.2").exists()
    rec = json.loads((arch / LEDGER).read_text())
    (arch / LEDGER).write_text(json.dumps({**rec, "approver": "Dr Z"}) + "\n")
    r = runner.invoke(app, ["kb", "approvals", "--kb-archive", str(arch)])
    assert r.exit_code == 2 and "was edited" in r.output
