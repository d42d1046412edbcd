"""The knowledge base compiled for evaluation: validated data in, closures out.

Compilation happens once per process (see ``sarcoma_cds.kb.loader``). Everything a
patient needs -- rule closures, the targets of every rule in every group, the
stage and risk lookups -- is resolved here, so evaluation never walks rule data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.domain.codegen import CodeGenerator
from sarcoma_cds.domain.conditions import Compiled, compile_condition
from sarcoma_cds.domain.facts import FACT_FIELDS
from sarcoma_cds.domain.gist_risk import GistRiskCalculator, GistRiskTables
from sarcoma_cds.domain.kb_models import (
    Case,
    Classification,
    Condition,
    FactLabel,
    Group,
    GuidelineMeta,
    Outcome,
    Rule,
    Rules,
    ScopeRule,
)
from sarcoma_cds.domain.staging import AjccTables, Stager

#: Facts derived from the contract facts before any rule runs.
DERIVED_FACTS: tuple[str, ...] = ("site_family", "stage_group", "gist_risk_nih", "gist_risk_afip")
#: Which contract facts a derived fact is computed from (to ask for the right ones).
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "site_family": ("primary_site",),
    "stage_group": ("size_cm", "grade", "nodes", "metastasis"),
    "gist_risk_nih": ("size_cm", "mitotic_rate_per_5mm2", "tumour_rupture"),
    "gist_risk_afip": ("size_cm", "mitotic_rate_per_5mm2"),
}
ALL_FACTS: frozenset[str] = frozenset(FACT_FIELDS) | frozenset(DERIVED_FACTS)

SEVERITY: dict[str, int] = {
    "preferred": 0, "option": 1, "caution": 2, "conditional": 3, "not_recommended": 4,
}


class KnowledgeBaseError(ValueError):
    """The knowledge base is inconsistent. ``problems`` lists ``file: path: message`` lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("knowledge base is invalid:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class KnowledgeBaseData:
    """The validated contents of the knowledge-base files (before compilation)."""

    meta: GuidelineMeta
    groups: tuple[Group, ...]
    definitions: Mapping[str, Condition]
    classification: Classification
    rules: Rules
    ajcc: AjccTables
    gist_risk: GistRiskTables
    fact_labels: Mapping[str, FactLabel]
    content_hash: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledCase:
    case: Case
    test: Compiled


@dataclass(frozen=True, slots=True)
class BoundRule:
    """A rule bound to one group: its closures and the addresses of its targets there."""

    rule: Rule
    only_if: Compiled | None
    cases: tuple[CompiledCase, ...]
    unknown: Outcome | None
    steps: tuple[tuple[int, int], ...]
    options: tuple[tuple[int, int, int], ...]
    group: bool


@dataclass(frozen=True, slots=True)
class MemoKeySpec:
    """Which facts a rule set reads: the key under which its (pure) result is memoised.

    Numbers enter only through the thresholds the rules compare them with, so patients who
    differ only inside one band share an entry.
    """

    plain: tuple[str, ...]
    banded: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]

    def key(self, view: Mapping[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = [view[f] for f in self.plain]
        for f, bands in self.banded:
            v = view[f]
            out.append(None if v is None else tuple(
                (v > b) if op == "gt" else (v >= b) if op == "ge" else (v < b) if op == "lt" else (v <= b)
                for op, b in bands))
        return tuple(out)


def memo_spec(conditions: list[Condition], defs: Mapping[str, Condition]) -> MemoKeySpec:
    fields: set[str] = set()
    bands: dict[str, set[tuple[str, float]]] = {}
    for cond in conditions:
        _collect_leaves(cond, defs, fields, bands)
    return MemoKeySpec(
        plain=tuple(sorted(f for f in fields if f not in bands)),
        banded=tuple((f, tuple(sorted(bands[f]))) for f in sorted(bands)),
    )


@dataclass(frozen=True, slots=True)
class CompiledScope:
    rule: ScopeRule
    test: Compiled


@dataclass(slots=True)
class CompiledKB:
    data: KnowledgeBaseData
    stager: Stager
    risk: GistRiskCalculator
    groups: dict[str, Group]
    scope: tuple[CompiledScope, ...]
    gaps: tuple[CompiledScope, ...]
    group_rules: tuple[tuple[str, Compiled], ...]
    bound: dict[str, tuple[BoundRule, ...]]
    definitions: dict[str, Compiled]
    class_asks: dict[str, str]
    assumptions: tuple[tuple[str, Any, str], ...]
    site_families: dict[str, str]
    labels: dict[str, FactLabel] = field(default_factory=dict)
    #: group rules that can hold for a (histology, primary site): partial evaluation at load
    rules_for_site: dict[tuple[str, str], tuple[tuple[str, Compiled], ...]] = field(default_factory=dict)
    #: memoised output objects (frozen, shared); see engine.kb_defaults and engine._personalise
    output_cache: dict[Any, Any] = field(default_factory=dict)

    #: memo keys: facts read by scope, group and gap rules; and per group by its bound rules
    classification_key: MemoKeySpec = field(default_factory=lambda: MemoKeySpec((), ()))
    personalisation_keys: dict[str, MemoKeySpec] = field(default_factory=dict)
    #: out-of-scope rules that can hold for a (histology, primary site)
    scope_for_site: dict[tuple[str, str], tuple[CompiledScope, ...]] = field(default_factory=dict)

    def group_rules_for(self, histology: str, site: str) -> tuple[tuple[str, Compiled], ...]:
        return self.rules_for_site.get((histology, site), self.group_rules)

    def scope_for(self, histology: str, site: str) -> tuple[CompiledScope, ...]:
        return self.scope_for_site.get((histology, site), self.scope)

    @property
    def version(self) -> str:
        return self.data.meta.version

    @property
    def content_hash(self) -> str:
        return self.data.content_hash

    def label(self, fact: str) -> str:
        fl = self.labels.get(fact)
        return fl.label if fl else fact.replace("_", " ")

    def value_label(self, fact: str, value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, tuple | list):
            return ", ".join(self.value_label(fact, v) for v in value) or "none"
        if isinstance(value, frozenset):
            return " or ".join(sorted(str(v) for v in value))
        fl = self.labels.get(fact)
        text = fl.values.get(str(value), str(value).replace("_", " ")) if fl else str(value)
        if fl and fl.unit and isinstance(value, int | float):
            return f"{value:g} {fl.unit}"
        return text


def compile_kb(data: KnowledgeBaseData) -> CompiledKB:
    """Compile validated data; cross-file inconsistencies raise :class:`KnowledgeBaseError`."""
    problems: list[str] = []
    defs = dict(data.definitions)
    groups = {g.id: g for g in data.groups}

    def cc(c: Condition, where: str) -> Compiled | None:
        try:
            return compile_condition(c, defs, ALL_FACTS)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            return None

    compiled_defs = {name: c for name, cond in defs.items() if (c := cc(cond, f"definitions.yaml: {name}"))}
    cls = data.classification
    scope = tuple(
        CompiledScope(r, t) for r in cls.out_of_scope
        if (t := cc(r.when, f"classification.yaml: out_of_scope {r.id}"))
    )
    gaps = tuple(
        CompiledScope(r, t) for r in cls.gaps if (t := cc(r.when, f"classification.yaml: gaps {r.id}"))
    )
    group_rules: list[tuple[str, Compiled]] = []
    seen: set[str] = set()
    for gr in cls.groups:
        if gr.group not in groups:
            problems.append(f"classification.yaml: groups: unknown group {gr.group!r}")
        if gr.group in seen:
            problems.append(f"classification.yaml: groups: {gr.group!r} has two rules")
        seen.add(gr.group)
        t = cc(gr.when, f"classification.yaml: group {gr.group}")
        if t:
            group_rules.append((gr.group, t))
    for gid in groups:
        if gid not in seen:
            problems.append(f"classification.yaml: groups: no rule for group {gid!r}")
    for fam in set(cls.site_families.values()):
        if not fam.replace("_", "").isalpha():
            problems.append(f"classification.yaml: site_families: bad family {fam!r}")
    for gid in data.gist_risk.applies_to_groups:
        if gid not in groups:
            problems.append(f"tables/gist_risk.yaml: applies_to_groups: unknown group {gid!r}")
    for a in cls.assumptions:
        if a.field not in FACT_FIELDS:
            problems.append(f"classification.yaml: assumptions: unknown fact {a.field!r}")

    bound: dict[str, list[BoundRule]] = {gid: [] for gid in groups}
    rule_ids: set[str] = set()
    for rule in data.rules.rules:
        where = f"personalisation.yaml: rule {rule.id}"
        if rule.id in rule_ids:
            problems.append(f"{where}: duplicate rule id")
        rule_ids.add(rule.id)
        for gid in rule.groups:
            if gid not in groups:
                problems.append(f"{where}: groups: unknown group {gid!r}")
        only_if = cc(rule.only_if, f"{where}: only_if") if rule.only_if else None
        cases = tuple(
            CompiledCase(c, t) for i, c in enumerate(rule.cases) if (t := cc(c.when, f"{where}: cases[{i}]"))
        )
        found_steps: set[str] = set()
        found_options: set[tuple[str, ...]] = set()
        found_modalities: set[str] = set()
        for gid in rule.groups or tuple(groups):
            if gid not in groups:
                continue
            g = groups[gid]
            steps: list[tuple[int, int]] = []
            options: list[tuple[int, int, int]] = []
            want_options = {frozenset(o) for o in rule.targets.options}
            for pi, pw in enumerate(g.pathways):
                for si, st in enumerate(pw.steps):
                    step_hit = st.treatment in rule.targets.steps or bool(
                        set(st.modalities) & set(rule.targets.modalities)
                    )
                    if step_hit:
                        steps.append((pi, si))
                        found_steps.add(st.treatment)
                        found_modalities |= set(st.modalities) & set(rule.targets.modalities)
                    for oi, op in enumerate(st.options):
                        if frozenset(op.drugs) in want_options or (
                            rule.targets.step_options and st.treatment in rule.targets.steps
                        ):
                            options.append((pi, si, oi))
                            found_options.add(tuple(sorted(op.drugs)))
            if steps or options or rule.targets.group:
                bound[gid].append(BoundRule(rule, only_if, cases, rule.unknown, tuple(steps), tuple(options), rule.targets.group))
        for s in rule.targets.steps:
            if s not in found_steps:
                problems.append(f"{where}: targets.steps: {s!r} is not a step of the rule's groups")
        for o in rule.targets.options:
            if tuple(sorted(o)) not in found_options:
                problems.append(f"{where}: targets.options: {list(o)} is not a regimen of the rule's groups")
        for m in rule.targets.modalities:
            if m not in found_modalities:
                problems.append(f"{where}: targets.modalities: no step of the rule's groups includes {m!r}")

    if problems:
        raise KnowledgeBaseError(problems)
    _generate_code(defs, [
        *compiled_defs.values(), *(x.test for x in scope), *(x.test for x in gaps),
        *(t for _, t in group_rules),
        *(c.test for rules in bound.values() for br in rules for c in br.cases),
        *(br.only_if for rules in bound.values() for br in rules if br.only_if is not None),
    ])
    kb = CompiledKB(
        data=data,
        stager=Stager(data.ajcc),
        risk=GistRiskCalculator(data.gist_risk),
        groups=groups,
        scope=scope,
        gaps=gaps,
        group_rules=tuple(group_rules),
        bound={k: tuple(v) for k, v in bound.items()},
        definitions=compiled_defs,
        class_asks={a.field: a.why for a in cls.asks},
        assumptions=tuple((a.field, a.value, a.why) for a in cls.assumptions),
        site_families=dict(cls.site_families),
        labels=dict(data.fact_labels),
    )
    kb.rules_for_site, kb.scope_for_site = _partial_by_site(kb)
    kb.classification_key = memo_spec(
        [x.rule.when for x in (*kb.scope, *kb.gaps)] + [t.source for _, t in kb.group_rules], defs)
    kb.personalisation_keys = {
        gid: memo_spec(
            [c.case.when for br in rules for c in br.cases] + [br.only_if.source for br in rules if br.only_if],
            defs)
        for gid, rules in kb.bound.items()
    }
    return kb


def _collect_leaves(
    c: Condition, defs: Mapping[str, Condition], fields: set[str], bands: dict[str, set[tuple[str, float]]]
) -> None:
    if c.ref is not None:
        _collect_leaves(defs[c.ref], defs, fields, bands)
        return
    for kid in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
        _collect_leaves(kid, defs, fields, bands)
    if c.fact is not None:
        fields.add(c.fact)
        for op in ("gt", "ge", "lt", "le"):
            bound = getattr(c, op)
            if bound is not None:
                bands.setdefault(c.fact, set()).add((op, float(bound)))


def _generate_code(defs: Mapping[str, Condition], compiled: list[Compiled]) -> None:
    """Swap each closure evaluator for generated straight-line code (same semantics)."""
    gen = CodeGenerator(defs, ALL_FACTS)
    done: set[int] = set()
    for c in compiled:
        if id(c) in done:
            continue
        done.add(id(c))

        def sink(fn: Any, c: Compiled = c) -> None:
            c.reference = c.test
            c.test = fn

        gen.add(c.source, sink)
    gen.build()


def _partial_by_site(
    kb: CompiledKB,
) -> tuple[dict[tuple[str, str], tuple[tuple[str, Compiled], ...]], dict[tuple[str, str], tuple[CompiledScope, ...]]]:
    """Keep, per (histology, primary site), only the group and scope rules not already false.

    Histology and site are required facts, so a rule that is false with only them
    known is false for every patient with them: skipping it changes no result.
    """
    from sarcoma_cds.domain.facts import PatientFacts

    hist = PatientFacts.model_fields["histology"].annotation
    site = PatientFacts.model_fields["primary_site"].annotation
    out: dict[tuple[str, str], tuple[tuple[str, Compiled], ...]] = {}
    scope: dict[tuple[str, str], tuple[CompiledScope, ...]] = {}
    for h in getattr(hist, "__args__", ()):
        for s in getattr(site, "__args__", ()):
            view: dict[str, Any] = dict.fromkeys(ALL_FACTS)
            view.update(histology=h, primary_site=s, site_family=kb.site_families.get(s))
            out[(h, s)] = tuple((g, t) for g, t in kb.group_rules if t.test(view) is not False)
            scope[(h, s)] = tuple(x for x in kb.scope if x.test.test(view) is not False)
    return out, scope
