"""CDS Hooks 2.0.1 services: discovery, ``sarcoma-treatment`` (patient-view),
``sarcoma-order-check`` (order-select) and feedback.

Cards follow the specification: ``uuid`` on every card and suggestion, summary of
at most 140 characters, indicator ``info``/``warning``/``critical``, ``source`` with
label and topic, markdown ``detail``, links to the web view of the recommendation,
and ``overrideReasons`` on order-check cards. Empty optional fields are left out.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.adapters.fhir import terms
from sarcoma_cds.interfaces.api.fhir_fetch import COULD_NOT_READ, NO_SERVER, FetchResult

log = logging.getLogger("sarcoma_cds.service.cds")

TREATMENT = "sarcoma-treatment"
ORDER_CHECK = "sarcoma-order-check"
ORDER_SIGN = "sarcoma-order-sign"
HOOKS = {TREATMENT: "patient-view", ORDER_CHECK: "order-select", ORDER_SIGN: "order-sign"}
# Searches an EHR FHIR server answers: Observation searches carry a category (several servers
# refuse them without one). patient, conditions and observations are required (412 when neither
# prefetched nor fetchable); the others are read when given or fetchable and reported when not.
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&category=laboratory",
    "observationsExam": "Observation?patient={{context.patientId}}&category=exam",
    "observationsSurvey": "Observation?patient={{context.patientId}}&category=survey",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "diagnosticReports": "DiagnosticReport?patient={{context.patientId}}",
}
REQUIRED_PREFETCH = ("patient", "conditions", "observations")
TOPIC_SYSTEM = "http://sarcoma-cds.org/fhir/CodeSystem/patient-group"
OVERRIDE_SYSTEM = "http://sarcoma-cds.org/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS = [
    {
        "code": "mdt-decision",
        "system": OVERRIDE_SYSTEM,
        "display": "Sarcoma MDT / tumour board decision",
    },
    {"code": "clinical-trial", "system": OVERRIDE_SYSTEM, "display": "Part of a clinical trial"},
    {
        "code": "facts-incorrect",
        "system": OVERRIDE_SYSTEM,
        "display": "Patient facts in the record are incorrect",
    },
    {
        "code": "alternative-contraindicated",
        "system": OVERRIDE_SYSTEM,
        "display": "Recommended alternative contraindicated or unavailable",
    },
    {
        "code": "patient-preference",
        "system": OVERRIDE_SYSTEM,
        "display": "Patient's informed preference",
    },
]


class PreconditionFailed(Exception):
    """Data the service needs is neither prefetched nor fetchable (HTTP 412)."""


class BadHookRequest(Exception):
    """The hook request breaks the specification (HTTP 400)."""


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": TREATMENT,
                "title": "Sarcoma and GIST treatment pathways",
                "description": (
                    "Guideline treatment pathways for adult soft-tissue sarcoma and GIST, "
                    "personalised to the patient's mCODE data (decision support, not orders)."
                ),
                "prefetch": PREFETCH,
                "usageRequirements": (
                    "Needs an mCODE primary cancer condition (histology and body site)."
                ),
            },
            {
                "hook": "order-select",
                "id": ORDER_CHECK,
                "title": "Sarcoma and GIST systemic therapy order check",
                "description": (
                    "Warns when a drug being ordered is not recommended for this patient by "
                    "the guideline, and suggests the recommended alternative."
                ),
                "prefetch": PREFETCH,
            },
            {
                "hook": "order-sign",
                "id": ORDER_SIGN,
                "title": "Sarcoma and GIST systemic therapy check at signing",
                "description": (
                    "The same check as the order-select service, on every draft order about to "
                    "be signed."
                ),
                "prefetch": PREFETCH,
            },
        ]
    }


# ------------------------------------------------------------------ data gathering

def _entries(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [
            e
            for e in value.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    if isinstance(value.get("resourceType"), str):
        return [{"resource": value}]
    return []


def _other_patient(res: dict[str, Any], patient_id: str) -> str | None:
    """The other patient a resource is about, or None (ours, or cannot tell). A Patient must be
    ours by id; a ``subject``/``patient`` reference naming a Patient must end in ours (relative
    or absolute, ``_history`` allowed); dot segments and trailing parts are refused."""
    if res.get("resourceType") == "Patient":
        rid = res.get("id")
        return None if rid == patient_id else f"Patient/{rid if isinstance(rid, str) else '?'}"
    for key in ("subject", "patient"):
        ref = (res.get(key) or {}).get("reference") if isinstance(res.get(key), dict) else None
        if isinstance(ref, str):
            parts = ref.split("/_history/")[0].rstrip("/").split("/")
            if any(p in (".", "..") for p in parts):
                return ref
            if "Patient" in parts:
                i = len(parts) - 1 - parts[::-1].index("Patient")
                if parts[i + 1:] != [patient_id]:
                    return ref
    return None


def check_request(service_id: str, req: Any) -> str:
    """The request's patient id after checking the hook, ``hookInstance`` and
    ``context.patientId``; raises :class:`BadHookRequest`."""
    if not isinstance(req, dict):
        raise BadHookRequest("expected a CDS Hooks request object")
    expected_hook = HOOKS[service_id]
    if req.get("hook") != expected_hook:
        raise BadHookRequest(f"service {service_id} answers the {expected_hook} hook")
    if not isinstance(req.get("hookInstance"), str):
        raise BadHookRequest("hookInstance is required")
    return _patient_id(req)


def _patient_id(req: dict[str, Any]) -> str:
    ctx: dict[str, Any] = req["context"] if isinstance(req.get("context"), dict) else {}
    patient_id = ctx.get("patientId")
    if not isinstance(patient_id, str) or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient_id):
        raise BadHookRequest("context.patientId is required (a FHIR id)")
    return patient_id


def missing_prefetch(req: dict[str, Any]) -> dict[str, str]:
    """The prefetch keys the client did not send: key -> FHIR query (relative to fhirServer)."""
    patient_id = _patient_id(req)
    prefetch = req["prefetch"] if isinstance(req.get("prefetch"), dict) else {}
    return {k: q.replace("{{context.patientId}}", patient_id)
            for k, q in PREFETCH.items() if k not in prefetch}


def gather_bundle(
    req: dict[str, Any], fetched: FetchResult | None = None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(a collection Bundle of everything prefetched or fetched, gaps of what was left out).

    ``fetched``: what :func:`~sarcoma_cds.interfaces.api.fhir_fetch.fetch_missing` read of the
    keys not prefetched (None: nothing was fetched). A required key neither prefetched nor read
    raises :class:`PreconditionFailed` (412); an optional one is a gap."""
    patient_id = _patient_id(req)
    prefetch: dict[str, Any] = req["prefetch"] if isinstance(req.get("prefetch"), dict) else {}
    fetched = fetched or FetchResult(not_fetchable=NO_SERVER)
    entries: list[dict[str, Any]] = []
    gaps: list[dict[str, str]] = []
    keys = list(PREFETCH) + [k for k in prefetch if k not in PREFETCH]
    for key in keys:
        if key in prefetch:
            entries.extend(_entries(prefetch[key]))  # null: the client found nothing
            continue
        if key in fetched.bundles:
            entries.extend(_entries(fetched.bundles[key]))
            if key in fetched.partial:
                gaps.append({"resource": "prefetch", "element": key,
                             "problem": f"{COULD_NOT_READ} in full; only the first pages "
                                        "were read"})
            continue
        why = fetched.not_fetchable or COULD_NOT_READ
        if key in REQUIRED_PREFETCH:
            raise PreconditionFailed(f"prefetch '{key}' absent and {why}")
        gaps.append({"resource": "prefetch", "element": key,
                     "problem": (f"not prefetched and {why}" if fetched.not_fetchable
                                 else COULD_NOT_READ) + "; these resources were not read"})
    kept: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        res = entry["resource"]
        other = _other_patient(res, patient_id)
        if other:
            gaps.append(
                {
                    "resource": f"{res.get('resourceType')}/{res.get('id')}",
                    "element": "subject",
                    "problem": f"about {other}, not Patient/{patient_id}: rejected",
                }
            )
            continue
        key2 = (str(res.get("resourceType")), str(res.get("id")))
        if res.get("id") and key2 in seen:  # the same resource from two searches
            continue
        seen.add(key2)
        kept.append({"resource": res})
    return {"resourceType": "Bundle", "type": "collection", "entry": kept}, gaps


