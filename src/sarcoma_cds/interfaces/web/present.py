"""Presentation helpers: labels, search over the algorithm, and "what would change it"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sarcoma_cds import CompiledKB, InvalidFacts, Recommendation

if TYPE_CHECKING:
    pass
from sarcoma_cds.domain.engine import DERIVED_REASON

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
    places: list[tuple[str, str]] = field(default_factory=list)  # drug hits: (where, step URL)
    matched_query: str = ""  # the query that matched, when a misspelt one was corrected


def _vocabulary(kb: Any) -> list[str]:
    """Words a search can be corrected to: drug names and the words of group and step labels."""
    words: set[str] = set()
    for g in kb.data.groups:
        words.update(re.findall(r"[a-z]{4,}", g.label.lower()))
        for p in g.pathways:
            for s in p.steps:
                words.update(re.findall(r"[a-z]{4,}", s.label.lower()))
                for o in s.options:
                    words.update(d.lower() for d in o.drugs)
    return sorted(words)


def _brands() -> dict[str, str]:
    """Brand names of the knowledge base's drugs (the FHIR reader's drugs table), if installed."""
    try:
        from sarcoma_cds.adapters.fhir.terms import brand_names
    except ImportError:  # (a lean install without the service extra)
        return {}
    return brand_names()


def search(kb: Any, q: str) -> list[Hit]:
    """Groups, steps and drugs matching every word of ``q``; a misspelt word is corrected
    (closest drug or label word, ``difflib``) when the query as typed finds nothing."""
    brands = _brands()
    words = re.split(r"\s+", q.lower().strip())
    if any(w in brands for w in words):  # a brand name: search its generic name (drugs table)
        generic = " ".join(brands.get(w, w) for w in words)
        hits = _search(kb, generic)
        for h in hits:
            h.matched_query = f"{q.strip()} ({generic.replace('_', ' ')})"
        return hits
    hits = _search(kb, q)
    if hits or not q.strip():
        return hits
    import difflib

    vocab = _vocabulary(kb)
    fixed = []
    for t in re.split(r"\s+", q.lower().strip()):
        close = difflib.get_close_matches(t, vocab, n=1, cutoff=0.75)
        fixed.append(close[0] if close else t)
    corrected = " ".join(fixed)
    if corrected == q.lower().strip():
        return []
    hits = _search(kb, corrected)
    for h in hits:
        h.matched_query = corrected.replace("_", " ")
    return hits


def _search(kb: Any, q: str) -> list[Hit]:
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
                            h.places.append((place, surl))
    return groups + steps + list(drugs.values())


# --------------------------------------------------------------------------- what-if

#: facts that are worth varying, in the order they are shown when they matter.
WHAT_IF_FACTS: tuple[str, ...] = (
    "resectability", "metastasis", "metastatic_burden", "disease_status", "progression_extent",
    "grade", "nodes", "depth", "kit_mutation", "pdgfra_mutation", "ntrk_fusion", "sdh_deficient",
    "braf_v600e", "nf1_mutation", "tumour_rupture", "resection_status",
)


#: Numbers worth varying, with one probe value inside each band the staging and risk tables
#: use (size: up to 5, 5-10, 10-15, over 15 cm; mitoses: up to 5, over 5 per 5 mm2). Only the
#: differences the engine then reports are shown; the current value is added when it is known.
NUMERIC_PROBES: dict[str, tuple[float, ...]] = {
    "size_cm": (4.0, 8.0, 12.0, 16.0),
    "mitotic_rate_per_5mm2": (3.0, 8.0),
}


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


def _unit_text(unit: str | None) -> str:
    return (unit or "").replace("mm2", "mm²")


def what_if(
    kb: Any, recommend: Any, facts: dict[str, Any], fields: dict[str, Any]
) -> tuple[Any, list[WhatIf]]:
    """Recompute the recommendation under each value of each missing or decisive fact."""
    base = recommend(facts)
    if base.out_of_scope is not None:
        return base, []
    base_map = _status_map(base)
    base_group = _group_text(base, kb)
    missing = {m.field: m.why for m in base.missing_information}
    names = [n for n in missing if n in fields and fields[n].kind != "multi"]
    names += [n for n in (*WHAT_IF_FACTS, *NUMERIC_PROBES) if n not in names]
    out: list[WhatIf] = []
    for name in names:
        spec = fields[name]
        values: list[Any] = [v for v, _ in spec.choices if v != ""]
        if name in NUMERIC_PROBES:
            values = sorted(
                {
                    *NUMERIC_PROBES[name],
                    *([facts[name]] if isinstance(facts.get(name), int | float) else []),
                }
            )
        if spec.kind == "bool":
            values = [True, False]
        elif spec.kind == "integer":
            values = [int(v) for v in values]
        if not values:
            continue
        variants: list[Variant] = []
        for v in values:
            label = (
                f"{v:g} {_unit_text(spec.unit)}".strip()
                if name in NUMERIC_PROBES
                else kb.value_label(name, v)
            )
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


# --------------------------------------------------------------------------- bottom line

#: Recommendation statuses that the bottom line and the "holds anyway" box report.
FIRM_STATUSES = ("preferred", "caution", "not_recommended")
#: GIST risk schemes estimate relapse after resection of a localised tumour only.
RISK_APPLIES_TO = "resected localised GIST"


@dataclass
class ReasonGroup:
    """Regimens that share one reason, so that the reason is written once."""

    reason: str
    items: list[str] = field(default_factory=list)


@dataclass
class BottomLine:
    """The few lines a busy clinician reads first; every part restates the recommendation."""

    group: str
    stage: str = ""
    out_of_scope: str = ""
    candidates: list[str] = field(default_factory=list)  # labels, when the group is not pinned
    preferred: list[ReasonGroup] = field(default_factory=list)
    alternatives: list[str] = field(
        default_factory=list
    )  # first step of each pathway when nothing is preferred
    caution: list[ReasonGroup] = field(default_factory=list)
    ruled_out: list[ReasonGroup] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (fact field, why)
    holds: list[tuple[str, str, str]] = field(default_factory=list)  # (status, regimen, reason)
    risk_not_applicable: bool = False

    @property
    def sentence(self) -> str:
        """One line, for lists of cases (the tumour-board list)."""
        if self.out_of_scope:
            return "Outside the algorithm's scope."
        parts = [self.group + (f", stage {self.stage}" if self.stage else "")]
        if self.preferred:
            parts.append("preferred: " + "; ".join(i for g in self.preferred for i in g.items))
        elif self.alternatives:
            parts.append(f"{len(self.alternatives)} alternative pathways, none preferred"
                         if len(self.alternatives) > 1 else "no single preferred choice")
        if self.ruled_out:
            parts.append(f"{sum(len(g.items) for g in self.ruled_out)} ruled out")
        if self.missing:
            parts.append(f"{len(self.missing)} fact(s) missing")
        return " · ".join(parts)


def group_by_reason(entries: list[tuple[str, list[str]]]) -> list[ReasonGroup]:
    """Group ``(name, reasons)`` by reason, in first-seen order: each reason once, with its names.

    A regimen listed in several steps or pathways with the same reason appears once under it;
    a regimen with two reasons appears under both; one without a reason under reason "".
    """
    out: dict[str, ReasonGroup] = {}
    for name, reasons in entries:
        for key in reasons or [""]:
            g = out.setdefault(key, ReasonGroup(key))
            if name not in g.items:
                g.items.append(name)
    merged: dict[tuple[str, ...], ReasonGroup] = {}  # same regimens under two reasons: one line
    for g in out.values():
        m = merged.get(tuple(g.items))
        if m is None:
            merged[tuple(g.items)] = g
        else:
            m.reason = f"{m.reason} {g.reason}".strip()
    return list(merged.values())


def step_reasons(step: dict[str, Any]) -> list[str]:
    """A step's own reasons: without the sentence saying it took its status from its regimens,
    and without reasons its regimens already give (so that the board sheet says each once)."""
    derived = set(DERIVED_REASON.values())
    opt = {r for o in step.get("options") or [] for r in o.get("reasons") or []}
    return [r for r in step.get("reasons") or [] if r not in derived and r not in opt]


STATUS_ORDER = ("preferred", "option", "conditional", "caution", "not_recommended")


def ordered_options(options: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Regimens in reading order, preferred first and ruled-out last, each with the row span of
    its "why" cell: ruled-out regimens sharing the same reasons get one cell (span n, then 0)."""
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    opts = sorted(options, key=lambda o: rank.get(o["status"], len(rank)))
    keep = [o for o in opts if o["status"] != "not_recommended"]
    ruled: dict[str, list[dict[str, Any]]] = {}
    for o in opts:
        if o["status"] == "not_recommended":
            ruled.setdefault(" ".join(o.get("reasons") or []), []).append(o)
    out: list[tuple[dict[str, Any], int]] = [(o, 1) for o in keep]
    for same in ruled.values():
        out += [(o, len(same) if i == 0 else 0) for i, o in enumerate(same)]
    return out


