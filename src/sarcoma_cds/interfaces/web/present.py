"""Presentation helpers: labels, search over the algorithm, and "what would change it"."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sarcoma_cds import CompiledKB, InvalidFacts, Recommendation

if TYPE_CHECKING:
    from sarcoma_cds.interfaces.web.forms import FieldSpec

STATUS_LABEL = {
    "preferred": "Preferred",
    "option": "Option",
    "conditional": "Conditional",
    "caution": "Caution",
    "not_recommended": "Not recommended",
}
STATUS_ICON = {  # text symbols, so status never depends on colour alone
    "preferred": "★", "option": "✓", "conditional": "?", "caution": "!", "not_recommended": "✕",
}
TIER_LABEL = {"first_line": "1st line", "plus": "Plus", "consider": "Consider"}
SITE_LABEL = {
    "extremity": "Extremity and trunk",
    "retroperitoneal": "Retroperitoneal and intra-abdominal",
    "gist": "Gastrointestinal stromal tumour (GIST)",
}
SITE_SHORT = {"extremity": "Extremity / trunk", "retroperitoneal": "Retroperitoneal",
              "gist": "GIST"}
RISK_SCHEME = {
    "afip_miettinen_2006": "AFIP (Miettinen & Lasota 2006)",
    "nih_modified_joensuu_2008": "Modified NIH (Joensuu 2008)",
}


def drug_name(d: str) -> str:
    return d.replace("_", " ")


def regimen(drugs: Any) -> str:
    return " + ".join(drug_name(d) for d in drugs)


def step_anchor(pathway_index: int, treatment: str) -> str:
    return f"step-{pathway_index}-{treatment}"


def pathway_index(pathway_id: str, fallback: int) -> int:
    """1-based pathway number from ids like ``group/2``."""
    m = re.search(r"/(\d+)$", pathway_id or "")
    return int(m.group(1)) if m else fallback


def risk_label(category: str) -> str:
    return category.replace("_", " ")


# --------------------------------------------------------------------------- search

@dataclass
class Hit:
    kind: str  # group | step | drug
    title: str
    url: str
    context: str
    snippet: str = ""


def search(kb: CompiledKB, q: str) -> list[Hit]:
    terms = [t for t in re.split(r"\s+", q.lower().strip()) if t]
    if not terms:
        return []

    def match(*texts: str) -> bool:
        blob = " ".join(texts).lower().replace("_", " ")
        return all(t.replace("_", " ") in blob for t in terms)

    groups: list[Hit] = []
    steps: list[Hit] = []
    drugs: dict[str, Hit] = {}
    for g in kb.data.groups:
        url = f"/groups/{g.id}"
        if match(g.id, g.label, g.source_heading, g.summary):
            groups.append(Hit("group", g.label, url, SITE_LABEL[g.site], g.summary))
        for pi, p in enumerate(g.pathways, start=1):
            for s in p.steps:
                surl = f"{url}#{step_anchor(pi, s.treatment)}"
                opts = " ".join(regimen(o.drugs) for o in s.options)
                if match(s.title, s.label, s.treatment, s.rationale, opts):
                    steps.append(Hit("step", f"{TIER_LABEL[s.tier]}: {s.label}", surl,
                                     f"{g.label} · pathway {pi}", s.rationale[:220]))
                for o in s.options:
                    for d in o.drugs:
                        if match(d):
                            h = drugs.setdefault(d, Hit("drug", drug_name(d), f"/search?q={d}", ""))
                            place = f"{g.label} — {s.label} ({regimen(o.drugs)})"
                            h.snippet += ("\n" if h.snippet else "") + place
    return groups + steps + list(drugs.values())


# --------------------------------------------------------------------------- what-if

#: facts that are worth varying, in the order they are shown when they matter.
WHAT_IF_FACTS: tuple[str, ...] = (
    "resectability", "metastasis", "metastatic_burden", "disease_status", "progression_extent",
    "grade", "nodes", "depth", "kit_mutation", "pdgfra_mutation", "ntrk_fusion", "sdh_deficient",
    "braf_v600e", "nf1_mutation", "tumour_rupture", "resection_status",
)


@dataclass
class Change:
    what: str
    before: str
    after: str


@dataclass
class Variant:
    value: Any
    label: str
    current: bool
    group: str
    group_changed: bool
    changes: list[Change] = field(default_factory=list)
    preferred: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class WhatIf:
    fact: str
    label: str
    missing: bool
    why: str
    variants: list[Variant]

    @property
    def decisive(self) -> bool:
        return any(v.group_changed or v.changes for v in self.variants if not v.current)


def _status_map(rec: Recommendation) -> dict[tuple[str, ...], tuple[str, str]]:
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for pi, p in enumerate(rec.pathways, start=1):
        for s in p.steps:
            out[(str(pi), s.treatment)] = (s.label, s.status)
            for o in s.options:
                out[(str(pi), s.treatment, *sorted(o.drugs))] = (f"{s.label}: {regimen(o.drugs)}",
                                                                 o.status)
    return out


def _group_text(rec: Recommendation, kb: CompiledKB) -> str:
    if rec.out_of_scope is not None:
        return "Out of scope"
    if rec.patient_group is not None:
        return str(rec.patient_group.label)
    if rec.candidate_groups:
        return "Not pinned: " + " / ".join(kb.groups[g].label if g in kb.groups else g
                                           for g in rec.candidate_groups)
    return "No group"


def _preferred(rec: Recommendation) -> list[str]:
    out: list[str] = []
    for p in rec.pathways:
        for s in p.steps:
            if s.status == "preferred" and not any(o.status == "preferred" for o in s.options):
                out.append(s.label)
            out += [f"{s.label}: {regimen(o.drugs)}" for o in s.options if o.status == "preferred"]
    return list(dict.fromkeys(out))


def _consistent(facts: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    f = dict(facts)
    f[name] = value
    if name == "metastatic_burden":
        f["metastasis"] = "M1"
    if name == "metastasis" and value == "M0":
        f.pop("metastatic_burden", None)
        f.pop("metastatic_sites", None)
    if name == "progression_extent":
        f["disease_status"] = "progressive"
    if name == "disease_status" and value != "progressive":
        f.pop("progression_extent", None)
    return f


def what_if(kb: CompiledKB, recommend: Callable[[dict[str, Any]], Recommendation],
            facts: dict[str, Any],
            fields: dict[str, FieldSpec]) -> tuple[Recommendation, list[WhatIf]]:
    """Recompute the recommendation under each value of each missing or decisive fact."""
    base = recommend(facts)
    if base.out_of_scope is not None:
        return base, []
    base_map = _status_map(base)
    base_group = _group_text(base, kb)
    missing = {m.field: m.why for m in base.missing_information}
    names = [n for n in missing if n in fields and fields[n].kind != "multi"]
    names += [n for n in WHAT_IF_FACTS if n not in names]
    out: list[WhatIf] = []
    for name in names:
        spec = fields[name]
        values: list[Any] = [v for v, _ in spec.choices if v != ""]
        if spec.kind == "bool":
            values = [True, False]
        if not values:
            continue
        variants: list[Variant] = []
        for v in values:
            label = kb.value_label(name, v)
            label = label[:1].upper() + label[1:]
            current = facts.get(name) == v
            try:
                rec = base if current else recommend(_consistent(facts, name, v))
            except InvalidFacts as e:
                variants.append(Variant(v, label, current, "", False, error=str(e)))
                continue
            group = _group_text(rec, kb)
            changes: list[Change] = []
            if group == base_group:
                m = _status_map(rec)
                for key, (what, st) in m.items():
                    before = base_map.get(key)
                    if before and before[1] != st:
                        changes.append(Change(what, before[1], st))
            variants.append(Variant(v, label, current, group, group != base_group, changes,
                                    _preferred(rec)))
        wi = WhatIf(name, spec.label, name in missing, missing.get(name, ""), variants)
        if wi.missing or wi.decisive:
            out.append(wi)
    return base, out
