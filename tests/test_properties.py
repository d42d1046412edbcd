"""Property tests: any valid facts -> a contract-valid answer; any invalid facts -> a clear
error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sarcoma_cds import InvalidFacts, Recommendation, load_kb, recommend
from sarcoma_cds.domain.facts import FACT_FIELDS

from .strategies import valid_facts, vocabulary

KB = load_kb()
STATUSES = {"preferred", "option", "conditional", "caution", "not_recommended"}


@given(valid_facts())
def test_valid_facts_give_one_honest_answer(facts):
    rec = recommend(facts)
    data = rec.model_dump(mode="json")
    # contract-valid JSON: round-trips through the model and through JSON text
    assert Recommendation.model_validate_json(json.dumps(data)).model_dump(mode="json") == data
    # exactly one of: a group, candidate groups, out of scope
    kinds = [
        rec.patient_group is not None,
        bool(rec.candidate_groups),
        rec.out_of_scope is not None,
    ]
    assert sum(kinds) == 1, data
    if rec.candidate_groups:
        assert len(rec.candidate_groups) >= 2 and rec.missing_information
        assert set(rec.candidate_groups) <= set(KB.groups)
    if rec.patient_group is None:
        assert rec.pathways == ()
    else:
        assert len(rec.pathways) == len(KB.groups[rec.patient_group.id].pathways)
    assert data["guideline"] == {
        "id": "sts-treatment",
        "version": KB.version,
        "content_hash": KB.content_hash,
    }
    for pw in rec.pathways:
        assert pw.steps[0].tier == "first_line"
        for s in pw.steps:
            assert s.status in STATUSES and s.references is not None
            if s.status != "option":
                assert s.reasons, (s.treatment, s.status)
            for o in s.options:
                assert o.status in STATUSES
                if o.status == "conditional":
                    assert rec.missing_information, o
    asked = {m.field for m in rec.missing_information}
    assert asked <= set(FACT_FIELDS)
    for f in asked:  # never asks for a fact that was given (except a non-informative 'unknown')
        assert facts.get(f) in (None, "unknown") or f in ("grade",), (f, facts.get(f))
    assert rec.disclaimer and rec.explanation


@given(valid_facts())
def test_deterministic(facts):
    assert recommend(dict(facts)).model_dump_json() == recommend(dict(facts)).model_dump_json()


@given(
    valid_facts(),
    st.sampled_from(FACT_FIELDS[2:]),
    st.sampled_from(["bogus", -1, 1e9, [1], {"a": 1}]),
)
def test_invalid_value_names_the_field(facts, field, bad):
    facts = dict(facts)
    facts[field] = bad
    if (
        field in ("size_cm", "mitotic_rate_per_5mm2", "age_years", "ecog")
        and bad == 1e9
        and field == "mitotic_rate_per_5mm2"
    ):
        bad = -1
        facts[field] = bad
    try:
        recommend(facts)
    except InvalidFacts as e:
        assert any(f == field or f.startswith(field + ".") for f, _ in e.problems), e.problems
        assert field in str(e)
    else:
        pytest.fail(f"{field}={bad!r} was accepted")


@given(valid_facts(), st.text(min_size=1, max_size=12).filter(lambda s: s not in FACT_FIELDS))
def test_unknown_field_is_rejected(facts, name):
    facts = {**facts, name: 1}
    with pytest.raises(InvalidFacts) as e:
        recommend(facts)
    assert (name, "unknown field (not in the contract; check the spelling)") in e.value.problems


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidFacts) as e:
        recommend(
            {
                "histology": "sarcoma",
                "primary_site": "leg",
                "size_cm": 0,
                "metastasis": "M0",
                "metastatic_burden": "disseminated",
                "progression_extent": "limited",
                "grade": 3,
            }
        )
    fields = [f for f, _ in e.value.problems]
    assert fields == [
        "histology",
        "primary_site",
        "size_cm",
        "grade",
        "metastatic_burden",
        "progression_extent",
    ]
    assert isinstance(e.value, ValueError)


def test_required_fields():
    with pytest.raises(InvalidFacts) as e:
        recommend({})
    assert {f for f, _ in e.value.problems} == {"histology", "primary_site"}


@pytest.mark.parametrize("field", ["histology", "primary_site", "kit_mutation", "pdgfra_mutation"])
def test_vocabularies_match_the_contract(field):
    assert vocabulary(field)  # every vocabulary is a closed Literal list


@given(valid_facts())
def test_cli_fast_json_equals_model_json(facts):
    """The CLI's stream serialiser gives exactly the model's JSON (same keys, same order)."""
    from sarcoma_cds.interfaces.cli.core_commands import _to_json

    rec = recommend(facts)
    assert json.loads(_to_json(rec), object_pairs_hook=list) == json.loads(
        rec.model_dump_json(), object_pairs_hook=list
    )


def test_unchecked_scope_is_said_not_assumed():
    """Age is optional; when absent the adult-only scope cannot be checked, and the output says
    so."""
    without = recommend({"histology": "leiomyosarcoma", "primary_site": "trunk"})
    assert any("scope check on age could not be made" in e for e in without.explanation)
    with_age = recommend({"histology": "leiomyosarcoma", "primary_site": "trunk", "age_years": 40})
    assert not any("scope check" in e for e in with_age.explanation)
    child = recommend({"histology": "leiomyosarcoma", "primary_site": "trunk", "age_years": 12})
    assert child.out_of_scope is not None and child.patient_group is None
