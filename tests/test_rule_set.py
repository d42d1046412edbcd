"""Properties of the rule set itself, proved by enumeration.

1. Every complete combination of the facts the classification reads lands in exactly one
   patient group, or in exactly one stated gap / out-of-scope rule: no overlap, no silent gap.
2. With facts missing, the engine's answer is sound: a pinned group is the group of every
   completion; candidate groups are exactly the groups some completion reaches.

Fact values are enumerated by equivalence class: two values are interchangeable when every
rule leaf (and the staging table) treats them alike, so one representative per class covers
the whole vocabulary. The classes are computed from the rules, not written by hand.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Literal, get_args, get_origin

from sarcoma_cds import load_kb, recommend
from sarcoma_cds.domain import engine
from sarcoma_cds.domain.facts import PatientFacts
from sarcoma_cds.domain.kb_models import Condition
from sarcoma_cds.kb.proof import prove

KB = load_kb()


def _vocab(name: str) -> list[Any]:
    ann = PatientFacts.model_fields[name].annotation
    if get_origin(ann) is Literal:
        return list(get_args(ann))
    lit = next(a for a in get_args(ann) if get_origin(a) is Literal)
    return list(get_args(lit))


def _leaf_sets(fact: str) -> list[frozenset[Any]]:
    out: list[frozenset[Any]] = []

    def walk(c: Condition) -> None:
        if c.ref is not None:
            walk(KB.data.definitions[c.ref])
            return
        for k in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
            walk(k)
        if c.fact == fact:
            if c.in_ is not None:
                out.append(frozenset(c.in_))
            elif c.eq is not None:
                out.append(frozenset([c.eq]))

    for sc in (*KB.scope, *KB.gaps):
        walk(sc.rule.when)
    for _, t in KB.group_rules:
        walk(t.source)
    return out


def _classes(values: list[Any], signature) -> list[Any]:
    reps: dict[Any, Any] = {}
    for v in values:
        reps.setdefault(signature(v), v)
    return list(reps.values())


HISTOLOGIES = _classes(
    _vocab("histology"), lambda v: tuple(v in s for s in _leaf_sets("histology"))
)
SITES = _classes(
    _vocab("primary_site"),
    lambda v: (KB.site_families[v], KB.stager.system_for(v).id if KB.stager.system_for(v) else None,
               tuple(v in s for s in _leaf_sets("primary_site"))),
)
SIZES = [3.0, 7.0, 12.0, 20.0]  # one per AJCC 8 T band (T1..T4); boundaries are tested elsewhere
CLASSIFYING = {
    "grade": ["1", "2", "3", "X"],
    "nodes": ["N0", "N1", "NX"],
    "resectability": _vocab("resectability"),
    "disease_status": _vocab("disease_status"),
    "tumour_rupture": [True, False],
    "resection_status": _vocab("resection_status"),
    "age_years": [15, 50],
}
M_BURDEN = [("M0", None), ("M1", "oligometastatic"), ("M1", "disseminated")]


def classify(facts: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(groups TRUE, gaps/out-of-scope TRUE, groups UNKNOWN) straight from the rule closures."""
    view = engine.evaluation_view(KB, PatientFacts.model_validate(facts))
    trues = [g for g, t in KB.group_rules if t.test(view) is True]
    unknown = [g for g, t in KB.group_rules if t.test(view) is None]
    stops = [s.rule.id for s in (*KB.scope, *KB.gaps) if s.test.test(view) is True]
    return trues, stops, unknown


#: Treatment history read by the classification (contract 1.1): a GIST that recurred on a TKI is
#: progressive. One representative per class: none given; imatinib given; imatinib failed.
HISTORIES = [
    {"prior_therapies": [], "progressed_on": []},
    {"prior_therapies": ["imatinib_standard_dose"], "progressed_on": []},
    {"prior_therapies": ["imatinib_standard_dose"], "progressed_on": ["imatinib_standard_dose"]},
]


