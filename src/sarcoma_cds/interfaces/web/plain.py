"""Plain-language wording for the patient summary (a discussion aid; no jargon, no doses)."""

from __future__ import annotations

from typing import Any

PLAIN_TREATMENT: dict[str, str] = {
    "excision": "Surgery to remove the tumour",
    "surgery": "Surgery to remove the tumour",
    "neoadjuvant_radiotherapy":
        "Radiotherapy before surgery, to shrink the tumour and make surgery safer",
    "neoadjuvant_radiotherapy_or_chemoradiation":
        "Radiotherapy before surgery, sometimes together with chemotherapy",
    "neoadjuvant_systemic_therapy": "Medicine treatment (chemotherapy) before surgery",
    "neoadjuvant_targeted_systemic_therapy":
        "Targeted medicine before surgery, to shrink the tumour first",
    "adjuvant_radiotherapy":
        "Radiotherapy after surgery, to lower the chance of the tumour coming back",
    "adjuvant_radiotherapy_or_chemoradiation":
        "Radiotherapy after surgery, sometimes together with chemotherapy",
    "adjuvant_systemic_therapy": "Medicine treatment (chemotherapy) after surgery, for some people",
    "adjuvant_chemotherapy": "Chemotherapy after surgery, for some people",
    "targeted_systemic_therapy":
        "Targeted medicine: tablets that block the signals this tumour needs to grow",
    "continue_targeted_systemic_therapy": "Carrying on with targeted medicine",
    "excision_or_ablation_or_chemoembolisation_or_palliative_radiotherapy":
        "Treating particular tumour spots directly: surgery, heat treatment, blocking the blood "
        "supply, or radiotherapy",
    "individualised_local_therapy":
        "Treatment aimed at the tumour area, planned for you personally",
    "individualised_therapy": "A treatment plan made for your situation by the specialist team",
    "individualised_palliative_therapy_plus_best_supportive_care":
        "Treatment to control the illness and its symptoms, with care focused on comfort and "
        "quality of life",
    "metastases_management": "Treatment of the places the tumour has spread to",
    "radiotherapy_or_chemoradiation_or_systemic_therapy":
        "Radiotherapy and/or medicine treatment (chemotherapy)",
    "radiotherapy_or_chemoradiation_or_systemic_therapy_or_excision":
        "Radiotherapy, medicine treatment (chemotherapy) or surgery, depending on the situation",
    "systemic_therapy_or_radiotherapy_or_chemoradiation":
        "Medicine treatment (chemotherapy) and/or radiotherapy",
}

SITE_PLAIN = {
    "upper_extremity": "the arm", "lower_extremity": "the leg",
    "trunk": "the trunk (chest, back or belly wall)",
    "retroperitoneum": "the back of the abdomen", "intra_abdominal": "the abdomen",
    "head_neck": "the head or neck", "stomach": "the stomach",
    "duodenum": "the first part of the small bowel",
    "small_intestine": "the small bowel", "colon": "the large bowel",
    "rectum": "the back passage (rectum)",
    "oesophagus": "the food pipe (oesophagus)", "other_gi": "the lining of the abdomen",
    "other": "another part of the body",
}


def tumour_sentence(facts: dict[str, Any]) -> str:
    site = SITE_PLAIN.get(str(facts.get("primary_site", "")), "the body")
    if facts.get("histology") == "gist":
        return (f"You have a GIST (gastrointestinal stromal tumour) in {site}. "
                "A GIST is a rare tumour that grows from the wall of the digestive tract.")
    return (f"You have a soft-tissue sarcoma in {site}. Sarcomas are rare cancers that start in "
            "the body's supporting tissues, such as fat, muscle or nerves.")


def situation_sentence(rec: dict[str, Any], facts: dict[str, Any] | None = None) -> str:
    """Where the patient is, in plain words; "come back" only when the facts say recurrent
    (metastases found at diagnosis have spread, they have not come back)."""
    f = facts or {}
    if rec.get("out_of_scope"):
        return ("This type of tumour is treated along a different pathway from the one this tool "
                "covers. Your team will explain the plan for it.")
    gid = (rec.get("patient_group") or {}).get("id") or ""
    if not gid:
        return ("Some test results or details are still needed before the team can say which "
                "treatment path fits best.")
    parts = []
    if gid.split(".")[-1] == "stage_i":
        parts.append("The tumour was found at an early stage.")
    if "unresectable" in gid:
        parts.append("At the moment the tumour cannot be removed safely with an operation.")
    elif "resectable" in gid:
        parts.append("The team expects that the tumour can be removed with an operation.")
    if "significant_morbidity" in gid:
        parts.append("The operation would be a big one, so treatment before surgery may help.")
    if "oligometastatic" in gid or "metastatic_limited" in gid:
        parts.append("The tumour has spread to a small number of places, which may still be "
                     "treatable directly.")
    elif "disseminated" in gid or "recurrent_or_metastatic" in gid:
        back = f.get("disease_status") == "recurrent"
        spread = f.get("metastasis") == "M1"
        parts.append(
            "The tumour has come back and spread to other parts of the body."
            if back and spread
            else "The tumour has come back after earlier treatment."
            if back
            else "The tumour has spread to other parts of the body."
            if spread
            else "The tumour has come back or spread to other parts of the body."
        )
    elif "recurrent" in gid:
        parts.append("The tumour has come back after earlier treatment.")
    if "progressive" in gid:
        parts.append("The tumour has grown during treatment, so a change of treatment is "
                     "considered.")
    return " ".join(parts) or ("The team has placed your situation in one of the treatment paths "
                               "of the guideline.")


#: How a step relates to the one before it, in plain words (the tiers of the source algorithm).
TIER_PLAIN = {"first_line": "First", "plus": "With it or after it", "consider": "Maybe also"}


def ways(rec: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The pathways as separate ways to go, each its steps in order, in plain words.

    The alternatives stay apart (the team chooses one way, not every step of every way); steps
    the recommendation rules out are left out; no drug names or doses.
    """
    out: list[list[dict[str, str]]] = []
    for p in rec.get("pathways") or []:
        steps = []
        for s in p.get("steps") or []:
            if s["status"] == "not_recommended":
                continue
            steps.append({"when": TIER_PLAIN.get(s["tier"], ""),
                          "text": PLAIN_TREATMENT.get(s["treatment"], s["label"]),
                          "status": s["status"],
                          "maybe": "Depends on a test result or detail not yet known"
                                   if s["status"] == "conditional" else ""})
        if steps and steps not in out:
            out.append(steps)
    return out
