"""The knowledge base: loads, validates loudly, is hashed, and compiles to code equal to its
reference semantics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sarcoma_cds import KnowledgeBaseError, load_kb, recommend
from sarcoma_cds.domain import engine
from sarcoma_cds.domain.facts import PatientFacts
from sarcoma_cds.domain.kb_models import treatment_id
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

from .strategies import valid_facts

KB = load_kb()


def test_counts_match_the_source():
    groups = KB.data.groups
    assert len(groups) == 16
    assert sum(len(g.pathways) for g in groups) == 19
    assert sum(len(p.steps) for g in groups for p in g.pathways) == 38
    assert [g.order for g in groups] == list(range(1, 17))
    assert {g.site for g in groups} == {"extremity", "retroperitoneal", "gist"}


def test_every_step_and_group_cites_the_source():
    for g in KB.data.groups:
        assert g.references, g.id
        for p in g.pathways:
            for s in p.steps:
                assert s.treatment == treatment_id(s.title)
                assert s.rationale.strip()
    for rule in KB.data.rules.rules:
        assert rule.references, rule.id


def test_treatment_id_rule_from_the_contract():
    assert (
        treatment_id("neoadjuvant radiotherapy or chemoradiation")
        == "neoadjuvant_radiotherapy_or_chemoradiation"
    )
    assert treatment_id("excision or ablation or chemoembolisation or palliative radiotherapy") == (
        "excision_or_ablation_or_chemoembolisation_or_palliative_radiotherapy")


def test_version_and_hash_in_every_recommendation():
    rec = recommend({"histology": "leiomyosarcoma", "primary_site": "trunk"})
    assert rec.guideline.version == KB.version
    assert (
        rec.guideline.content_hash.startswith("sha256:") and len(rec.guideline.content_hash) == 71
    )


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, dst)
    return dst


def test_hash_changes_with_content(tmp_path):
    dst = _copy(tmp_path)
    same = load_kb(dst)
    assert same.content_hash == KB.content_hash
    f = dst / "groups" / "01-extremity.stage_i.yaml"
    f.write_text(
        f.read_text().replace(
            "Surgery is the main treatment.", "Surgery is the main treatment here."
        )
    )
    assert load_kb(dst).content_hash != KB.content_hash


def test_broken_group_file_names_file_and_field(tmp_path):
    dst = _copy(tmp_path)
    f = dst / "groups" / "02-extremity.stage_ii_resectable.yaml"
    f.write_text(f.read_text().replace("applies_to: some", "applies_to: sometimes", 1))
    g = dst / "groups" / "05-extremity.stage_iv_oligometastatic.yaml"
    g.write_text(g.read_text().replace("tier: first_line", "teir: first_line", 1))
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(dst)
    text = "\n".join(e.value.problems)
    # list items named by their title, not counted from 0 (pathways, which have no name, from 1)
    assert (
        "groups/02-extremity.stage_ii_resectable.yaml: pathway 1: step adjuvant radiotherapy: "
        "applies_to"
        in text
    )
    assert (
        "groups/05-extremity.stage_iv_oligometastatic.yaml: pathway 1: step " in text
        and ": teir:" in text
    )
    assert "order must run" not in text  # no follow-on error from the two files that failed


def test_rule_pointing_at_a_missing_step_fails(tmp_path):
    dst = _copy(tmp_path)
    f = dst / "rules" / "personalisation.yaml"
    f.write_text(
        f.read_text().replace(
            "targets: {steps: [adjuvant_radiotherapy]}",
            "targets: {steps: [adjuvant_radiotherapie]}",
        )
    )
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(dst)
    assert any(
        "radiotherapy_omission_small_tumour" in p and "adjuvant_radiotherapie" in p
        for p in e.value.problems
    )


def test_unknown_fact_in_a_rule_fails(tmp_path):
    dst = _copy(tmp_path)
    f = dst / "rules" / "definitions.yaml"
    f.write_text(
        f.read_text().replace(
            "gist: {fact: histology, eq: gist}", "gist: {fact: histologie, eq: gist}"
        )
    )
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(dst)
    assert any("histologie" in p for p in e.value.problems)


def test_broken_yaml_is_reported(tmp_path):
    dst = _copy(tmp_path)
    (dst / "tables" / "ajcc8.yaml").write_text("systems: [\n")
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(dst)
    assert any(p.startswith("tables/ajcc8.yaml: not valid YAML") for p in e.value.problems)


def test_incomplete_stage_table_is_rejected(tmp_path):
    dst = _copy(tmp_path)
    f = dst / "tables" / "ajcc8.yaml"
    f.write_text(f.read_text().replace("      - {t: [T3, T4], g: [G2, G3], group: IIIB}\n", "", 1))
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(dst)
    assert any("no row covers" in p for p in e.value.problems)


@given(valid_facts())
def test_generated_code_equals_reference_semantics(facts):
    """Every compiled condition: generated straight-line code == the closure tree, on real views."""
    view = engine.evaluation_view(KB, PatientFacts.model_validate(facts))
    compiled = [t for _, t in KB.group_rules] + [s.test for s in (*KB.scope, *KB.gaps)]
    compiled += [c.test for rules in KB.bound.values() for br in rules for c in br.cases]
    for c in compiled:
        assert c.reference is not None
        assert c.test(view) is c.reference(view), c.source


@given(st.sampled_from(sorted(KB.groups)))
def test_every_group_is_reachable(gid):
    assert any(g == gid for g, _ in KB.group_rules)
