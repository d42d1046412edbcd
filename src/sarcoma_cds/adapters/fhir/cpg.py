"""Recommendation -> CPG-on-FHIR (STU2) shaped Bundle; knowledge base -> PlanDefinitions.

Shapes (HL7 CPG-on-FHIR, FHIR R4; validated with ``fhir.resources`` R4B models):

* a ``CarePlan`` (intent ``proposal``) whose activity references
* a ``RequestGroup`` (intent ``proposal``): one root action with
  ``selectionBehavior: exactly-one`` over the guideline's alternative pathways; each
  pathway action holds one action per step; a step with regimens holds one action
  per regimen (``selectionBehavior: at-most-one``);
* ``ServiceRequest`` (non-drug steps) and ``MedicationRequest`` (regimens), intent
  ``option``, each with ``instantiatesCanonical`` pointing at the guideline
  definition (a recommendation PlanDefinition or an ActivityDefinition).

The personalised status (preferred, option, conditional, caution, not_recommended)
is carried as the CPG direction/strength of recommendation plus the status code
itself; reasons and references go into ``documentation`` and notes. Every resource
carries the "decision support, not an order" disclaimer.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

CANONICAL = "http://sarcoma-cds.org/fhir"
CPG_SD = "http://hl7.org/fhir/uv/cpg/StructureDefinition/"
EXT_DIRECTION = CPG_SD + "cpg-directionOfRecommendation"  # context: PlanDefinition.action only
EXT_STRENGTH = "http://hl7.org/fhir/StructureDefinition/cqf-strengthOfRecommendation"  # FHIR core
CS_COMMON_PROCESS = "http://hl7.org/fhir/uv/cpg/CodeSystem/cpg-common-process"
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CS_DIRECTION = "http://hl7.org/fhir/uv/cpg/CodeSystem/cpg-recommendation-direction-cs"
CS_STRENGTH = "http://terminology.hl7.org/CodeSystem/recommendation-strength"
CS_STATUS = CANONICAL + "/CodeSystem/recommendation-status"
CS_TREATMENT = CANONICAL + "/CodeSystem/treatment"
CS_DRUG = CANONICAL + "/CodeSystem/drug"
EXT_STATUS = CANONICAL + "/StructureDefinition/recommendation-status"
EXT_DISCLAIMER = CANONICAL + "/StructureDefinition/decision-support-disclaimer"

# status -> (direction, strength or None)
STATUS_CPG: dict[str, tuple[str, str | None]] = {
    "preferred": ("for", "strong"),
    "option": ("for", "weak"),
    "caution": ("for", "weak"),
    "conditional": ("for", None),
    "not_recommended": ("against", None),
}


def _id(*parts: str) -> str:
    """A FHIR id (<= 64 chars, [A-Za-z0-9-.]) derived from parts."""
    raw = "-".join(parts)
    clean = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in raw)
    if len(clean) <= 64:
        return clean
    return clean[:47] + "-" + hashlib.sha1(raw.encode()).hexdigest()[:16]


def pathway_url() -> str:
    return f"{CANONICAL}/PlanDefinition/sts-treatment-pathway"


def strategy_url(group_id: str) -> str:
    return f"{CANONICAL}/PlanDefinition/{_id('strategy', group_id)}"


def step_url(group_id: str, pathway_no: int, treatment: str) -> str:
    return f"{CANONICAL}/PlanDefinition/{_id('rec', group_id, str(pathway_no), treatment)}"


def regimen_id(drugs: tuple[str, ...] | list[str]) -> str:
    return _id("regimen", "-".join(sorted(drugs)))


def regimen_url(drugs: tuple[str, ...] | list[str]) -> str:
    return f"{CANONICAL}/ActivityDefinition/{regimen_id(drugs)}"


def _status_ext(status: str, direction: bool = False) -> list[dict[str, Any]]:
    """The local status, the FHIR core strength of recommendation and, only where the CPG
    extension's context allows it (``PlanDefinition.action``), the CPG direction."""
    dir_code, strength = STATUS_CPG[status]
    ext: list[dict[str, Any]] = [{"url": EXT_STATUS, "valueCode": status}]
    if strength:
        ext.append(
            {
                "url": EXT_STRENGTH,
                "valueCodeableConcept": {"coding": [{"system": CS_STRENGTH, "code": strength}]},
            }
        )
    if direction:
        ext.append(
            {
                "url": EXT_DIRECTION,
                "valueCodeableConcept": {"coding": [{"system": CS_DIRECTION, "code": dir_code}]},
            }
        )
    return ext


