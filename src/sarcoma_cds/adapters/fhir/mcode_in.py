"""mCODE / US Core (FHIR R4) Bundle -> contract patient facts, with provenance and gaps.

Reads plain JSON (dicts), defensively: any shape of input gives a result, never an exception.
Records coded the way real EHR, registry and laboratory exports code them are the target:

* The sarcoma Condition is found first (mCODE primary cancer profile, a histology extension, or
  a cancer code in ``Condition.code``: SNOMED CT, ICD-10-CM including the ``C49.A*`` GIST codes).
  Every other cancer in the record is noted, and observations, variants and therapies are tied
  to their cancer (``linking``); what belongs to another cancer, or cannot be tied, is left out.
* Refuted, entered-in-error and unconfirmed resources are not used (``verificationStatus``,
  ``status``); the latest dated value of a fact wins (``mapping_core``).
* Codes are looked up in the terminology tables (``terms``); an unknown code is a gap.

Every fact records the resources it came from (``provenance``); every resource, element or code
that could not be used is listed in ``gaps`` with the reason.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sarcoma_cds.adapters.fhir import codes as C
from sarcoma_cds.adapters.fhir import terms as T
from sarcoma_cds.adapters.fhir.genomics_in import read_variant
from sarcoma_cds.adapters.fhir.linking import SARCOMA, Cancers
from sarcoma_cds.adapters.fhir.mapping_core import (
    UNSET,
    Mapper,
    MappingResult,
    code_str,
    codings,
    d_,
    has_code,
    l_,
    profiles,
    ref_of,
    s_,
    text_of,
    when_of,
)
from sarcoma_cds.adapters.fhir.therapy_in import GIVEN, finish, read_therapy

__all__ = ["MappingResult", "facts_from_bundle"]

_AJCC_DISPLAY = re.compile(
    r"American Joint Committee on Cancer\s+(?:y?[cpa]?)(T|N|M)([0-9][a-d]?|X|is)\b", re.I
)
_AJCC_STAGE_DISPLAY = re.compile(
    r"American Joint Committee on Cancer stage\s+([0IV]+[ABC]?)\b", re.I
)
_AJCC_CODE = re.compile(r"^(?:y?[cpa])?(T|N|M)([0-9][a-d]?|X|is)$", re.I)
_STAGE_TEXT = re.compile(r"^(?:stage\s+)?([0IV]+[ABC]?)$", re.I)
_CANCER_WORDS = re.compile(
    r"cancer|carcinoma|neoplasm|sarcoma|tumou?r|malignan|lymphoma|leuka?emia|melanoma|\bGIST\b",
    re.I,
)
_SARCOMA_WORDS = re.compile(r"sarcoma|stromal|\bGIST\b", re.I)
_NOT_CANCER = re.compile(
    r"family history|screening|benign|fear of|risk of|suspect|rule out|ruled out", re.I
)
_SECONDARY_WORDS = re.compile(r"secondary|metasta", re.I)

NOT_VERIFIED = {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
ACTIVE = {"active", "recurrence", "relapse"}
OBS_FINAL = {"final", "amended", "corrected", "appended"}
RESIDUAL_CODES = {(C.LOINC, "84892-9"), (C.SNOMED, "17964000")}
EXT_LOCATION_QUALIFIER = C.MCODE_SD + "mcode-body-location-qualifier"
DEPTH = {"26283006": "superficial", "795002": "deep"}  # SNOMED CT qualifier values
CONTRACT_HISTOLOGIES = set(v for v in T._table("morphology", T.ICDO3, "histology").values() if v)


# ====================================================================== code readers

def _histology_from_cc(cc: Any) -> tuple[str | None, str]:
    """(histology or None, problem) from a CodeableConcept (ICD-O-3, SNOMED CT, ICD-10-CM GIST)."""
    problems = []
    for sys_, code, display in codings(cc):
        if sys_ == T.ICDO3:
            hist, problem = T.icdo3_histology(code)
            if hist:
                return hist, ""
            problems.append(problem)
        elif sys_ == T.SNOMED:
            hist = T.snomed_histology(code)
            if hist:
                return hist, ""
            problems.append(
                f"SNOMED CT {code} ({display or 'no display'}) is not a histology code this "
                "service knows"
            )
        elif sys_ in (T.ICD10CM, T.ICD10):
            hist = T.icd10cm(code, "histology")[1]
            if hist:
                return hist, ""
            problems.append(f"ICD-10 {code} does not name a histology")
        else:
            problems.append(f"code {sys_ or '?'}|{code} is not a known histology code system")
    return None, "; ".join(problems) or "no coding"


def _site_from_cc(cc: Any) -> tuple[str | None, str]:
    problems = []
    for sys_, code, display in codings(cc):
        site = None
        if sys_ == T.SNOMED:
            site = T.snomed_site(code)
        elif sys_ == T.ICDO3:
            site = T.icdo3_site(code)
        elif sys_ in (T.ICD10CM, T.ICD10):
            site = T.icd10cm(code, "primary_site")[1]
        if site:
            return site, ""
        problems.append(
            f"body site {sys_ or '?'}|{code} ({display or 'no display'}) is not a site this "
            "service knows"
        )
    return None, "; ".join(problems) or "no coding"


def _met_site_from_cc(cc: Any) -> tuple[str | None, str]:
    problems = []
    for sys_, code, display in codings(cc):
        site = T.snomed_met_site(code) if sys_ == T.SNOMED else (
            T.icd10cm(code, "metastatic_sites")[1] if sys_ in (T.ICD10CM, T.ICD10) else None)
        if site:
            return site, ""
        problems.append(
            f"metastatic site {sys_ or '?'}|{code} ({display or 'no display'}) is not one this "
            "service knows"
        )
    return None, "; ".join(problems) or "no coding"


def _ajcc_value(cc: Any, axis: str, text: str = "") -> tuple[str | None, str]:
    """AJCC category letter+value (e.g. 'N0', 'M1') from a TNM CodeableConcept."""
    for sys_, code, display in codings(cc):
        if sys_ == C.SNOMED and code in C.SNOMED_TNM_VALUE:
            v = C.SNOMED_TNM_VALUE[code].lstrip("cpay")
            m = _AJCC_DISPLAY.search(display) if display else None
            if m and (m.group(1) + m.group(2)).upper() != v.upper():
                return (
                    None,
                    f"data_conflict: SNOMED CT {code} means {v} but its display says {display!r}",
                )
            if v[0].upper() == axis:
                return v.upper(), ""
        if sys_ == C.AJCC:
            m = _AJCC_CODE.match(code)
            if m and m.group(1).upper() == axis:
                return (m.group(1) + m.group(2)).upper(), ""
        m = _AJCC_DISPLAY.search(display) if display else None
        if m and m.group(1).upper() == axis:
            return (m.group(1) + m.group(2)).upper(), ""
    for t in (s_(d_(cc).get("text")).strip(), text.strip()):
        m = _AJCC_CODE.match(t)
        if m and m.group(1).upper() == axis:
            return (m.group(1) + m.group(2)).upper(), ""
    return None, f"{code_str(cc)} is not an AJCC {axis} category this service can read"


def _quantity_cm(q: Any) -> float | None:
    q = d_(q)
    v = q.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    unit = (s_(q.get("code")) or s_(q.get("unit"))).strip().lower()
    factor = {"cm": 1.0, "centimeter": 1.0, "centimeters": 1.0, "mm": 0.1, "millimeter": 0.1,
              "millimeters": 0.1, "m": 100.0}.get(unit)
    if factor is None:
        return None
    return round(float(v) * factor, 3)


def _clinical(res: dict[str, Any]) -> list[str]:
    return [c for _, c, _ in codings(res.get("clinicalStatus"))]


def _verification(res: dict[str, Any]) -> list[str]:
    return [c for _, c, _ in codings(res.get("verificationStatus"))]


# ====================================================================== the record's cancers

class _Reader:
    def __init__(self, today: date) -> None:
        self.m = Mapper()
        self.today = today
        self.index: dict[str, dict[str, Any]] = {}
        self.canon_of: dict[str, str] = {}
        self.cancers = Cancers(self.canon)
        self.kind: dict[
            str, str
        ] = {}  # condition ref -> primary | secondary | other_cancer | comorbidity | skip
        self.patients: set[str] = set()
        self.drug_seen: dict[str, list[str]] = {}

    def canon(self, ref: str) -> str | None:
        if ref in self.canon_of:
            return self.canon_of[ref]
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2:
            return self.canon_of.get("/".join(parts[-2:]))
        return None

    # ------------------------------------------------------------ conditions, pass 1
    def classify(self, ref: str, res: dict[str, Any]) -> None:
        """Sort a Condition: the sarcoma (or possibly it), another cancer, a secondary cancer, or
        anything else (a comorbidity candidate). Structured codes decide first; the text is used
        only to recognise that a Condition is some cancer, which makes the reader more careful,
        never to set a fact."""
        prof = " ".join(profiles(res))
        hist_ext = [d_(e) for e in l_(res.get("extension")) if d_(e).get("url") == C.EXT_HISTOLOGY]
        code = res.get("code")
        text = text_of(code)
        icd = [c.upper() for s, c, _ in codings(code) if s in (T.ICD10CM, T.ICD10)]
        verification = _verification(res)
        if set(verification) & NOT_VERIFIED:
            self.kind[ref] = "skip"
            self.m.gap(ref, "verificationStatus", f"condition {', '.join(verification)}; not used")
            return
        hist = None
        for e in hist_ext:
            hist = hist or _histology_from_cc(e.get("valueCodeableConcept"))[0]
        hist = hist or _histology_from_cc(code)[0]
        soft_tissue = any(c.startswith(("C49", "C48.0", "C480")) for c in icd)
        is_primary = "mcode-primary-cancer-condition" in prof or bool(hist_ext)
        is_secondary = "mcode-secondary-cancer-condition" in prof or any(
            T.icd10cm(c, "metastatic_sites")[0] for c in icd
        )
        if icd:  # an ICD-10 code says whether this is a cancer (Z80.3 family history is not)
            cancer = any(c.startswith(("C", "D0")) for c in icd)
        else:
            cancer = bool(hist) or bool(_CANCER_WORDS.search(text) and not _NOT_CANCER.search(text))
        if not (is_primary or is_secondary) and cancer and hist is None and not soft_tissue \
                and _SECONDARY_WORDS.search(text):
            is_secondary = True
        if is_secondary and not is_primary:
            self.kind[ref] = "secondary"
            return
        if not (is_primary or cancer):
            self.kind[ref] = "comorbidity"
            return
        site = None
        for bs in l_(res.get("bodySite")):
            site = site or _site_from_cc(bs)[0]
        site = site or _site_from_cc(code)[0]
        self.cancers.sites[ref] = site
        if hist in CONTRACT_HISTOLOGIES:
            self.kind[ref] = "primary"
            self.cancers.sarcoma.add(ref)
        elif hist is None and (
            soft_tissue or _SARCOMA_WORDS.search(text) or (is_primary and not text)
        ):
            self.kind[ref] = "possible"
        else:
            self.kind[ref] = "other_cancer"
            self.cancers.other[ref] = text or code_str(code)

    def settle(self) -> None:
        """A soft-tissue cancer Condition without a histology is the sarcoma when there is no
        other, or when it names the sarcoma's own site (the same tumour on the problem list);
        otherwise it is another cancer."""
        possible = [r for r, k in self.kind.items() if k == "possible"]
        sarcoma_sites = {self.cancers.sites.get(c) for c in self.cancers.sarcoma}
        for r in possible:
            if not self.cancers.sarcoma or (
                self.cancers.sites.get(r) and self.cancers.sites.get(r) in sarcoma_sites
            ):
                self.kind[r] = "primary"
                self.cancers.sarcoma.add(r)
            else:
                self.kind[r] = "other_cancer"
                self.cancers.other[r] = "a cancer without a sarcoma histology at another site"

    # ------------------------------------------------------------ conditions, pass 2
    def condition(self, ref: str, res: dict[str, Any]) -> None:
        kind = self.kind.get(ref, "comorbidity")
        m = self.m
        when = when_of(res)
        clinical = _clinical(res)
        if kind == "skip":
            return
        if kind == "other_cancer":
            hist = [
                _histology_from_cc(d_(e).get("valueCodeableConcept"))[1]
                for e in l_(res.get("extension"))
                if d_(e).get("url") == C.EXT_HISTOLOGY
            ] or [_histology_from_cc(res.get("code"))[1]]
            m.gap(
                ref,
                "Condition",
                f"another cancer ({self.cancers.other.get(ref)}; {'; '.join(hist)}): "
                "its facts are not used for the sarcoma",
            )
            return
        if kind == "secondary":
            self._secondary(ref, res, when, clinical)
            return
        if kind == "primary":
            self._primary(ref, res, when, clinical)
            return
        if clinical and not set(clinical) & ACTIVE:
            m.gap(ref, "clinicalStatus", f"condition not active ({', '.join(clinical)}); not used")
            return
        _comorbidity_from_cc(m, res.get("code"), ref, "code")

    def _secondary(self, ref: str, res: dict[str, Any], when: str, clinical: list[str]) -> None:
        m = self.m
        if clinical and not set(clinical) & ACTIVE:
            m.gap(
                ref,
                "clinicalStatus",
                f"secondary cancer not active ({', '.join(clinical)}); not used",
            )
            return
        for e in l_(res.get("extension")):
            url = s_(d_(e).get("url"))
            if url.endswith(("condition-related", "related-primary-cancer-condition")):
                self.cancers.claim(ref, s_(d_(d_(e).get("valueReference")).get("reference")))
        owner, why = self.cancers.owner(ref)
        if owner != SARCOMA:
            m.gap(
                ref, "Condition (secondary cancer)", f"{why}; metastasis not used for the sarcoma"
            )
            return
        m.put("metastasis", "M1", ref, "Condition (secondary cancer)", priority=2, when=when)
        sites = l_(res.get("bodySite")) or [res.get("code")]
        for bs in sites:
            site, problem = _met_site_from_cc(bs)
            if site:
                m.add_to_list("metastatic_sites", site, ref, "bodySite")
            else:
                m.gap(ref, "bodySite", problem)

    def _primary(self, ref: str, res: dict[str, Any], when: str, clinical: list[str]) -> None:
        m = self.m
        if len(self.cancers.sarcoma) > 1:
            m.gap(
                ref,
                "Condition",
                f"more than one sarcoma condition ({', '.join(sorted(self.cancers.sarcoma))}); "
                "facts from each are compared and conflicts reported",
            )
        got = False
        for e in [d_(e) for e in l_(res.get("extension")) if d_(e).get("url") == C.EXT_HISTOLOGY]:
            hist, problem = _histology_from_cc(e.get("valueCodeableConcept"))
            if hist:
                m.put(
                    "histology",
                    hist,
                    ref,
                    "extension[histology-morphology-behavior]",
                    priority=1,
                    when=when,
                )
                got = True
            else:
                m.gap(ref, "extension[histology-morphology-behavior]", problem)
        if not got:
            hist, _ = _histology_from_cc(res.get("code"))
            if hist:
                m.put("histology", hist, ref, "code", when=when)
            else:
                m.gap(ref, "code", f"{code_str(res.get('code'))}: no histology this service knows")
        sites = l_(res.get("bodySite"))
        code_site = _site_from_cc(res.get("code"))[0]
        if code_site:
            m.put("primary_site", code_site, ref, "code", when=when)
        elif not sites:
            m.gap(ref, "bodySite", "primary cancer condition has no body site")
        for bs in sites:
            site, problem = _site_from_cc(bs)
            if site:
                m.put("primary_site", site, ref, "bodySite", when=when)
            else:
                m.gap(ref, "bodySite", problem)
            for e in l_(d_(bs).get("extension")):
                if s_(d_(e).get("url")) == EXT_LOCATION_QUALIFIER:
                    for s, c, _ in codings(d_(e).get("valueCodeableConcept")):
                        if s == T.SNOMED and c in DEPTH:
                            m.put(
                                "depth",
                                DEPTH[c],
                                ref,
                                "bodySite.extension[body-location-qualifier]",
                                when=when,
                            )
        if set(clinical) & {
            "recurrence",
            "relapse",
        }:  # the current status: undated, not the diagnosis date
            m.put("disease_status", "recurrent", ref, "clinicalStatus")
        for st in l_(res.get("stage")):
            summary = d_(st).get("summary")
            got_stage = _stage_group(summary)
            if got_stage:
                phase = (
                    "pathologic"
                    if "patholog" in text_of(d_(st).get("type")).lower()
                    else "clinical"
                )
                m.res.reported.setdefault("stage_group", []).append(
                    {"value": got_stage, "phase": phase, "resource": ref}
                )

    # ------------------------------------------------------------ observations
    def observation(self, ref: str, res: dict[str, Any]) -> None:
        m = self.m
        status = s_(res.get("status"))
        if status not in OBS_FINAL:
            m.gap(
                ref,
                "status",
                f"observation status {status or 'missing'!r}; only final results are used",
            )
            return
        if res.get("dataAbsentReason") is not None:
            m.gap(
                ref,
                "dataAbsentReason",
                f"no value ({text_of(res.get('dataAbsentReason')) or 'data absent'})",
            )
            return
        code = res.get("code")
        when = when_of(res)
        kind = next((_OBS_KIND[(s, c)] for s, c, _ in codings(code) if (s, c) in _OBS_KIND), None)
        if kind == "ecog":
            return _ecog(m, res, ref, when)
        if kind == "comorbidity":
            return _comorbidity_obs(m, res, ref, self.index)
        if kind is None:
            m.gap(ref, "code", f"{code_str(code)}: observation not used by the guideline")
            return
        owner, why = self.cancers.owner(ref, self._site_hint(res))
        if owner != SARCOMA:
            m.gap(ref, "focus", f"{why}; not used")
            return
        _cancer_observation(m, res, ref, when)

    def _site_hint(self, res: dict[str, Any]) -> str | None:
        site = _site_from_cc(res.get("bodySite"))[0] if res.get("bodySite") else None
        if site is None:
            for sp in (
                l_(res.get("specimen"))
                if isinstance(res.get("specimen"), list)
                else [res.get("specimen")]
            ):
                c = self.canon(s_(d_(sp).get("reference")))
                spec = self.index.get(c or "")
                if spec:
                    site = _site_from_cc(d_(spec.get("collection")).get("bodySite"))[0]
        return site

    # ------------------------------------------------------------ patient
    def patient(self, ref: str, res: dict[str, Any]) -> None:
        m = self.m
        bd = s_(res.get("birthDate"))
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
        age = (
            self.today.year
            - born.year
            - ((self.today.month, self.today.day) < (born.month, born.day))
        )
        if 0 <= age <= 120:
            m.put("age_years", age, ref, "birthDate")
        else:
            m.gap(ref, "birthDate", f"age {age} outside 0-120")

    def about_other_patient(self, ref: str, res: dict[str, Any]) -> bool:
        subj = s_(d_(res.get("subject") or res.get("patient")).get("reference"))
        if not subj or not self.patients:
            return False
        c = self.canon(subj)
        if c in self.patients:
            return False
        self.m.gap(
            ref,
            "subject",
            f"about {subj}, not the record's patient ({', '.join(sorted(self.patients))}); not "
            "used",
        )
        return True


def _has_any(cc: Any, table: Any) -> bool:
    return bool(has_code(cc, table))


def _stage_group(cc: Any) -> str | None:
    for _, _, display in codings(cc):
        mm = _AJCC_STAGE_DISPLAY.search(display or "")
        if mm:
            return mm.group(1).upper()
    for t in [s_(d_(cc).get("text"))] + [c for _, c, _ in codings(cc) if _]:
        mm = _STAGE_TEXT.match(t.strip())
        if mm and t.strip():
            return mm.group(1).upper()
    return None


_CANCER_OBS = (
    C.TNM_N_CODES,
    C.TNM_M_CODES,
    C.TNM_T_CODES,
    C.STAGE_GROUP_CODES,
    C.TUMOR_SIZE_CODES,
    C.GRADE_CODES,
    C.HISTOLOGY_OBS_CODES,
    C.DISEASE_STATUS_CODES,
    C.VARIANT_CODES,
    RESIDUAL_CODES,
)


# (system, code) -> what an observation code is, looked up once per observation.
_OBS_KIND: dict[tuple[str, str], str] = {
    **{k: "cancer" for t in _CANCER_OBS for k in t}, **{k: "ecog" for k in C.ECOG_CODES},
    **{k: "comorbidity" for k in C.COMORBIDITY_CODES}}


def _cancer_observation(m: Mapper, res: dict[str, Any], ref: str, when: str) -> None:
    code = res.get("code")
    value_cc = res.get("valueCodeableConcept")
    vstr = s_(res.get("valueString"))
    for axis, table in (("N", C.TNM_N_CODES), ("M", C.TNM_M_CODES), ("T", C.TNM_T_CODES)):
        phase = has_code(code, table)
        if phase:
            return _tnm(m, ref, axis, phase, value_cc, vstr, when)
    phase = has_code(code, C.STAGE_GROUP_CODES)
    if phase:
        got = _stage_group(value_cc) or (
            _STAGE_TEXT.match(vstr.strip()) and vstr.strip().upper().removeprefix("STAGE ").strip()
        )
        if got:
            m.res.reported.setdefault("stage_group", []).append(
                {"value": got, "phase": phase, "resource": ref}
            )
            m.used.add(ref)
        else:
            m.gap(ref, "valueCodeableConcept", f"{code_str(value_cc)}: stage group not readable")
        return None
    if _has_any(code, C.TUMOR_SIZE_CODES):
        return _size(m, res, ref, when)
    if _has_any(code, C.GRADE_CODES):
        g = None
        for sys_, c, _ in codings(value_cc):
            if sys_ == C.SNOMED and c in C.SNOMED_GRADE:
                g = C.SNOMED_GRADE[c]
        text = s_(d_(value_cc).get("text")).strip().upper() or vstr.strip().upper()
        if g is None and re.fullmatch(r"(FNCLCC\s+)?(GRADE\s+|G)?([123X])", text):
            g = text[-1]
        if g:
            m.put("grade", g, ref, "valueCodeableConcept", when=when)
        else:
            m.gap(
                ref,
                "valueCodeableConcept",
                f"{code_str(value_cc)}: not a histologic grade this service knows",
            )
        return None
    if _has_any(code, C.HISTOLOGY_OBS_CODES):
        hist, problem = _histology_from_cc(value_cc)
        if hist:
            m.put("histology", hist, ref, "valueCodeableConcept", when=when)
        else:
            m.gap(ref, "valueCodeableConcept", problem)
        return None
    if _has_any(code, C.DISEASE_STATUS_CODES):
        for sys_, c, display in codings(value_cc):
            if sys_ == C.SNOMED and c in C.SNOMED_DISEASE_STATUS:
                v = C.SNOMED_DISEASE_STATUS[c]
                m.put(
                    "disease_status",
                    v or UNSET,
                    ref,
                    "valueCodeableConcept",
                    when=when,
                    note=f"latest disease status {display or c!r} does not say whether the "
                         "disease is primary, "
                    "recurrent or progressive; disease_status left unset",
                )
                return None
        m.gap(ref, "valueCodeableConcept", f"{code_str(value_cc)}: disease status not known")
        return None
    if _has_any(code, RESIDUAL_CODES):
        vals = {c.upper() for _, c, _ in codings(value_cc)} | {
            text_of(value_cc).strip().upper(),
            vstr.strip().upper(),
        }
        r = {v for v in vals if v in ("R0", "R1", "R2")}
        if len(r) == 1:
            m.put("resection_status", r.pop(), ref, "valueCodeableConcept", when=when)
        else:
            m.gap(
                ref,
                "valueCodeableConcept",
                f"{code_str(value_cc)}: residual tumour (R) class not readable",
            )
        return None
    read_variant(m, res, ref, when)
    return None


def _tnm(m: Mapper, ref: str, axis: str, phase: str, value_cc: Any, vstr: str, when: str) -> None:
    v, problem = _ajcc_value(value_cc, axis, vstr)
    prio = 2 if phase == "pathologic" else 1
    if v is None:
        m.gap(ref, "valueCodeableConcept", problem)
    elif axis == "T":
        m.res.reported.setdefault("t_category", []).append(
            {"value": v, "phase": phase, "resource": ref}
        )
        m.gap(ref, "valueCodeableConcept", (
            f"T category {v} recorded for reference only: "
            "the guideline stages from tumour size (size_cm)"
        ))
    elif axis == "N" and v in ("N0", "NX"):
        m.put("nodes", v, ref, "valueCodeableConcept", prio, when=when)
    elif axis == "N" and v.startswith("N1"):
        m.put("nodes", "N1", ref, "valueCodeableConcept", prio, when=when)
    elif axis == "M" and (v == "M0" or v.startswith("M1")):
        m.put(
            "metastasis", "M0" if v == "M0" else "M1", ref, "valueCodeableConcept", prio, when=when
        )
    elif axis == "N":
        m.gap(
            ref,
            "valueCodeableConcept",
            f"{v} is not an AJCC 8 soft-tissue sarcoma N category (N0, N1, NX)",
        )
    else:
        m.gap(ref, "valueCodeableConcept", f"{v} is not an M category the guideline uses (M0, M1)")


def _size(m: Mapper, res: dict[str, Any], ref: str, when: str) -> None:
    code = res.get("code")
    sizes: list[float] = []
    other = False
    components = [d_(c) for c in l_(res.get("component"))]
    if res.get("valueQuantity") is not None and (
        _has_any(code, {C.TUMOR_SIZE_MAX_DIM}) or not components
    ):
        cm = _quantity_cm(res.get("valueQuantity"))
        if cm is None:
            m.gap(ref, "valueQuantity", "tumour size without a usable value and unit (cm or mm)")
        else:
            sizes.append(cm)
    for comp in components:
        if _has_any(comp.get("code"), {C.TUMOR_SIZE_MAX_DIM} | C.TUMOR_SIZE_OTHER_DIMS):
            cm = _quantity_cm(comp.get("valueQuantity"))
            if cm is None:
                m.gap(
                    ref,
                    "component.valueQuantity",
                    "tumour dimension without a usable value and unit",
                )
            else:
                sizes.append(cm)
                other = True
    if sizes:
        size = max(sizes)
        if 0 < size <= 100:
            m.put(
                "size_cm",
                size,
                ref,
                "component.valueQuantity" if other else "valueQuantity",
                when=when,
            )
        else:
            m.gap(ref, "valueQuantity", f"tumour size {size} cm is outside 0-100 cm")
    elif not m.has_gap(ref):
        m.gap(ref, "valueQuantity", "tumour size observation without a dimension")


def _ecog(m: Mapper, res: dict[str, Any], ref: str, when: str) -> None:
    v = res.get("valueInteger")
    if isinstance(v, bool) or not isinstance(v, int):
        v = None
        for sys_, c, _ in codings(res.get("valueCodeableConcept")):
            if sys_ == C.LOINC and c in C.LOINC_ECOG:
                v = C.LOINC_ECOG[c]
    if v is not None and 0 <= v <= 4:
        m.put("ecog", v, ref, "valueInteger", when=when)
    else:
        m.gap(ref, "value[x]", "ECOG value missing or outside 0-4")


def _comorbidity_from_cc(m: Mapper, cc: Any, ref: str, element: str) -> bool:
    for sys_, code, _ in codings(cc):
        if sys_ == C.SNOMED and code in C.SNOMED_COMORBIDITY:
            m.add_to_list("comorbidities", C.SNOMED_COMORBIDITY[code], ref, element)
            return True
        if sys_ in (C.ICD10CM, C.ICD10):
            for prefix, value in C.ICD10_COMORBIDITY_PREFIX.items():
                if code.upper().startswith(prefix):
                    m.add_to_list("comorbidities", value, ref, element)
                    return True
    m.gap(ref, element, f"{code_str(cc)}: not a comorbidity the guideline uses; not used")
    return False


def _comorbidity_obs(
    m: Mapper, res: dict[str, Any], ref: str, index: dict[str, dict[str, Any]]
) -> None:
    for e in l_(res.get("extension")):
        e = d_(e)
        if e.get("url") == C.EXT_RELATED_CONDITION:
            target = s_(d_(e.get("valueReference")).get("reference"))
            cond = index.get(target)
            if cond is None:
                m.gap(
                    ref,
                    "extension[related-condition]",
                    f"reference {target!r} is not in the bundle",
                )
            else:
                _comorbidity_from_cc(
                    m, cond.get("code"), ref, f"extension[related-condition] -> {target}"
                )
    for comp in l_(res.get("component")):  # older mCODE shape
        _comorbidity_from_cc(m, d_(comp).get("valueCodeableConcept"), ref, "component")
    m.used.add(ref)


_IGNORED_TYPES = {
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Specimen",
    "Location",
    "FamilyMemberHistory",
    "Group",
    "Encounter",
    "BodyStructure",
    "Medication",
    "DiagnosticReport",
    "Provenance",
    "Coverage",
    "AllergyIntolerance",
    "Immunization",
}


def facts_from_bundle(bundle: Any, today: date | None = None) -> MappingResult:
    """Map an mCODE / US Core Bundle (a dict) to contract facts with provenance and gaps. Never
    raises."""
    r = _Reader(today or date.today())
    m = r.m
    b = d_(bundle)
    if b.get("resourceType") != "Bundle":
        m.gap(
            "Bundle",
            "resourceType",
            f"expected a FHIR Bundle, got {s_(b.get('resourceType')) or type(bundle).__name__!r}",
        )
        return m.res
    entries = l_(b.get("entry"))
    if not entries:
        m.gap("Bundle", "entry", "the bundle has no entries")
    resources: list[tuple[str, dict[str, Any]]] = []
    for i, e in enumerate(entries):
        res = d_(d_(e).get("resource"))
        if not res:
            m.gap(f"Bundle.entry[{i}]", "resource", "entry without a resource")
            continue
        ref = ref_of(res, i)
        resources.append((ref, res))
        r.index[ref] = res
        r.canon_of[ref] = ref
        full = s_(d_(e).get("fullUrl"))
        if full:
            r.index[full] = res
            r.canon_of[full] = ref
        if res.get("resourceType") == "Patient" and s_(res.get("id")):
            r.patients.add(ref)
    for ref, res in resources:
        if res.get("resourceType") == "Condition":
            _guard(m, ref, lambda ref=ref, res=res: r.classify(ref, res))
    r.settle()
    for ref, res in resources:
        _guard(m, ref, lambda ref=ref, res=res: r.cancers.learn(ref, res))
    for ref, res in resources:
        _guard(m, ref, lambda ref=ref, res=res: _dispatch(r, ref, res))
    finish(m, r.drug_seen)
    m.resolve()
    if len(r.patients) == 1:  # the subject of the answer's CPG resources
        m.res.reported["patient"] = next(iter(r.patients))
    _after(m, r)
    return m.res


def _guard(m: Mapper, ref: str, fn: Any) -> None:
    try:
        fn()
    except Exception as exc:  # defensive: a malformed resource is a gap, never a crash
        m.gap(ref, "resource", f"could not be read ({type(exc).__name__})")


def _dispatch(r: _Reader, ref: str, res: dict[str, Any]) -> None:
    rt = res.get("resourceType")
    if rt != "Patient" and r.about_other_patient(ref, res):
        return
    if rt == "Condition":
        r.condition(ref, res)
    elif rt == "Observation":
        r.observation(ref, res)
    elif rt == "Patient":
        r.patient(ref, res)
    elif rt in GIVEN:
        read_therapy(r.m, res, ref, when_of(res), r.cancers, r.index, r.drug_seen)
    elif rt in _IGNORED_TYPES:
        r.m.used.add(ref)
    else:
        r.m.gap(ref, "resourceType", f"{rt} resources are not used by the guideline")


def _after(m: Mapper, r: _Reader) -> None:
    res = m.res
    # NTRK: 'no fusion' only when NTRK1, NTRK2 and NTRK3 were all tested and absent.
    if "_ntrk_absent" in res.facts:
        res.facts.pop("_ntrk_absent")
        prov = res.provenance.pop("_ntrk_absent")
        absent = res.reported.pop("ntrk_absent", set())
        if "ntrk_fusion" not in res.facts:
            if absent >= C.NTRK_GENES:
                res.facts["ntrk_fusion"] = False
                res.provenance["ntrk_fusion"] = prov
            else:
                m.gap("Bundle", "ntrk_fusion", (
                    f"only {', '.join(sorted(absent))} reported absent; "
                    "NTRK1, NTRK2 and NTRK3 are all needed to rule out an NTRK fusion"
                ))
    else:
        res.reported.pop("ntrk_absent", None)
    if not r.cancers.sarcoma and "histology" not in res.facts:
        m.gap("Bundle", "Condition", "no sarcoma or GIST primary cancer condition in the bundle")
    if res.facts.get("metastasis") != "M1":
        for f in ("metastatic_sites",):
            if f in res.facts:
                res.facts.pop(f)
                res.provenance.pop(f, None)
                m.gap(
                    "Bundle",
                    f,
                    "metastatic sites recorded but the current M category is not M1; not used",
                )
    # progressed_on / intolerant_of items are prior therapies too (contract 1.1).
    for f in ("progressed_on",):
        for item in res.facts.get(f, []):
            if item not in res.facts.get("prior_therapies", []):
                res.facts.setdefault("prior_therapies", []).append(item)
        if "prior_therapies" in res.facts:
            res.facts["prior_therapies"] = sorted(res.facts["prior_therapies"])
