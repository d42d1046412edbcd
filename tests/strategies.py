"""Hypothesis strategies for contract patient facts, built from the facts model itself."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from hypothesis import strategies as st

from sarcoma_cds.domain.facts import FACT_FIELDS, LIST_FIELDS, PatientFacts


def vocabulary(name: str) -> list[Any]:
    ann = PatientFacts.model_fields[name].annotation
    if get_origin(ann) is Literal:
        return list(get_args(ann))
    for a in get_args(ann):
        if get_origin(a) is Literal:
            return list(get_args(a))
        for b in get_args(a):  # tuple[Literal[...], ...]
            if get_origin(b) is Literal:
                return list(get_args(b))
    return []


LISTS = LIST_FIELDS
BOOLS = ("tumour_rupture", "sdh_deficient", "nf1_mutation", "braf_v600e", "ntrk_fusion")


def _value(name: str) -> st.SearchStrategy[Any]:
    if name == "size_cm":
        return st.one_of(st.floats(min_value=0.01, max_value=100, allow_nan=False),
                         st.sampled_from([2.0, 2.01, 5.0, 5.01, 10.0, 10.01, 15.0, 15.01, 100]))
    if name == "mitotic_rate_per_5mm2":
        return st.one_of(st.floats(min_value=0, max_value=200, allow_nan=False), st.integers(0, 60))
    if name == "age_years":
        return st.integers(0, 120)
    if name == "ecog":
        return st.integers(0, 4)
    if name in BOOLS:
        return st.booleans()
    if name in LISTS:
        return st.lists(st.sampled_from(vocabulary(name)), unique=True, max_size=4)
    return st.sampled_from(vocabulary(name))


@st.composite
def valid_facts(draw: st.DrawFn) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "histology": draw(_value("histology")),
        "primary_site": draw(_value("primary_site")),
    }
    for name in FACT_FIELDS[2:]:
        if draw(st.booleans()):
            value = draw(st.one_of(st.none(), _value(name)) if name in BOOLS else _value(name))
            facts[name] = value
    if facts.get("metastasis") == "M0":
        facts.pop("metastatic_burden", None)
        facts.pop("metastatic_sites", None)
    if facts.get("disease_status") != "progressive":
        facts.pop("progression_extent", None)
    return facts