def complete_combinations():
    keys = list(CLASSIFYING)
    for h, s, size, (m, burden) in itertools.product(HISTOLOGIES, SITES, SIZES, M_BURDEN):
        histories = HISTORIES if h == "gist" else HISTORIES[:1]  # only GIST groups read the history
        for values, history in itertools.product(
            itertools.product(*(CLASSIFYING[k] for k in keys)), histories
        ):
            facts = {"histology": h, "primary_site": s, "size_cm": size, "metastasis": m,
                     **dict(zip(keys, values, strict=True)), **history}
            if burden:
                facts["metastatic_burden"] = burden
            yield facts


def test_representatives_cover_the_vocabularies():
    assert "gist" in HISTOLOGIES and len(HISTOLOGIES) >= 3
    assert {KB.site_families[s] for s in SITES} == set(KB.site_families.values())


def test_every_complete_combination_lands_in_exactly_one_place():
    """The library proof (``sarcoma_cds.kb.proof``, also run by ``validate-kb``) on the packaged
    KB."""
    result = prove(KB)
    assert result.ok, result.problems
    assert result.combinations > 100_000
    assert all(result.reached.values()), result.reached


def test_the_hand_written_enumeration_agrees_with_the_proof():
    """An independent check of the library proof: a sample of the combinations written out in
    this file (every 50th) lands in exactly one place."""
    for i, facts in enumerate(complete_combinations()):
        if i % 50:
            continue
        trues, stops, unknown = classify(facts)
        assert not unknown, (facts, unknown)
        if not any(s in {x.rule.id for x in KB.scope} for s in stops):
            assert len(trues) + len(stops) == 1, (facts, trues, stops)


def _completions(facts: dict[str, Any], missing: list[str]):
    domains = {
        "grade": CLASSIFYING["grade"],
        "nodes": CLASSIFYING["nodes"],
        "resectability": CLASSIFYING["resectability"],
        "size_cm": SIZES,
        "metastasis": ["M0", "M1"],
    }
    for values in itertools.product(*(domains[m] for m in missing)):
        full = {**facts, **dict(zip(missing, values, strict=True))}
        if full.get("metastasis") == "M1" and "metastatic_burden" not in full:
            for b in ("oligometastatic", "disseminated"):
                yield {**full, "metastatic_burden": b}
        elif full.get("metastasis") == "M0":
            full.pop("metastatic_burden", None)
            yield full
        else:
            yield full


def test_missing_facts_give_sound_answers():
    """Random partial facts: pinned groups hold for every completion; candidates are exact."""
    rng = random.Random(2026)
    optional = ["grade", "nodes", "resectability", "size_cm", "metastasis"]
    for _ in range(400):
        m, burden = rng.choice(M_BURDEN)
        full = {"histology": rng.choice(HISTOLOGIES), "primary_site": rng.choice(SITES),
                "size_cm": rng.choice(SIZES), "metastasis": m,
                **{k: rng.choice(v) for k, v in CLASSIFYING.items()}}
        if burden:
            full["metastatic_burden"] = burden
        full["disease_status"] = rng.choice(["primary", "recurrent", "progressive"])
        full["tumour_rupture"] = False
        full["resection_status"] = "not_resected"
        full.update(rng.choice(HISTORIES))
        full.pop("age_years", None)
        missing = rng.sample(optional, rng.randint(1, 3))
        partial = {k: v for k, v in full.items() if k not in missing}
        if "metastasis" in missing:
            partial.pop("metastatic_burden", None)
        rec = recommend(partial)
        outcomes: set[str] = set()
        for comp in _completions(partial, [m for m in missing if m != "metastatic_burden"]):
            r = recommend(comp)
            outcomes.add(r.patient_group.id if r.patient_group else "stop")
        if rec.patient_group is not None:
            assert outcomes == {rec.patient_group.id}, (partial, rec.patient_group.id, outcomes)
        elif rec.out_of_scope is not None:
            assert outcomes == {"stop"}, (partial, outcomes)
        else:
            assert set(rec.candidate_groups) <= outcomes, (partial, rec.candidate_groups, outcomes)
            assert outcomes - {"stop"} == set(rec.candidate_groups), (
                partial,
                rec.candidate_groups,
                outcomes,
            )
            assert len(outcomes) > 1
            assert rec.missing_information, partial
