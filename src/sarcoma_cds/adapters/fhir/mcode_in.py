"""mCODE (FHIR R4) Bundle -> contract patient facts, with provenance and gaps.

Reads plain JSON (dicts), defensively: any shape of input gives a result, never an
exception. Every fact records the resource it came from (``provenance``); every
resource, element or code that could not be used is listed in ``gaps`` with the
reason. Unknown codes are never mapped to a default. When two resources disagree
on one fact and neither takes precedence (pathologic TNM beats clinical), the fact
is left unset and the conflict is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sarcoma_cds.adapters.fhir import codes as C


@dataclass
class MappingResult:
    facts: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    gaps: list[dict[str, str]] = field(default_factory=list)
    reported: dict[str, Any] = field(default_factory=dict)  # e.g. stage group as recorded

    def as_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "provenance": self.provenance, "gaps": self.gaps,
                "reported": self.reported}


@dataclass
class _Candidate:
    value: Any
    priority: int
    source: dict[str, str]


class _Mapper:
    def __init__(self) -> None:
        self.res = MappingResult()
        self.cands: dict[str, list[_Candidate]] = {}
        self.list_facts: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.used: set[str] = set()

    # -------------------------------------------------------------- helpers
    def gap(self, ref: str, element: str, problem: str) -> None:
        self.res.gaps.append({"resource": ref, "element": element, "problem": problem})

    def put(self, fact: str, value: Any, ref: str, element: str, priority: int = 0) -> None:
        rt, _, rid = ref.partition("/")
        self.cands.setdefault(fact, []).append(
            _Candidate(value, priority, {"resourceType": rt, "id": rid, "element": element}))
        self.used.add(ref)

    def add_to_list(self, fact: str, value: str, ref: str, element: str) -> None:
        rt, _, rid = ref.partition("/")
        self.list_facts.setdefault(fact, {}).setdefault(value, []).append(
            {"resourceType": rt, "id": rid, "element": element})
        self.used.add(ref)

    def resolve(self) -> None:
        for fact, cands in self.cands.items():
            top = max(c.priority for c in cands)
            best = [c for c in cands if c.priority == top]
            values = {repr(c.value) for c in best}
            if len(values) > 1:
                srcs = ", ".join(f"{c.source['resourceType']}/{c.source['id']}={c.value!r}" for c in best)
                self.gap("Bundle", fact, f"data_conflict: resources disagree ({srcs}); fact left unset")
                continue
            self.res.facts[fact] = best[0].value
            self.res.provenance[fact] = [c.source for c in best]
            dropped = [c for c in cands if c.priority < top and repr(c.value) != repr(best[0].value)]
            for c in dropped:
                self.gap(f"{c.source['resourceType']}/{c.source['id']}", fact,
                         f"superseded: value {c.value!r} overridden by a higher-precedence resource")
        for fact, vals in self.list_facts.items():
            self.res.facts[fact] = sorted(vals)
            self.res.provenance[fact] = [s for v in sorted(vals) for s in vals[v]]


def _d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _s(x: Any) -> str:
    return x if isinstance(x, str) else ""


def _codings(cc: Any) -> list[tuple[str, str, str]]:
    out = []
    for c in _l(_d(cc).get("coding")):
        c = _d(c)
        code = _s(c.get("code")).strip()
        if code:
            out.append((_s(c.get("system")).strip(), code, _s(c.get("display"))))
    return out


def _has_code(cc: Any, table: Any) -> Any:
    """The value of the first coding of ``cc`` found in ``table`` (dict or set of (system, code))."""
    for sys_, code, _ in _codings(cc):
        if (sys_, code) in table:
            return table[(sys_, code)] if isinstance(table, dict) else True
    return None


def _ref_of(res: dict[str, Any], index: int) -> str:
    rt = _s(res.get("resourceType")) or "Resource"
    rid = _s(res.get("id"))
    return f"{rt}/{rid}" if rid else f"{rt}/entry[{index}]"


def _profiles(res: dict[str, Any]) -> list[str]:
    return [p for p in _l(_d(res.get("meta")).get("profile")) if isinstance(p, str)]


def _code_str(cc: Any) -> str:
    parts = [f"{s or '?'}|{c}" for s, c, _ in _codings(cc)]
    txt = _s(_d(cc).get("text"))
    return ", ".join(parts) or (f"text {txt!r}" if txt else "no coding")


_ICDO_MORPH = re.compile(r"^(\d{4})/(\d)$")
_AJCC_DISPLAY = re.compile(r"American Joint Committee on Cancer\s+(?:y?[cpa]?)(T|N|M)([0-9][a-d]?|X|is)\b", re.I)
_AJCC_STAGE_DISPLAY = re.compile(r"American Joint Committee on Cancer stage\s+([0IV]+[ABC]?)\b", re.I)
_AJCC_CODE = re.compile(r"^(?:y?[cpa])?(T|N|M)([0-9][a-d]?|X|is)$", re.I)


def _histology_from_cc(cc: Any) -> tuple[str | None, str]:
    """(histology or None, problem) from a CodeableConcept (ICD-O-3 or SNOMED)."""
    problems = []
    for sys_, code, display in _codings(cc):
        if sys_ == C.ICDO3 or "icd-o" in sys_.lower():
            m = _ICDO_MORPH.match(code)
            if not m:
                problems.append(f"malformed ICD-O-3 morphology code {code!r} (expected NNNN/B)")
                continue
            morph, behaviour = m.groups()
            hist = C.ICDO3_HISTOLOGY.get(morph)
            if hist is None:
                problems.append(f"ICD-O-3 {code} ({display or 'no display'}) is not a soft-tissue sarcoma or GIST histology this service knows")
                continue
            if behaviour not in ("3", "6") and morph not in C.ICDO3_NON_MALIGNANT_OK:
                problems.append(f"ICD-O-3 {code}: behaviour /{behaviour} is not malignant")
                continue
            return hist, ""
        if sys_ == C.SNOMED:
            hist = C.SNOMED_HISTOLOGY.get(code)
            if hist:
                return hist, ""
            problems.append(f"SNOMED CT {code} ({display or 'no display'}) is not a histology code this service knows")
        else:
            problems.append(f"code {sys_ or '?'}|{code} is not a known histology code system")
    return None, "; ".join(problems) or "no coding"


def _site_from_cc(cc: Any, table: dict[str, str]) -> tuple[str | None, str]:
    problems = []
    for sys_, code, display in _codings(cc):
        if sys_ == C.SNOMED and code in table:
            return table[code], ""
        if table is C.SNOMED_SITE and (sys_ == C.ICDO3 or "icd-o" in sys_.lower()):
            for prefix in sorted(C.ICDO3_SITE, key=len, reverse=True):
                if code.upper().startswith(prefix):
                    return C.ICDO3_SITE[prefix], ""
        problems.append(f"body site {sys_ or '?'}|{code} ({display or 'no display'}) is not a site this service knows")
    return None, "; ".join(problems) or "no coding"


def _ajcc_value(cc: Any, axis: str) -> tuple[str | None, str]:
    """AJCC category letter+value (e.g. 'N0', 'M1') from a TNM CodeableConcept."""
    for sys_, code, display in _codings(cc):
        if sys_ == C.SNOMED and code in C.SNOMED_TNM_VALUE:
            v = C.SNOMED_TNM_VALUE[code].lstrip("cpay")
            m = _AJCC_DISPLAY.search(display) if display else None
            if m and (m.group(1) + m.group(2)).upper() != v.upper():
                return None, f"data_conflict: SNOMED CT {code} means {v} but its display says {display!r}"
            if v[0].upper() == axis:
                return v.upper(), ""
        if sys_ == C.AJCC:
            m = _AJCC_CODE.match(code)
            if m and m.group(1).upper() == axis:
                return (m.group(1) + m.group(2)).upper(), ""
        # SNOMED CT AJCC qualifier values are named "American Joint Committee on Cancer <cat>".
        m = _AJCC_DISPLAY.search(display) if display else None
        if m and m.group(1).upper() == axis:
            return (m.group(1) + m.group(2)).upper(), ""
    text = _s(_d(cc).get("text")).strip()
    m = _AJCC_CODE.match(text)
    if m and m.group(1).upper() == axis:
        return (m.group(1) + m.group(2)).upper(), ""
    return None, f"{_code_str(cc)} is not an AJCC {axis} category this service can read"


def _quantity_cm(q: Any) -> float | None:
    q = _d(q)
    v = q.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    unit = (_s(q.get("code")) or _s(q.get("unit"))).strip().lower()
    factor = {"cm": 1.0, "centimeter": 1.0, "centimeters": 1.0, "mm": 0.1, "millimeter": 0.1,
              "millimeters": 0.1, "m": 100.0}.get(unit)
    if factor is None:
        return None
    return round(float(v) * factor, 3)


# ====================================================================== readers

def _condition(m: _Mapper, res: dict[str, Any], ref: str, state: dict[str, Any]) -> None:
    profiles = _profiles(res)
    exts = [_d(e) for e in _l(res.get("extension"))]
    hist_ext = [e for e in exts if e.get("url") == C.EXT_HISTOLOGY]
    is_primary = any(p.endswith("mcode-primary-cancer-condition") for p in profiles) or bool(hist_ext)
    is_secondary = any(p.endswith("mcode-secondary-cancer-condition") for p in profiles)
    clinical = [c for _, c, _ in _codings(res.get("clinicalStatus"))]
    if is_secondary:
        if clinical and not set(clinical) & {"active", "recurrence", "relapse"}:
            m.gap(ref, "clinicalStatus", f"secondary cancer not active ({', '.join(clinical)}); not used")
            return
        m.put("metastasis", "M1", ref, "Condition (secondary cancer)", priority=1)
        for bs in _l(res.get("bodySite")) or [None]:
            site, problem = _site_from_cc(bs, C.SNOMED_MET_SITE)
            if site:
                m.add_to_list("metastatic_sites", site, ref, "bodySite")
            else:
                m.gap(ref, "bodySite", problem)
        return
    if is_primary:
        state["primary"].append(ref)
        if len(state["primary"]) > 1:
            m.gap(ref, "Condition", f"more than one primary cancer condition ({', '.join(state['primary'])}); "
                  "facts from each are compared and conflicts reported")
        got = False
        for e in hist_ext:
            hist, problem = _histology_from_cc(e.get("valueCodeableConcept"))
            if hist:
                m.put("histology", hist, ref, "extension[histology-morphology-behavior]", priority=1)
                got = True
            else:
                m.gap(ref, "extension[histology-morphology-behavior]", problem)
        if not got:
            hist, _ = _histology_from_cc(res.get("code"))
            if hist:
                m.put("histology", hist, ref, "code")
            elif not hist_ext:
                m.gap(ref, "code", f"{_code_str(res.get('code'))}: no histology this service knows")
        sites = _l(res.get("bodySite"))
        if not sites:
            m.gap(ref, "bodySite", "primary cancer condition has no body site")
        for bs in sites:
            site, problem = _site_from_cc(bs, C.SNOMED_SITE)
            if site:
                m.put("primary_site", site, ref, "bodySite")
            else:
                m.gap(ref, "bodySite", problem)
        return
    # Any other condition: a comorbidity candidate.
    if clinical and not set(clinical) & {"active", "recurrence", "relapse"}:
        m.gap(ref, "clinicalStatus", f"condition not active ({', '.join(clinical)}); not used")
        return
    _comorbidity_from_cc(m, res.get("code"), ref, "code")


def _comorbidity_from_cc(m: _Mapper, cc: Any, ref: str, element: str) -> bool:
    for sys_, code, _ in _codings(cc):
        if sys_ == C.SNOMED and code in C.SNOMED_COMORBIDITY:
            m.add_to_list("comorbidities", C.SNOMED_COMORBIDITY[code], ref, element)
            return True
        if sys_ in (C.ICD10CM, C.ICD10):
            for prefix, value in C.ICD10_COMORBIDITY_PREFIX.items():
                if code.upper().startswith(prefix):
                    m.add_to_list("comorbidities", value, ref, element)
                    return True
    m.gap(ref, element, f"{_code_str(cc)}: not a comorbidity the guideline uses; not used")
    return False


def _observation(m: _Mapper, res: dict[str, Any], ref: str, index: dict[str, dict[str, Any]]) -> None:
    status = _s(res.get("status"))
    if status in ("entered-in-error", "cancelled", "registered"):
        m.gap(ref, "status", f"observation status {status!r}; not used")
        return
    code = res.get("code")
    value_cc = res.get("valueCodeableConcept")
    phase = _has_code(code, C.TNM_N_CODES)
    if phase:
        v, problem = _ajcc_value(value_cc, "N")
        if v is None:
            m.gap(ref, "valueCodeableConcept", problem)
        elif v in ("N0", "NX"):
            m.put("nodes", v, ref, "valueCodeableConcept", 2 if phase == "pathologic" else 1)
        elif v.startswith("N1"):
            m.put("nodes", "N1", ref, "valueCodeableConcept", 2 if phase == "pathologic" else 1)
        else:
            m.gap(ref, "valueCodeableConcept", f"{v} is not an AJCC 8 soft-tissue sarcoma N category (N0, N1, NX)")
        return
    phase = _has_code(code, C.TNM_M_CODES)
    if phase:
        v, problem = _ajcc_value(value_cc, "M")
        if v is None:
            m.gap(ref, "valueCodeableConcept", problem)
        elif v == "M0" or v.startswith("M1"):
            m.put("metastasis", "M0" if v == "M0" else "M1", ref, "valueCodeableConcept",
                  2 if phase == "pathologic" else 1)
        else:
            m.gap(ref, "valueCodeableConcept", f"{v} is not an M category the guideline uses (M0, M1)")
        return
    phase = _has_code(code, C.TNM_T_CODES)
    if phase:
        v, problem = _ajcc_value(value_cc, "T")
        if v is None:
            m.gap(ref, "valueCodeableConcept", problem)
        else:
            m.res.reported.setdefault("t_category", []).append({"value": v, "phase": phase, "resource": ref})
            m.gap(ref, "valueCodeableConcept", f"T category {v} recorded for reference only: "
                  "the guideline stages from tumour size (size_cm)")
        return
    phase = _has_code(code, C.STAGE_GROUP_CODES)
    if phase:
        got = None
        for _, _, display in _codings(value_cc):
            mm = _AJCC_STAGE_DISPLAY.search(display or "")
            if mm:
                got = mm.group(1).upper()
        if got:
            m.res.reported.setdefault("stage_group", []).append({"value": got, "phase": phase, "resource": ref})
            m.used.add(ref)
        else:
            m.gap(ref, "valueCodeableConcept", f"{_code_str(value_cc)}: stage group not readable")
        return
    if _has_code(code, C.TUMOR_SIZE_CODES):
        sizes: list[float] = []
        other = False
        if _has_code(code, {C.TUMOR_SIZE_MAX_DIM}) and res.get("valueQuantity") is not None:
            cm = _quantity_cm(res.get("valueQuantity"))
            if cm is None:
                m.gap(ref, "valueQuantity", "tumour size without a usable value and unit (cm or mm)")
            else:
                sizes.append(cm)
        for comp in _l(res.get("component")):
            comp = _d(comp)
            if _has_code(comp.get("code"), {C.TUMOR_SIZE_MAX_DIM} | C.TUMOR_SIZE_OTHER_DIMS):
                cm = _quantity_cm(comp.get("valueQuantity"))
                if cm is None:
                    m.gap(ref, "component.valueQuantity", "tumour dimension without a usable value and unit")
                else:
                    sizes.append(cm)
                    other = True
        if sizes:
            size = max(sizes)
            if 0 < size <= 100:
                m.put("size_cm", size, ref, "component.valueQuantity" if other else "valueQuantity")
            else:
                m.gap(ref, "valueQuantity", f"tumour size {size} cm is outside 0-100 cm")
        elif not any(g["resource"] == ref for g in m.res.gaps):
            m.gap(ref, "valueQuantity", "tumour size observation without a dimension")
        return
    if _has_code(code, C.GRADE_CODES):
        g = None
        for sys_, c, _ in _codings(value_cc):
            if sys_ == C.SNOMED and c in C.SNOMED_GRADE:
                g = C.SNOMED_GRADE[c]
        text = _s(_d(value_cc).get("text")).strip().upper() or _s(res.get("valueString")).strip().upper()
        if g is None and re.fullmatch(r"(FNCLCC\s+)?(GRADE\s+|G)?([123X])", text):
            g = text[-1]
        if g:
            m.put("grade", g, ref, "valueCodeableConcept")
        else:
            m.gap(ref, "valueCodeableConcept", f"{_code_str(value_cc)}: not a histologic grade this service knows")
        return
    if _has_code(code, C.HISTOLOGY_OBS_CODES):
        hist, problem = _histology_from_cc(value_cc)
        if hist:
            m.put("histology", hist, ref, "valueCodeableConcept")
        else:
            m.gap(ref, "valueCodeableConcept", problem)
        return
    if _has_code(code, C.ECOG_CODES):
        v = res.get("valueInteger")
        if isinstance(v, bool) or not isinstance(v, int):
            v = None
            for sys_, c, _ in _codings(value_cc):
                if sys_ == C.LOINC and c in C.LOINC_ECOG:
                    v = C.LOINC_ECOG[c]
        if v is not None and 0 <= v <= 4:
            m.put("ecog", v, ref, "valueInteger")
        else:
            m.gap(ref, "value[x]", "ECOG value missing or outside 0-4")
        return
    if _has_code(code, C.DISEASE_STATUS_CODES):
        for sys_, c, display in _codings(value_cc):
            if sys_ == C.SNOMED and c in C.SNOMED_DISEASE_STATUS:
                v = C.SNOMED_DISEASE_STATUS[c]
                if v:
                    m.put("disease_status", v, ref, "valueCodeableConcept")
                else:
                    m.gap(ref, "valueCodeableConcept", f"disease status {display or c!r} does not say whether the "
                          "disease is primary, recurrent or progressive; not used")
                return
        m.gap(ref, "valueCodeableConcept", f"{_code_str(value_cc)}: disease status not known")
        return
    if _has_code(code, C.COMORBIDITY_CODES):
        for e in _l(res.get("extension")):
            e = _d(e)
            if e.get("url") == C.EXT_RELATED_CONDITION:
                target = _s(_d(e.get("valueReference")).get("reference"))
                cond = index.get(target)
                if cond is None:
                    m.gap(ref, "extension[related-condition]", f"reference {target!r} is not in the bundle")
                else:
                    _comorbidity_from_cc(m, cond.get("code"), ref, f"extension[related-condition] -> {target}")
            elif e.get("url") == C.EXT_RELATED_CONDITION_ABSENT:
                m.used.add(ref)
        for comp in _l(res.get("component")):  # older mCODE shape
            comp = _d(comp)
            _comorbidity_from_cc(m, comp.get("valueCodeableConcept"), ref, "component")
        m.used.add(ref)
        return
    if _has_code(code, C.VARIANT_CODES):
        _variant(m, res, ref)
        return
    m.gap(ref, "code", f"{_code_str(code)}: observation not used by the guideline")


_PROT = re.compile(r"p\.\(?([A-Z][a-z]{2}|[A-Z])(\d+)", re.I)
_EXON = re.compile(r"exon\s*(\d+)", re.I)
_D842V = re.compile(r"(D842V|Asp842Val)", re.I)
_V600E = re.compile(r"(V600E|Val600Glu)", re.I)


def _exon(gene: str, text: str) -> str | None:
    m = _EXON.search(text)
    if m:
        return f"exon_{int(m.group(1))}"
    p = _PROT.search(text)
    if p:
        codon = int(p.group(2))
        table = C.KIT_EXON_CODONS if gene == "KIT" else C.PDGFRA_EXON_CODONS
        for exon, (lo, hi) in table.items():
            if lo <= codon <= hi:
                return exon
    return None


def _variant(m: _Mapper, res: dict[str, Any], ref: str) -> None:
    answer = None
    for sys_, c, _ in _codings(res.get("valueCodeableConcept")):
        if sys_ == C.LOINC and c in (C.PRESENT, C.ABSENT):
            answer = c
    if answer is None:
        m.gap(ref, "valueCodeableConcept", "variant assessment is neither Present (LA9633-4) nor Absent (LA9634-2)")
        return
    genes: list[str] = []
    texts: list[str] = []
    for comp in _l(res.get("component")):
        comp = _d(comp)
        cc = comp.get("valueCodeableConcept")
        if _has_code(comp.get("code"), {C.GENE_STUDIED}):
            for sys_, c, display in _codings(cc):
                gene = C.HGNC_GENES.get(c.upper()) if sys_ == C.HGNC else None
                if gene is None:
                    if sys_ != C.HGNC:
                        m.gap(ref, "component[gene-studied]", f"gene code system {sys_!r} not HGNC")
                    else:
                        m.gap(ref, "component[gene-studied]", f"{c} ({display or 'no display'}): gene not used by the guideline")
                    continue
                if display and display.strip().upper() != gene:
                    m.gap(ref, "component[gene-studied]", f"data_conflict: {c} is {gene} but its display says "
                          f"{display!r}; gene not used")
                    continue
                genes.append(gene)
        elif _has_code(comp.get("code"), C.VARIANT_TEXT_COMPONENTS):
            for _, c, display in _codings(cc):
                texts.append(f"{c} {display}")
            for k in ("valueString",):
                if isinstance(comp.get(k), str):
                    texts.append(comp[k])
            if isinstance(_d(cc).get("text"), str):
                texts.append(_d(cc)["text"])
    text = " ".join(texts)
    present = answer == C.PRESENT
    if not genes:
        if not any(g["resource"] == ref for g in m.res.gaps):
            m.gap(ref, "component[gene-studied]", "no gene studied")
        return
    fusion = len(genes) > 1 or "fusion" in text.lower()
    for gene in dict.fromkeys(genes):
        if gene == "KIT":
            if not present:
                m.put("kit_mutation", "none", ref, "component[gene-studied]=KIT, Absent")
            else:
                ex = _exon("KIT", text)
                if ex in ("exon_9", "exon_11", "exon_13", "exon_17"):
                    m.put("kit_mutation", ex, ref, "component[variant]")
                elif ex:
                    m.put("kit_mutation", "other", ref, "component[variant]")
                else:
                    m.gap(ref, "component[variant]", "KIT variant present but its exon cannot be read; kit_mutation left unset")
        elif gene == "PDGFRA":
            if not present:
                m.put("pdgfra_mutation", "none", ref, "component[gene-studied]=PDGFRA, Absent")
            elif _D842V.search(text):
                m.put("pdgfra_mutation", "d842v", ref, "component[variant]")
            else:
                ex = _exon("PDGFRA", text)
                if ex in ("exon_12", "exon_14"):
                    m.put("pdgfra_mutation", ex, ref, "component[variant]")
                elif ex == "exon_18":
                    m.gap(ref, "component[variant]", "PDGFRA exon 18 variant other than D842V: whether it is "
                          "imatinib-sensitive must be stated by the laboratory; pdgfra_mutation left unset")
                elif ex:
                    m.put("pdgfra_mutation", "other", ref, "component[variant]")
                else:
                    m.gap(ref, "component[variant]", "PDGFRA variant present but its exon cannot be read; pdgfra_mutation left unset")
        elif gene == "BRAF":
            if not present:
                m.put("braf_v600e", False, ref, "component[gene-studied]=BRAF, Absent")
            elif _V600E.search(text):
                m.put("braf_v600e", True, ref, "component[variant]")
            elif text:
                m.put("braf_v600e", False, ref, "component[variant] (BRAF variant other than V600E)")
            else:
                m.gap(ref, "component[variant]", "BRAF variant present but not described; braf_v600e left unset")
        elif gene in C.NTRK_GENES:
            if present and fusion:
                m.put("ntrk_fusion", True, ref, f"component[gene-studied]={gene} (fusion)")
            elif present:
                m.gap(ref, "component[variant]", f"{gene} variant present but not described as a fusion; ntrk_fusion left unset")
            else:
                m.res.reported.setdefault("ntrk_absent", set()).add(gene)
                m.put("_ntrk_absent", True, ref, f"component[gene-studied]={gene}, Absent")
        elif gene in C.SDH_GENES:
            if present:
                m.put("sdh_deficient", True, ref, f"component[gene-studied]={gene}")
            else:
                m.gap(ref, "component[gene-studied]", f"{gene} variant absent: SDH deficiency is shown by SDHB "
                      "immunohistochemistry and is not ruled out by absent SDHx variants; sdh_deficient left unset")
        elif gene == "NF1":
            m.put("nf1_mutation", present, ref, "component[gene-studied]=NF1")
        else:
            m.gap(ref, "component[gene-studied]", f"{gene}: gene not used by the guideline")


def _patient(m: _Mapper, res: dict[str, Any], ref: str, today: date) -> None:
    bd = _s(res.get("birthDate"))
    mm = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$", bd)
    if not mm:
        if bd:
            m.gap(ref, "birthDate", "birth date not readable; age_years left unset")
        m.used.add(ref)
        return
    y, mo, d = int(mm.group(1)), int(mm.group(2) or 7), int(mm.group(3) or 1)
    try:
        born = date(y, min(max(mo, 1), 12), min(max(d, 1), 28) if mm.group(3) is None else d)
    except ValueError:
        m.gap(ref, "birthDate", "birth date is not a calendar date")
        return
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if 0 <= age <= 120:
        m.put("age_years", age, ref, "birthDate")
    else:
        m.gap(ref, "birthDate", f"age {age} outside 0-120")


_IGNORED_TYPES = {"Practitioner", "PractitionerRole", "Organization", "Specimen", "Location",
                  "FamilyMemberHistory", "Group", "Encounter", "BodyStructure", "Medication"}


def facts_from_bundle(bundle: Any, today: date | None = None) -> MappingResult:
    """Map an mCODE Bundle (a dict) to contract facts with provenance and gaps. Never raises."""
    m = _Mapper()
    today = today or date.today()
    b = _d(bundle)
    if b.get("resourceType") != "Bundle":
        m.gap("Bundle", "resourceType", f"expected a FHIR Bundle, got {_s(b.get('resourceType')) or type(bundle).__name__!r}")
        return m.res
    entries = _l(b.get("entry"))
    if not entries:
        m.gap("Bundle", "entry", "the bundle has no entries")
    resources: list[tuple[str, dict[str, Any]]] = []
    index: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(entries):
        res = _d(_d(e).get("resource"))
        if not res:
            m.gap(f"Bundle.entry[{i}]", "resource", "entry without a resource")
            continue
        ref = _ref_of(res, i)
        resources.append((ref, res))
        index[ref] = res
        full = _s(_d(e).get("fullUrl"))
        if full:
            index[full] = res
    state: dict[str, Any] = {"primary": []}
    for ref, res in resources:
        rt = res.get("resourceType")
        try:
            if rt == "Condition":
                _condition(m, res, ref, state)
            elif rt == "Observation":
                _observation(m, res, ref, index)
            elif rt == "Patient":
                _patient(m, res, ref, today)
            elif rt in _IGNORED_TYPES:
                m.used.add(ref)
            else:
                m.gap(ref, "resourceType", f"{rt} resources are not used by the guideline")
        except Exception as exc:  # defensive: a malformed resource is a gap, never a crash
            m.gap(ref, "resource", f"could not be read ({type(exc).__name__})")
    m.resolve()
    # NTRK: 'no fusion' only when NTRK1, NTRK2 and NTRK3 were all tested and absent.
    if "_ntrk_absent" in m.res.facts:
        m.res.facts.pop("_ntrk_absent")
        prov = m.res.provenance.pop("_ntrk_absent")
        absent = m.res.reported.pop("ntrk_absent", set())
        if "ntrk_fusion" not in m.res.facts:
            if absent >= C.NTRK_GENES:
                m.res.facts["ntrk_fusion"] = False
                m.res.provenance["ntrk_fusion"] = prov
            else:
                m.gap("Bundle", "ntrk_fusion", f"only {', '.join(sorted(absent))} reported absent; "
                      "NTRK1, NTRK2 and NTRK3 are all needed to rule out an NTRK fusion")
    else:
        m.res.reported.pop("ntrk_absent", None)
    if not state["primary"] and "histology" not in m.res.facts:
        m.gap("Bundle", "Condition", "no primary cancer condition (mCODE PrimaryCancerCondition) in the bundle")
    # metastasis M0 from TNM vs secondary cancer condition: the condition (M1) is recorded as conflict
    if m.res.facts.get("metastasis") == "M0":
        m.res.facts.pop("metastatic_sites", None)
        m.res.provenance.pop("metastatic_sites", None)
    return m.res
