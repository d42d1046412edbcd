"""Golden cases kept as data next to the knowledge base (``kb/data/cases/*.yaml``).

Every case of the packaged knowledge base passes; a guideline edit that changes an expected
recommendation fails the release gate naming the case file, the case and what differs, and is
released by updating the YAML case -- no Python to edit.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from sarcoma_cds import load_kb
from sarcoma_cds.kb.cases import check_case, load_cases
from sarcoma_cds.kb.gate import release_gate
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

KB = load_kb()
CASES, PROBLEMS = load_cases(DEFAULT_KB_DIR)
NTRK = "      - when: {fact: ntrk_fusion, eq: false}\n        status: not_recommended"


def test_the_case_files_read() -> None:
    assert PROBLEMS == [] and len(CASES) >= 20


@pytest.mark.parametrize("rel,case", CASES, ids=[c.id for _, c in CASES])
def test_each_golden_case(rel: str, case) -> None:  # type: ignore[no-untyped-def]
    assert check_case(KB, case) == [], (rel, case.id)


def _copy(tmp_path: Path) -> Path:
    """A draft: the packaged knowledge base under a new version (one version names one content)."""
    dst = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, dst)
    g = dst / "guideline.yaml"
    g.write_text(
        g.read_text()
        .replace('version: "1.1.0"\nreleased', 'version: "1.2.0"\nreleased', 1)
        .replace(
            "changelog:\n",
            'changelog:\n  - {version: "1.2.0", date: "2026-12-01", changes: ["A draft."]}\n',
            1,
        )
    )
    return dst


def test_an_edit_fails_its_case_and_is_released_by_editing_the_yaml(tmp_path: Path) -> None:
    kb = _copy(tmp_path)
    rules = kb / "rules" / "personalisation.yaml"
    rules.write_text(rules.read_text().replace(NTRK, NTRK.replace("not_recommended", "caution"), 1))
    problems = release_gate(kb, proof=False).problems
    failing = [p for p in problems if p.startswith("cases/examples.yaml: case ")]
    assert failing and all(
        "larotrectinib" in p or "entrectinib" in p or "repotrectinib" in p for p in failing
    ), problems
    assert any("expected not_recommended, got caution" in p for p in failing)
    # the author updates the expectations the gate named in the case file (data), and the gate
    # passes
    cases = kb / "cases" / "examples.yaml"
    data = yaml.safe_load(cases.read_text())
    for p in failing:
        m = re.match(
            r"cases/examples.yaml: case (\S+): statuses: (\w+): expected \w+, got (\w+)$", p
        )
        assert m, p
        case = next(c for c in data["cases"] if c["id"] == m[1])
        case["expect"]["statuses"][m[2]] = m[3]
    cases.write_text(yaml.safe_dump(data, sort_keys=False))
    assert release_gate(kb, proof=False).problems == []


def test_a_broken_case_file_is_reported(tmp_path: Path) -> None:
    kb = _copy(tmp_path)
    (kb / "cases" / "bad.yaml").write_text(
        "cases:\n  - id: x1\n    description: no expectation given\n"
        "    facts: {histology: gist}\n    expect: {statuses: {imatinib: best}}\n"
    )
    problems = release_gate(kb, proof=False).problems
    assert any(p.startswith("cases/bad.yaml:") and "best" in p for p in problems), problems


def test_a_structural_edit_fails_the_golden_pathways_until_they_are_updated(tmp_path: Path) -> None:
    kb = _copy(tmp_path)
    group = kb / "groups" / "06-extremity.stage_iv_disseminated.yaml"
    group.write_text(
        group.read_text().replace(
            "          - drugs: [eribulin]\n",
            "          - drugs: [gemcitabine, docetaxel]\n            line: secondary\n"
            "          - drugs: [eribulin]\n",
            1,
        )
    )
    problems = release_gate(kb, proof=False).problems
    assert len(problems) == 1 and problems[0].startswith(
        "cases/pathways.yaml: group extremity.stage_iv_disseminated: pathway 1 step "
        "individualised_palliative_therapy_plus_best_supportive_care: regimens:"), problems
    golden = kb / "cases" / "pathways.yaml"
    golden.write_text(
        golden.read_text().replace(
            "trabectedin (secondary), eribulin (secondary)",
            "trabectedin (secondary), docetaxel + gemcitabine (secondary), eribulin (secondary)",
            1,
        )
    )
    assert release_gate(kb, proof=False).problems == []