# ------------------------------------------------------------------ cards

def _trim(s: str, n: int = 140) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _source(services: Any, rec: Any | None) -> dict[str, Any]:
    meta = services.kb.data.meta
    src: dict[str, Any] = {"label": f"sarcoma-cds: {meta.title} v{meta.version}"}
    if rec is not None and rec.patient_group is not None:
        src["topic"] = {
            "system": TOPIC_SYSTEM,
            "code": rec.patient_group.id,
            "display": rec.patient_group.label,
        }
    else:
        src["topic"] = {
            "system": TOPIC_SYSTEM,
            "code": "sts-treatment",
            "display": "Sarcoma and GIST treatment",
        }
    return src


def _card(services: Any, rec: Any | None, summary: str, indicator: str, detail: str | None,
          link: str | None, **extra: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _trim(summary),
        "indicator": indicator,
        "source": _source(services, rec),
    }
    if detail:
        card["detail"] = detail + f"\n\n_{services.disclaimer}_"
    if link:
        base, _, case = link.rpartition("/cases/")
        card["links"] = [
            {"label": "Full recommendation (sarcoma-cds)", "url": link, "type": "absolute"},
            {
                "label": "Open the recommendation in sarcoma-cds (SMART app)",
                "url": f"{base}/smart/launch",
                "type": "smart",
                "appContext": json.dumps({"case": case}),
            },
        ]
    card.update({k: v for k, v in extra.items() if v})
    return card


