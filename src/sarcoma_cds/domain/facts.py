"""Patient facts: the contract's input model, validated strictly.

Unknown fields, wrong vocabulary and contradictions are all reported together in
one :class:`InvalidFacts`, each problem naming its field, because a clinician
fixing a record wants the whole list at once, not one error per attempt.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

StrictNumber = Annotated[float, Strict()]
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]

Histology = Literal[
    "gist",
    "liposarcoma",
    "liposarcoma_well_differentiated",
    "liposarcoma_dedifferentiated",
    "liposarcoma_myxoid",
    "liposarcoma_pleomorphic",
    "leiomyosarcoma",
    "undifferentiated_pleomorphic_sarcoma",
    "synovial_sarcoma",
    "myxofibrosarcoma",
    "malignant_peripheral_nerve_sheath_tumour",
    "angiosarcoma",
    "other_soft_tissue_sarcoma",
    "rhabdomyosarcoma",
    "desmoid_tumour",
    "kaposi_sarcoma",
    "dermatofibrosarcoma_protuberans",
    "ewing_sarcoma",
    "osteosarcoma",
]
PrimarySite = Literal[
    "upper_extremity",
    "lower_extremity",
    "trunk",
    "retroperitoneum",
    "intra_abdominal",
    "head_neck",
    "stomach",
    "duodenum",
    "small_intestine",
    "colon",
    "rectum",
    "oesophagus",
    "other_gi",
    "other",
]
Depth = Literal["superficial", "deep"]
Grade = Literal["1", "2", "3", "X"]
Nodes = Literal["N0", "N1", "NX"]
Metastasis = Literal["M0", "M1"]
MetastaticBurden = Literal["oligometastatic", "disseminated"]
MetastaticSite = Literal["lung", "liver", "bone", "lymph_node", "peritoneum", "other"]
Resectability = Literal["resectable", "resectable_significant_morbidity", "unresectable"]
DiseaseStatus = Literal["primary", "recurrent", "progressive"]
ProgressionExtent = Literal["limited", "widespread"]
ResectionStatus = Literal["not_resected", "R0", "R1", "R2"]
KitMutation = Literal["exon_9", "exon_11", "exon_13", "exon_17", "other", "none", "unknown"]
PdgfraMutation = Literal[
    "d842v", "exon_18_insensitive", "exon_18_sensitive", "exon_12", "exon_14", "other", "none",
    "unknown",
]
PriorTherapy = Literal[
    "anthracycline",
    "imatinib_standard_dose",
    "imatinib_high_dose",
    "avapritinib",
    "sunitinib",
    "regorafenib",
    "ripretinib",
    "radiotherapy",
    "surgery",
    # contract 1.1
    "ifosfamide",
    "pazopanib",
    "trabectedin",
    "eribulin",
    "trk_inhibitor",
    "dabrafenib_trametinib",
]
#: Contract 1.1: systemic therapies a patient can progress on (``prior_therapies`` less
#: surgery and radiotherapy).
SystemicTherapy = Literal[
    "anthracycline",
    "imatinib_standard_dose",
    "imatinib_high_dose",
    "avapritinib",
    "sunitinib",
    "regorafenib",
    "ripretinib",
    "ifosfamide",
    "pazopanib",
    "trabectedin",
    "eribulin",
    "trk_inhibitor",
    "dabrafenib_trametinib",
]
Comorbidity = Literal[
    "heart_failure",
    "uncorrectable_coagulopathy",
    "active_infection_treatment_area",
    "decompensated_liver_failure",
]

#: Values that say "tested, result not known": read by the rules as an absent fact (and still
#: asked).
UNKNOWN_VALUES: dict[str, str] = {"kit_mutation": "unknown", "pdgfra_mutation": "unknown"}

#: Field names of the contract, in contract order (the CLI, FHIR mapper and web form use it).
FACT_FIELDS: tuple[str, ...] = (
    "histology", "primary_site", "size_cm", "depth", "grade", "nodes", "metastasis",
    "metastatic_burden", "metastatic_sites", "resectability", "disease_status",
    "progression_extent", "mitotic_rate_per_5mm2", "tumour_rupture", "resection_status",
    "kit_mutation", "pdgfra_mutation", "sdh_deficient", "nf1_mutation", "braf_v600e",
    "ntrk_fusion", "prior_therapies", "comorbidities", "age_years", "ecog",
    "progressed_on", "intolerant_of",  # contract 1.1
)

OUT_OF_SCOPE_HISTOLOGIES: frozenset[str] = frozenset(
    {"rhabdomyosarcoma", "desmoid_tumour", "kaposi_sarcoma", "dermatofibrosarcoma_protuberans",
     "ewing_sarcoma", "osteosarcoma"}
)


class InvalidFacts(ValueError):
    """Patient facts that break the contract. ``problems`` holds ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