def _drug_concept(drugs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A regimen as a CodeableConcept: the local drug codes and, for a single drug with a verified
    RxNorm ingredient code, that code beside it so that a suggestion can become an order."""
    from sarcoma_cds.adapters.fhir import terms

    coding = [{"system": CS_DRUG, "code": d} for d in drugs]
    if len(drugs) == 1:
        rx = next(
            (c for c, v in terms._table("drugs", terms.RXNORM, "drug").items() if v == drugs[0]),
            None,
        )
        if rx:
            coding.append({"system": RXNORM, "code": rx, "display": drugs[0].replace("_", " ")})
    return {"coding": coding, "text": " + ".join(drugs)}


_PROCESS = {"coding": [{"system": CS_COMMON_PROCESS, "code": "guideline-based-care"}]}


def _citations(refs: tuple[str, ...] | list[str], source: str) -> list[dict[str, Any]]:
    return [
        {"type": "citation", "label": f"[{r}]", "display": f"{source}, reference {r}"} for r in refs
    ]


def _documentation(
    reasons: tuple[str, ...], refs: tuple[str, ...], source: str
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"type": "justification", "display": r[:1000]} for r in reasons if r
    ]
    docs.extend(_citations(refs, source))
    return docs


def recommendation_to_bundle(rec: Any, kb: Any, facts: dict[str, Any] | None = None,
                             audit_id: str | None = None, base_url: str | None = None,
                             patient_ref: str | None = None) -> dict[str, Any]:
    """Build the CPG-shaped Bundle (a dict) of one recommendation."""
    source = kb.data.meta.title
    disclaimer = rec.disclaimer
    subject: dict[str, Any] = ({"reference": patient_ref} if patient_ref
                               else {"display": "Patient described by the supplied facts"})
    entries: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []

    def add(res: dict[str, Any]) -> str:
        full = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full, "resource": res})
        return full

    rg_actions: list[dict[str, Any]] = []
    group_id = rec.patient_group.id if rec.patient_group else None
    for pi, p in enumerate(rec.pathways, start=1):
        step_actions = []
        for s in p.steps:
            s_url = step_url(group_id or "none", pi, s.treatment)
            action: dict[str, Any] = {
                "extension": _status_ext(s.status),
                "title": s.label,
                "description": s.rationale,
                "code": [
                    {"coding": [{"system": CS_TREATMENT, "code": s.treatment, "display": s.label}]}
                ],
                "documentation": _documentation(s.reasons, s.references, source),
            }
            if s.tier == "first_line":
                action["prefix"] = "1st line"
            elif s.tier == "plus":
                action["prefix"] = "plus"
            else:
                action["prefix"] = "consider"
            note = [{"text": disclaimer}] + [{"text": n} for n in s.notes]
            sr: dict[str, Any] = {
                "resourceType": "ServiceRequest",
                "status": "draft",
                "intent": "option",
                "instantiatesCanonical": [s_url],
                "subject": subject,
                "code": {
                    "coding": [{"system": CS_TREATMENT, "code": s.treatment, "display": s.label}],
                    "text": s.label,
                },
                "extension": [e for e in _status_ext(s.status) if e["url"] == EXT_STATUS],
                "note": note,
            }
            if s.status == "not_recommended":
                sr["doNotPerform"] = True
            action["resource"] = {"reference": add(sr)}
            sub = []
            for o in s.options:
                name = " + ".join(o.drugs)
                mr: dict[str, Any] = {
                    "resourceType": "MedicationRequest", "status": "draft", "intent": "option",
                    "instantiatesCanonical": [regimen_url(o.drugs)], "subject": subject,
                    "medicationCodeableConcept": _drug_concept(o.drugs),
                    "extension": [e for e in _status_ext(o.status) if e["url"] == EXT_STATUS],
                    "note": [{"text": disclaimer}] + [{"text": r} for r in (*o.reasons, *o.notes)],
                }
                if o.status == "not_recommended":
                    mr["doNotPerform"] = True
                sub.append({
                    "extension": _status_ext(o.status),
                    "title": name,
                    "description": f"{o.line} regimen",
                    "documentation": _documentation(o.reasons, o.references, source),
                    "resource": {"reference": add(mr)},
                })
            if sub:
                action["selectionBehavior"] = "at-most-one"
                action["action"] = sub
            step_actions.append(action)
        rg_actions.append({"title": f"Pathway {pi}", "groupingBehavior": "logical-group",
                           "requiredBehavior": "must", "action": step_actions})
    rg: dict[str, Any] = {
        "resourceType": "RequestGroup", "status": "draft", "intent": "proposal", "subject": subject,
        "instantiatesCanonical": [strategy_url(group_id)] if group_id else [pathway_url()],
        "note": [{"text": disclaimer}] + [{"text": e} for e in rec.explanation],
        "extension": [{"url": EXT_DISCLAIMER, "valueString": disclaimer}],
    }
    if rg_actions:
        rg["action"] = [{"title": rec.patient_group.label if rec.patient_group else "Pathways",
                         "selectionBehavior": "exactly-one", "action": rg_actions}]
    rg_url = add(rg)
    cp_desc = (f"Patient group: {rec.patient_group.label}." if rec.patient_group
               else "No single patient group: " + (rec.out_of_scope.reason if rec.out_of_scope
                                                 else "more facts are needed."))
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "proposal",
        "subject": subject,
        "instantiatesCanonical": [pathway_url()],
        "title": f"{source} (v{rec.guideline.version})",
        "description": cp_desc,
        "activity": [{"reference": {"reference": rg_url}}],
        "note": [{"text": disclaimer}]
        + [{"text": f"Missing: {m.field}: {m.why}"} for m in rec.missing_information]
        + [{"text": f"Warning ({w.code}): {w.message}"} for w in rec.warnings],
        "extension": [{"url": EXT_DISCLAIMER, "valueString": disclaimer}],
    }
    if audit_id:
        careplan["identifier"] = [{"system": f"{CANONICAL}/audit-record", "value": audit_id}]
        if base_url:
            careplan["supportingInfo"] = [{"display": f"Web view: {base_url}/cases/{audit_id}"}]
    entries.insert(0, {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": careplan})
    del requests
    return {"resourceType": "Bundle", "type": "collection",
            "meta": {"tag": [{"system": CS_STATUS, "code": "decision-support",
                              "display": "Decision support, not an order"}]},
            "entry": entries}


def validate_bundle(bundle: dict[str, Any]) -> None:
    """Validate with fhir.resources R4B models; raises pydantic ValidationError when invalid."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)


# ====================================================================== KB export

def kb_to_fhir(kb: Any) -> list[dict[str, Any]]:
    """The whole algorithm as CPG PlanDefinitions and ActivityDefinitions (list of resources)."""
    meta = kb.data.meta
    version = meta.version
    common = {"version": version, "status": "active", "experimental": False,
              "publisher": "sarcoma-cds contributors"}
    out: list[dict[str, Any]] = []
    regimens: dict[tuple[str, ...], dict[str, Any]] = {}

    strategies = []
    for g in kb.data.groups:
        rec_actions = []
        for pi, p in enumerate(g.pathways, start=1):
            for s in p.steps:
                url = step_url(g.id, pi, s.treatment)
                pd_actions: list[dict[str, Any]] = []
                for o in s.options:
                    key = tuple(sorted(o.drugs))
                    if key not in regimens:
                        regimens[key] = {
                            "resourceType": "ActivityDefinition",
                            "id": regimen_id(o.drugs),
                            "url": regimen_url(o.drugs),
                            "name": _name("Regimen", *key),
                            "title": " + ".join(o.drugs),
                            **common,
                            "kind": "MedicationRequest",
                            "intent": "proposal",
                            "productCodeableConcept": {
                                "coding": _drug_concept(o.drugs)["coding"],
                                "text": " + ".join(o.drugs),
                            },
                            "description": (
                                f"Drug regimen listed by the guideline: {' + '.join(o.drugs)}."
                            ),
                        }
                    pd_actions.append(
                        {
                            "title": " + ".join(o.drugs),
                            "description": f"{o.line} regimen",
                            "definitionCanonical": regimen_url(o.drugs),
                        }
                    )
                step_pd: dict[str, Any] = {
                    "resourceType": "PlanDefinition",
                    "id": url.rsplit("/", 1)[1],
                    "url": url,
                    "name": _name("Rec", g.id, str(pi), s.treatment),
                    "title": f"{g.label}: {s.label}",
                    **common,
                    "type": {"coding": [{"system": PLAN_TYPE, "code": "eca-rule"}]},
                    "description": s.rationale,
                    "relatedArtifact": _citations(s.references, meta.title),
                    "action": [
                        {
                            "extension": [
                                {
                                    "url": EXT_DIRECTION,
                                    "valueCodeableConcept": {
                                        "coding": [{"system": CS_DIRECTION, "code": "for"}]
                                    },
                                }
                            ],
                            "title": s.label,
                            "description": s.rationale,
                            "prefix": {
                                "first_line": "1st line",
                                "plus": "plus",
                                "consider": "consider",
                            }[s.tier],
                            "code": [
                                {
                                    "coding": [
                                        {
                                            "system": CS_TREATMENT,
                                            "code": s.treatment,
                                            "display": s.label,
                                        }
                                    ]
                                }
                            ],
                            "documentation": _citations(s.references, meta.title),
                            **(
                                {"selectionBehavior": "at-most-one", "action": pd_actions}
                                if pd_actions
                                else {}
                            ),
                        }
                    ],
                }
                out.append(step_pd)
                rec_actions.append((pi, s, url))
        by_pathway: dict[int, list[dict[str, Any]]] = {}
        for pi, s, url in rec_actions:
            by_pathway.setdefault(pi, []).append({"title": s.label, "definitionCanonical": url})
        strat = {
            "resourceType": "PlanDefinition",
            "id": _id("strategy", g.id),
            "url": strategy_url(g.id),
            "name": _name("Strategy", g.id),
            "title": g.label,
            **common,
            "type": {
                "coding": [{"system": PLAN_TYPE, "code": "workflow-definition"}]
            },  # CPG strategy
            "description": g.summary,
            "relatedArtifact": _citations(g.references, meta.title),
            "action": [
                {
                    "title": "Alternative pathways",
                    "description": f"One of the pathways for {g.label}",
                    "code": [_PROCESS],
                    "selectionBehavior": "exactly-one",
                    "action": [
                        {"title": f"Pathway {pi}", "action": acts}
                        for pi, acts in sorted(by_pathway.items())
                    ],
                }
            ],
        }
        out.append(strat)
        strategies.append(strat)
    pathway = {
        "resourceType": "PlanDefinition",
        "id": "sts-treatment-pathway",
        "url": pathway_url(),
        "name": "StsTreatmentPathway",
        "title": meta.title,
        **common,
        "type": {"coding": [{"system": PLAN_TYPE, "code": "clinical-protocol"}]},  # CPG pathway
        "description": f"{meta.source}\n\n{meta.disclaimer}",
        "action": [
            {
                "title": s["title"],
                "description": s.get("description") or s["title"],
                "code": [_PROCESS],
                "definitionCanonical": s["url"],
            }
            for s in strategies
        ],
    }
    return [pathway, *out, *regimens.values()]


def _name(*parts: str) -> str:
    words = []
    for p in parts:
        for w in "".join(ch if ch.isalnum() else " " for ch in p).split():
            words.append(w[:1].upper() + w[1:])
    name = "".join(words)
    return name if name[:1].isalpha() else "X" + name


def validate_resource(res: dict[str, Any]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(res["resourceType"]).model_validate(res)
