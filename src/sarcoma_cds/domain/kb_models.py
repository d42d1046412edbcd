"""Typed models of the knowledge base files.

The knowledge base (``sarcoma_cds/kb/data``) is the guideline as data; these
models are its schema. Every file is validated against them on load so a
broken file fails with its path and field, never later at a patient.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tier = Literal["first_line", "plus", "consider"]
AppliesTo = Literal["all", "some"]
Line = Literal["primary", "secondary"]
Status = Literal["preferred", "option", "conditional", "caution", "not_recommended"]
SiteFamily = Literal["extremity", "retroperitoneal", "gist"]

_TREATMENT_ID = re.compile(r"^[a-z]+(_[a-z]+)*$")
_GROUP_ID = re.compile(r"^(extremity|retroperitoneal|gist)\.[a-z0-9]+(_[a-z0-9]+)*$")
_DRUG_ID = re.compile(r"^[a-z]+(_[a-z]+)*$")
_REF = re.compile(r"^[0-9]+$")


def source_numbers(v: tuple[str, ...]) -> tuple[str, ...]:
    """References of groups, steps and regimens are the source's reference numbers."""
    for r in v:
        if not _REF.match(r):
            raise ValueError(f"reference {r!r} must be the source's reference number")
    return v


def treatment_id(title: str) -> str:
    """The contract's rule: lower-case the source title, each run of non-letters -> one ``_``."""
    return re.sub(r"[^a-z]+", "_", title.lower()).strip("_")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegimenOption(_Strict):
    """One drug regimen as the source lists it (a list is one combination)."""

    drugs: tuple[str, ...] = Field(min_length=1)
    line: Line = "primary"
    references: tuple[str, ...] = Field(
        default=(), description="source reference numbers that the source ties to this regimen")

    @field_validator("drugs")
    @classmethod
    def _drug_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for d in v:
            if not _DRUG_ID.match(d):
                raise ValueError(f"drug id {d!r} must be lower-case letters and '_'")
        if len(set(v)) != len(v):
            raise ValueError("a drug is listed twice in one combination")
        return v

    @field_validator("references")
    @classmethod
    def _refs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return source_numbers(v)


class Step(_Strict):
    """One step of a pathway: a 1st-line, Plus or Consider treatment."""

    tier: Tier
    title: str = Field(min_length=3, description="the source step title, verbatim (short)")
    label: str = Field(min_length=3, description="display label")
    applies_to: AppliesTo
    rationale: str = Field(min_length=20, description="own-words summary of the source's reasoning")
    references: tuple[str, ...] = ()
    options: tuple[RegimenOption, ...] = ()
    options_cover_step: bool = Field(
        default=False,
        description=(
            "true when the regimens ARE the treatment (a drug-only step): if every regimen "
            "is ruled out, so is the step"
        ),
    )
    modalities: tuple[str, ...] = Field(
        default=(),
        description="local procedures this step includes (e.g. image_guided_ablation, "
                    "embolisation) "
        "so contraindication rules can name them",
    )

    @cached_property
    def treatment(self) -> str:
        """The contract's treatment id, derived from the source title."""
        return treatment_id(self.title)

    @field_validator("references")
    @classmethod
    def _refs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return source_numbers(v)

    @model_validator(mode="after")
    def _tier_applies(self) -> Step:
        if self.tier == "plus" and self.applies_to != "all":
            raise ValueError("a 'plus' step applies to all patients in the group")
        if self.tier == "consider" and self.applies_to != "some":
            raise ValueError("a 'consider' step applies to some patients in the group")
        if self.options_cover_step and not self.options:
            raise ValueError("options_cover_step needs options")
        return self


