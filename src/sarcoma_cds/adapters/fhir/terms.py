"""Look-ups in the reader's code tables (``terminology/*.json``, FHIR ConceptMaps).

Why a module of its own: the tables are data with provenance (each target carries the source it
was checked against; ``scripts/terminology.py`` rebuilds and checks them), and every reader asks
them the same questions. A code that is not in a table gives ``None`` and the reader reports a
gap: nothing here guesses. Body sites are resolved through their recorded parents, so a
specific structure (e.g. knee region) maps to the family of its parent (lower limb).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

DIR = Path(__file__).with_name("terminology")

SNOMED = "http://snomed.info/sct"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC = "http://www.genenames.org"

# Other spellings of the same code systems seen in EHR, registry and laboratory exports.
_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.43.1": ICDO3,
    "http://hl7.org/fhir/sid/icd-o-3": ICDO3,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.3": ICD10,
    "http://hl7.org/fhir/sid/icd-10/": ICD10,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "urn:oid:2.16.840.1.113883.6.281": HGNC,
    "http://www.genenames.org/geneId": HGNC,
    "https://www.genenames.org": HGNC,
    "https://www.genenames.org/": HGNC,
    "http://www.genenames.org/": HGNC,
    "https://genenames.org": HGNC,
    "http://genenames.org": HGNC,
    "urn:oid:2.16.840.1.113883.6.1": "http://loinc.org",
    "https://loinc.org": "http://loinc.org",
    "http://loinc.org/": "http://loinc.org",
}


def system(s: str) -> str:
    """The canonical URI of a code system as written in a record."""
    s = s.strip()
    if s in _ALIASES:
        return _ALIASES[s]
    if "icd-o" in s.lower():
        return ICDO3
    return s


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


@cache
def _table(name: str, source: str, target: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for g in _load(name)["group"]:
        if g["source"] == source and g.get("target") == target:
            for e in g["element"]:
                t = e["target"][0]
                out[e["code"]] = t.get("code") if t.get("equivalence") != "unmatched" else None
    return out


@cache
def _display(name: str) -> dict[str, str]:
    return {e["code"]: e.get("display", "") for g in _load(name)["group"] for e in g["element"]}


# ------------------------------------------------------------------ sites

def snomed_site(code: str) -> str | None:
    """Primary site of a SNOMED CT body structure, directly or through its recorded parents."""
    direct = _table("body-site", SNOMED, "primary_site")
    parents = _table("body-site", SNOMED, SNOMED)
    seen = set()
    while code and code not in seen:
        seen.add(code)
        if code in direct:
            return direct[code]
        code = parents.get(code) or ""
    return None


def snomed_met_site(code: str) -> str | None:
    return _table("body-site", SNOMED, "metastatic_sites").get(code)


def icdo3_site(code: str) -> str | None:
    table = _table("topography", ICDO3, "primary_site")
    code = code.upper().strip()
    for prefix in sorted(table, key=len, reverse=True):
        if (
            code == prefix
            or code.startswith(prefix + ".")
            or (len(prefix) > 3 and code.startswith(prefix))
        ):
            return table[prefix]
    return None


def _icd10_norm(code: str) -> str:
    code = code.upper().strip()
    if "." not in code and len(code) > 3:
        code = code[:3] + "." + code[3:]
    return code


def icd10cm(code: str, target: str) -> tuple[bool, str | None]:
    """(listed, value) of an ICD-10-CM code in the ``target`` group (primary_site, histology,
    metastatic_sites). ``listed`` with value None: known, but it names no contract value."""
    table = _table("icd10cm", ICD10CM, target)
    c = _icd10_norm(code)
    if c in table:
        return True, table[c]
    return False, None


def icd10cm_display(code: str) -> str:
    return _display("icd10cm").get(_icd10_norm(code), "")


# ------------------------------------------------------------------ histology

_ICDO_MORPH = re.compile(r"^(\d{4})/(\d)$")
_BORDERLINE_OK = {"8936", "8821", "8832"}


def icdo3_histology(code: str) -> tuple[str | None, str]:
    """(histology, problem) of an ICD-O-3 morphology code ``NNNN/B``."""
    m = _ICDO_MORPH.match(code.strip())
    if not m:
        return None, f"malformed ICD-O-3 morphology code {code!r} (expected NNNN/B)"
    morph, behaviour = m.groups()
    hist = _table("morphology", ICDO3, "histology").get(morph)
    if hist is None:
        return (
            None,
            f"ICD-O-3 {code} is not a soft-tissue sarcoma or GIST histology this service knows",
        )
    if behaviour not in ("3", "6") and morph not in _BORDERLINE_OK:
        return None, f"ICD-O-3 {code}: behaviour /{behaviour} is not malignant"
    return hist, ""


def snomed_histology(code: str) -> str | None:
    """Histology of a SNOMED CT morphologic abnormality or disorder concept that the table lists."""
    return (_table("morphology", SNOMED, "histology").get(code)
            or _table("morphology", SNOMED + "?disorder", "histology").get(code))


# ------------------------------------------------------------------ drugs

def rxnorm_drug(code: str) -> str | None:
    return _table("drugs", RXNORM, "drug").get(code.strip())


@cache
def _drug_words() -> list[tuple[re.Pattern[str], str]]:
    words: dict[str, str] = {}
    for g in _load("drugs")["group"]:
        for e in g["element"]:
            t = e["target"][0]
            drug = t.get("code") or e["code"]
            if g["source"] == RXNORM:
                words[e["display"].lower().replace("_", " ")] = drug
            else:
                words[e["code"].lower().replace("_", " ")] = drug
    pats = [
        (re.compile(rf"\b{re.escape(w)}\b"), d)
        for w, d in sorted(words.items(), key=lambda x: -len(x[0]))
    ]
    return pats


@cache
def brand_names() -> dict[str, str]:
    """Brand name (lower case) -> the knowledge base's drug id, from the drugs table."""
    out: dict[str, str] = {}
    for g in _load("drugs")["group"]:
        if g.get("source") == "brand-name":
            for e in g["element"]:
                drug = e["target"][0].get("code")
                if drug:
                    out[e["code"].lower()] = drug
    return out


def drugs_in_text(text: str) -> set[str]:
    """Drug ids whose generic or brand name appears as a whole word in ``text``."""
    blob = text.lower().replace("-", " ").replace("_", " ")
    found: set[str] = set()
    for pat, drug in _drug_words():
        if pat.search(blob):
            found.add(drug)
    liposomal = "liposomal_doxorubicin" in found or re.search(r"\bliposom|\bpegylated\b", blob)
    if liposomal and "doxorubicin" in found:
        found.discard("doxorubicin")
        found.add("liposomal_doxorubicin")
    return found


# ------------------------------------------------------------------ genes

def hgnc_gene(code: str) -> str | None:
    """Gene symbol of an HGNC id, written with or without the ``HGNC:`` prefix."""
    c = code.strip().upper()
    if not c.startswith("HGNC:"):
        c = "HGNC:" + c
    return _table("genes", HGNC, "gene").get(c)


@cache
def gene_symbols() -> frozenset[str]:
    return frozenset(v for v in _table("genes", HGNC, "gene").values() if v)