class PatientFacts(BaseModel):
    """The contract's patient facts. Every field but histology and primary_site is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    histology: Histology
    primary_site: PrimarySite
    size_cm: StrictNumber | None = Field(default=None, gt=0, le=100)
    depth: Depth | None = None
    grade: Grade | None = None
    nodes: Nodes | None = None
    metastasis: Metastasis | None = None
    metastatic_burden: MetastaticBurden | None = None
    metastatic_sites: tuple[MetastaticSite, ...] | None = None
    resectability: Resectability | None = None
    disease_status: DiseaseStatus | None = None
    progression_extent: ProgressionExtent | None = None
    mitotic_rate_per_5mm2: StrictNumber | None = Field(default=None, ge=0, le=10000)
    tumour_rupture: StrictBool | None = None
    resection_status: ResectionStatus | None = None
    kit_mutation: KitMutation | None = None
    pdgfra_mutation: PdgfraMutation | None = None
    sdh_deficient: StrictBool | None = None
    nf1_mutation: StrictBool | None = None
    braf_v600e: StrictBool | None = None
    ntrk_fusion: StrictBool | None = None
    prior_therapies: tuple[PriorTherapy, ...] | None = None
    comorbidities: tuple[Comorbidity, ...] | None = None
    age_years: StrictInt | None = Field(default=None, ge=0, le=120)
    ecog: StrictInt | None = Field(default=None, ge=0, le=4)
    #: contract 1.1: treatment failure (progression or recurrence on, or within 6 months of, a
    #: therapy); each item also counts as a prior therapy
    progressed_on: tuple[SystemicTherapy, ...] | None = None
    #: contract 1.1: therapies not tolerated or that must not be given (toxicity, contraindication)
    intolerant_of: tuple[PriorTherapy, ...] | None = None


def _is_list_field(name: str) -> bool:
    ann = PatientFacts.model_fields[name].annotation
    return any(get_origin(a) is tuple for a in (ann, *get_args(ann)))


#: List-valued facts (JSON arrays; ``;``-separated in cohort files), derived from the model.
LIST_FIELDS: tuple[str, ...] = tuple(n for n in FACT_FIELDS if _is_list_field(n))


def contradictions(f: dict[str, Any]) -> list[tuple[str, str]]:
    """Facts that cannot all be true at once. Kept small and literal: only what the contract
    implies.

    Works on the raw mapping so contradictions are reported together with type errors.
    """
    out: list[tuple[str, str]] = []
    m = f.get("metastasis")
    if f.get("metastatic_burden") is not None and m == "M0":
        out.append(("metastatic_burden", "given only with metastasis M1 (metastasis is M0)"))
    if f.get("metastatic_sites") and m == "M0":
        out.append(("metastatic_sites", "metastatic sites are listed but metastasis is M0"))
    if f.get("progression_extent") is not None and f.get("disease_status") != "progressive":
        out.append(("progression_extent", "given only with disease_status progressive"))
    for name in LIST_FIELDS:
        v = f.get(name)
        if isinstance(v, list | tuple):
            try:
                if len(set(v)) != len(v):
                    out.append((name, "a value is listed twice"))
            except TypeError:
                pass  # unhashable items are reported by type validation
    return out


def _loc(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    return ".".join(loc) if loc else "facts"


def _message(err: dict[str, Any]) -> str:
    t = err.get("type", "")
    if t == "extra_forbidden":
        return "unknown field (not in the contract; check the spelling)"
    if t == "missing":
        return "required field is missing"
    value = err.get("input")
    if (
        isinstance(value, float) and value != value
    ):  # NaN (JSON files may carry it): not a bound problem
        return "NaN is not a number; give the value or leave the field out"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f"{'Infinity' if value > 0 else '-Infinity'} is not a finite number"
    if t in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err.get('input')!r} is not allowed; expected one of {expected}"
    if t in ("tuple_type", "list_type"):
        return "expected a list"
    if t in ("int_type", "int_from_float", "int_parsing"):
        return f"expected a whole number, got {err.get('input')!r}"
    if t in ("float_type", "float_parsing"):
        return f"expected a number, got {err.get('input')!r}"
    if t == "bool_type":
        return f"expected true, false or null, got {err.get('input')!r}"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def parse_facts(data: Any) -> PatientFacts:
    """Validate raw facts (a mapping) into :class:`PatientFacts` or raise :class:`InvalidFacts`."""
    if isinstance(data, PatientFacts):
        return data
    if not isinstance(data, dict):
        raise InvalidFacts([("facts", f"expected a JSON object, got {type(data).__name__}")])
    problems: list[tuple[str, str]] = []
    facts: PatientFacts | None = None
    try:
        facts = PatientFacts.model_validate(data)
    except ValidationError as e:
        problems.extend(
            (_loc(dict(err)), _message(dict(err))) for err in e.errors(include_url=False)
        )
    problems.extend(contradictions(data))
    if problems or facts is None:
        raise InvalidFacts(problems)
    return facts
