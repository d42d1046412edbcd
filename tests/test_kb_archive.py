"""Knowledge-base versions: a directory or a version for --compare-kb and kb diff; kb archive (ADR
0303)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarcoma_cds import load_kb
from sarcoma_cds.interfaces.cli.main import app
from sarcoma_cds.kb.archive import KbReferenceError, resolve_kb
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR, content_hash

KB = load_kb()
GIST_M1 = dict(
    histology="gist",
    primary_site="stomach",
    size_cm="6",
    metastasis="M1",
    metastatic_burden="disseminated",
)
EXON9_PREFERRED = "      - when: {fact: kit_mutation, eq: exon_9}\n        status: preferred"


def _kb_copy(tmp_path: Path, name: str, version: str, status: str = "caution") -> Path:
    """The packaged KB with another version and the exon 9 imatinib status changed (as in
    test_cohort)."""
    dst = tmp_path / name
    shutil.copytree(DEFAULT_KB_DIR, dst)
    p = dst / "rules" / "personalisation.yaml"
    text = p.read_text()
    assert EXON9_PREFERRED in text
    p.write_text(text.replace(EXON9_PREFERRED, EXON9_PREFERRED.replace("preferred", status)))
    g = dst / "guideline.yaml"
    assert f'version: "{KB.version}"' in g.read_text()
    g.write_text(g.read_text().replace(f'version: "{KB.version}"', f'version: "{version}"'))
    return dst


def _leftovers(archive: Path) -> list[str]:
    return sorted(p.name for p in archive.iterdir() if p.name.startswith("."))


def test_packaged_version_resolves_with_or_without_v(tmp_path: Path) -> None:
    assert KB.version == "1.1.0"
    assert resolve_kb("1.1.0", tmp_path / "none") == DEFAULT_KB_DIR
    assert resolve_kb("v1.1.0", tmp_path / "none") == DEFAULT_KB_DIR
    assert resolve_kb(str(tmp_path)) == tmp_path  # an existing directory is taken as it is
    r = CliRunner().invoke(
        app, ["kb", "diff", "1.1.0", "v1.1.0", "--kb-archive", str(tmp_path / "none")]
    )
    assert r.exit_code == 0, r.output
    assert "1.1.0" in r.output and "no change" in r.output


def test_unknown_version_lists_what_is_available(tmp_path: Path) -> None:
    with pytest.raises(KbReferenceError, match=r"'9\.9\.9'.*1\.1\.0 \(packaged\)"):
        resolve_kb("9.9.9", tmp_path)
    with pytest.raises(ValueError):  # callers may catch it as a plain ValueError
        resolve_kb(str(tmp_path / "no" / "such" / "dir"), tmp_path)
    r = CliRunner().invoke(app, ["kb", "diff", "9.9.9", "--kb-archive", str(tmp_path / "none")])
    assert r.exit_code == 2
    assert r.stderr.startswith(
        "error: knowledge base '9.9.9' is neither a directory nor a known version"
    )
    assert "1.1.0 (packaged)" in r.stderr and "no archive at" in r.stderr
    assert "Traceback" not in r.output


def test_archive_round_trip_kb_diff_and_concordance(tmp_path: Path) -> None:
    runner = CliRunner()
    arch = tmp_path / "arch"
    r = runner.invoke(app, ["kb", "archive", "--kb-archive", str(arch)])
    assert r.exit_code == 0, r.output
    assert f"archived knowledge base 1.1.0 ({KB.content_hash[:19]})" in r.output
    assert content_hash(arch / "1.1.0") == KB.content_hash
    assert load_kb(arch / "1.1.0").content_hash == KB.content_hash

    new_dir = _kb_copy(tmp_path, "kb_new", "1.1.1")
    r = runner.invoke(app, ["kb", "archive", "--kb", str(new_dir), "--kb-archive", str(arch)])
    assert r.exit_code == 0, r.output
    assert content_hash(arch / "1.1.1") == load_kb(new_dir).content_hash
    assert _leftovers(arch) == []

    r = runner.invoke(app, ["kb", "diff", "1.1.0", "1.1.1", "--kb-archive", str(arch)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("knowledge base 1.1.0 (")
    assert any(
        "rule gist_imatinib_genotype" in x and "preferred -> caution" in x
        for x in r.output.splitlines()
    )
    # the archive can also come from the environment; a version may be mixed with a directory
    r = runner.invoke(
        app,
        ["kb", "diff", "v1.1.1", str(DEFAULT_KB_DIR)],
        env={"SARCOMA_CDS_KB_ARCHIVE": str(arch)},
    )
    assert r.exit_code == 0, r.output
    assert "caution -> preferred" in r.output
    r = runner.invoke(app, ["kb", "diff", "1.1.2", "--kb-archive", str(arch)])
    assert r.exit_code == 2 and "1.1.0 (packaged), 1.1.1 (archived)" in r.stderr

    pytest.importorskip("polars")
    rows = [{**GIST_M1, "patient_id": "e9", "kit_mutation": "exon_9", "delivered": "imatinib"},
            {**GIST_M1, "patient_id": "e11", "kit_mutation": "exon_11", "delivered": "imatinib"}]
    cohort = tmp_path / "c.jsonl"
    cohort.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = tmp_path / "out"
    r = runner.invoke(app, ["concordance", str(cohort), "--out", str(out), "--engine", "python",
                            "--compare-kb", "1.1.1", "--kb-archive", str(arch)])
    assert r.exit_code == 0, r.output
    assert (
        "vs 1.1.1: 1 patients get a different recommendation, 1 a different concordance" in r.output
    )
    s = json.loads((out / "summary.json").read_text())
    assert s["guideline_change"]["patients_changed"] == 1
    assert s["guideline_change"]["from_version"] == "1.1.1"
    changed = (out / "guideline_change.csv").read_text()
    assert (
        "e9," in changed
        and "imatinib=caution -> imatinib=preferred" in changed
        and "e11," not in changed
    )

    r = runner.invoke(app, ["concordance", str(cohort), "--out", str(tmp_path / "out2"),
                            "--compare-kb", "0.9.0", "--kb-archive", str(arch)])
    assert r.exit_code == 2 and "'0.9.0'" in r.stderr and "1.1.1 (archived)" in r.stderr


def test_same_version_other_content_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    arch = tmp_path / "arch"
    first = _kb_copy(tmp_path, "a", "1.1.1", status="caution")
    assert (
        runner.invoke(
            app, ["kb", "archive", "--kb", str(first), "--kb-archive", str(arch)]
        ).exit_code
        == 0
    )
    kept = content_hash(arch / "1.1.1")
    other = _kb_copy(tmp_path, "b", "1.1.1", status="not_recommended")
    r = runner.invoke(app, ["kb", "archive", "--kb", str(other), "--kb-archive", str(arch)])
    assert r.exit_code == 2
    assert "version 1.1.1 is already archived" in r.stderr and "bump `version`" in r.stderr
    assert content_hash(arch / "1.1.1") == kept
    assert _leftovers(arch) == []


def test_same_content_is_a_no_op(tmp_path: Path) -> None:
    runner = CliRunner()
    arch = tmp_path / "arch"
    assert (
        runner.invoke(app, ["kb", "archive"], env={"SARCOMA_CDS_KB_ARCHIVE": str(arch)}).exit_code
        == 0
    )
    marker = arch / "1.1.0" / "guideline.yaml"
    before = marker.stat().st_mtime_ns, sorted(os.listdir(arch))
    r = runner.invoke(app, ["kb", "archive", "--kb-archive", str(arch)])
    assert r.exit_code == 0, r.output
    assert "already archived" in r.output and "nothing to do" in r.output
    assert (marker.stat().st_mtime_ns, sorted(os.listdir(arch))) == before


def test_failed_copy_leaves_no_half_version(tmp_path: Path) -> None:
    src = _kb_copy(tmp_path, "kb", "1.0.3")
    (src / "notes.txt").symlink_to(tmp_path / "missing")  # not KB data, but it cannot be copied
    arch = tmp_path / "arch"
    r = CliRunner().invoke(app, ["kb", "archive", "--kb", str(src), "--kb-archive", str(arch)])
    assert r.exit_code == 2 and r.stderr.startswith(
        f"error: could not copy {src} into {arch}, nothing archived"
    )
    assert not (arch / "1.0.3").exists() and _leftovers(arch) == []


def test_archived_copy_must_hold_the_version_it_is_filed_under(tmp_path: Path) -> None:
    arch = tmp_path / "arch"
    shutil.copytree(_kb_copy(tmp_path, "kb", "1.1.1"), arch / "1.0.5")
    r = CliRunner().invoke(app, ["kb", "diff", "1.0.5", "--kb-archive", str(arch)])
    assert r.exit_code == 2 and "is version 1.1.1, not 1.0.5" in r.stderr
