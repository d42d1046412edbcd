"""``kb diff`` is complete: every kind of edit an author makes shows, in plain words.

Each case edits a copy of the packaged knowledge base and checks the line ``kb diff`` prints for
it (tables and assumptions used to show as "no change").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sarcoma_cds import load_kb
from sarcoma_cds.kb.diff import kb_changes, to_html, to_lines, to_markdown
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

KB = load_kb()
RULES = "rules/personalisation.yaml"
NTRK_CASE_1 = "      - when: {fact: ntrk_fusion, eq: true}\n        status: option"

EDITS = [
    # (what, file, old text, new text, words of the expected line)
    (
        "an AJCC cut-off",
        "tables/ajcc8.yaml",
        "max_cm: 10",
        "max_cm: 11",
        ("~ tables/ajcc8.yaml systems[trunk_extremity].t_bands[T2].max_cm: 10.0 -> 11.0",),
    ),
    (
        "an assumption default",
        "rules/classification.yaml",
        "value: primary",
        "value: recurrent",
        ("assumption disease_status.value: primary -> recurrent",),
    ),
    (
        "a status",
        RULES,
        NTRK_CASE_1,
        NTRK_CASE_1.replace("option", "preferred"),
        ("~ rule ntrk_fusion_sts: case 1 status option -> preferred",),
    ),
    (
        "a case condition, in plain words",
        RULES,
        NTRK_CASE_1,
        NTRK_CASE_1.replace("{fact: ntrk_fusion, eq: true}", "{fact: ntrk_fusion, known: true}"),
        (
            "rule ntrk_fusion_sts: case 1 condition: NTRK gene fusion is yes -> NTRK gene fusion "
            "is known",
        ),
    ),
    (
        "a rule reference",
        RULES,
        'references: ["11"]\n    groups: [extremity.stage_iii_unresectable',
        'references: ["11", "59"]\n    groups: [extremity.stage_iii_unresectable',
        ("rule ntrk_fusion_sts: references: [11] -> [11, 59]",),
    ),
    (
        "a regimen added",
        "groups/06-extremity.stage_iv_disseminated.yaml",
        "          - drugs: [eribulin]\n",
        "          - drugs: [eribulin]\n            line: secondary\n          - drugs: "
        "[gemcitabine, docetaxel]\n",
        (
            "+ extremity.stage_iv_disseminated pathway 1: step "
            "individualised_palliative_therapy_plus_best_supportive_care "
            "regimen docetaxel+gemcitabine",
        ),
    ),
    (
        "a named source",
        "sources.yaml",
        "kind: trial",
        "kind: guideline",
        ("~ sources.yaml eortc-62012.kind: trial -> guideline",),
    ),
    (
        "a group rule, in plain words",
        "rules/classification.yaml",
        "{fact: stage_group, in: [IA, IB]}",
        "{fact: stage_group, in: [IA]}",
        ("~ group rule extremity.stage_i:", "stage group is IA or IB", "-> ", "stage group is IA"),
    ),
    (
        "a regimen's reference",
        "groups/06-extremity.stage_iv_disseminated.yaml",
        '- drugs: [pazopanib]\n            line: secondary\n            references: ["59"]',
        '- drugs: [pazopanib]\n            line: secondary\n            references: ["60"]',
        ("regimen pazopanib: references [59] -> [60]",),
    ),
    (
        "a bibliography entry",
        "bibliography.yaml",
        '"11": {source_gives: number_only}',
        '"11": {source_gives: citation, citation: "A citation from the source list"}',
        ("~ bibliography.yaml 11.source_gives: number_only -> citation",),
    ),
    (
        "approvers and status",
        "guideline.yaml",
        "status: draft\napprovals: []",
        'status: approved\napprovals: [{name: "Dr A. Example", role: chair, date: "2026-11-30"}]',
        ("~ guideline.yaml status: draft -> approved",),
    ),
    (
        "a fact label",
        "facts.yaml",
        "label: histology",
        "label: histological type",
        ("~ facts.yaml histology.label: histology -> histological type",),
    ),
]


@pytest.mark.parametrize("what,rel,old,new,expected", EDITS, ids=[e[0] for e in EDITS])
def test_each_edit_shows_in_kb_diff(tmp_path: Path, what: str, rel: str, old: str, new: str,
                                    expected: tuple[str, ...]) -> None:
    dst = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, dst)
    text = (dst / rel).read_text()
    assert old in text, old
    (dst / rel).write_text(text.replace(old, new, 1))
    edited = load_kb(dst)
    lines = to_lines(KB, edited, kb_changes(KB, edited))
    assert any(all(w in line for w in expected) for line in lines), lines


def test_markdown_and_html(tmp_path: Path) -> None:
    dst = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, dst)
    p = dst / RULES
    p.write_text(p.read_text().replace(NTRK_CASE_1, NTRK_CASE_1.replace("option", "preferred"), 1))
    edited = load_kb(dst)
    changes = kb_changes(KB, edited)
    md = to_markdown(KB, edited, changes)
    assert (
        "## Rules (1)" in md
        and "| ~ | rule ntrk_fusion_sts | case 1 status option -> preferred |" in md
    )
    page = to_html(KB, edited, changes)
    assert page.startswith("<!doctype html>") and "case 1 status option -&gt; preferred" in page
    assert to_lines(KB, KB, kb_changes(KB, KB))[1] == "no change: identical content"
