"""Golden cases as data: patients whose expected recommendation a clinician can read and extend.

They live next to the knowledge base (``<kb>/cases/*.yaml``), are part of its content hash and are
run by the release gate (``validate-kb``), so a legitimate guideline edit updates its cases in the
same change, in YAML, instead of breaking hand-written Python tests. A case gives the facts and
what must hold: the group (or ``out_of_scope``, or the candidate groups), statuses of steps and
regimens, warnings and the facts asked for. Whatever a case does not name is not checked.

Status keys: a treatment id (``excision``) is a step; drugs joined by `` + `` (``doxorubicin +
ifosfamide + mesna``, in any order) are a regimen, which must have that status wherever it
appears in the recommendation; ``<treatment id>: <drugs>`` pins the regimen of one step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sarcoma_cds.domain.engine import recommend
from sarcoma_cds.domain.facts import InvalidFacts
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.domain.recommendation import Recommendation

Status = Literal["preferred", "option", "conditional", "caution", "not_recommended"]


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str | None = None
    out_of_scope: bool = False
    candidates: tuple[str, ...] = ()
    statuses: dict[str, Status] = {}
    warnings: tuple[str, ...] = Field(
        default=(), description="warning codes, '<code>: <treatment>' to pin one"
    )
    asks: tuple[str, ...] = Field(default=(), description="facts that must be asked for")


class GoldenCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=10)
    facts: dict[str, Any]
    expect: Expect
    checked_by: str | None = Field(
        default=None, description="who confirmed the expectation against the source"
    )


class StepExpect(BaseModel):
    """One step of a golden pathway, as the source gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: Literal["first_line", "plus", "consider"]
    step: str
    applies_to: Literal["all", "some"]
    references: tuple[str, ...] = ()
    regimens: tuple[str, ...] = Field(
        default=(), description="'a + b' (drugs sorted), '(secondary)' appended"
    )


