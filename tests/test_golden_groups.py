"""Golden tests: one realistic patient per group, full pathway structure checked against the source.

The expected structures (kb/data/cases/pathways.yaml) were transcribed by hand from the
source treatment algorithm, not from the group files, so they are an independent check of the data:
for every pathway the ordered steps (tier, treatment id, applies_to,
references), and for every step its ordered regimens (sorted drugs, line).

Conventions read from the source and the contract:
- a new pathway starts at every "1st line" heading; "Plus" steps apply to all patients
  of the group, "Consider" steps to some; a 1st-line step applies to all;
- treatment id = the step title, lower-cased, every run of non-letters -> "_";
- references = the bracketed reference numbers in the step's text, numerically sorted;
- "doxorubicin liposomal" -> liposomal_doxorubicin; "Secondary options" -> line secondary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarcoma_cds import load_kb, recommend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "patients"

# group id -> list of pathways; a pathway is a list of
# (tier, treatment, applies_to, references, [(sorted drugs, line), ...]), read from the golden
# pathways kept as data next to the knowledge base (kb/data/cases/pathways.yaml), transcribed by
# hand from the source: a structural guideline edit updates that YAML, not this file.
def _golden() -> dict[
    str, list[list[tuple[str, str, str, list[str], list[tuple[tuple[str, ...], str]]]]]
]:
    from sarcoma_cds.kb.cases import load_files
    from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

    files, problems = load_files(DEFAULT_KB_DIR)
    assert not problems, problems
    pathways = next(f.pathways for rel, f in files if rel == "cases/pathways.yaml")
    return {
        gid: [
            [
                (
                    st.tier,
                    st.step,
                    st.applies_to,
                    list(st.references),
                    [
                        (
                            tuple(r.removesuffix(" (secondary)").split(" + ")),
                            "secondary" if r.endswith(" (secondary)") else "primary",
                        )
                        for r in st.regimens
                    ],
                )
                for st in pw
            ]
            for pw in pws
        ]
        for gid, pws in pathways.items()
    }


EXPECTED = _golden()


def _example_for(group_id: str) -> Path:
    matches = sorted(EXAMPLES.glob(f"[0-9][0-9]-{group_id}.json"))
    assert len(matches) == 1, f"expected exactly one example file for {group_id}, found {matches}"
    return matches[0]


def _structure(rec: dict) -> list[list[tuple]]:
    return [
        [
            (
                st["tier"],
                st["treatment"],
                st["applies_to"],
                list(st["references"]),
                [(tuple(sorted(op["drugs"])), op["line"]) for op in st["options"]],
            )
            for st in pw["steps"]
        ]
        for pw in rec["pathways"]
    ]


def test_expected_table_is_complete() -> None:
    """The literal table itself covers the source: 16 groups, 19 pathways, 38 steps."""
    assert len(EXPECTED) == 16
    assert sum(len(p) for p in EXPECTED.values()) == 19
    assert sum(len(pw) for p in EXPECTED.values() for pw in p) == 38


@pytest.mark.parametrize("group_id", list(EXPECTED))
def test_group_golden(group_id: str) -> None:
    facts = json.loads(_example_for(group_id).read_text())
    rec = recommend(facts).model_dump(mode="json")
    assert rec["patient_group"] is not None, rec["candidate_groups"]
    assert rec["patient_group"]["id"] == group_id
    assert rec["candidate_groups"] == []
    assert rec["out_of_scope"] is None
    assert _structure(rec) == EXPECTED[group_id]


@pytest.mark.parametrize("group_id", list(EXPECTED))
def test_group_examples_are_complete(group_id: str) -> None:
    """The per-group examples are fully specified: nothing asked for, no warnings."""
    facts = json.loads(_example_for(group_id).read_text())
    rec = recommend(facts).model_dump(mode="json")
    assert rec["missing_information"] == []
    assert rec["warnings"] == []


def test_treatment_ids_follow_contract_rule() -> None:
    """Every treatment id is lower-case letters joined by single underscores."""
    import re

    for group in EXPECTED.values():
        for pw in group:
            for tier, treatment, applies_to, _refs, _opts in pw:
                assert re.fullmatch(r"[a-z]+(_[a-z]+)*", treatment), treatment
                assert applies_to == ("some" if tier == "consider" else "all")


def test_kb_totals() -> None:
    kb = load_kb()
    groups = kb.data.groups
    assert len(groups) == 16
    assert sum(len(g.pathways) for g in groups) == 19
    assert sum(len(p.steps) for g in groups for p in g.pathways) == 38
    assert sorted(g.id for g in groups) == sorted(EXPECTED)


def test_other_examples_expected_outcomes() -> None:
    """The extra examples land where examples/README.md says."""
    expect = {
        "out-of-scope-rhabdomyosarcoma.json": ("out_of_scope", None),
        "out-of-scope-head-neck.json": ("out_of_scope", None),
        "missing-resectability.json": (
            "candidates",
            ["extremity.stage_iii_resectable", "extremity.stage_iii_unresectable"],
        ),
        "missing-genotype-gist.json": ("group", "gist.resectable_significant_morbidity"),
        "gist-pdgfra-d842v-metastatic.json": ("group", "gist.recurrent_or_metastatic"),
        "gist-kit-exon9-unresectable.json": ("group", "gist.unresectable"),
        "gist-sdh-deficient.json": ("group", "gist.recurrent_or_metastatic"),
        "stage-iv-disseminated-after-anthracycline-liposarcoma.json": (
            "group",
            "extremity.stage_iv_disseminated",
        ),
        "contraindication-coagulopathy.json": ("group", "extremity.stage_iv_oligometastatic"),
    }
    for name, (kind, value) in expect.items():
        rec = recommend(json.loads((EXAMPLES / name).read_text())).model_dump(mode="json")
        if kind == "out_of_scope":
            assert rec["patient_group"] is None and rec["out_of_scope"] is not None, name
            assert rec["pathways"] == [], name
        elif kind == "candidates":
            assert rec["patient_group"] is None, name
            assert sorted(rec["candidate_groups"]) == value, name
            assert [m["field"] for m in rec["missing_information"]] == ["resectability"], name
        else:
            assert rec["patient_group"]["id"] == value, name


def test_cohort_demo_holds_every_example() -> None:
    singles = sorted(p for p in EXAMPLES.glob("*.json"))
    lines = [
        json.loads(ln)
        for ln in (EXAMPLES / "cohort-demo.jsonl").read_text().splitlines()
        if ln.strip()
    ]
    assert len(lines) == len(singles) >= 25
    single_facts = [json.loads(p.read_text()) for p in singles]
    for facts in single_facts:
        assert facts in lines
    for facts in lines:
        recommend(facts)  # every line is valid contract input


@pytest.mark.parametrize("group_id", sorted(EXPECTED))
def test_every_option_step_and_group_keeps_source_references(group_id: str) -> None:
    """Contract: every option, step and group keeps its source reference numbers."""
    facts = json.loads(_example_for(group_id).read_text())
    rec = recommend(facts).model_dump(mode="json")
    assert rec["patient_group"]["references"]
    for pw in rec["pathways"]:
        for st in pw["steps"]:
            for op in st["options"]:
                assert set(st["references"]) <= set(op["references"]), (
                    st["treatment"],
                    op["drugs"],
                )
