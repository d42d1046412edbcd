"""Safety properties over any valid facts (Hypothesis), for the classes of error of issue 10.

1. A therapy in ``progressed_on`` is never ``preferred`` or a plain ``option`` again.
2. No regimen that is ruled out carries a reason that argued for it (contradictory reasons).
3. Grade X never yields a confident grade-dependent status: where grades 1, 2 and 3 give
   different statuses in the same group, grade X gives ``conditional``.
4. ``across_candidates`` only ever states what holds in every candidate group.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sarcoma_cds import load_kb, recommend

from .strategies import valid_facts

KB = load_kb()

#: contract therapy item -> the drugs of the knowledge base's regimens that belong to it
THERAPY_DRUGS: dict[str, frozenset[str]] = {
    "anthracycline": frozenset({"doxorubicin", "epirubicin", "liposomal_doxorubicin"}),
    "ifosfamide": frozenset({"ifosfamide"}),
    "imatinib_standard_dose": frozenset({"imatinib"}),
    "imatinib_high_dose": frozenset({"imatinib"}),
    "avapritinib": frozenset({"avapritinib"}),
    "sunitinib": frozenset({"sunitinib"}),
    "regorafenib": frozenset({"regorafenib"}),
    "ripretinib": frozenset(),
    "pazopanib": frozenset({"pazopanib"}),
    "trabectedin": frozenset({"trabectedin"}),
    "eribulin": frozenset({"eribulin"}),
    "trk_inhibitor": frozenset({"larotrectinib", "entrectinib", "repotrectinib"}),
    "dabrafenib_trametinib": frozenset({"dabrafenib", "trametinib"}),
}


def _reason_statuses() -> dict[str, set[str]]:
    """Every reason text of the knowledge base -> the statuses it is given with."""
    out: dict[str, set[str]] = {}
    for rule in KB.data.rules.rules:
        for oc in (*rule.cases, *([rule.unknown] if rule.unknown else [])):
            if oc.status and oc.reason:
                out.setdefault(" ".join(oc.reason.split()), set()).add(oc.status)
    return out


REASON_STATUSES = _reason_statuses()


def _options(rec: Any) -> list[Any]:
    return [op for pw in rec.pathways for s in pw.steps for op in s.options]


@settings(max_examples=300, deadline=None)
@given(
    valid_facts(),
    st.lists(st.sampled_from(sorted(THERAPY_DRUGS)), min_size=1, max_size=3, unique=True),
)
def test_a_failed_therapy_is_never_offered_again_as_preferred_or_plain_option(facts, failed):
    rec = recommend({**facts, "progressed_on": failed})
    banned = frozenset().union(*(THERAPY_DRUGS[t] for t in failed))
    for op in _options(rec):
        if banned & set(op.drugs):
            assert op.status not in ("preferred", "option"), (
                failed,
                op.drugs,
                op.status,
                op.reasons,
            )


@settings(max_examples=300, deadline=None)
@given(valid_facts())
def test_no_option_carries_contradictory_reasons(facts):
    rec = recommend(facts)
    for op in [*_options(rec), *(s for pw in rec.pathways for s in pw.steps)]:
        if op.status == "not_recommended":
            argued_for = [
                r
                for r in op.reasons
                if REASON_STATUSES.get(r, set()) <= {"preferred", "option"} and r in REASON_STATUSES
            ]
            assert not argued_for, (op, argued_for)


def _statuses(rec: Any) -> dict[tuple[Any, ...], str]:
    out: dict[tuple[Any, ...], str] = {}
    for pw in rec.pathways:
        for s in pw.steps:
            out[(pw.id, s.treatment)] = s.status
            for i, op in enumerate(s.options):
                out[(pw.id, s.treatment, i)] = op.status
    return out


@settings(max_examples=300, deadline=None)
@given(valid_facts())
def test_grade_x_never_gives_a_confident_grade_dependent_status(facts):
    if facts["histology"] == "gist":
        return
    by_grade = {g: recommend({**facts, "grade": g}) for g in ("1", "2", "3", "X")}
    groups = {r.patient_group.id if r.patient_group else None for r in by_grade.values()}
    if len(groups) != 1 or None in groups:
        return
    known = [_statuses(by_grade[g]) for g in ("1", "2", "3")]
    x = _statuses(by_grade["X"])
    for key, status in x.items():
        if len({k[key] for k in known}) > 1:
            assert status == "conditional", (facts, key, [k[key] for k in known], status)


@settings(max_examples=200, deadline=None)
@given(valid_facts())
def test_across_candidates_states_only_what_every_candidate_group_says(facts):
    rec = recommend(facts)
    if not rec.candidate_groups:
        assert rec.across_candidates == ()
        return
    for a in rec.across_candidates:
        assert set(a.groups) <= set(rec.candidate_groups) and a.groups
        for gid in a.groups:  # the regimen's status in that group, evaluated with the same facts
            assert a.status in {op.status for pw in _group_pathways(facts, gid) for s in pw.steps
                                for op in s.options if set(op.drugs) == set(a.drugs)}


def _group_pathways(facts: dict[str, Any], gid: str) -> Any:
    from sarcoma_cds.domain import engine
    from sarcoma_cds.domain.facts import parse_facts

    view = engine.evaluation_view(KB, parse_facts(facts))
    return engine._personalise_uncached(KB, KB.groups[gid], view)[0]


@settings(max_examples=150, deadline=None)
@given(
    valid_facts(),
    st.lists(st.tuples(st.integers(0, 4), st.integers(18, 95)), min_size=2, max_size=6),
)
def test_the_memo_never_serves_one_patient_anothers_answer(facts, fitness):
    """Patients who differ only in numbers (ECOG, age) are answered as if each came first:
    the engine's memo keys a number by its value wherever a rule tests it for equality."""
    variants = [{**facts, "ecog": e, "age_years": a} for e, a in fitness]
    warm = [recommend(f).model_dump(mode="json") for f in variants]
    for f, answer in zip(variants, warm, strict=True):
        KB.output_cache.clear()
        assert recommend(f).model_dump(mode="json") == answer, f
