"""Knowledge-base slips that would change advice silently are rejected on load (hazard H-10).

Each test copies the packaged knowledge base, makes one deliberate mistake of a kind a
guideline author makes, and checks that loading fails with a message naming the file,
the rule (or group) by its id, the field and the problem -- and, for a near miss, what the
author probably meant. Slips only the whole rule set reveals (two groups overlapping, a group
no patient reaches) are caught by the release gate (``validate-kb``), tested at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sarcoma_cds import KnowledgeBaseError, load_kb
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

RULES = "rules/personalisation.yaml"
CLASSIFICATION = "rules/classification.yaml"
DEFINITIONS = "rules/definitions.yaml"


def _copy_with(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    """A copy of the packaged knowledge base with one text replaced (it must be there)."""
    kb = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, kb)
    path = kb / rel
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return kb


def _slip(tmp_path: Path, rel: str, old: str, new: str) -> list[str]:
    kb = _copy_with(tmp_path, rel, old, new)
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(kb)
    return e.value.problems


def _one(problems: list[str], *words: str) -> None:
    assert any(all(w in p for w in words) for p in problems), problems


def test_the_packaged_knowledge_base_is_clean() -> None:
    assert load_kb(DEFAULT_KB_DIR).version


GROUP6 = "groups/06-extremity.stage_iv_disseminated.yaml"
NTRK_CASE_2 = "      - when: {fact: ntrk_fusion, eq: false}\n        status: not_recommended"

SLIPS = [
    # (what an author got wrong, file, the text, the slip, words the message must name:
    #  the file, the rule or group id, the field, the wrong value and, for a near miss, the fix)
    (
        "a rule value outside the vocabulary",
        RULES,
        "{fact: kit_mutation, eq: exon_9}",
        "{fact: kit_mutation, eq: exon_99}",
        (
            f"{RULES}: rule ",
            ": when: ",
            "kit_mutation",
            "exon_99",
            "vocabulary",
            "did you mean 'exon_9'",
        ),
    ),
    (
        "a typo in a classification value",
        CLASSIFICATION,
        "{fact: stage_group, eq: II}",
        "{fact: stage_group, eq: III}",
        (
            f"{CLASSIFICATION}: group extremity.stage_ii_resectable: when:",
            "stage_group",
            "'III'",
            "did you mean",
        ),
    ),
    (
        "a typo in a drug name",
        RULES,
        "targets: {drugs: [imatinib]}",
        "targets: {drugs: [imatinibb]}",
        (f"{RULES}: rule ", "targets.drugs", "imatinibb", "did you mean 'imatinib'"),
    ),
    (
        "a typo in a listed therapy",
        DEFINITIONS,
        "{fact: prior_therapies, contains: anthracycline}",
        "{fact: prior_therapies, contains: anthracyclin}",
        (f"{DEFINITIONS}: definition ", "anthracyclin", "did you mean 'anthracycline'"),
    ),
    (
        "a typo in a comorbidity",
        RULES,
        "{fact: comorbidities, contains: heart_failure}",
        "{fact: comorbidities, contains: heart_failur}",
        (
            f"{RULES}: rule ",
            ": when: ",
            "comorbidities",
            "heart_failur",
            "did you mean 'heart_failure'",
        ),
    ),
    (
        "a comparison on a categorical fact",
        RULES,
        '{fact: grade, eq: "3"}',
        "{fact: grade, lt: 3}",
        (f"{RULES}: rule ", ": when: ", "grade", "not a number"),
    ),
    (
        "a typo in an ask field",
        RULES,
        "- field: ntrk_fusion",
        "- field: ntrk_fusionn",
        (
            f"{RULES}: rule ntrk_fusion_sts: unknown: ask:",
            "ntrk_fusionn",
            "did you mean 'ntrk_fusion'",
        ),
    ),
    (
        "an unknown reference",
        RULES,
        "references: [label-ifosfamide]",
        "references: [label-ifosfamid]",
        (
            f"{RULES}: rule ",
            ": references: ",
            "label-ifosfamid",
            "sources.yaml",
            "did you mean 'label-ifosfamide'",
        ),
    ),
    (
        "an unknown warning target",
        RULES,
        "treatment: image_guided_ablation",
        "treatment: image_guided_ablatoin",
        (
            f"{RULES}: rule ",
            "warning.treatment",
            "image_guided_ablatoin",
            "did you mean 'image_guided_ablation'",
        ),
    ),
    (
        "'in' on a list fact",
        RULES,
        "{fact: comorbidities, contains: heart_failure}",
        "{fact: comorbidities, in: [heart_failure]}",
        (f"{RULES}: rule ", "comorbidities", "is a list"),
    ),
    (
        "a regimen listed twice in a step",
        GROUP6,
        "- drugs: [epirubicin]\n",
        "- drugs: [doxorubicin]\n",
        (
            f"{GROUP6}: group extremity.stage_iv_disseminated: pathway 1 step ",
            "options:",
            "doxorubicin",
            "listed twice",
        ),
    ),
    (
        "two cases with one condition and different statuses",
        RULES,
        NTRK_CASE_2,
        NTRK_CASE_2.replace("eq: false", "eq: true"),
        (f"{RULES}: rule ntrk_fusion_sts: cases: case 2", "case 1", "contradictory"),
    ),
    (
        "a case repeated",
        RULES,
        NTRK_CASE_2,
        "      - when: {fact: ntrk_fusion, eq: true}\n        status: option",
        (f"{RULES}: rule ntrk_fusion_sts: cases: case 2", "duplicate case"),
    ),
    (
        "a typo in a rule's group",
        RULES,
        "groups: [extremity.stage_iii_unresectable, extremity.stage_iv_oligometastatic,",
        "groups: [extremity.stage_iii_unresectabel, extremity.stage_iv_oligometastatic,",
        (
            f"{RULES}: rule ntrk_fusion_sts: groups:",
            "did you mean 'extremity.stage_iii_unresectable'",
        ),
    ),
    (
        "a typo in a fact name",
        DEFINITIONS,
        "gist: {fact: histology, eq: gist}",
        "gist: {fact: histologie, eq: gist}",
        (f"{DEFINITIONS}: definition gist:", "histologie", "did you mean 'histology'"),
    ),
    (
        "a status that does not exist",
        RULES,
        "        status: not_recommended\n        reason: No NTRK",
        "        status: not_recommendet\n        reason: No NTRK",
        (
            f"{RULES}: rule ntrk_fusion_sts: case 2: status:",
            "not_recommendet",
            "did you mean 'not_recommended'",
        ),
    ),
    (
        "a reference number the source does not have",
        RULES,
        'references: ["11"]\n    groups: [extremity.stage_iii',
        'references: ["12"]\n    groups: [extremity.stage_iii',
        (f"{RULES}: rule ntrk_fusion_sts: references:", "'12' is not in bibliography.yaml"),
    ),
    (
        "a step's reference number mistyped",
        GROUP6,
        'references: ["11", "59", "60", "61"]\npathways',
        'references: ["11", "59", "60", "16"]\npathways',
        (
            f"{GROUP6}: group extremity.stage_iv_disseminated: references:",
            "'16' is not in bibliography.yaml",
        ),
    ),
    (
        "a rule without references",
        RULES,
        'references: ["11"]\n    groups: [extremity.stage_iii',
        "references: []\n    groups: [extremity.stage_iii",
        (f"{RULES}: rule ntrk_fusion_sts: references:", "at least 1 item"),
    ),
    (
        "approved without approvers",
        "guideline.yaml",
        "status: draft",
        "status: approved",
        ("guideline.yaml:", "status 'approved' needs at least one entry in approvals"),
    ),
    (
        "a review date before the release",
        "guideline.yaml",
        'review_by: "2027-11-30"',
        'review_by: "2025-11-30"',
        ("guideline.yaml:", "review_by 2025-11-30 must come after released"),
    ),
    (
        "a citation claimed but not given",
        "bibliography.yaml",
        '"11": {source_gives: number_only}',
        '"11": {source_gives: citation}',
        ("bibliography.yaml: references: 11:", "citation is given exactly when"),
    ),
]


@pytest.mark.parametrize("what,rel,old,new,words", SLIPS, ids=[s[0] for s in SLIPS])
def test_each_slip_is_caught_with_its_place_named(
    tmp_path: Path, what: str, rel: str, old: str, new: str, words: tuple[str, ...]
) -> None:
    _one(_slip(tmp_path, rel, old, new), *words)


FOLLOW_ON = [
    # (slip, file, text, replacement, the one message expected, a message that must NOT appear)
    (
        "a broken definition is reported once, not at every rule using it",
        DEFINITIONS,
        "gist: {fact: histology, eq: gist}",
        "gist: {fact: histologie, eq: gist}",
        "definition gist",
        "histologie",
    ),
    (
        "a rule's unknown group does not also fail its targets",
        RULES,
        "groups: [extremity.stage_iii_unresectable, extremity.stage_iv_oligometastatic,",
        "groups: [extremity.stage_iii_unresectabel, extremity.stage_iv_oligometastatic,",
        "groups:",
        "targets",
    ),
]


@pytest.mark.parametrize(
    "what,rel,old,new,first,not_again", FOLLOW_ON, ids=[f[0] for f in FOLLOW_ON]
)
def test_no_follow_on_errors(
    tmp_path: Path, what: str, rel: str, old: str, new: str, first: str, not_again: str
) -> None:
    problems = _slip(tmp_path, rel, old, new)
    assert len(problems) == 1 and first in problems[0], problems
    del not_again  # (the single message is the proof)


def _gate(tmp_path: Path, rel: str, old: str, new: str) -> list[str]:
    from sarcoma_cds.kb.gate import release_gate

    kb = _copy_with(tmp_path, rel, old, new)
    load_kb(kb)  # (loads: only the whole rule set shows the slip)
    report = release_gate(kb)
    assert not report.ok
    return report.problems


def test_the_gate_finds_overlapping_groups(tmp_path: Path) -> None:
    """Stage II read as IB: two groups claim stage IB patients and stage II ones land nowhere."""
    problems = _gate(tmp_path, CLASSIFICATION, "{fact: stage_group, eq: II}, {ref: resectable}",
                     "{fact: stage_group, eq: IB}, {ref: resectable}")
    _one(
        problems,
        CLASSIFICATION,
        "overlap of extremity.stage_i and extremity.stage_ii_resectable",
        "e.g.",
    )
    _one(problems, CLASSIFICATION, "gap: no group", "grade=2")


def test_the_gate_finds_an_unreachable_group(tmp_path: Path) -> None:
    """A condition no patient can meet (stage II with distant metastases)."""
    problems = _gate(tmp_path, CLASSIFICATION, "{fact: stage_group, eq: II}, {ref: resectable}",
                     "{fact: stage_group, eq: II}, {fact: metastasis, eq: M1}, {ref: resectable}")
    _one(problems, CLASSIFICATION, "group extremity.stage_ii_resectable: unreachable")


def test_the_gate_finds_a_silent_gap(tmp_path: Path) -> None:
    problems = _gate(
        tmp_path,
        CLASSIFICATION,
        "{fact: stage_group, in: [IA, IB]}",
        "{fact: stage_group, in: [IA]}",
    )
    _one(problems, CLASSIFICATION, "gap: no group, gap or out-of-scope rule holds", "e.g.")


def test_the_gate_passes_the_packaged_knowledge_base() -> None:
    from sarcoma_cds.kb.gate import release_gate

    report = release_gate()
    assert report.ok, report.problems
    assert report.proof is not None and report.proof.combinations > 100_000


def test_the_gate_requires_a_changelog_entry_and_the_bibliography(tmp_path: Path) -> None:
    from sarcoma_cds.kb.gate import release_gate

    kb = _copy_with(tmp_path, "guideline.yaml", '  - version: "1.1.0"\n', '  - version: "1.0.9"\n')
    (kb / "bibliography.yaml").unlink()
    problems = release_gate(kb, proof=False).problems
    _one(problems, "guideline.yaml: changelog: no entry for version 1.1.0")
    _one(problems, "bibliography.yaml: missing")


def test_the_gate_refuses_changed_content_under_a_released_version(tmp_path: Path) -> None:
    from sarcoma_cds.kb.gate import release_gate

    kb = _copy_with(tmp_path, "facts.yaml", "label: histology", "label: histological type")
    problems = release_gate(kb, proof=False).problems
    _one(problems, "guideline.yaml: version: 1.1.0 already names other content", "bump the version")
    assert release_gate(proof=False).ok  # (the packaged knowledge base itself is fine)
