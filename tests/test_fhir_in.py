"""mCODE Bundle -> contract facts: every official example, our STS/GIST bundles, gaps, fuzz."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import FHIR_DIR, as_bundle, mcode_examples, own_bundles
from sarcoma_cds import InvalidFacts, parse_facts, recommend
from sarcoma_cds.adapters.fhir import facts_from_bundle

TODAY = date(2026, 1, 1)


@pytest.mark.parametrize("path", mcode_examples(), ids=lambda p: p.name)
def test_every_official_mcode_example_parses(path: Any) -> None:
    res = facts_from_bundle(as_bundle(json.loads(path.read_text())), today=TODAY)
    assert isinstance(res.facts, dict)
    for g in res.gaps:
        assert set(g) == {"resource", "element", "problem"} and g["problem"]
    for fact, sources in res.provenance.items():
        assert fact in res.facts
        assert sources and all(s["resourceType"] and "id" in s for s in sources)
    # None of them is a sarcoma: no histology is ever invented, so facts are never valid.
    assert "histology" not in res.facts
    with pytest.raises(InvalidFacts):
        parse_facts(res.facts)


def test_mcode_patient_bundle_jenny() -> None:
    b = json.loads(
        (FHIR_DIR.parent / "mcode" / "Bundle-mcode-patient-bundle-jenny-m.json").read_text()
    )
    res = facts_from_bundle(b, today=TODAY)
    # Jenny's cancer is a breast cancer: its staging and size belong to it, never to a sarcoma
    # (issue 11: observations are tied to their cancer). Patient-level facts are still read.
    for fact in ("nodes", "metastasis", "size_cm", "grade", "histology"):
        assert fact not in res.facts
    assert res.facts["ecog"] == 0
    assert res.provenance["ecog"][0] == {
        "resourceType": "Observation",
        "id": "ecog-performance-status-jenny-m",
        "element": "valueInteger",
        "date": "2018-04-12",
    }
    problems = " ".join(g["problem"] for g in res.gaps)
    assert "belongs to another cancer" in problems
    assert (
        "82711006" in problems
    )  # breast ductal carcinoma: unknown histology reported, not defaulted
    assert any(g["resource"].startswith("MedicationRequest/") for g in res.gaps)


def test_code_display_conflict_is_reported_not_guessed() -> None:
    b = as_bundle(json.loads((FHIR_DIR.parent / "mcode" /
                              "Observation-gx-genomic-variant-pertinent-negative-nras-kit-braf.json").read_text()))
    res = facts_from_bundle(b, today=TODAY)
    assert "kit_mutation" not in res.facts
    assert res.facts["braf_v600e"] is False
    assert any("data_conflict" in g["problem"] and "HGNC:6342" in g["problem"] for g in res.gaps)


def test_malformed_icdo3_code_is_a_gap() -> None:
    b = as_bundle(json.loads((FHIR_DIR.parent / "mcode" /
                              "Observation-histologic-behavior-and-type-non-small-cell.json").read_text()))
    res = facts_from_bundle(b, today=TODAY)
    assert any("malformed ICD-O-3" in g["problem"] for g in res.gaps)


@pytest.mark.parametrize("name", sorted(own_bundles()))
def test_own_sts_gist_bundles(name: str) -> None:
    built, expected = own_bundles()[name]
    stored = json.loads((FHIR_DIR / f"{name}.json").read_text())
    assert stored == built, "fixture file out of date with conftest_service.own_bundles"
    res = facts_from_bundle(stored, today=TODAY)
    for k, v in expected.items():
        assert res.facts.get(k) == v, (k, res.facts, res.gaps)
        assert res.provenance[k]
    assert res.facts["age_years"] == 65
    rec = recommend(res.facts)
    if name.startswith("gist"):
        assert (
            rec.patient_group is not None and rec.patient_group.id == "gist.recurrent_or_metastatic"
        )
    else:
        stage = {"i": "IA", "ii": "II", "iii": "IIIA", "iv": "IV"}[name.rsplit("-", 1)[1]]
        assert rec.stage is not None and rec.stage.group == stage


def test_d842v_bundle_makes_imatinib_not_recommended() -> None:
    res = facts_from_bundle(own_bundles()["gist-pdgfra-d842v"][0], today=TODAY)
    rec = recommend(res.facts)
    statuses = {o.drugs: o.status for p in rec.pathways for s in p.steps for o in s.options}
    assert statuses[("imatinib",)] == "not_recommended"
    assert statuses[("avapritinib",)] == "preferred"


def test_unknown_codes_become_gaps_not_defaults() -> None:
    b, _ = own_bundles()["extremity-stage-i"]
    b = json.loads(json.dumps(b))
    cond = b["entry"][1]["resource"]
    cond["bodySite"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "999999999"}]}]
    cond["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "9999/3"
    res = facts_from_bundle(b, today=TODAY)
    assert "primary_site" not in res.facts and "histology" not in res.facts
    text = " ".join(g["problem"] for g in res.gaps)
    assert "999999999" in text and "9999/3" in text


def test_conflicting_values_are_left_unset_and_reported() -> None:
    from conftest_service import tnm

    b, _ = own_bundles()["extremity-stage-i"]
    b = json.loads(json.dumps(b))
    extra = tnm("N", "N1")
    extra["id"] = "tnm-cN-2"
    b["entry"].append({"resource": extra})
    res = facts_from_bundle(b, today=TODAY)
    assert "nodes" not in res.facts
    assert any("data_conflict" in g["problem"] for g in res.gaps)


def test_pathologic_beats_clinical() -> None:
    from conftest_service import tnm

    b, _ = own_bundles()["extremity-stage-i"]
    b = json.loads(json.dumps(b))
    b["entry"].append({"resource": tnm("N", "N1", phase="p")})
    res = facts_from_bundle(b, today=TODAY)
    assert res.facts["nodes"] == "N1"
    assert res.provenance["nodes"][0]["id"] == "tnm-pN"


@pytest.mark.parametrize("bad", [None, 3, "x", [], {}, {"resourceType": "Patient"},
                                 {"resourceType": "Bundle", "entry": "nope"},
                                 {"resourceType": "Bundle", "entry": [1, None, {"resource": []}]}])
def test_not_a_bundle_never_crashes(bad: Any) -> None:
    res = facts_from_bundle(bad)
    assert res.gaps


# ------------------------------------------------------------------ fuzz
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-5, 2000)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
)
json_val = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)
codes = st.sampled_from(
    [
        "21906-3",
        "21907-1",
        "21889-1",
        "33728-7",
        "69548-6",
        "89247-1",
        "97509-4",
        "398192003",
        "C18000",
        "31206-6",
        "399534004",
        "x",
    ]
)
systems = st.sampled_from(["http://loinc.org", "http://snomed.info/sct", "http://www.genenames.org",
                           "http://terminology.hl7.org/CodeSystem/icd-o-3", "", "urn:x"])
coding = st.fixed_dictionaries({"system": systems, "code": codes | st.text(max_size=10)},
                               optional={"display": st.text(max_size=20)})
concept = st.fixed_dictionaries(
    {}, optional={"coding": st.lists(coding | json_val, max_size=3), "text": json_val}
)
resource = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Observation", "Condition", "Patient", "Procedure", "X"])},
    optional={
        "id": json_val,
        "code": concept | json_val,
        "valueCodeableConcept": concept | json_val,
        "valueInteger": json_val,
        "valueQuantity": json_val,
        "bodySite": st.lists(concept | json_val, max_size=2),
        "component": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "code": concept,
                    "valueCodeableConcept": concept,
                    "valueQuantity": json_val,
                },
            ),
            max_size=3,
        ),
        "extension": st.lists(json_val, max_size=2),
        "meta": json_val,
        "birthDate": st.text(max_size=12),
        "clinicalStatus": concept,
        "status": json_val,
    },
)
bundles = st.fixed_dictionaries(
    {
        "resourceType": st.just("Bundle"),
        "entry": st.lists(st.fixed_dictionaries({"resource": resource}) | json_val, max_size=6),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles)
def test_fuzz_mapper_never_crashes(b: dict[str, Any]) -> None:
    res = facts_from_bundle(b, today=TODAY)
    json.dumps(res.facts)
    json.dumps(res.gaps)
    with contextlib.suppress(InvalidFacts):
        parse_facts(res.facts)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(own_bundles())), st.data())
def test_fuzz_partial_own_bundles(name: str, data: st.DataObject) -> None:
    b, _ = own_bundles()[name]
    entries = b["entry"]
    keep = data.draw(st.lists(st.sampled_from(range(len(entries))), unique=True))
    res = facts_from_bundle(
        {"resourceType": "Bundle", "entry": [entries[i] for i in keep]}, today=TODAY
    )
    with contextlib.suppress(InvalidFacts):
        recommend(res.facts)


def test_resource_about_another_patient_is_not_used() -> None:
    b, _ = own_bundles()["extremity-stage-i"]
    b = json.loads(json.dumps(b))
    intruder = {"resourceType": "Observation", "id": "x", "status": "final",
                "subject": {"reference": "Patient/somebody-else"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "21900-6"}]},
                "valueCodeableConcept": {"text": "pN1"}, "effectiveDateTime": "2099-01-01"}
    b["entry"].append({"resource": intruder})
    res = facts_from_bundle(b, today=TODAY)
    assert res.facts.get("nodes") != "N1"
    assert any("somebody-else" in g["problem"] for g in res.gaps)
