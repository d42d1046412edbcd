"""Recommendation -> CPG-on-FHIR Bundle, and the KB export, validated with fhir.resources R4B."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import own_bundles
from sarcoma_cds import load_kb, recommend
from sarcoma_cds.adapters.fhir import (
    facts_from_bundle,
    kb_to_fhir,
    recommendation_to_bundle,
    validate_bundle,
    validate_resource,
)

KB = load_kb()
EXPORT = kb_to_fhir(KB)
CANONICALS = {r["url"] for r in EXPORT}


def _rec(name: str):  # type: ignore[no-untyped-def]
    return recommend(facts_from_bundle(own_bundles()[name][0], today=date(2026, 1, 1)).facts)


def _resources(bundle: dict, rt: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rt]


@pytest.mark.parametrize("name", sorted(own_bundles()))
def test_bundle_validates_and_has_cpg_shape(name: str) -> None:
    rec = _rec(name)
    b = recommendation_to_bundle(rec, KB, audit_id="a1", base_url="http://cds.test")
    validate_bundle(b)
    (cp,) = _resources(b, "CarePlan")
    (rg,) = _resources(b, "RequestGroup")
    assert cp["intent"] == "proposal" and rg["intent"] == "proposal"
    assert any(rec.disclaimer in n["text"] for n in cp["note"])
    assert cp["activity"][0]["reference"]["reference"].startswith("urn:uuid:")
    for rt in ("MedicationRequest", "ServiceRequest"):
        for r in _resources(b, rt):
            assert r["intent"] == "option"
            assert r["instantiatesCanonical"][0] in CANONICALS, r["instantiatesCanonical"]
    if rec.patient_group is not None:
        assert rg["instantiatesCanonical"][0] in CANONICALS
        root = rg["action"][0]
        assert root["selectionBehavior"] == "exactly-one"
        assert len(root["action"]) == len(rec.pathways)


def test_not_recommended_is_against_and_do_not_perform() -> None:
    b = recommendation_to_bundle(_rec("gist-pdgfra-d842v"), KB)
    meds = {r["medicationCodeableConcept"]["text"]: r for r in _resources(b, "MedicationRequest")}
    ima = meds["imatinib"]
    assert ima.get("doNotPerform") is True
    ext = {e["url"].rsplit("/", 1)[1]: e for e in ima["extension"]}
    assert ext["recommendation-status"]["valueCode"] == "not_recommended"
    # CPG extensions only where their context allows them (PlanDefinition.action): the request
    # says "against" with doNotPerform; the strength is the FHIR core extension on the action.
    assert not any(
        "/uv/cpg/" in e["url"] for r in _resources(b, "MedicationRequest") for e in r["extension"]
    )
    (rg,) = _resources(b, "RequestGroup")

    def actions(a: dict) -> list[dict]:
        return [a, *[x for c in a.get("action", []) for x in actions(c)]]

    ava = next(a for a in actions({"action": rg["action"]}) if a.get("title") == "avapritinib")
    strength = {e["url"]: e for e in ava["extension"]}["http://hl7.org/fhir/StructureDefinition/cqf-strengthOfRecommendation"]
    assert strength["valueCodeableConcept"]["coding"][0]["code"] == "strong"
    # RxNorm beside the local code, so that a suggestion can become an order
    assert {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "282388",
        "display": "imatinib",
    } in ima["medicationCodeableConcept"]["coding"]


def test_patient_is_the_subject_and_plan_types_follow_cpg() -> None:
    b = recommendation_to_bundle(_rec("gist-kit-exon11"), KB, patient_ref="Patient/p1")
    assert all(
        r["subject"] == {"reference": "Patient/p1"}
        for e in b["entry"]
        for r in [e["resource"]]
        if "subject" in r
    )
    types = {r["url"].rsplit("/", 1)[1].split("-")[0]: r["type"]["coding"][0]["code"]
             for r in EXPORT if r["resourceType"] == "PlanDefinition"}
    assert types["strategy"] == "workflow-definition" and types["sts"] == "clinical-protocol"


def test_step_actions_carry_reasons_and_references() -> None:
    b = recommendation_to_bundle(_rec("gist-kit-exon11"), KB)
    (rg,) = _resources(b, "RequestGroup")
    step = rg["action"][0]["action"][0]["action"][0]
    assert step["selectionBehavior"] == "at-most-one"
    assert any(d["type"] == "citation" for d in step["documentation"])


def test_kb_export_validates() -> None:
    for res in EXPORT:
        validate_resource(res)
    types = [r["resourceType"] for r in EXPORT]
    n_steps = sum(len(p.steps) for g in KB.data.groups for p in g.pathways)
    assert types.count("PlanDefinition") == 1 + len(KB.data.groups) + n_steps
    assert types.count("ActivityDefinition") >= 10
    assert len({r["id"] for r in EXPORT}) == len(EXPORT)
    # every definitionCanonical resolves inside the export
    def walk(actions: list[dict]) -> list[str]:
        out = []
        for a in actions:
            if "definitionCanonical" in a:
                out.append(a["definitionCanonical"])
            out += walk(a.get("action", []))
        return out
    for r in EXPORT:
        for c in walk(r.get("action", [])):
            assert c in CANONICALS