def _missing_card(
    services: Any, problems: list[tuple[str, str]], gaps: list[dict[str, str]]
) -> dict[str, Any]:
    lines = ["The record does not give the facts the guideline needs:", ""]
    lines += [f"- **{f}**: {m}" for f, m in problems]
    if gaps:
        lines += ["", "Data that could not be used:"]
        lines += [f"- {g['resource']} ({g['element']}): {g['problem']}" for g in gaps[:10]]
        if len(gaps) > 10:
            lines.append(f"- … and {len(gaps) - 10} more")
    fields = ", ".join(sorted({f.split(".")[0] for f, _ in problems}))
    return _card(
        services, None, f"Sarcoma CDS needs more data: {fields}", "info", "\n".join(lines), None
    )


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
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "text": " + ".join(drugs),
            "coding": [
                {"system": "http://sarcoma-cds.org/fhir/CodeSystem/drug", "code": d, "display": d}
                for d in drugs
            ],
        },
    }


def treatment_cards(services: Any, rec: Any, audit_link: str, patient_id: str,
                    missing_problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    cards = []
    if rec.out_of_scope is not None:
        cards.append(_card(services, rec, "Outside the sarcoma guideline's scope", "info",
                           rec.out_of_scope.reason, audit_link))
        return cards
    if rec.patient_group is None:
        cards.append(
            _card(
                services,
                rec,
                "Sarcoma CDS: more facts needed to choose a patient group",
                "info",
                "Possible groups: "
                + ", ".join(rec.candidate_groups)
                + "\n\n"
                + "\n".join(f"- **{m.field}**: {m.why}" for m in rec.missing_information),
                audit_link,
            )
        )
        return cards
    indicator = "warning" if any(w.code == "contraindication" for w in rec.warnings) else "info"
    suggestions: list[dict[str, Any]] = []
    for p in rec.pathways:
        for s in p.steps:
            for o in s.options:
                if o.status == "preferred" and len(suggestions) < 3:
                    suggestions.append(
                        {
                            "label": _trim(f"Propose {' + '.join(o.drugs)} ({s.label})", 80),
                            "uuid": str(uuid.uuid4()),
                            "actions": [
                                {
                                    "type": "create",
                                    "description": f"Draft order proposal: {' + '.join(o.drugs)}",
                                    "resource": _proposal(o.drugs, patient_id),
                                }
                            ],
                        }
                    )
    cards.append(_card(services, rec, f"Sarcoma guideline: {rec.patient_group.label}", indicator,
                       _rec_detail(rec), audit_link, suggestions=suggestions,
                       selectionBehavior="at-most-one" if suggestions else None))
    if rec.missing_information:
        cards.append(
            _card(
                services,
                rec,
                "Sarcoma CDS: please record " + ", ".join(m.field for m in rec.missing_information),
                "info",
                "\n".join(f"- **{m.field}**: {m.why}" for m in rec.missing_information),
                audit_link,
            )
        )
    return cards


def ordered_drugs(order: dict[str, Any], medications: dict[str, dict[str, Any]]) -> set[str]:
    """Drug ids an order names: RxNorm ingredient codes, ingredient or brand names in the text or
    in an RxNorm clinical/branded drug's display, or the Medication its ``medicationReference``
    points to. Every drug named counts: for a safety check, a code and a text that disagree both
    get checked."""
    cc = order.get("medicationCodeableConcept")
    ref = (
        (order.get("medicationReference") or {}).get("reference")
        if isinstance(order.get("medicationReference"), dict)
        else None
    )
    if isinstance(ref, str):
        med = medications.get(ref) or medications.get(ref.split("/")[-1])
        if med is None and ref.startswith("#"):
            med = next(
                (
                    c
                    for c in order.get("contained") or []
                    if isinstance(c, dict) and "#" + str(c.get("id")) == ref
                ),
                None,
            )
        cc = (med or {}).get("code")
    found: set[str] = set()
    texts = []
    if isinstance(cc, dict):
        texts.append(str(cc.get("text") or ""))
        for c in cc.get("coding") or []:
            if not isinstance(c, dict):
                continue
            if terms.system(str(c.get("system") or "")) == terms.RXNORM:
                drug = terms.rxnorm_drug(str(c.get("code") or ""))
                if drug:
                    found.add(drug)
            texts += [str(c.get("display") or ""), str(c.get("code") or "")]
    return found | terms.drugs_in_text(" ".join(texts))


def _medications(req: dict[str, Any], bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Medication resources from the draft orders and the record, by reference and by id."""
    ctx: dict[str, Any] = req["context"] if isinstance(req.get("context"), dict) else {}
    out: dict[str, dict[str, Any]] = {}
    for e in _entries(ctx.get("draftOrders")) + bundle.get("entry", []):
        r = e["resource"]
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str):
            out[f"Medication/{r['id']}"] = out[r["id"]] = r
            if isinstance(e.get("fullUrl"), str):
                out[e["fullUrl"]] = r
    return out


def draft_orders(ctx: dict[str, Any], service_id: str) -> list[dict[str, Any]]:
    draft = ctx.get("draftOrders")
    selections = (
        {s for s in ctx.get("selections") or [] if isinstance(s, str)}
        if service_id == ORDER_CHECK
        else set()
    )
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


def active_orders(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's active medication orders (what the patient-view hook checks)."""
    return [e["resource"] for e in bundle.get("entry", [])
            if e["resource"].get("resourceType") == "MedicationRequest"
            and e["resource"].get("status") in ("active", "on-hold", "draft")
            and e["resource"].get("intent") in ("order", "original-order", "instance-order", None)]


def _replace_suggestions(order: dict[str, Any], drug: str, alts: list[tuple[str, ...]],
                         patient_id: str) -> list[dict[str, Any]]:
    out = []
    for a in alts[:3]:
        actions: list[dict[str, Any]] = []
        if order.get("id"):
            actions.append({"type": "delete", "description": f"Cancel the {drug} order",
                            "resourceId": f"MedicationRequest/{order['id']}"})
        actions.append({"type": "create", "description": f"Order {' + '.join(a)} instead",
                        "resource": _proposal(a, patient_id)})
        out.append({"label": _trim(f"Replace with {' + '.join(a)}", 80), "uuid": str(uuid.uuid4()),
                    "isRecommended": True, "actions": actions})
    return out


def _warn(
    services: Any,
    rec: Any,
    order: dict[str, Any],
    drug: str,
    where: str,
    reasons: list[str],
    alts: list[tuple[str, ...]],
    critical: bool,
    link: str | None,
    patient_id: str,
) -> dict[str, Any]:
    detail = f"**{drug}** is *not recommended* for this patient ({where}):\n\n" + "\n".join(
        f"- {r}" for r in reasons
    )
    if alts:
        detail += "\n\n**Recommended instead:** " + "; ".join(" + ".join(a) for a in alts)
    sugg = _replace_suggestions(order, drug, alts, patient_id)
    return _card(
        services,
        rec,
        f"{drug} not recommended: " + (reasons[0] if reasons else ""),
        "critical" if critical else "warning",
        detail,
        link,
        suggestions=sugg,
        selectionBehavior="at-most-one" if sugg else None,
        overrideReasons=OVERRIDE_REASONS,
    )


def _hits(
    options: list[tuple[Any, Any]], ordered: set[str]
) -> list[tuple[str, list[tuple[Any, Any]]]]:
    exact = [(s, o) for s, o in options if set(o.drugs) == ordered]
    if exact:
        return [(" + ".join(sorted(ordered)), exact)]
    return [(d, [(s, o) for s, o in options if d in o.drugs]) for d in sorted(ordered)]


def _group_cards(
    services: Any,
    rec: Any,
    order: dict[str, Any],
    ordered: set[str],
    link: str | None,
    patient_id: str,
) -> list[dict[str, Any]]:
    cards = []
    options = [(s, o) for p in rec.pathways for s in p.steps for o in s.options]
    for drug, hits in _hits(options, ordered):
        if not hits:
            cards.append(
                _card(
                    services,
                    rec,
                    f"{drug} is not among the regimens listed for {rec.patient_group.label}",
                    "info",
                    "The guideline lists no regimen with this drug for this patient group.",
                    link,
                    overrideReasons=OVERRIDE_REASONS,
                )
            )
        elif all(o.status == "not_recommended" for _, o in hits):
            reasons = list(dict.fromkeys(r for _, o in hits for r in o.reasons))
            steps = {s.treatment for s, _ in hits}
            critical = any(
                w.code == "contraindication" and (w.treatment in steps or w.treatment is None)
                for w in rec.warnings
            )
            alts: list[tuple[str, ...]] = []
            for s, _ in hits:
                alts += [
                    o.drugs for o in s.options if o.status == "preferred" and o.drugs not in alts
                ]
            cards.append(
                _warn(
                    services,
                    rec,
                    order,
                    drug,
                    rec.patient_group.label,
                    reasons,
                    alts,
                    critical,
                    link,
                    patient_id,
                )
            )
        elif any(o.status == "conditional" for _, o in hits) and not any(
                o.status in ("preferred", "option", "caution") for _, o in hits):
            reasons = list(dict.fromkeys(r for _, o in hits for r in o.reasons))
            cards.append(_card(services, rec, f"{drug}: depends on facts not yet recorded", "info",
                               "\n".join(f"- {r}" for r in reasons), link))
    return cards


def _across_cards(
    services: Any,
    rec: Any,
    order: dict[str, Any],
    ordered: set[str],
    link: str | None,
    patient_id: str,
) -> list[dict[str, Any]]:
    """No single group: what holds in every candidate group (contract 1.1 ``across_candidates``)."""
    cards = []
    entries = list(rec.across_candidates)
    missing = ", ".join(m.field for m in rec.missing_information) or "facts that decide the group"
    for drug, hits in _hits([(None, a) for a in entries], ordered):
        if hits and all(a.status == "not_recommended" for _, a in hits):
            reasons = list(dict.fromkeys(r for _, a in hits for r in a.reasons))
            alts = [a.drugs for a in entries if a.status == "preferred"]
            groups = sorted({g for _, a in hits for g in a.groups})
            cards.append(
                _warn(
                    services,
                    rec,
                    order,
                    drug,
                    "in every possible patient group: " + ", ".join(groups),
                    reasons,
                    alts,
                    False,
                    link,
                    patient_id,
                )
            )
        else:
            cards.append(
                _card(
                    services,
                    rec,
                    f"{drug}: the patient group is not known yet; record {missing}",
                    "info",
                    f"Whether **{drug}** fits this patient depends on {missing}. The order "
                    "was not checked against one patient group.",
                    link,
                )
            )
    return cards


def order_cards(
    services: Any,
    rec: Any,
    audit_link: str | None,
    patient_id: str,
    orders: list[dict[str, Any]],
    medications: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    cards = []
    for order in orders:
        ordered = ordered_drugs(order, medications)
        if not ordered:
            continue
        if rec.out_of_scope is not None:
            continue
        if rec.patient_group is not None:
            cards += _group_cards(services, rec, order, ordered, audit_link, patient_id)
        else:
            cards += _across_cards(services, rec, order, ordered, audit_link, patient_id)
    return cards


def unchecked_order_cards(
    services: Any,
    problems: list[tuple[str, str]],
    orders: list[dict[str, Any]],
    medications: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Orders that could not be checked because the record lacks required facts: said, never
    silent."""
    fields = ", ".join(sorted({f.split(".")[0] for f, _ in problems}))
    cards = []
    for order in orders:
        for drug in sorted(ordered_drugs(order, medications)):
            cards.append(
                _card(
                    services,
                    None,
                    f"{drug} order NOT checked: the record lacks {fields}",
                    "warning",
                    f"Sarcoma CDS could not check **{drug}** against the guideline because the "
                    f"record does not give: {fields}. Check the order against the guideline by "
                    "hand.",
                    None,
                    overrideReasons=OVERRIDE_REASONS,
                )
            )
    return cards


def incomplete_card(services: Any, keys: list[str]) -> dict[str, Any]:
    """The info card saying the record could not be read in full (never silence)."""
    return _card(
        services, None, "Sarcoma CDS could not read the whole record from the EHR",
        "info",
        f"Sarcoma CDS could not read the whole record: {COULD_NOT_READ} in full "
        f"(not read: {', '.join(keys)}). Facts these resources hold were not used; check the "
        "recommendation against the chart.",
        None,
    )


@dataclass
class HookAnswer:
    """The answer to a hook call, and the audit row to write (with the cards' uuids) before it
    is sent; ``row`` is None when no recommendation was made (nothing to record)."""

    result: dict[str, Any]
    row: Any = None
    card_uuids: list[str] = field(default_factory=list)


def prepare_hook(services: Any, service_id: str, req: dict[str, Any], *, caller: str,
                 request_id: str, base_url: str,
                 fetched: FetchResult | None = None) -> HookAnswer:
    """The answer to one hook call and its audit row, not yet written (CPU only: the caller
    writes ``row`` with ``card_uuids`` before sending ``result``). Raises BadHookRequest /
    PreconditionFailed.

    ``fetched``: what was read from the client's FHIR server for the keys it did not prefetch
    (:func:`~sarcoma_cds.interfaces.api.fhir_fetch.fetch_missing`, run by the route on the event
    loop); a key not read in full gives an info card."""
    check_request(service_id, req)
    ctx: dict[str, Any] = req["context"] if isinstance(req.get("context"), dict) else {}
    bundle, fetch_gaps = gather_bundle(req, fetched)
    incomplete = [incomplete_card(services, fetched.incomplete)] if (
        fetched is not None and fetched.incomplete) else []
    # patient-view checks the record's active orders too: a dangerous one is never passed over
    orders = draft_orders(ctx, service_id) if service_id != TREATMENT else active_orders(bundle)
    meds = _medications(req, bundle)
    # the audit row is built here and written below with the cards that name it, in one group
    # commit (issue 13), before the answer
    ans = services.answer_bundle(
        bundle, "cds-hooks", caller, request_id=request_id, service_id=service_id, write=False
    )
    gaps = fetch_gaps + ans.gaps
    if ans.recommendation is None:
        unchecked = unchecked_order_cards(services, ans.problems, orders, meds)
        return HookAnswer({"cards": [_missing_card(services, ans.problems, gaps), *unchecked,
                                     *incomplete]})
    rec, audit_id = ans.recommendation, ans.audit_id
    link = f"{base_url}/cases/{audit_id}"
    patient_id = ctx.get("patientId", "")
    if service_id == TREATMENT:
        cards = treatment_cards(services, rec, link, patient_id, [])
        cards += [c for c in order_cards(services, rec, link, patient_id, orders, meds)
                  if c["indicator"] in ("warning", "critical")]
    else:
        cards = order_cards(services, rec, link, patient_id, orders, meds)
    cards += incomplete
    return HookAnswer({"cards": cards}, ans.row, [c["uuid"] for c in cards])
