"""The contract's output model: a personalised recommendation.

Field names follow ``spec/contract.md`` exactly; fields added beyond the
contract are marked "extension" and never replace a contract field.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

Status = Literal["preferred", "option", "conditional", "caution", "not_recommended"]
#: The statuses from least to most restrictive: the one place their order is written. When
#: several rules set a status, the most restrictive wins (docs/adr/0007-status-combination.md).
STATUS_ORDER: tuple[Status, ...] = (
    "preferred",
    "option",
    "caution",
    "conditional",
    "not_recommended",
)
#: status -> its rank in STATUS_ORDER
SEVERITY: dict[str, int] = {s: i for i, s in enumerate(STATUS_ORDER)}
WarningCode = Literal["contraindication", "out_of_guideline", "data_conflict"]

_M = TypeVar("_M", bound="_Out")

DISCLAIMER = (
    "Decision support, not an order: these suggestions come from a published treatment "
    "algorithm applied to the facts given. They do not replace the judgement of the treating "
    "team or a sarcoma multidisciplinary tumour board."
)


class _Out(BaseModel):
    # Frozen, with tuples for lists: the engine shares unchanged parts between results.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuidelineRef(_Out):
    id: str
    version: str
    content_hash: str


class GroupRef(_Out):
    id: str
    label: str
    references: tuple[str, ...] = ()  # extension: the group's source reference numbers


class OutOfScope(_Out):
    reason: str


class Stage(_Out):
    system: Literal["AJCC8 trunk and extremities", "AJCC8 retroperitoneum"]
    t: str | None
    n: str | None
    m: str | None
    g: str | None
    group: Literal["IA", "IB", "II", "IIIA", "IIIB", "IV"] | None
    possible_groups: tuple[
        str, ...
    ] = ()  # extension: stage groups still possible when facts are missing


class GistRisk(_Out):
    scheme: Literal["afip_miettinen_2006", "nih_modified_joensuu_2008"]
    category: str
    progression_percent: float | None = None
    basis: str = ""  # extension: the facts and table cell used


class Option(_Out):
    drugs: tuple[str, ...]
    line: Literal["primary", "secondary"]
    status: Status
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    references: tuple[str, ...] = ()  # extension: references of the rules that set the status


class StepOut(_Out):
    tier: Literal["first_line", "plus", "consider"]
    treatment: str
    label: str
    applies_to: Literal["all", "some"]
    status: Status
    reasons: tuple[str, ...]
    rationale: str
    references: tuple[str, ...]
    options: tuple[Option, ...]
    notes: tuple[str, ...] = ()  # extension
    id: str = ""  # extension: stable step id "<group>/<pathway>/<treatment>"


class PathwayOut(_Out):
    steps: tuple[StepOut, ...]
    id: str = ""  # extension: "<group>/<pathway number>"


class MissingInfo(_Out):
    field: str
    why: str


class Warning(_Out):
    code: WarningCode
    treatment: str | None = None
    message: str
    references: tuple[str, ...] = ()  # extension


class AcrossCandidate(_Out):
    """Contract 1.1: a regimen whose status is the same in every candidate group that lists it."""

    drugs: tuple[str, ...]
    status: Status
    groups: tuple[str, ...]
    reasons: tuple[str, ...]


#: The output schema version (contract 1.1 adds ``across_candidates`` and the treatment history).
SCHEMA_VERSION: Literal["1.1"] = "1.1"


class Recommendation(_Out):
    schema_version: Literal["1.1"] = SCHEMA_VERSION
    guideline: GuidelineRef
    patient_group: GroupRef | None
    candidate_groups: tuple[str, ...]
    out_of_scope: OutOfScope | None
    stage: Stage | None
    gist_risk: tuple[GistRisk, ...]
    pathways: tuple[PathwayOut, ...]
    missing_information: tuple[MissingInfo, ...]
    warnings: tuple[Warning, ...]
    explanation: tuple[str, ...]
    #: contract 1.1: always present; [] when a group is pinned or the patient is out of scope
    across_candidates: tuple[AcrossCandidate, ...] = ()
    disclaimer: str = DISCLAIMER  # extension: shown wherever clinicians see the output


def fast(cls: type[_M], **values: object) -> _M:
    """Build a trusted model without validation (the engine's hot path).

    Every field must be given; values come from validated knowledge-base data.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj
