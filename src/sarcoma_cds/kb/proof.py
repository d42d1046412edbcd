"""The classification proof: no overlap, no silent gap, every group reachable, for any knowledge
base.

Loading a knowledge base checks each rule on its own; whether the group rules *together* split
the patients cleanly can only be shown by trying every complete set of facts. This module does
that by enumeration over equivalence classes: two values of a fact are interchangeable when every
rule leaf treats them alike, so one representative per class covers the vocabulary. The classes
are computed from the knowledge base itself, so the proof runs on a draft directory as well as
on the packaged one (``validate-kb DIR``).

Speed: the facts that staging reads (site, size, grade, nodes, metastasis) are enumerated once,
their derived view deduplicated on the facts the classification reads, and only then crossed
with the remaining classifying facts. Treatment history is represented by "none", and per
therapy the classification names: "given" and "given and failed" (one therapy at a time).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.domain.facts import LIST_FIELDS, PatientFacts
from sarcoma_cds.domain.kb_models import Condition
from sarcoma_cds.domain.knowledge import ALL_FACTS, DERIVED_FACTS, CompiledKB, fact_vocabularies

CLASSIFICATION = "rules/classification.yaml"
#: facts that staging and the site family are derived from: enumerated together
_COUPLED = (
    "histology",
    "primary_site",
    "size_cm",
    "grade",
    "nodes",
    "metastasis",
    "metastatic_burden",
)
#: examples kept per kind of problem (the count is always exact)
_EXAMPLES = 3


@dataclass
class ProofResult:
    """What the enumeration found; ``problems`` are ``file: group/rule: message`` lines."""

    combinations: int = 0
    reached: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(c: Condition, defs: Mapping[str, Condition], out: list[Condition]) -> None:
    if c.ref is not None:
        if c.ref in defs:
            _walk(defs[c.ref], defs, out)
        return
    for kid in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
        _walk(kid, defs, out)
    if c.fact is not None:
        out.append(c)


def _leaves(kb: CompiledKB) -> list[Condition]:
    out: list[Condition] = []
    defs = kb.data.definitions
    for sc in (*kb.scope, *kb.gaps):
        _walk(sc.rule.when, defs, out)
    for _, t in kb.group_rules:
        _walk(t.source, defs, out)
    return out


def _classes(values: tuple[Any, ...], sets: list[frozenset[Any]], extra: Any = None) -> list[Any]:
    """One representative per class of values that every leaf (and ``extra``) treats alike."""
    reps: dict[Any, Any] = {}
    for v in values:
        reps.setdefault((tuple(v in s for s in sets), extra(v) if extra else None), v)
    return list(reps.values())


def _numbers(leaves: list[Condition], fact: str, extra: tuple[float, ...] = ()) -> list[float]:
    """A value in every band the thresholds on ``fact`` cut (just below, at and just above each)."""
    cuts = sorted({float(getattr(c, op)) for c in leaves if c.fact == fact
                   for op in ("gt", "ge", "lt", "le") if getattr(c, op) is not None} | set(extra))
    if not cuts:
        return [50.0]
    return sorted({max(0.0, x) for b in cuts for x in (b - 1, b, b + 0.5)})


def domains(kb: CompiledKB) -> dict[str, list[Any]]:
    """The representative values of every fact the classification reads (and staging needs)."""
    leaves = _leaves(kb)
    vocab = fact_vocabularies(kb.site_families)
    sets: dict[str, list[frozenset[Any]]] = {}
    for c in leaves:
        if c.fact is not None and (c.in_ is not None or c.eq is not None):
            sets.setdefault(c.fact, []).append(frozenset(c.in_ if c.in_ is not None else [c.eq]))
    spec = kb.classification_key
    read = [f for f in (*spec.plain, *(f for f, _ in spec.banded)) if f not in DERIVED_FACTS]
    bounds = tuple(
        b.max_cm for s in kb.data.ajcc.systems for b in s.t_bands if b.max_cm is not None
    )
    out: dict[str, list[Any]] = {}
    for f in dict.fromkeys((*_COUPLED, *read)):
        if f in LIST_FIELDS:
            continue
        allowed = vocab.get(f) or ()
        if f == "size_cm":
            out[f] = _numbers(leaves, f, bounds)
        elif allowed == ():
            out[f] = _numbers(leaves, f)
        elif f == "primary_site":
            def system(v: Any) -> Any:
                s = kb.stager.system_for(v)
                return (kb.site_families.get(v), s.id if s else None)
            out[f] = _classes(allowed, sets.get(f, []), system)
        elif f in (
            "grade",
            "nodes",
            "metastasis",
            "metastatic_burden",
        ):  # staging reads every value
            out[f] = list(allowed)
        else:
            out[f] = _classes(allowed, sets.get(f, []))
    return out


def _histories(kb: CompiledKB) -> list[dict[str, Any]]:
    """None given; per therapy the classification names: given, and given and failed."""
    named = sorted(
        {c.contains for c in _leaves(kb) if c.fact in LIST_FIELDS and c.contains is not None}
    )
    out: list[dict[str, Any]] = [{"prior_therapies": (), "progressed_on": ()}]
    fails = set(fact_vocabularies(kb.site_families).get("progressed_on") or ())
    for v in named:
        out.append({"prior_therapies": (v,), "progressed_on": ()})
        if v in fails:
            out.append({"prior_therapies": (v,), "progressed_on": (v,)})
    return out


def _coupled_views(kb: CompiledKB, dom: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Views of histology x site x staging facts, deduplicated on what the classification reads."""
    from sarcoma_cds.domain.engine import evaluation_view

    spec = kb.classification_key
    read = [f for f in spec.plain if f in _COUPLED or f in DERIVED_FACTS]
    seen: set[tuple[Any, ...]] = set()
    burdens = [None, *dom["metastatic_burden"]]
    for h, s, size, g, n, m in itertools.product(
        dom["histology"],
        dom["primary_site"],
        dom["size_cm"],
        dom["grade"],
        dom["nodes"],
        dom["metastasis"],
    ):
        for b in burdens:
            if (m == "M1") != (b is not None):  # a burden only with distant metastases
                continue
            facts = {"histology": h, "primary_site": s, "size_cm": size, "grade": g, "nodes": n,
                     "metastasis": m, "metastatic_burden": b}
            view = evaluation_view(kb, PatientFacts.model_validate(facts))
            key = tuple(view[f] for f in read)
            if key not in seen:
                seen.add(key)
                yield {f: view[f] for f in ALL_FACTS} | {"_facts": facts}


