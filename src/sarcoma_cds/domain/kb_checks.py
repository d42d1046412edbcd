"""Release-gate checks that look at the knowledge base as a whole, beyond one field at a time.

``compile_kb`` calls these after the typed models have accepted every file. Each message names
the file, the group or rule by its id (never a list position the author has to count), the
field, and -- for a near miss -- what the author probably meant, so one run of ``validate-kb``
lists every slip with its fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from sarcoma_cds.domain.kb_models import Bibliography, Condition, Group, Rule

RULES_FILE = "rules/personalisation.yaml"
CLASSIFICATION_FILE = "rules/classification.yaml"
DEFINITIONS_FILE = "rules/definitions.yaml"


def did_you_mean(word: object, candidates: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate (difflib), or ``""`` when none is
    close."""
    pool = sorted({str(c) for c in candidates})
    close = difflib.get_close_matches(str(word), pool, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def group_file(gid: str, files: Iterable[str]) -> str:
    """The file a group is defined in (``groups/NN-<id>.yaml``), for messages."""
    return next(
        (f for f in files if f.startswith("groups/") and f.endswith(f"{gid}.yaml")), "groups/"
    )


def duplicate_regimens(groups: Iterable[Group], files: Iterable[str]) -> list[str]:
    """A regimen (the same set of drugs) listed twice in one step: one of them is a slip."""
    files = tuple(files)
    out: list[str] = []
    for g in groups:
        for pi, pw in enumerate(g.pathways, start=1):
            for st in pw.steps:
                seen: set[frozenset[str]] = set()
                for op in st.options:
                    key = frozenset(op.drugs)
                    if key in seen:
                        out.append(
                            f"{group_file(g.id, files)}: group {g.id}: pathway {pi} step "
                            f"{st.treatment}: "
                            f"options: regimen {'+'.join(sorted(op.drugs))} is listed twice"
                        )
                    seen.add(key)
    return out


def case_conflicts(rule: Rule) -> list[str]:
    """Two cases of one rule with the same condition: a duplicate, or a contradiction when their
    statuses differ (both would apply and the stricter would silently win)."""
    out: list[str] = []
    first: dict[Condition, int] = {}
    for i, case in enumerate(rule.cases, start=1):
        j = first.setdefault(case.when, i)
        if j == i:
            continue
        other = rule.cases[j - 1]
        if other.status != case.status:
            out.append(
                f"{RULES_FILE}: rule {rule.id}: cases: case {i} has the same condition as case {j} "
                f"but status {case.status} instead of {other.status} (contradictory cases)"
            )
        else:
            out.append(
                f"{RULES_FILE}: rule {rule.id}: cases: case {i} repeats the condition of case {j} "
                "(duplicate case)"
            )
    return out


def refs_of(
    c: Condition, defs: Mapping[str, Condition], seen: frozenset[str] = frozenset()
) -> set[str]:
    """Every definition a condition uses, directly or through other definitions."""
    out: set[str] = set()
    if c.ref is not None:
        out.add(c.ref)
        if c.ref in defs and c.ref not in seen:
            out |= refs_of(defs[c.ref], defs, seen | {c.ref})
    for kid in (*(c.all_ or ()), *(c.any_ or ()), *((c.not_,) if c.not_ else ())):
        out |= refs_of(kid, defs, seen)
    return out


def reference_problems(groups: Iterable[Group], rules: Iterable[Rule], bibliography: Bibliography,
                       files: Iterable[str]) -> list[str]:
    """Every source reference number cited (group, step, regimen, rule) must be in the bibliography,
    so a reviewer can follow each one; a mistyped number is caught here."""
    known = bibliography.references
    files = tuple(files)

    def missing(refs: Iterable[str], where: str) -> list[str]:
        return [
            f"{where}: references: reference number {r!r} is not in bibliography.yaml"
            + did_you_mean(r, known)
            for r in refs
            if r.isdigit() and r not in known
        ]

    out: list[str] = []
    for g in groups:
        here = f"{group_file(g.id, files)}: group {g.id}"
        out += missing(g.references, here)
        for pi, pw in enumerate(g.pathways, start=1):
            for st in pw.steps:
                out += missing(st.references, f"{here}: pathway {pi} step {st.treatment}")
                for op in st.options:
                    out += missing(op.references, f"{here}: pathway {pi} step {st.treatment}: "
                                                  f"regimen {'+'.join(op.drugs)}")
    for rule in rules:
        out += missing(rule.references, f"{RULES_FILE}: rule {rule.id}")
    return out
