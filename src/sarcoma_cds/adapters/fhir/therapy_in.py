"""Treatment history: MedicationStatement / MedicationAdministration / MedicationRequest / Procedure
-> ``prior_therapies``, ``progressed_on``, ``intolerant_of`` (contract 1.1).

Why: the guideline's later lines depend on what was given and why it stopped. A drug is
recognised by its RxNorm ingredient code, by the ingredient or brand named in an RxNorm clinical
or branded drug's display, or through ``medicationReference``. A therapy counts only when the
record says it was given (status), and only for the sarcoma (``reasonReference`` to another
cancer is reported, not used). Failure or intolerance is read only where the record states it
(``statusReason``), never inferred from a therapy having stopped. Imatinib's dose line (standard
400 mg/day or high 800 mg/day) is read from the dosage; when it cannot be read, imatinib is
reported and left out.
"""

from __future__ import annotations

import re
from typing import Any

from sarcoma_cds.adapters.fhir import terms as T
from sarcoma_cds.adapters.fhir.linking import OTHER, SARCOMA, Cancers
from sarcoma_cds.adapters.fhir.mapping_core import Mapper, codings, d_, l_, profiles, s_, text_of

GIVEN = {
    "MedicationStatement": {"active", "completed", "stopped", "on-hold"},
    "MedicationAdministration": {"completed", "in-progress", "stopped", "on-hold"},
    "MedicationRequest": {"active", "completed", "stopped", "on-hold"},
    "Procedure": {"completed", "in-progress", "stopped"},
}
# Drug -> contract therapy; drugs absent here (mesna, dacarbazine, ...) are used but set nothing.
THERAPY = {
    "doxorubicin": "anthracycline",
    "epirubicin": "anthracycline",
    "liposomal_doxorubicin": "anthracycline",
    "avapritinib": "avapritinib",
    "sunitinib": "sunitinib",
    "regorafenib": "regorafenib",
    "ripretinib": "ripretinib",
    "ifosfamide": "ifosfamide",
    "pazopanib": "pazopanib",
    "trabectedin": "trabectedin",
    "eribulin": "eribulin",
    "larotrectinib": "trk_inhibitor",
    "entrectinib": "trk_inhibitor",
    "repotrectinib": "trk_inhibitor",
}
SNOMED = T.SNOMED
# mCODE TreatmentTerminationReasonVS (SNOMED CT) codes that state failure or intolerance.
FAILURE = {"266721009": "Absent response to treatment", "58848006": "Lack of drug action"}
INTOLERANCE = {"407563006": "Treatment not tolerated", "281647001": "Adverse reaction"}
SURGICAL_CATEGORY = "387713003"  # Surgical procedure (procedure)
RADIOTHERAPY = {
    "1217123003": "Radiotherapy course of treatment",
    "108290001": "Radiation oncology AND/OR radiotherapy",
}
MCODE_SURGERY = "mcode-cancer-related-surgical-procedure"
MCODE_RADIOTHERAPY = ("mcode-radiotherapy-course-summary", "mcode-radiotherapy-volume")


def _drugs(res: dict[str, Any], index: dict[str, dict[str, Any]]) -> tuple[set[str], str]:
    """(drug ids, problem) named by a medication resource."""
    cc = res.get("medicationCodeableConcept")
    ref = s_(d_(res.get("medicationReference")).get("reference"))
    if ref:
        med = index.get(ref) or index.get(ref.split("/", 1)[-1] if ref.startswith("#") else ref)
        if med is None and ref.startswith("#"):
            med = next(
                (c for c in l_(res.get("contained")) if "#" + s_(d_(c).get("id")) == ref), None
            )
        if med is None:
            return set(), f"medicationReference {ref!r} is not in the record"
        cc = d_(med).get("code")
    by_code: set[str] = set()
    for sys_, code, _ in codings(cc):
        if sys_ == T.RXNORM:
            drug = T.rxnorm_drug(code)
            if drug:
                by_code.add(drug)
    by_text = T.drugs_in_text(text_of(cc))
    if by_code and by_text and not by_code & by_text:
        return set(), (
            f"data_conflict: RxNorm code names {', '.join(sorted(by_code))} but the text names "
            f"{', '.join(sorted(by_text))}"
        )
    return by_code | by_text, "" if by_code | by_text else "no drug this service knows"


