"""The knowledge base compiled for evaluation: validated data in, closures out.

Compilation happens once per process (see ``sarcoma_cds.kb.loader``). Everything a
patient needs -- rule closures, the targets of every rule in every group, the
stage and risk lookups -- is resolved here, so evaluation never walks rule data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sarcoma_cds.domain.codegen import CodeGenerator
from sarcoma_cds.domain.conditions import Compiled, compile_condition
from sarcoma_cds.domain.facts import FACT_FIELDS
from sarcoma_cds.domain.gist_risk import GistRiskCalculator, GistRiskTables
from sarcoma_cds.domain.kb_checks import (
    CLASSIFICATION_FILE,
    DEFINITIONS_FILE,
    RULES_FILE,
    case_conflicts,
    did_you_mean,
    duplicate_regimens,
    reference_problems,
    refs_of,
)
from sarcoma_cds.domain.kb_models import (
    Bibliography,
    Case,
    Classification,
    Condition,
    FactLabel,
    Group,
    GuidelineMeta,
    NamedSource,
    Outcome,
    Rule,
    Rules,
    ScopeRule,
    Targets,
)
from sarcoma_cds.domain.memo import Memo
from sarcoma_cds.domain.recommendation import SEVERITY
from sarcoma_cds.domain.staging import AjccTables, Stager

__all__ = ["SEVERITY", "CompiledKB", "KnowledgeBaseData", "KnowledgeBaseError", "compile_kb"]

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
    #: named public sources beyond the source algorithm (``sources.yaml``), by id
    sources: Mapping[str, NamedSource] = field(default_factory=dict)
    #: the source's reference numbers (``bibliography.yaml``); None for versions archived before it
    bibliography: Bibliography | None = None


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
            out.append(
                None
                if v is None
                else tuple(
                    (v > b)
                    if op == "gt"
                    else (v >= b)
                    if op == "ge"
                    else (v < b)
                    if op == "lt"
                    else (v <= b)
                    for op, b in bands
                )
            )
        return tuple(out)


def memo_spec(conditions: list[Condition], defs: Mapping[str, Condition]) -> MemoKeySpec:
    """The memo key of a rule set: every fact it reads; a number only through its thresholds
    when every test of it is a comparison (a fact also tested for equality, e.g. ``ecog eq 2``
    beside ``ecog ge 3``, is keyed by its value: bands alone would merge 1 and 2)."""
    fields: set[str] = set()
    bands: dict[str, set[tuple[str, float]]] = {}
    exact: set[str] = set()
    for cond in conditions:
        _collect_leaves(cond, defs, fields, bands, exact)
    banded = {f: b for f, b in bands.items() if f not in exact}
    return MemoKeySpec(
        plain=tuple(sorted(f for f in fields if f not in banded)),
        banded=tuple((f, tuple(sorted(banded[f]))) for f in sorted(banded)),
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
    rules_for_site: dict[tuple[str, str], tuple[tuple[str, Compiled], ...]] = field(
        default_factory=dict
    )
    #: memoised output objects (frozen, shared); see engine.kb_defaults and engine._personalise
    output_cache: Memo = field(default_factory=Memo)

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
    """Compile validated data; cross-file inconsistencies raise :class:`KnowledgeBaseError`.

    The steps run in a fixed order and every one records its problems, so that an author sees
    them all at once; the knowledge base is only assembled when there are none.
    """
    b = _Build(data)
    compiled_defs = b.definitions()
    scope, gaps, group_rules = b.classification()
    b.classification_vocabulary()
    bound = b.rules()
    b.references()
    if b.problems:
        raise KnowledgeBaseError(b.problems)
    return _assemble(data, b.defs, compiled_defs, scope, gaps, group_rules, bound)


class _Build:
    """One compilation: the data, the problems found so far, and how conditions are compiled."""

    def __init__(self, data: KnowledgeBaseData) -> None:
        self.data = data
        self.problems: list[str] = []
        self.defs = dict(data.definitions)
        self.groups = {g.id: g for g in data.groups}
        self.broken: set[str] = (
            set()
        )  # definitions that do not compile (reported once, where they are)
        self.vocab = fact_vocabularies(data.classification.site_families)

    def cc(self, c: Condition, where: str) -> Compiled | None:
        """``c`` compiled, or None with the problem recorded (not again for a broken definition)."""
        try:
            return compile_condition(c, self.defs, ALL_FACTS)
        except ValueError as e:
            if not refs_of(c, self.defs) & self.broken:
                self.problems.append(f"{where}: {e}")
            return None

    def definitions(self) -> dict[str, Compiled]:
        """The named conditions of definitions.yaml, compiled."""
        out: dict[str, Compiled] = {}
        for name, cond in self.defs.items():
            if (compiled := self.cc(cond, f"{DEFINITIONS_FILE}: definition {name}")) is None:
                self.broken.add(name)
            else:
                out[name] = compiled
        return out

    def classification(self) -> tuple[tuple[CompiledScope, ...], tuple[CompiledScope, ...],
                                      list[tuple[str, Compiled]]]:
        """Out-of-scope rules, gaps and one rule per group, with the structure checked."""
        cls, groups, problems = self.data.classification, self.groups, self.problems
        scope = tuple(
            CompiledScope(r, t) for r in cls.out_of_scope
            if (t := self.cc(r.when, f"{CLASSIFICATION_FILE}: out_of_scope {r.id}: when"))
        )
        gaps = tuple(
            CompiledScope(r, t) for r in cls.gaps
            if (t := self.cc(r.when, f"{CLASSIFICATION_FILE}: gaps {r.id}: when"))
        )
        group_rules: list[tuple[str, Compiled]] = []
        seen: set[str] = set()
        for gr in cls.groups:
            if gr.group not in groups:
                problems.append(f"{CLASSIFICATION_FILE}: groups: unknown group {gr.group!r}"
                                + did_you_mean(gr.group, groups))
            if gr.group in seen:
                problems.append(f"{CLASSIFICATION_FILE}: groups: {gr.group!r} has two rules")
            seen.add(gr.group)
            t = self.cc(gr.when, f"{CLASSIFICATION_FILE}: group {gr.group}: when")
            if t:
                group_rules.append((gr.group, t))
        problems.extend(f"{CLASSIFICATION_FILE}: groups: no rule for group {gid!r}"
                        for gid in groups if gid not in seen)
        problems.extend(
            f"{CLASSIFICATION_FILE}: site_families: bad family {fam!r}"
            for fam in set(cls.site_families.values())
            if not fam.replace("_", "").isalpha()
        )
        problems.extend(f"tables/gist_risk.yaml: applies_to_groups: unknown group {gid!r}"
                        + did_you_mean(gid, groups)
                        for gid in self.data.gist_risk.applies_to_groups if gid not in groups)
        problems.extend(f"{CLASSIFICATION_FILE}: assumptions: unknown fact {a.field!r}"
                        + did_you_mean(a.field, FACT_FIELDS)
                        for a in cls.assumptions if a.field not in FACT_FIELDS)
        return scope, gaps, group_rules

    def classification_vocabulary(self) -> None:
        """Values and tests of the definitions and the classification against the vocabularies."""
        cls, vocab, problems = self.data.classification, self.vocab, self.problems
        for name, cond in self.defs.items():
            problems.extend(f"{DEFINITIONS_FILE}: definition {name}: {m}"
                            for m in condition_vocabulary_problems(cond, vocab))
        for sc in (*cls.out_of_scope, *cls.gaps):
            problems.extend(f"{CLASSIFICATION_FILE}: {sc.id}: when: {m}"
                            for m in condition_vocabulary_problems(sc.when, vocab))
        for gr in cls.groups:
            problems.extend(f"{CLASSIFICATION_FILE}: group {gr.group}: when: {m}"
                            for m in condition_vocabulary_problems(gr.when, vocab))
        problems.extend(f"{CLASSIFICATION_FILE}: asks: {ask.field!r} is not a contract fact"
                        + did_you_mean(ask.field, FACT_FIELDS)
                        for ask in cls.asks if ask.field not in FACT_FIELDS)
        for a in cls.assumptions:
            allowed = vocab.get(a.field)
            if allowed is not None and allowed and a.value not in allowed:
                problems.append(
                    f"{CLASSIFICATION_FILE}: assumptions: {a.field}: value {a.value!r} is not "
                    "in its vocabulary" + did_you_mean(a.value, allowed)
                )
        problems.extend(duplicate_regimens(self.groups.values(), self.data.files))

    def rules(self) -> dict[str, list[BoundRule]]:
        """Every personalisation rule compiled, checked and bound to the groups it targets."""
        bound: dict[str, list[BoundRule]] = {gid: [] for gid in self.groups}
        all_names = _names(self.groups.values())
        treatments = {
            st.treatment for g in self.groups.values() for pw in g.pathways for st in pw.steps
        } | {
            m
            for g in self.groups.values()
            for pw in g.pathways
            for st in pw.steps
            for m in st.modalities
        }
        rule_ids: set[str] = set()
        for rule in self.data.rules.rules:
            where = f"{RULES_FILE}: rule {rule.id}"
            if rule.id in rule_ids:
                self.problems.append(f"{where}: id: duplicate rule id")
            rule_ids.add(rule.id)
            bad_groups = [gid for gid in rule.groups if gid not in self.groups]
            self.problems.extend(
                f"{where}: groups: unknown group {gid!r}" + did_you_mean(gid, self.groups)
                for gid in bad_groups
            )
            self.problems.extend(case_conflicts(rule))
            only_if = self.cc(rule.only_if, f"{where}: only_if") if rule.only_if else None
            cases = tuple(
                CompiledCase(c, t) for i, c in enumerate(rule.cases)
                if (t := self.cc(c.when, f"{where}: case {i + 1}: when"))
            )
            found = self._bind(rule, only_if, cases, bound)
            if (
                not bad_groups
            ):  # (targets are looked up in the rule's groups: none to check against)
                self.problems.extend(
                    f"{where}: {m}" for m in _target_problems(rule.targets, *found, all_names)
                )
            self.problems.extend(
                f"{where}: {msg}" for msg in _rule_vocabulary_problems(rule, self.vocab, treatments)
            )
            self.problems.extend(
                f"{where}: references: {ref!r} is neither a source reference number nor a named "
                "source in sources.yaml" + did_you_mean(ref, self.data.sources)
                for ref in rule.references
                if not ref.isdigit() and ref not in self.data.sources
            )
        return bound

    def _bind(
        self,
        rule: Rule,
        only_if: Compiled | None,
        cases: tuple[CompiledCase, ...],
        bound: dict[str, list[BoundRule]],
    ) -> tuple[set[str], set[tuple[str, ...]], set[str], set[str], set[str]]:
        """Bind ``rule`` to the steps and regimens it targets in each of its groups; returns what
        was found (steps, regimens, modalities, drugs, steps whose regimens are targeted)."""
        found_steps: set[str] = set()
        found_options: set[tuple[str, ...]] = set()
        found_modalities: set[str] = set()
        found_drugs: set[str] = set()
        found_option_steps: set[str] = set()
        tg = rule.targets
        want_options = {frozenset(o) for o in tg.options}
        want_drugs = set(tg.drugs)
        for gid in rule.groups or tuple(self.groups):
            if gid not in self.groups:
                continue
            steps: list[tuple[int, int]] = []
            options: list[tuple[int, int, int]] = []
            for pi, pw in enumerate(self.groups[gid].pathways):
                for si, st in enumerate(pw.steps):
                    if st.treatment in tg.steps or set(st.modalities) & set(tg.modalities):
                        steps.append((pi, si))
                        found_steps.add(st.treatment)
                        found_modalities |= set(st.modalities) & set(tg.modalities)
                    if st.treatment in tg.options_of_steps and st.options:
                        found_option_steps.add(st.treatment)
                    for oi, op in enumerate(st.options):
                        drug_hit = want_drugs & set(op.drugs)
                        found_drugs |= drug_hit
                        if frozenset(op.drugs) in want_options or drug_hit or (
                            tg.step_options and st.treatment in tg.steps
                        ) or st.treatment in tg.options_of_steps:
                            options.append((pi, si, oi))
                            found_options.add(tuple(sorted(op.drugs)))
            if steps or options or tg.group:
                bound[gid].append(
                    BoundRule(
                        rule, only_if, cases, rule.unknown, tuple(steps), tuple(options), tg.group
                    )
                )
        return found_steps, found_options, found_modalities, found_drugs, found_option_steps

    def references(self) -> None:
        """Every reference number used is in the bibliography (when the knowledge base has one)."""
        if self.data.bibliography is not None:
            self.problems.extend(reference_problems(self.groups.values(), self.data.rules.rules,
                                                    self.data.bibliography, self.data.files))


def _assemble(
    data: KnowledgeBaseData,
    defs: dict[str, Condition],
    compiled_defs: dict[str, Compiled],
    scope: tuple[CompiledScope, ...],
    gaps: tuple[CompiledScope, ...],
    group_rules: list[tuple[str, Compiled]],
    bound: dict[str, list[BoundRule]],
) -> CompiledKB:
    """The compiled knowledge base: generated code, site partial evaluation and memo keys."""
    _generate_code(defs, [
        *compiled_defs.values(), *(x.test for x in scope), *(x.test for x in gaps),
        *(t for _, t in group_rules),
        *(c.test for rules in bound.values() for br in rules for c in br.cases),
        *(br.only_if for rules in bound.values() for br in rules if br.only_if is not None),
    ])
    cls = data.classification
    kb = CompiledKB(
        data=data,
        stager=Stager(data.ajcc),
        risk=GistRiskCalculator(data.gist_risk),
        groups={g.id: g for g in data.groups},
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
            [c.case.when for br in rules for c in br.cases]
            + [br.only_if.source for br in rules if br.only_if],
            defs,
        )
        for gid, rules in kb.bound.items()
    }
    return kb


def fact_vocabularies(site_families: Mapping[str, str]) -> dict[str, tuple[Any, ...] | None]:
    """Every fact a rule may read -> its allowed values (``()`` for numbers, ``None`` when free).

    Contract facts take their vocabulary from the facts model, derived facts from their tables,
    so a misspelt value in a rule (``exon_99``, ``imatinibb``) is caught at load, not at a patient.
    """
    from typing import get_args, get_origin

    from sarcoma_cds.domain.facts import PatientFacts
    from sarcoma_cds.domain.gist_risk import AfipCategory, NihCategory
    from sarcoma_cds.domain.staging import StageGroup

    out: dict[str, tuple[Any, ...] | None] = {}
    for name in FACT_FIELDS:
        ann = PatientFacts.model_fields[name].annotation
        if get_origin(ann) is Literal:
            out[name] = tuple(get_args(ann))
            continue
        inner = next(a for a in get_args(ann) if a is not type(None))
        if get_origin(inner) is tuple:
            inner = get_args(inner)[0]
        if get_origin(inner) is Literal:
            out[name] = tuple(get_args(inner))
        elif inner is bool or bool in get_args(inner):
            out[name] = (True, False)
        else:
            out[name] = ()
    out["site_family"] = tuple(sorted(set(site_families.values())))
    out["stage_group"] = tuple(get_args(StageGroup))
    out["gist_risk_afip"] = tuple(get_args(AfipCategory))
    out["gist_risk_nih"] = tuple(get_args(NihCategory))
    return out


#: Kinds of facts, for checking that each test suits its fact.
def _kind(fact: str, vocab: Mapping[str, tuple[Any, ...] | None]) -> str:
    from sarcoma_cds.domain.facts import LIST_FIELDS

    if fact in LIST_FIELDS:
        return "list"
    values = vocab.get(fact)
    if values == ():
        return "number"
    if values == (True, False):
        return "bool"
    return "category"


def condition_vocabulary_problems(
    c: Condition, vocab: Mapping[str, tuple[Any, ...] | None]
) -> list[str]:
    """Values outside a fact's vocabulary and tests that do not suit the fact (e.g. ``lt`` on
    grade)."""
    out: list[str] = []
    for kid in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
        out.extend(condition_vocabulary_problems(kid, vocab))
    fact = c.fact
    if fact is None or fact not in vocab:
        return out
    kind = _kind(fact, vocab)
    allowed = vocab[fact] or ()
    values = list(c.in_) if c.in_ is not None else [c.eq] if c.eq is not None else []
    if values and kind == "list":
        out.append(f"fact {fact!r} is a list: use 'contains' or 'count_ge', not 'in'/'eq'")
    elif values and kind == "number":
        out.extend(f"fact {fact!r}: {v!r} is not a number" for v in values
                   if not isinstance(v, int | float) or isinstance(v, bool))
    elif values:
        out.extend(
            f"fact {fact!r}: value {v!r} is not in its vocabulary ({', '.join(map(str, allowed))})"
            + did_you_mean(v, allowed)
            for v in values
            if v not in allowed
        )
    if c.contains is not None:
        if kind != "list":
            out.append(f"fact {fact!r} is not a list: 'contains' needs a list fact")
        elif c.contains not in allowed:
            out.append(
                f"fact {fact!r}: value {c.contains!r} is not in its vocabulary "
                f"({', '.join(allowed)})"
                + did_you_mean(c.contains, allowed)
            )
    if c.count_ge is not None and kind != "list":
        out.append(f"fact {fact!r} is not a list: 'count_ge' needs a list fact")
    if any(getattr(c, op) is not None for op in ("gt", "ge", "lt", "le")) and kind != "number":
        out.append(f"fact {fact!r} is not a number: comparisons (gt/ge/lt/le) need a numeric fact")
    return out


def _rule_vocabulary_problems(rule: Rule, vocab: Mapping[str, tuple[Any, ...] | None],
                              treatments: set[str]) -> list[str]:
    """Conditions, asks and warning targets of one rule checked against the vocabularies."""
    out: list[str] = []
    conds = [(f"case {i}: when", c.when) for i, c in enumerate(rule.cases, start=1)]
    if rule.only_if:
        conds.append(("only_if", rule.only_if))
    for field_name, cond in conds:
        out.extend(f"{field_name}: {m}" for m in condition_vocabulary_problems(cond, vocab))
    outcomes: list[tuple[str, Outcome]] = [
        (f"case {i}", c) for i, c in enumerate(rule.cases, start=1)
    ]
    if rule.unknown:
        outcomes.append(("unknown", rule.unknown))
    for name, oc in outcomes:
        out.extend(
            f"{name}: ask: {a.field!r} is not a contract fact" + did_you_mean(a.field, FACT_FIELDS)
            for a in oc.ask
            if a.field not in FACT_FIELDS
        )
        w = oc.warning
        if w is not None and w.treatment is not None and w.treatment not in treatments:
            out.append(
                f"{name}: warning.treatment: {w.treatment!r} is not a treatment id or modality of "
                "the knowledge base" + did_you_mean(w.treatment, treatments)
            )
    return out


def _names(groups: Iterable[Group]) -> dict[str, set[str]]:
    """Every step id, modality and drug of the knowledge base, for "did you mean" on targets."""
    out: dict[str, set[str]] = {"steps": set(), "modalities": set(), "drugs": set()}
    for g in groups:
        for pw in g.pathways:
            for st in pw.steps:
                out["steps"].add(st.treatment)
                out["modalities"] |= set(st.modalities)
                out["drugs"] |= {d for op in st.options for d in op.drugs}
    return out


def _target_problems(
    tg: Targets,
    steps: set[str],
    options: set[tuple[str, ...]],
    modalities: set[str],
    drugs: set[str],
    option_steps: set[str],
    names: dict[str, set[str]],
) -> list[str]:
    """Targets that name nothing in the rule's groups (each with the nearest existing name)."""
    out = [
        f"targets.steps: {s!r} is not a step of the rule's groups" + did_you_mean(s, names["steps"])
        for s in tg.steps
        if s not in steps
    ]
    out += [f"targets.options: {list(o)} is not a regimen of the rule's groups"
            + "".join(did_you_mean(d, names["drugs"]) for d in o if d not in names["drugs"])
            for o in tg.options if tuple(sorted(o)) not in options]
    out += [
        f"targets.modalities: no step of the rule's groups includes {m!r}"
        + did_you_mean(m, names["modalities"])
        for m in tg.modalities
        if m not in modalities
    ]
    out += [
        f"targets.drugs: no regimen of the rule's groups contains {d!r}"
        + did_you_mean(d, names["drugs"])
        for d in tg.drugs
        if d not in drugs
    ]
    out += [f"targets.options_of_steps: {s!r} is not a step with regimens in the rule's groups"
            + did_you_mean(s, names["steps"]) for s in tg.options_of_steps if s not in option_steps]
    return out


def _collect_leaves(
    c: Condition,
    defs: Mapping[str, Condition],
    fields: set[str],
    bands: dict[str, set[tuple[str, float]]],
    exact: set[str],
) -> None:
    """Facts read by ``c``: thresholds of compared facts into ``bands``, others into ``exact``."""
    if c.ref is not None:
        _collect_leaves(defs[c.ref], defs, fields, bands, exact)
        return
    for kid in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
        _collect_leaves(kid, defs, fields, bands, exact)
    if c.fact is not None:
        fields.add(c.fact)
        compared = False
        for op in ("gt", "ge", "lt", "le"):
            bound = getattr(c, op)
            if bound is not None:
                bands.setdefault(c.fact, set()).add((op, float(bound)))
                compared = True
        if not compared and c.known is None:  # (known: the value's presence is in every key anyway)
            exact.add(c.fact)


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
) -> tuple[
    dict[tuple[str, str], tuple[tuple[str, Compiled], ...]],
    dict[tuple[str, str], tuple[CompiledScope, ...]],
]:
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