class CaseFile(BaseModel):
    """A file of golden cases and/or golden pathways (group id -> pathways -> steps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: tuple[GoldenCase, ...] = ()
    pathways: dict[str, tuple[tuple[StepExpect, ...], ...]] = {}


def load_files(root: Path) -> tuple[list[tuple[str, CaseFile]], list[str]]:
    """Every ``<root>/cases/*.yaml`` file, and the problems reading them."""
    out: list[tuple[str, CaseFile]] = []
    problems: list[str] = []
    for path in sorted((root / "cases").glob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        try:
            out.append(
                (rel, CaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))))
            )
        except (yaml.YAMLError, ValidationError) as e:
            problems.append(f"{rel}: {' '.join(str(e).split())}")
    return out, problems


def load_cases(root: Path) -> tuple[list[tuple[str, GoldenCase]], list[str]]:
    """(file, case) pairs from ``<root>/cases/*.yaml``, and the problems reading them."""
    files, problems = load_files(root)
    out = [(rel, c) for rel, f in files for c in f.cases]
    ids = [c.id for _, c in out]
    problems += [
        f"cases/: case id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    return out, problems


def structure(kb: CompiledKB, gid: str) -> tuple[tuple[StepExpect, ...], ...]:
    """A group's pathways in the golden-pathway form."""
    return tuple(
        tuple(
            StepExpect(
                tier=st.tier,
                step=st.treatment,
                applies_to=st.applies_to,
                references=st.references,
                regimens=tuple(
                    " + ".join(sorted(o.drugs)) + (" (secondary)" if o.line == "secondary" else "")
                    for o in st.options
                ),
            )
            for st in pw.steps
        )
        for pw in kb.groups[gid].pathways
    )


def check_pathways(
    kb: CompiledKB, rel: str, golden: dict[str, tuple[tuple[StepExpect, ...], ...]]
) -> list[str]:
    """Each group's pathways against the golden ones: the first difference of each pathway, in
    words."""
    out: list[str] = []
    for gid, want in golden.items():
        if gid not in kb.groups:
            out.append(f"{rel}: group {gid}: not in the knowledge base")
            continue
        have = structure(kb, gid)
        if len(have) != len(want):
            out.append(
                f"{rel}: group {gid}: expected {len(want)} pathways, the group has {len(have)}"
            )
        for pi, (h, w) in enumerate(zip(have, want, strict=False), start=1):
            if h == w:
                continue
            if [x.step for x in h] != [x.step for x in w]:
                out.append(
                    f"{rel}: group {gid}: pathway {pi}: expected steps {[x.step for x in w]}, "
                    f"the group has {[x.step for x in h]}"
                )
                continue
            for x, y in zip(h, w, strict=True):
                for f in ("tier", "applies_to", "references", "regimens"):
                    if getattr(x, f) != getattr(y, f):
                        listed = f in ("references", "regimens")
                        want_v = list(getattr(y, f)) if listed else getattr(y, f)
                        have_v = list(getattr(x, f)) if listed else getattr(x, f)
                        out.append(
                            f"{rel}: group {gid}: pathway {pi} step {x.step}: {f}: expected "
                            f"{want_v}, the group has {have_v}"
                        )
    out += [
        f"{rel}: group {g}: no golden pathways" for g in kb.groups if golden and g not in golden
    ]
    return out


def _statuses(rec: Recommendation) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pw in rec.pathways:
        for st in pw.steps:
            found.setdefault(st.treatment, set()).add(st.status)
            for op in st.options:
                drugs = " + ".join(sorted(op.drugs))
                found.setdefault(drugs, set()).add(op.status)
                found.setdefault(f"{st.treatment}: {drugs}", set()).add(op.status)
    return found


def _key(k: str) -> str:
    """A status key with its drugs in sorted order (``b + a`` and ``a + b`` name one regimen)."""
    head, sep, body = k.rpartition(": ")
    drugs = " + ".join(sorted(d.strip() for d in body.split("+")))
    return f"{head}: {drugs}" if sep else drugs


def check_case(kb: CompiledKB, case: GoldenCase) -> list[str]:
    """What differs from the case's expectation (empty: the case passes)."""
    try:
        rec = recommend(kb, case.facts)
    except InvalidFacts as e:
        return [f"facts: {f}: {m}" for f, m in e.problems]
    ex = case.expect
    out: list[str] = []
    group = rec.patient_group.id if rec.patient_group else None
    if ex.out_of_scope != (rec.out_of_scope is not None):
        out.append(f"out_of_scope: expected {ex.out_of_scope}, got {rec.out_of_scope is not None}")
    if ex.group != group:
        out.append(f"group: expected {ex.group}, got {group}")
    if ex.candidates and set(ex.candidates) != set(rec.candidate_groups):
        out.append(
            f"candidates: expected {sorted(ex.candidates)}, got {sorted(rec.candidate_groups)}"
        )
    found = _statuses(rec)
    for k, want in ex.statuses.items():
        got = found.get(_key(k))
        if got is None:
            out.append(f"statuses: {k}: not in the recommendation")
        elif got != {want}:
            out.append(f"statuses: {k}: expected {want}, got {' / '.join(sorted(got))}")
    codes = {w.code for w in rec.warnings} | {
        f"{w.code}: {w.treatment}" for w in rec.warnings if w.treatment
    }
    out += [f"warnings: expected {w}, none given" for w in ex.warnings if w not in codes]
    asked = {m.field for m in rec.missing_information}
    out += [f"asks: expected {a} to be asked, it is not" for a in ex.asks if a not in asked]
    return out


def run_cases(kb: CompiledKB, root: Path) -> tuple[int, list[str]]:
    """(number of cases and golden groups, problems ``cases/<file>: case <id>: <what>``)."""
    cases, problems = load_cases(root)
    for rel, case in cases:
        problems += [f"{rel}: case {case.id}: {p}" for p in check_case(kb, case)]
    files, _ = load_files(root)
    for rel, f in files:
        problems += check_pathways(kb, rel, f.pathways)
    return len(cases) + sum(len(f.pathways) for _, f in files), problems