def _imatinib_line(res: dict[str, Any]) -> str | None:
    """imatinib_standard_dose / imatinib_high_dose from the daily dose, or None."""
    dosages = l_(res.get("dosageInstruction")) or l_(res.get("dosage"))
    if isinstance(res.get("dosage"), dict):
        dosages = [res["dosage"]]
    for dz in dosages:
        dz = d_(dz)
        mg = None
        for dr in l_(dz.get("doseAndRate")) or [dz]:
            q = d_(d_(dr).get("doseQuantity")) or d_(d_(dr).get("dose"))
            if isinstance(q.get("value"), int | float) and (
                s_(q.get("unit")) + s_(q.get("code"))
            ).lower().startswith("mg"):
                mg = float(q["value"])
        rep = d_(d_(dz.get("timing")).get("repeat"))
        freq, period, unit = (
            rep.get("frequency", 1),
            rep.get("period", 1),
            s_(rep.get("periodUnit")) or "d",
        )
        if (
            mg is None
            or unit != "d"
            or not isinstance(freq, int)
            or not isinstance(period, int | float)
        ):
            text = s_(dz.get("text")).lower()
            mt = re.search(
                r"(\d+)\s*mg\s*(?:once\s+)?(daily|a day|od|qd|twice daily|bid|b\.i\.d\.)", text
            )
            if not mt:
                continue
            mg = float(mt.group(1)) * (2 if mt.group(2) in ("twice daily", "bid", "b.i.d.") else 1)
            daily = mg
        else:
            daily = mg * freq / period
        if daily == 400:
            return "imatinib_standard_dose"
        if daily == 800:
            return "imatinib_high_dose"
    return None


def read_therapy(m: Mapper, res: dict[str, Any], ref: str, when: str, cancers: Cancers,
                 index: dict[str, dict[str, Any]], drug_seen: dict[str, list[str]]) -> None:
    rt = s_(res.get("resourceType"))
    status = s_(res.get("status"))
    intent = s_(res.get("intent"))
    if rt == "MedicationRequest" and intent in ("proposal", "plan", "directive"):
        m.gap(ref, "intent", f"a {intent} is not a therapy given; not used")
        return
    if status not in GIVEN[rt]:
        m.gap(ref, "status", f"{rt} status {status or 'missing'!r}: not a therapy given; not used")
        return
    owner, why = cancers.owner(ref)
    if owner != SARCOMA:
        m.gap(
            ref,
            "reasonReference",
            f"{why}; not counted as a sarcoma therapy"
            + (
                " (check cumulative exposure, e.g. anthracycline dose, all the same)"
                if owner == OTHER
                else ""
            ),
        )
        return
    if rt == "Procedure":
        _procedure(m, res, ref)
        return
    drugs, problem = _drugs(res, index)
    if not drugs:
        m.gap(ref, "medication[x]", problem)
        return
    sr = res.get("statusReason")
    reasons = [
        (s, c) for cc in (l_(sr) if isinstance(sr, list) else [sr]) for s, c, _ in codings(cc)
    ]
    failed = {c for s, c in reasons if s == SNOMED and c in FAILURE}
    intolerant = {c for s, c in reasons if s == SNOMED and c in INTOLERANCE}
    for drug in sorted(drugs):
        drug_seen.setdefault(drug, []).append(ref)
        therapy = THERAPY.get(drug)
        if drug == "imatinib":
            therapy = _imatinib_line(res)
            if therapy is None:
                m.gap(
                    ref,
                    "dosage",
                    "imatinib given but its daily dose (400 or 800 mg) cannot be read: "
                    "prior_therapies does not list it; please record the dose",
                )
                continue
        if therapy is None:
            m.used.add(ref)
            continue
        m.add_to_list("prior_therapies", therapy, ref, "medication[x]")
        if failed:
            m.add_to_list("progressed_on", therapy, ref, "statusReason")
        if intolerant:
            m.add_to_list("intolerant_of", therapy, ref, "statusReason")


def _procedure(m: Mapper, res: dict[str, Any], ref: str) -> None:
    prof = " ".join(profiles(res))
    code = res.get("code")
    cat = res.get("category")
    if MCODE_SURGERY in prof or any(
        s == SNOMED and c == SURGICAL_CATEGORY for s, c, _ in codings(cat)
    ):
        m.add_to_list("prior_therapies", "surgery", ref, "code")
        outcome = text_of(res.get("outcome")).strip().upper()
        mr = re.fullmatch(r"(R[012])", outcome)
        if mr:
            m.put("resection_status", mr.group(1), ref, "outcome")
        return
    if any(p in prof for p in MCODE_RADIOTHERAPY) or any(
        s == SNOMED and c in RADIOTHERAPY for s, c, _ in codings(code)
    ):
        m.add_to_list("prior_therapies", "radiotherapy", ref, "code")
        return
    m.gap(
        ref,
        "code",
        "procedure is neither a cancer surgery nor radiotherapy this service recognises; not used",
    )


def finish(m: Mapper, drug_seen: dict[str, list[str]]) -> None:
    """Combinations read across resources (dabrafenib with trametinib)."""
    if "dabrafenib" in drug_seen and "trametinib" in drug_seen:
        for ref in drug_seen["dabrafenib"] + drug_seen["trametinib"]:
            m.add_to_list("prior_therapies", "dabrafenib_trametinib", ref, "medication[x]")
    elif "dabrafenib" in drug_seen or "trametinib" in drug_seen:
        one = "dabrafenib" if "dabrafenib" in drug_seen else "trametinib"
        m.gap(drug_seen[one][0], "medication[x]", (
            f"{one} without its partner drug: not the "
            "dabrafenib + trametinib therapy; not listed"
        ))
