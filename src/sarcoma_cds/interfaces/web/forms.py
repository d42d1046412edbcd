"""The patient form: fields, choices and parsing, all derived from the contract model.

Vocabularies come from :class:`PatientFacts` (``Literal`` annotations) and labels from
the knowledge base's ``facts.yaml``; nothing is listed twice. Only the grouping of the
fields into sections and short hints are written here.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from sarcoma_cds import FACT_FIELDS, CompiledKB, InvalidFacts, PatientFacts, parse_facts

#: Sections in the order clinicians think about a case. Every contract fact appears once.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tumour", "Tumour and site", ("histology", "primary_site", "disease_status")),
    ("extent", "Size, depth, grade, nodes and metastases",
     ("size_cm", "depth", "grade", "nodes", "metastasis", "metastatic_burden", "metastatic_sites")),
    ("resection", "Resectability and surgery",
     ("resectability", "resection_status", "progression_extent")),
    ("gist", "GIST only: mitoses, rupture and molecular results",
     ("mitotic_rate_per_5mm2", "tumour_rupture", "kit_mutation", "pdgfra_mutation",
      "sdh_deficient", "nf1_mutation", "braf_v600e")),
    ("molecular", "Molecular results for every histology", ("ntrk_fusion",)),
    ("prior", "Treatment history", ("prior_therapies", "progressed_on", "intolerant_of")),
    ("patient", "Patient and comorbidities", ("age_years", "ecog", "comorbidities")),
)

HINTS: dict[str, str] = {
    "histology": "Histologies outside the algorithm are accepted and reported as out of scope.",
    "size_cm": "Greatest dimension.",
    "metastatic_burden": "Only with distant metastasis M1.",
    "metastatic_sites": "Only with distant metastasis M1.",
    "resectability": (
        "Unresectable includes resection that would leave an unacceptable functional outcome."
    ),
    "progression_extent": "Only when disease status is progressive.",
    "mitotic_rate_per_5mm2": "Equivalent to per 50 high-power fields.",
    "tumour_rupture": "Spontaneous or during surgery.",
    "ntrk_fusion": "Also relevant outside GIST.",
    "resection_status": "After surgery, if any.",
    "ecog": "Performance status on the ECOG scale.",
    "prior_therapies": (
        "Given, e.g. completed adjuvant treatment; neither a failure nor an intolerance."
    ),
    "progressed_on": (
        "Treatment failure: progression or recurrence during, or within 6 months of, the therapy. "
        "Counts as given too."
    ),
    "intolerant_of": "Not tolerated, or must not be given (toxicity, contraindication).",
}

#: ECOG performance status as a choice (a typed number invites typos): the grade and its short
#: meaning.
ECOG_CHOICES = (
    ("0", "0: fully active"),
    ("1", "1: light work only; strenuous activity restricted"),
    ("2", "2: up and about more than half the day; self-care, no work"),
    ("3", "3: in bed or chair more than half the day; limited self-care"),
    ("4", "4: completely disabled; no self-care"),
)

BOOL_CHOICES = (
    ("", "Not tested / unknown"),
    ("true", "Yes / positive"),
    ("false", "No / negative"),
)
EVENT_CHOICES = (("", "Not recorded"), ("true", "Yes"), ("false", "No"))


@dataclass
class FieldSpec:
    name: str
    label: str
    kind: Literal["select", "multi", "number", "integer", "bool"]
    choices: list[tuple[str, str]] = field(default_factory=list)
    unit: str | None = None
    hint: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None


def _literal_values(annotation: Any) -> list[str] | None:
    """The Literal values inside ``X | None`` or ``tuple[X, ...] | None``."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType, tuple):
        for arg in typing.get_args(annotation):
            if arg is type(None) or arg is Ellipsis:
                continue
            vals = _literal_values(arg)
            if vals is not None:
                return vals
    return None


def _is_tuple(annotation: Any) -> bool:
    if typing.get_origin(annotation) is tuple:
        return True
    return any(typing.get_origin(a) is tuple for a in typing.get_args(annotation))