class Pathway(_Strict):
    """An alternative treatment sequence: one first-line step then its Plus/Consider steps."""

    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _first_line_first(self) -> Pathway:
        tiers = [s.tier for s in self.steps]
        if tiers[0] != "first_line" or "first_line" in tiers[1:]:
            raise ValueError("a pathway starts with exactly one first_line step")
        ids = [s.treatment for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError("a treatment appears twice in one pathway")
        return self


class Group(_Strict):
    """A patient group of the source algorithm."""

    id: str
    label: str
    site: SiteFamily
    source_heading: str = Field(
        description="the group heading as the source gives it (long headings elided with …)"
    )
    order: int = Field(ge=1, le=99, description="position in the source")
    summary: str = Field(min_length=10, description="own-words description of who is in the group")
    references: tuple[str, ...] = ()
    pathways: tuple[Pathway, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _gid(cls, v: str) -> str:
        if not _GROUP_ID.match(v):
            raise ValueError("group id must be '<extremity|retroperitoneal|gist>.<snake_case>'")
        return v

    @model_validator(mode="after")
    def _site_prefix(self) -> Group:
        if not self.id.startswith(self.site + "."):
            raise ValueError(f"group id {self.id!r} must start with its site {self.site!r}")
        return self


# --------------------------------------------------------------------------- rules

class Condition(BaseModel):
    """A node of a condition tree (see docs/kb-authoring.md).

    Exactly one form per node:
    ``{all: [...]}``, ``{any: [...]}``, ``{not: {...}}``, ``{fact: F, in: [...]}``,
    ``{fact: F, eq: v}``, ``{fact: F, gt|ge|lt|le: n}``, ``{fact: F, contains: v}``,
    ``{fact: F, known: bool}``, ``{fact: F, count_ge: n}`` (a list fact with at least n items).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all_: tuple[Condition, ...] | None = Field(default=None, alias="all")
    any_: tuple[Condition, ...] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")
    fact: str | None = None
    in_: tuple[Any, ...] | None = Field(default=None, alias="in")
    eq: Any = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    contains: str | None = None
    known: bool | None = None
    count_ge: int | None = Field(
        default=None, ge=1, description="list facts: at least this many items"
    )
    ref: str | None = Field(default=None, description="a named condition from 'definitions'")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        logical = [x for x in (self.all_, self.any_, self.not_, self.ref) if x is not None]
        tests = [
            k for k in ("in_", "eq", "gt", "ge", "lt", "le", "contains", "known", "count_ge")
            if getattr(self, k) is not None
        ]
        if logical:
            if len(logical) != 1 or self.fact is not None or tests:
                raise ValueError(
                    "a logical node has exactly one of all/any/not/ref and nothing else"
                )
            return self
        if self.fact is None:
            raise ValueError("a condition needs 'fact' or one of all/any/not")
        if len(tests) != 1:
            raise ValueError(
                f"fact {self.fact!r}: exactly one test of in/eq/gt/ge/lt/le/contains/known/count_ge"
            )
        return self


class Ask(_Strict):
    field: str
    why: str = Field(min_length=10)


class WarningSpec(_Strict):
    code: Literal["contraindication", "out_of_guideline", "data_conflict"]
    treatment: str | None = None
    message: str = Field(min_length=10)


class Outcome(_Strict):
    """What a rule does when its condition holds."""

    status: Status | None = None
    reason: str | None = None
    note: str | None = Field(
        default=None, description="added to the target's notes, status unchanged"
    )
    ask: tuple[Ask, ...] = ()
    warning: WarningSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> Outcome:
        if self.status is None and self.note is None and self.warning is None and not self.ask:
            raise ValueError("an outcome needs a status, a note, a warning or an ask")
        if self.status is not None and not self.reason:
            raise ValueError("a status change needs a reason")
        return self


class Case(Outcome):
    when: Condition


class Targets(_Strict):
    steps: tuple[str, ...] = Field(default=(), description="treatment ids")
    step_options: bool = Field(
        default=False, description="also every regimen of the targeted steps"
    )
    modalities: tuple[str, ...] = Field(
        default=(), description="steps that include these procedures"
    )
    options: tuple[tuple[str, ...], ...] = Field(
        default=(), description="drug combinations, in any step"
    )
    drugs: tuple[str, ...] = Field(
        default=(), description="every regimen (in any step) that contains one of these drugs")
    options_of_steps: tuple[str, ...] = Field(
        default=(),
        description="every regimen of these steps (treatment ids), the steps themselves untouched",
    )
    group: bool = Field(default=False, description="the recommendation as a whole (warnings, asks)")

    @model_validator(mode="after")
    def _nonempty(self) -> Targets:
        if not (self.steps or self.options or self.group or self.modalities or self.drugs
                or self.options_of_steps):
            raise ValueError("a rule targets steps, modalities, options, drugs or the group")
        if self.step_options and not self.steps:
            raise ValueError("step_options needs steps")
        return self


class Rule(_Strict):
    """A personalisation rule: cases evaluated in three-valued logic.

    Every case whose condition is true applies (the most restrictive status wins).
    If none is true and some could not be decided, ``unknown`` applies.
    """

    id: str
    description: str = Field(min_length=10)
    references: tuple[str, ...] = Field(min_length=1)
    source: str = Field(default="guideline", description="'guideline' or a named standard")
    groups: tuple[str, ...] = Field(default=(), description="group ids; empty = every group")
    only_if: Condition | None = Field(default=None, description="the rule is skipped unless true")
    targets: Targets
    cases: tuple[Case, ...] = Field(min_length=1)
    unknown: Outcome | None = None


class ScopeRule(_Strict):
    """Facts for which the source gives no pathway (out of scope or a stated gap)."""

    id: str
    when: Condition
    reason: str = Field(min_length=10)
    warning: WarningSpec | None = None
    source: str = "guideline"


class GroupRule(_Strict):
    group: str
    when: Condition


class Assumption(_Strict):
    """An event fact that, when absent, is read as 'did not happen' -- and said so."""

    field: str
    value: Any
    why: str = Field(min_length=10)


class Classification(_Strict):
    site_families: dict[str, str]
    out_of_scope: tuple[ScopeRule, ...]
    gaps: tuple[ScopeRule, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    groups: tuple[GroupRule, ...]
    asks: tuple[Ask, ...] = Field(
        default=(), description="why-texts for facts that decide between candidate groups"
    )


class Rules(_Strict):
    definitions: dict[str, Condition] = {}
    rules: tuple[Rule, ...]


class FactLabel(_Strict):
    label: str
    values: dict[str, str] = {}
    unit: str | None = None


class NamedSource(_Strict):
    """A public source beyond the source algorithm (a drug label, a trial, a guideline)."""

    citation: str = Field(min_length=10)
    kind: Literal["drug_label", "trial", "guideline", "staging", "risk_table"]


_DATE = r"^\d{4}-\d{2}-\d{2}$"


class Approval(_Strict):
    """A person who approved this version for clinical use, in their role, on a date."""

    name: str = Field(min_length=3)
    role: str = Field(min_length=3, description="e.g. chair of the sarcoma guideline committee")
    date: str = Field(pattern=_DATE)


class ChangelogEntry(_Strict):
    """What changed in the content of one version (for clinicians, not developers)."""

    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    date: str = Field(pattern=_DATE)
    changes: tuple[str, ...] = Field(min_length=1)


class GuidelineMeta(_Strict):
    """``guideline.yaml``: identity, version and governance of the knowledge base.

    The governance fields default so that versions archived before they existed still load;
    the release gate (``validate-kb``) requires them (see ``sarcoma_cds.kb.governance``).
    """

    id: Literal["sts-treatment"]
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str
    source: str
    disclaimer: str = Field(min_length=40)
    released: str
    status: Literal["draft", "approved", "retired"] = Field(
        default="draft",
        description="draft: under review; approved: for clinical use; retired: withdrawn",
    )
    approvals: tuple[Approval, ...] = ()
    review_by: str | None = Field(
        default=None, pattern=_DATE, description="date the content is due for review"
    )
    changelog: tuple[ChangelogEntry, ...] = ()

    @model_validator(mode="after")
    def _governance(self) -> GuidelineMeta:
        if self.status == "approved" and not self.approvals:
            raise ValueError("status 'approved' needs at least one entry in approvals")
        if (
            self.review_by is not None
            and re.match(_DATE, self.released)
            and self.review_by <= self.released
        ):
            raise ValueError(f"review_by {self.review_by} must come after released {self.released}")
        versions = [c.version for c in self.changelog]
        if len(set(versions)) != len(versions):
            raise ValueError("changelog: a version has two entries")
        return self


class BibliographyEntry(_Strict):
    """What the source says about one of its reference numbers.

    ``number_only``: the source cites the number but its reference list is not part of the
    material the knowledge base was built from (no citation is invented); ``citation``: the
    reference as the source's list gives it.
    """

    source_gives: Literal["number_only", "citation"] = "number_only"
    citation: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BibliographyEntry:
        if (self.source_gives == "citation") != bool(self.citation):
            raise ValueError("a citation is given exactly when source_gives is 'citation'")
        return self


class Bibliography(_Strict):
    """``bibliography.yaml``: every source reference number the knowledge base cites."""

    note: str = Field(min_length=20)
    references: dict[str, BibliographyEntry]

    @field_validator("references")
    @classmethod
    def _numbers(cls, v: dict[str, BibliographyEntry]) -> dict[str, BibliographyEntry]:
        bad = [k for k in v if not _REF.match(k)]
        if bad:
            raise ValueError(f"reference numbers must be numbers: {bad}")
        return v
