"""The CLI contract, through a subprocess: recommend (json / jsonl / stdin / text), groups,
validate-kb."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sarcoma_cds import DISCLAIMER

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
KB_DATA = ROOT / "src" / "sarcoma_cds" / "kb" / "data"
_SCRIPT = Path(sys.executable).with_name("sarcoma-cds")
CMD = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-m", "sarcoma_cds.interfaces.cli.main"]
)
ERROR_LINE = re.compile(r"^error: [^:]+(: [^:]+)*: .+$")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], input=stdin, capture_output=True, text=True, timeout=60)


GOOD = {
    "histology": "undifferentiated_pleomorphic_sarcoma",
    "primary_site": "lower_extremity",
    "size_cm": 8.0,
    "depth": "deep",
    "grade": "3",
    "nodes": "N0",
    "metastasis": "M0",
    "resectability": "resectable",
    "disease_status": "primary",
    "ntrk_fusion": False,
    "age_years": 62,
}


# ------------------------------------------------------------------ recommend: single file
def test_single_json_file_one_line() -> None:
    p = run(
        "recommend", str(EXAMPLES / "03-extremity.stage_iii_resectable.json"), "--format", "json"
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["schema_version"] == "1.1"
    assert rec["patient_group"]["id"] == "extremity.stage_iii_resectable"
    assert rec["stage"]["group"] == "IIIA"
    assert rec["guideline"]["content_hash"].startswith("sha256:")
    assert p.stderr == ""


def test_invalid_single_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(
        json.dumps(
            {"histology": "gist", "primary_site": "stomach", "size_cm": -1, "tumour_rupter": True}
        )
    )
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert lines
    for line in lines:
        assert ERROR_LINE.match(line), line
    fields = {line.split(": ")[1] for line in lines}
    assert {"size_cm", "tumour_rupter"} <= fields


def test_contradiction_reported_with_field(tmp_path: Path) -> None:
    f = tmp_path / "contra.json"
    f.write_text(json.dumps({**GOOD, "metastatic_burden": "disseminated"}))  # with M0
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2
    assert p.stdout == ""
    assert any(line.startswith("error: metastatic_burden: ") for line in p.stderr.splitlines())


def test_missing_required_field(tmp_path: Path) -> None:
    f = tmp_path / "noh.json"
    f.write_text(json.dumps({"primary_site": "trunk"}))
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2 and p.stdout == ""
    assert any(line.startswith("error: histology: ") for line in p.stderr.splitlines())


def test_not_json_single_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text("{not json")
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: ")


# ------------------------------------------------------------------ recommend: jsonl stream
def test_jsonl_with_one_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "cohort.jsonl"
    bad = {"histology": "gist", "primary_site": "stomach", "sizecm": 4}
    f.write_text(
        "\n".join(json.dumps(x) for x in (GOOD, bad, {**GOOD, "resectability": "unresectable"}))
        + "\n"
    )
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(out) == 3
    assert out[0]["patient_group"]["id"] == "extremity.stage_iii_resectable"
    assert set(out[1]) == {"error"}
    assert "sizecm" in json.dumps(out[1]["error"])
    assert out[2]["patient_group"]["id"] == "extremity.stage_iii_unresectable"
    err = p.stderr.splitlines()
    assert err
    for line in err:
        assert ERROR_LINE.match(line), line
    assert any("sizecm" in line for line in err)


def test_jsonl_all_good_cohort_demo() -> None:
    p = run("recommend", str(EXAMPLES / "cohort-demo.jsonl"), "--format", "json")
    assert p.returncode == 0, p.stderr
    n_in = len(
        [ln for ln in (EXAMPLES / "cohort-demo.jsonl").read_text().splitlines() if ln.strip()]
    )
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(out) == n_in
    assert all("error" not in r for r in out)
    assert {r["patient_group"]["id"] for r in out if r["patient_group"]} >= {
        "extremity.stage_i", "gist.recurrent_or_metastatic", "retroperitoneal.disseminated"}


# ------------------------------------------------------------------ recommend: stdin
def test_stdin_single() -> None:
    p = run("recommend", "-", "--format", "json", stdin=json.dumps(GOOD))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["patient_group"]["id"] == "extremity.stage_iii_resectable"


def test_stdin_invalid() -> None:
    p = run("recommend", "-", "--format", "json", stdin=json.dumps({**GOOD, "grade": "4"}))
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.splitlines()[0].startswith("error: grade: ")


def test_stdin_stream() -> None:
    text = json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "size_cm": 3.0}) + "\n"
    p = run("recommend", "-", "--format", "json", stdin=text)
    assert p.returncode == 0, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["stage"]["group"] for r in out] == ["IIIA", "II"]


def test_same_output_file_and_stdin() -> None:
    path = EXAMPLES / "12-gist.resectable_minimal_morbidity.json"
    a = run("recommend", str(path), "--format", "json")
    b = run("recommend", "-", "--format", "json", stdin=path.read_text())
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


# ------------------------------------------------------------------ recommend: text format
def _norm(s: str) -> str:
    return " ".join(s.split())


def test_text_missing_facts_before_pathways_and_disclaimer_last() -> None:
    p = run("recommend", str(EXAMPLES / "missing-genotype-gist.json"), "--format", "text")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "kit_mutation" in out
    i_missing = out.find("kit_mutation")
    i_pathway = out.find("Pathway 1")
    assert 0 <= i_missing < i_pathway
    assert _norm(out).endswith(_norm(DISCLAIMER))


def test_text_warnings_before_pathways() -> None:
    p = run(
        "recommend", str(EXAMPLES / "contraindication-coagulopathy.json")
    )  # text is the default
    assert p.returncode == 0, p.stderr
    out = p.stdout
    i_warn = out.find("contraindication")
    i_pathway = out.find("Pathway 1")
    assert 0 <= i_warn < i_pathway
    assert "image_guided_ablation" in out[:i_pathway] and "embolisation" in out[:i_pathway]
    assert _norm(out).endswith(_norm(DISCLAIMER))
    assert not out.lstrip().startswith("{")


def test_text_candidates_shown() -> None:
    p = run("recommend", str(EXAMPLES / "missing-resectability.json"), "--format", "text")
    assert p.returncode == 0
    assert "resectability" in p.stdout
    assert (
        "extremity.stage_iii_resectable" in p.stdout
        and "extremity.stage_iii_unresectable" in p.stdout
    )
    assert _norm(p.stdout).endswith(_norm(DISCLAIMER))


def test_text_out_of_scope() -> None:
    p = run("recommend", str(EXAMPLES / "out-of-scope-rhabdomyosarcoma.json"), "--format", "text")
    assert p.returncode == 0
    assert "Pathway 1" not in p.stdout
    assert _norm(p.stdout).endswith(_norm(DISCLAIMER))


def test_text_invalid_nothing_on_stdout(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({**GOOD, "ecog": 7}))
    p = run("recommend", str(f))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: ecog: ")


# ------------------------------------------------------------------ groups
def test_groups_lists_16() -> None:
    p = run("groups")
    assert p.returncode == 0
    ids = re.findall(r"\b(?:extremity|retroperitoneal|gist)\.[a-z_]+\b", p.stdout)
    assert len(set(ids)) == 16


def test_groups_json_lists_16() -> None:
    p = run("groups", "--format", "json")
    assert p.returncode == 0
    data = json.loads(p.stdout)["groups"]
    assert len(data) == 16
    assert data[0]["id"] == "extremity.stage_i" and data[-1]["id"] == "gist.recurrent_or_metastatic"


def test_groups_show_one() -> None:
    p = run("groups", "extremity.stage_iii_resectable")
    assert p.returncode == 0
    assert p.stdout.count("Pathway ") == 3
    for tid in ("neoadjuvant_radiotherapy_or_chemoradiation", "adjuvant_systemic_therapy",
                "neoadjuvant_systemic_therapy", "adjuvant_radiotherapy_or_chemoradiation"):
        assert tid in p.stdout


def test_groups_unknown_id() -> None:
    p = run("groups", "extremity.stage_v")
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.startswith("error: ")


# ------------------------------------------------------------------ validate-kb
def test_validate_kb_ok() -> None:
    p = run("validate-kb")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok:")
    assert "16 groups, 19 pathways, 38 steps" in p.stdout


def test_validate_kb_copy_ok(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(KB_DATA, kb)
    p = run("validate-kb", str(kb))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    "file,old,new,field",
    [
        ("groups/01-extremity.stage_i.yaml", "applies_to:", "aplies_to:", "aplies_to"),
        (
            "groups/06-extremity.stage_iv_disseminated.yaml",
            "line: secondary",
            "line: tertiary",
            "line",
        ),
        (
            "groups/12-gist.resectable_minimal_morbidity.yaml",
            "tier: first_line",
            "tier: frist_line",
            "tier",
        ),
    ],
)
def test_validate_kb_broken_copy(tmp_path: Path, file: str, old: str, new: str, field: str) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(KB_DATA, kb)
    target = kb / file
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    p = run("validate-kb", str(kb))
    assert p.returncode == 2
    assert p.stdout == ""
    assert Path(file).name in p.stderr
    assert field in p.stderr
    for line in p.stderr.splitlines():
        assert line.startswith("error: ")
    # the recommend command refuses the broken knowledge base the same way
    q = run(
        "recommend",
        str(EXAMPLES / "01-extremity.stage_i.json"),
        "--format",
        "json",
        "--kb",
        str(kb),
    )
    assert q.returncode == 2 and q.stdout == ""