def _show(view: Mapping[str, Any], fields: list[str]) -> str:
    facts = dict(view["_facts"])
    facts.update({f: view[f] for f in fields})
    return ", ".join(f"{k}={v}" for k, v in facts.items() if v is not None and v != ())


def prove(kb: CompiledKB) -> ProofResult:
    """Every complete combination lands in exactly one group, gap or out-of-scope rule; every
    group is reached. Problems name the file, the group or rule, and an example patient."""
    dom = domains(kb)
    others = [f for f in dom if f not in _COUPLED]
    histories = _histories(kb)
    res = ProofResult(reached=dict.fromkeys(kb.groups, 0))
    found: dict[str, list[str]] = {}

    def note(kind: str, text: str) -> None:
        found.setdefault(kind, []).append(text)

    for base in _coupled_views(kb, dom):
        group_rules = kb.group_rules_for(base["histology"], base["primary_site"])
        scope = kb.scope_for(base["histology"], base["primary_site"])
        for values in itertools.product(*(dom[f] for f in others), histories):
            view = dict(base)
            view.update(zip(others, values[:-1], strict=True))
            view.update(values[-1])
            res.combinations += 1
            if any(x.test.test(view) is True for x in scope):
                continue  # out of scope wins; groups are not consulted
            trues = [g for g, t in group_rules if t.test(view) is True]
            unknown = [g for g, t in group_rules if t.test(view) is None]
            stops = [x.rule.id for x in kb.gaps if x.test.test(view) is True]
            show = [*others, "prior_therapies", "progressed_on"]
            if unknown:
                note(f"group {unknown[0]}: undecided with complete facts", _show(view, show))
            if len(trues) + len(stops) > 1:
                note(f"groups: overlap of {' and '.join([*trues, *stops])}", _show(view, show))
            elif not trues and not stops:
                note("groups: gap: no group, gap or out-of-scope rule holds", _show(view, show))
            for g in trues:
                res.reached[g] += 1
    for kind, examples in found.items():
        shown = "; ".join(examples[:_EXAMPLES])
        res.problems.append(
            f"{CLASSIFICATION}: {kind} ({len(examples)} combinations; e.g. {shown})"
        )
    res.problems.extend(
        f"{CLASSIFICATION}: group {g}: unreachable: no complete combination of facts lands in it"
        for g, n in res.reached.items() if n == 0)
    return res