def risk_applies(facts: dict[str, Any] | None, rec: dict[str, Any]) -> bool:
    """Whether the AFIP/NIH GIST risk schemes apply: a localised, not recurrent tumour.

    Both schemes estimate the risk of relapse after resection of a localised primary GIST;
    for metastatic or recurrent disease they describe no decision on the page.
    """
    f = facts or {}
    if f.get("metastasis") == "M1" or f.get("disease_status") in ("recurrent", "progressive"):
        return False
    gid = ((rec.get("patient_group") or {}).get("id")) or ""
    return not gid.startswith(("gist.recurrent", "gist.progressive"))


def bottom_line(rec: dict[str, Any], facts: dict[str, Any] | None = None,
                group_label: Any = None) -> BottomLine:
    """Summarise a recommendation (contract JSON) in the order a tumour board reads it.

    Group and stage; what is preferred (or, when nothing is, the alternative pathways by their
    first step); what needs caution and what is ruled out, each reason once with the regimens it
    covers; the missing facts and what each would change; and, when the group is not pinned,
    what holds across the candidate groups (``across_candidates``, contract 1.1). Nothing is
    added that the recommendation does not say.
    """
    label = group_label or (lambda gid: gid)
    oos = rec.get("out_of_scope")
    g = rec.get("patient_group")
    if oos:
        return BottomLine(
            group="Outside the algorithm's scope", out_of_scope=str(oos.get("reason") or "")
        )
    if g:
        group = str(g.get("label") or g.get("id"))
    elif rec.get("candidate_groups"):
        group = f"Not yet decided between {len(rec['candidate_groups'])} groups"
    else:
        group = "No patient group"
    st = rec.get("stage") or {}
    stage = str(st.get("group") or "")
    if st and not stage and st.get("possible_groups"):
        stage = " or ".join(st["possible_groups"]) + " (not final)"
    pref: list[tuple[str, list[str]]] = []
    caution: list[tuple[str, list[str]]] = []
    ruled: list[tuple[str, list[str]]] = []
    firsts: list[str] = []
    for p in rec.get("pathways") or []:
        steps = p.get("steps") or []
        if steps:
            firsts.append(str(steps[0]["label"]))
        for s in steps:
            opts = s.get("options") or []
            if s["status"] == "preferred" and not any(o["status"] == "preferred" for o in opts):
                pref.append((s["label"], step_reasons(s)))
            if s["status"] == "not_recommended" and not opts:
                ruled.append((s["label"], list(s.get("reasons") or [])))
            for o in opts:
                name = regimen(o["drugs"])
                if o["status"] == "preferred":
                    pref.append((f"{name} ({s['label'].lower()})", list(o.get("reasons") or [])))
                elif o["status"] == "caution":
                    caution.append((name, list(o.get("reasons") or [])))
                elif o["status"] == "not_recommended":
                    ruled.append((name, list(o.get("reasons") or [])))
    bl = BottomLine(
        group=group,
        stage=stage,
        candidates=[str(label(c)) for c in rec.get("candidate_groups") or []] if not g else [],
    )
    bl.preferred = group_by_reason(pref)
    if not pref:
        bl.alternatives = list(dict.fromkeys(firsts))
    bl.caution = group_by_reason(caution)
    bl.ruled_out = group_by_reason(ruled)
    bl.missing = [(m["field"], m["why"]) for m in rec.get("missing_information") or []]
    if not g:
        for a in rec.get("across_candidates") or []:
            if a["status"] in FIRM_STATUSES and len(a.get("groups") or []) == len(
                rec.get("candidate_groups") or []
            ):
                reasons = a.get("reasons") or []
                bl.holds.append((a["status"], regimen(a["drugs"]), reasons[0] if reasons else ""))
    bl.risk_not_applicable = bool(rec.get("gist_risk")) and not risk_applies(facts, rec)
    return bl