def _base_type(annotation: Any) -> Any:
    for arg in typing.get_args(annotation) or (annotation,):
        if arg is type(None):
            continue
        if typing.get_origin(arg) is typing.Annotated:
            return typing.get_args(arg)[0]
        return arg
    return annotation


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def build_fields(kb: CompiledKB) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for name in FACT_FIELDS:
        info = PatientFacts.model_fields[name]
        ann = info.annotation
        fl = kb.labels.get(name)
        label = _cap(kb.label(name))
        unit = fl.unit if fl else None
        spec = FieldSpec(name, label, "select", unit=unit, hint=HINTS.get(name, ""),
                         required=info.is_required())
        values = _literal_values(ann)
        base = _base_type(ann)
        if values is not None:
            spec.choices = [(v, _cap(kb.value_label(name, v))) for v in values]
            spec.kind = "multi" if _is_tuple(ann) else "select"
        elif base is bool:
            spec.kind = "bool"
            spec.choices = list(EVENT_CHOICES if name == "tumour_rupture" else BOOL_CHOICES)
        elif base is int:
            spec.kind = "integer"
            if name == "ecog":
                spec.choices = list(ECOG_CHOICES)  # rendered as a select, parsed as a whole number
        else:
            spec.kind = "number"
        for m in info.metadata:
            for attr in ("ge", "gt"):
                if getattr(m, attr, None) is not None:
                    spec.minimum = float(getattr(m, attr))
            for attr in ("le", "lt"):
                if getattr(m, attr, None) is not None:
                    spec.maximum = float(getattr(m, attr))
        out[name] = spec
    return out


def facts_from_form(form: Any, fields: dict[str, FieldSpec]) -> dict[str, Any]:
    """Raw contract facts from submitted form data (a Starlette FormData or a dict of lists).

    Values that cannot be converted are passed through as text so the contract's own
    validation names them (one message per field, next to the control).
    """
    def getlist(name: str) -> list[str]:
        if hasattr(form, "getlist"):
            return [str(v) for v in form.getlist(name)]
        v = form.get(name, [])
        return [str(x) for x in (v if isinstance(v, list | tuple) else [v])]

    facts: dict[str, Any] = {}
    for name, spec in fields.items():
        vals = [v.strip() for v in getlist(name) if str(v).strip() != ""]
        if spec.kind == "multi":
            if vals:
                facts[name] = vals
            continue
        if not vals:
            continue
        raw = vals[0]
        if spec.kind == "bool":
            facts[name] = {"true": True, "false": False}.get(raw.lower(), raw)
        elif spec.kind == "number":
            try:
                facts[name] = float(raw.replace(",", "."))
            except ValueError:
                facts[name] = raw
        elif spec.kind == "integer":
            try:
                facts[name] = int(raw)
            except ValueError:
                try:
                    f = float(raw)
                    facts[name] = int(f) if f.is_integer() else f
                except ValueError:
                    facts[name] = raw
        else:
            facts[name] = raw
    return facts


_BOUNDS = (  # the validation library's wording -> plain words
    (re.compile(r"^Input should be greater than or equal to (\S+)$"), "must be {} or more"),
    (re.compile(r"^Input should be less than or equal to (\S+)$"), "must be {} or less"),
    (re.compile(r"^Input should be greater than (\S+)$"), "must be more than {}"),
    (re.compile(r"^Input should be less than (\S+)$"), "must be less than {}"),
    (re.compile(r"^Input should be (.+)$"), "must be {}"),
)


def plain_message(msg: str, labels: dict[str, str] | None = None) -> str:
    """A validation message in clinicians' words: no library phrasing, no internal field ids.

    ``labels`` maps fact names (``disease_status``) to their labels ("disease status").
    """
    for pat, repl in _BOUNDS:
        m = pat.match(msg)
        if m:
            msg = repl.format(m.group(1).rstrip("."))
            break
    for name, label in (labels or {}).items():
        msg = re.sub(rf"\b{re.escape(name)}\b", label, msg)
    return msg.replace("_", " ")


def validate(facts: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Problems by field name ({} when the facts are valid); ``_form`` for whole-form problems.

    Messages are rewritten by :func:`plain_message` (fact names become ``labels``, when given).
    """
    try:
        parse_facts(facts)
    except InvalidFacts as e:
        out: dict[str, list[str]] = {}
        for fld, msg in e.problems:
            key = fld.split(".")[0] if fld.split(".")[0] in FACT_FIELDS else "_form"
            text = plain_message(msg if key != "_form" else f"{fld}: {msg}", labels)
            out.setdefault(key, []).append(text)
        return out
    return {}


def form_values(facts: dict[str, Any]) -> dict[str, list[str]]:
    """Facts back to the strings the form controls hold (for prefilling)."""
    out: dict[str, list[str]] = {}
    for k, v in facts.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = ["true" if v else "false"]
        elif isinstance(v, list | tuple):
            out[k] = [str(x) for x in v]
        elif isinstance(v, float) and v.is_integer():
            out[k] = [str(int(v))]
        else:
            out[k] = [str(v)]
    return out


def facts_query(facts: dict[str, Any]) -> str:
    """URL query string carrying the facts (what-if links, no retyping)."""
    from urllib.parse import urlencode

    pairs: list[tuple[str, str]] = []
    for k, vs in form_values(facts).items():
        pairs.extend((k, v) for v in vs)
    return urlencode(pairs)
