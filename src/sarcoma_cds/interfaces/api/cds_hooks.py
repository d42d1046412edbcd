"""CDS Hooks 2.0.1 services: discovery, ``sarcoma-treatment`` (patient-view),
``sarcoma-order-check`` (order-select) and feedback.

Cards follow the specification: ``uuid`` on every card and suggestion, summary of
at most 140 characters, indicator ``info``/``warning``/``critical``, ``source`` with
label and topic, markdown ``detail``, links to the web view of the recommendation,
and ``overrideReasons`` on order-check cards. Empty optional fields are left out.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import date
from typing import Any

import httpx

from sarcoma_cds import InvalidFacts, parse_facts
from sarcoma_cds.adapters.fhir import facts_from_bundle

log = logging.getLogger("sarcoma_cds.service.cds")

TREATMENT = "sarcoma-treatment"
ORDER_CHECK = "sarcoma-order-check"
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}
TOPIC_SYSTEM = "http://sarcoma-cds.org/fhir/CodeSystem/patient-group"
OVERRIDE_SYSTEM = "http://sarcoma-cds.org/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS = [
    {"code": "mdt-decision", "system": OVERRIDE_SYSTEM, "display": "Sarcoma MDT / tumour board decision"},
    {"code": "clinical-trial", "system": OVERRIDE_SYSTEM, "display": "Part of a clinical trial"},
    {"code": "facts-incorrect", "system": OVERRIDE_SYSTEM, "display": "Patient facts in the record are incorrect"},
    {"code": "alternative-contraindicated", "system": OVERRIDE_SYSTEM, "display": "Recommended alternative contraindicated or unavailable"},
    {"code": "patient-preference", "system": OVERRIDE_SYSTEM, "display": "Patient's informed preference"},
]


class PreconditionFailed(Exception):
    """Data the service needs is neither prefetched nor fetchable (HTTP 412)."""


class BadHookRequest(Exception):
    """The hook request breaks the specification (HTTP 400)."""


def discovery() -> dict[str, Any]:
    return {"services": [
        {
            "hook": "patient-view", "id": TREATMENT,
            "title": "Sarcoma and GIST treatment pathways",
            "description": "Guideline treatment pathways for adult soft-tissue sarcoma and GIST, "
                           "personalised to the patient's mCODE data (decision support, not orders).",
            "prefetch": PREFETCH,
            "usageRequirements": "Needs an mCODE primary cancer condition (histology and body site).",
        },
        {
            "hook": "order-select", "id": ORDER_CHECK,
            "title": "Sarcoma and GIST systemic therapy order check",
            "description": "Warns when a drug being ordered is not recommended for this patient by "
                           "the guideline, and suggests the recommended alternative.",
            "prefetch": PREFETCH,
        },
    ]}


# ------------------------------------------------------------------ data gathering

def _entries(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [e for e in value.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    if isinstance(value.get("resourceType"), str):
        return [{"resource": value}]
    return []


def _fetch(fhir_server: str, auth: Any, path: str, timeout: float) -> Any:
    headers = {"Accept": "application/fhir+json"}
    if isinstance(auth, dict) and isinstance(auth.get("access_token"), str):
        headers["Authorization"] = f"{auth.get('token_type') or 'Bearer'} {auth['access_token']}"
    url = fhir_server.rstrip("/") + "/" + path
    out: list[dict[str, Any]] = []
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for _ in range(5):  # follow at most 5 pages
                r = client.get(url, headers=headers)
                if r.status_code == 404 and path.startswith("Patient/"):
                    return None
                r.raise_for_status()
                data = r.json()
                out.extend(_entries(data))
                nxt = [lk.get("url") for lk in (data.get("link") or []) if isinstance(lk, dict) and lk.get("relation") == "next"]
                if not nxt or not isinstance(nxt[0], str) or not nxt[0].startswith(fhir_server.rstrip("/")):
                    break
                url = nxt[0]
    except (httpx.HTTPError, ValueError) as e:
        raise PreconditionFailed(f"FHIR server fetch failed: {type(e).__name__}") from None
    return {"resourceType": "Bundle", "type": "searchset", "entry": out}


def gather_bundle(req: dict[str, Any], timeout: float) -> dict[str, Any]:
    ctx = req.get("context") if isinstance(req.get("context"), dict) else {}
    patient_id = ctx.get("patientId")
    if not isinstance(patient_id, str) or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient_id):
        raise BadHookRequest("context.patientId is required (a FHIR id)")
    prefetch = req.get("prefetch") if isinstance(req.get("prefetch"), dict) else {}
    fhir_server = req.get("fhirServer")
    entries: list[dict[str, Any]] = []
    queries = {"patient": f"Patient/{patient_id}", "conditions": f"Condition?patient={patient_id}",
               "observations": f"Observation?patient={patient_id}"}
    for key, path in queries.items():
        if key in prefetch:
            entries.extend(_entries(prefetch[key]))  # null: the client found nothing
            continue
        if not isinstance(fhir_server, str) or not fhir_server.startswith(("http://", "https://")):
            raise PreconditionFailed(f"prefetch '{key}' absent and no fhirServer to fetch it from")
        entries.extend(_entries(_fetch(fhir_server, req.get("fhirAuthorization"), path, timeout)))
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


# ------------------------------------------------------------------ cards

def _trim(s: str, n: int = 140) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _source(services: Any, rec: Any | None) -> dict[str, Any]:
    meta = services.kb.data.meta
    src: dict[str, Any] = {"label": f"sarcoma-cds: {meta.title} v{meta.version}"}
    if rec is not None and rec.patient_group is not None:
        src["topic"] = {"system": TOPIC_SYSTEM, "code": rec.patient_group.id, "display": rec.patient_group.label}
    else:
        src["topic"] = {"system": TOPIC_SYSTEM, "code": "sts-treatment", "display": "Sarcoma and GIST treatment"}
    return src


def _card(services: Any, rec: Any | None, summary: str, indicator: str, detail: str | None,
          link: str | None, **extra: Any) -> dict[str, Any]:
    card: dict[str, Any] = {"uuid": str(uuid.uuid4()), "summary": _trim(summary), "indicator": indicator,
                            "source": _source(services, rec)}
    if detail:
        card["detail"] = detail + f"\n\n_{services.disclaimer}_"
    if link:
        card["links"] = [{"label": "Full recommendation (sarcoma-cds)", "url": link, "type": "absolute"}]
    card.update({k: v for k, v in extra.items() if v})
    return card


def _missing_card(services: Any, problems: list[tuple[str, str]], gaps: list[dict[str, str]]) -> dict[str, Any]:
    lines = ["The record does not give the facts the guideline needs:", ""]
    lines += [f"- **{f}**: {m}" for f, m in problems]
    if gaps:
        lines += ["", "Data that could not be used:"]
        lines += [f"- {g['resource']} ({g['element']}): {g['problem']}" for g in gaps[:10]]
        if len(gaps) > 10:
            lines.append(f"- … and {len(gaps) - 10} more")
    fields = ", ".join(sorted({f.split(".")[0] for f, _ in problems}))
    return _card(services, None, f"Sarcoma CDS needs more data: {fields}", "info", "\n".join(lines), None)


def _rec_detail(rec: Any) -> str:
    out = []
    if rec.stage is not None and rec.stage.group:
        out.append(f"**Stage** ({rec.stage.system}): {rec.stage.group}")
    for r in rec.gist_risk:
        out.append(f"**GIST risk** ({r.scheme}): {r.category}")
    for pi, p in enumerate(rec.pathways, start=1):
        out.append(f"\n**Pathway {pi}**")
        for s in p.steps:
            out.append(f"- {s.tier.replace('_', ' ')}: {s.label} — *{s.status.replace('_', ' ')}*")
            for o in s.options:
                if o.status in ("preferred", "not_recommended"):
                    out.append(f"    - {' + '.join(o.drugs)}: *{o.status.replace('_', ' ')}*")
    for w in rec.warnings:
        out.append(f"\n⚠ **{w.code}**: {w.message}")
    return "\n".join(out)


def _proposal(drugs: tuple[str, ...], patient_id: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "status": "draft", "intent": "proposal",
            "subject": {"reference": f"Patient/{patient_id}"},
            "medicationCodeableConcept": {"text": " + ".join(drugs), "coding": [
                {"system": "http://sarcoma-cds.org/fhir/CodeSystem/drug", "code": d, "display": d} for d in drugs]}}


def treatment_cards(services: Any, rec: Any, audit_link: str, patient_id: str,
                    missing_problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    cards = []
    if rec.out_of_scope is not None:
        cards.append(_card(services, rec, "Outside the sarcoma guideline's scope", "info",
                           rec.out_of_scope.reason, audit_link))
        return cards
    if rec.patient_group is None:
        cards.append(_card(services, rec, "Sarcoma CDS: more facts needed to choose a patient group", "info",
                           "Possible groups: " + ", ".join(rec.candidate_groups) + "\n\n"
                           + "\n".join(f"- **{m.field}**: {m.why}" for m in rec.missing_information),
                           audit_link))
        return cards
    indicator = "warning" if any(w.code == "contraindication" for w in rec.warnings) else "info"
    suggestions = []
    for p in rec.pathways:
        for s in p.steps:
            for o in s.options:
                if o.status == "preferred" and len(suggestions) < 3:
                    suggestions.append({
                        "label": _trim(f"Propose {' + '.join(o.drugs)} ({s.label})", 80),
                        "uuid": str(uuid.uuid4()),
                        "actions": [{"type": "create", "description": f"Draft order proposal: {' + '.join(o.drugs)}",
                                     "resource": _proposal(o.drugs, patient_id)}],
                    })
    cards.append(_card(services, rec, f"Sarcoma guideline: {rec.patient_group.label}", indicator,
                       _rec_detail(rec), audit_link, suggestions=suggestions,
                       selectionBehavior="at-most-one" if suggestions else None))
    if rec.missing_information:
        cards.append(_card(services, rec,
                           "Sarcoma CDS: please record " + ", ".join(m.field for m in rec.missing_information),
                           "info", "\n".join(f"- **{m.field}**: {m.why}" for m in rec.missing_information),
                           audit_link))
    return cards


def _drug_names(services: Any) -> set[str]:
    names: set[str] = set()
    for g in services.kb.data.groups:
        for p in g.pathways:
            for s in p.steps:
                for o in s.options:
                    names.update(o.drugs)
    return names


def ordered_drugs(order: dict[str, Any], known: set[str]) -> set[str]:
    """Generic drug ids named by a MedicationRequest (coding display/code or text, by name)."""
    cc = order.get("medicationCodeableConcept")
    texts = []
    if isinstance(cc, dict):
        if isinstance(cc.get("text"), str):
            texts.append(cc["text"])
        for c in cc.get("coding") or []:
            if isinstance(c, dict):
                texts += [v for v in (c.get("display"), c.get("code")) if isinstance(v, str)]
    blob = " ".join(texts).lower().replace("-", " ")
    found = set()
    for d in known:
        if re.search(rf"\b{re.escape(d.replace('_', ' '))}\b", blob):
            found.add(d)
    if "liposomal_doxorubicin" in found:
        found.discard("doxorubicin")
    return found


def draft_orders(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    draft = ctx.get("draftOrders")
    selections = {s for s in ctx.get("selections") or [] if isinstance(s, str)}
    out = []
    for e in _entries(draft):
        r = e["resource"]
        if r.get("resourceType") != "MedicationRequest":
            continue
        ref = f"MedicationRequest/{r.get('id')}"
        if selections and ref not in selections:
            continue
        out.append(r)
    return out


def order_cards(services: Any, rec: Any, audit_link: str, patient_id: str,
                orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    known = _drug_names(services)
    cards = []
    for order in orders:
        ordered = ordered_drugs(order, known)
        exact = [(s, o) for p in rec.pathways for s in p.steps for o in s.options if set(o.drugs) == ordered]
        targets = [(" + ".join(sorted(ordered)), exact)] if exact else [
            (d, [(s, o) for p in rec.pathways for s in p.steps for o in s.options if d in o.drugs])
            for d in sorted(ordered)]
        for drug, hits in targets:
            if not hits:
                if rec.patient_group is not None:
                    cards.append(_card(services, rec, f"{drug} is not among the regimens listed for {rec.patient_group.label}",
                                       "info", "The guideline lists no regimen with this drug for this patient group.",
                                       audit_link, overrideReasons=OVERRIDE_REASONS))
                continue
            if all(o.status == "not_recommended" for _, o in hits):
                reasons = list(dict.fromkeys(r for _, o in hits for r in o.reasons))
                steps = {s.treatment for s, _ in hits}
                critical = any(w.code == "contraindication" and (w.treatment in steps or w.treatment is None)
                               for w in rec.warnings)
                alts = []
                for s, _ in hits:
                    for o in s.options:
                        if o.status in ("preferred",) and o.drugs not in [a.drugs for a in alts]:
                            alts.append(o)
                suggestions = []
                for a in alts[:3]:
                    actions: list[dict[str, Any]] = []
                    if order.get("id"):
                        actions.append({"type": "delete", "description": f"Cancel the {drug} order",
                                        "resourceId": f"MedicationRequest/{order['id']}"})
                    actions.append({"type": "create", "description": f"Order {' + '.join(a.drugs)} instead",
                                    "resource": _proposal(a.drugs, patient_id)})
                    suggestions.append({"label": _trim(f"Replace with {' + '.join(a.drugs)}", 80),
                                        "uuid": str(uuid.uuid4()), "isRecommended": True, "actions": actions})
                detail = (f"**{drug}** is *not recommended* for this patient "
                          f"({rec.patient_group.label if rec.patient_group else 'no single group'}):\n\n"
                          + "\n".join(f"- {r}" for r in reasons))
                if alts:
                    detail += "\n\n**Recommended instead:** " + "; ".join(" + ".join(a.drugs) for a in alts)
                cards.append(_card(services, rec, f"{drug} not recommended: " + (reasons[0] if reasons else ""),
                                   "critical" if critical else "warning", detail, audit_link,
                                   suggestions=suggestions, selectionBehavior="at-most-one" if suggestions else None,
                                   overrideReasons=OVERRIDE_REASONS))
            elif any(o.status == "conditional" for _, o in hits) and not any(
                    o.status in ("preferred", "option", "caution") for _, o in hits):
                reasons = list(dict.fromkeys(r for _, o in hits for r in o.reasons))
                cards.append(_card(services, rec, f"{drug}: depends on facts not yet recorded", "info",
                                   "\n".join(f"- {r}" for r in reasons), audit_link))
    return cards


def run_hook(services: Any, service_id: str, req: dict[str, Any], *, caller: str, request_id: str,
             base_url: str) -> dict[str, Any]:
    """Answer one hook call: {"cards": [...]}. Raises BadHookRequest / PreconditionFailed."""
    expected_hook = {"sarcoma-treatment": "patient-view", "sarcoma-order-check": "order-select"}[service_id]
    if req.get("hook") != expected_hook:
        raise BadHookRequest(f"service {service_id} answers the {expected_hook} hook")
    if not isinstance(req.get("hookInstance"), str):
        raise BadHookRequest("hookInstance is required")
    ctx = req.get("context") if isinstance(req.get("context"), dict) else {}
    bundle = gather_bundle(req, services.settings.fhir_timeout_s)
    orders = draft_orders(ctx) if service_id == ORDER_CHECK else []
    mapped = facts_from_bundle(bundle, today=date.today())
    try:
        facts = parse_facts(mapped.facts)
    except InvalidFacts as e:
        return {"cards": [_missing_card(services, e.problems, mapped.gaps)]}
    card_ids: list[str] = []
    rec, audit_id = services.recommend_and_record(
        facts.model_dump(exclude_none=True), "cds-hooks", caller, request_id=request_id,
        service_id=service_id, card_uuids=card_ids)
    link = f"{base_url}/cases/{audit_id}"
    patient_id = ctx.get("patientId", "")
    if service_id == TREATMENT:
        cards = treatment_cards(services, rec, link, patient_id, [])
    else:
        cards = order_cards(services, rec, link, patient_id, orders)
        if rec.missing_information and not cards:
            pass
    services.store.link_cards(audit_id, service_id, [c["uuid"] for c in cards])
    return {"cards": cards}
