"""Recommendation-level impact of a guideline change: what each patient is *recommended* under
two knowledge bases, compared item by item (ADR 0308).

The concordance comparison (:func:`sarcoma_cds.cohort.impact.compare`) only sees the treatment a
patient was given: a status flip on a regimen nobody received changes nothing there. A guideline
committee needs the opposite view: whose advice changes, how, and because of which rule. Each
valid patient is run through the per-patient engine (:func:`sarcoma_cds.domain.engine.recommend`)
under both versions, and the full personalised recommendation is compared: the group (or
candidate groups, or out of scope), the status of every step and regimen, the warnings and the
questions asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.domain.engine import recommend
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.domain.recommendation import Recommendation

#: example patient ids kept per change (the counts are exact)
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Flat:
    """The comparable content of one recommendation."""

    group: str
    items: dict[str, str]  # "<pathway>/<treatment>[/<drugs>]" -> status
    warnings: frozenset[str]
    questions: frozenset[str]


@dataclass
class ChangeRow:
    """One kind of change (e.g. a regimen's status preferred -> option in one group) and its
    patients."""

    kind: str  # group | status | warning | question
    group: str
    item: str
    old: str
    new: str
    patients: int = 0
    examples: list[str] = field(default_factory=list)
    rules: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "item": self.item,
            "old": self.old,
            "new": self.new,
            "patients": self.patients,
            "examples": self.examples,
            "rules": list(self.rules),
        }


@dataclass
class Impact:
    """Per-change counts between two knowledge-base versions on one cohort."""

    old_version: str
    new_version: str
    old_hash: str
    new_hash: str
    patients: int = 0
    changed: int = 0
    changed_ids: list[str] = field(default_factory=list)
    by_group: dict[str, int] = field(default_factory=dict)
    rows: list[ChangeRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"from_version": self.old_version, "to_version": self.new_version,
                "from_content_hash": self.old_hash, "to_content_hash": self.new_hash,
                "patients": self.patients, "patients_changed": self.changed,
                "share_changed": (self.changed / self.patients) if self.patients else 0.0,
                "by_group": self.by_group, "changes": [r.as_dict() for r in self.rows]}


def flatten(rec: Recommendation) -> Flat:
    """Group, every step and regimen status, warnings and questions of one recommendation."""
    if rec.patient_group is not None:
        group = rec.patient_group.id
    elif rec.out_of_scope is not None:
        group = "(out of scope)"
    else:
        group = "(undecided: " + " | ".join(rec.candidate_groups) + ")"
    items: dict[str, str] = {}
    for pi, pw in enumerate(rec.pathways, start=1):
        for st in pw.steps:
            items[f"{pi}/{st.treatment}"] = st.status
            for op in st.options:
                items[f"{pi}/{st.treatment}/{'+'.join(sorted(op.drugs))}"] = op.status
    warnings = frozenset(
        f"{w.code}" + (f" ({w.treatment})" if w.treatment else "") for w in rec.warnings
    )
    return Flat(group, items, warnings, frozenset(m.field for m in rec.missing_information))


def differences(old: Flat, new: Flat) -> list[tuple[str, str, str, str, str]]:
    """(kind, group, item, old, new) for everything that differs; the group is the new one."""
    out: list[tuple[str, str, str, str, str]] = []
    if old.group != new.group:
        out.append(("group", new.group, "", old.group, new.group))
        return out  # (another group: its steps are not comparable item by item)
    for key in sorted(set(old.items) | set(new.items)):
        a, b = old.items.get(key, "-"), new.items.get(key, "-")
        if a != b:
            out.append(("status", new.group, key, a, b))
    out += [("warning", new.group, w, "-", "new") for w in sorted(new.warnings - old.warnings)]
    out += [("warning", new.group, w, "lost", "-") for w in sorted(old.warnings - new.warnings)]
    out += [("question", new.group, q, "-", "asked") for q in sorted(new.questions - old.questions)]
    out += [("question", new.group, q, "asked", "-") for q in sorted(old.questions - new.questions)]
    return out


def _item_rules(kb: CompiledKB) -> dict[tuple[str, str], set[str]]:
    """(group, item key) -> ids of the personalisation rules that target that item there."""
    out: dict[tuple[str, str], set[str]] = {}
    for gid, bound in kb.bound.items():
        g = kb.groups[gid]
        for br in bound:
            keys = [f"{pi + 1}/{g.pathways[pi].steps[si].treatment}" for pi, si in br.steps]
            for pi, si, oi in br.options:
                st = g.pathways[pi].steps[si]
                keys.append(f"{pi + 1}/{st.treatment}/{'+'.join(sorted(st.options[oi].drugs))}")
            for k in keys:
                out.setdefault((gid, k), set()).add(br.rule.id)
    return out


def responsible(old: CompiledKB, new: CompiledKB) -> Callable[[str, str, str], tuple[str, ...]]:
    """A function naming the rules behind a change, where that is determinable: the rules
    targeting the item that differ between the versions (added, removed or edited); for a group
    move, the changed classification rules of the two groups."""
    orules = {r.id: r for r in old.data.rules.rules}
    nrules = {r.id: r for r in new.data.rules.rules}
    edited = {rid for rid in set(orules) | set(nrules) if orules.get(rid) != nrules.get(rid)}
    targets_old, targets_new = _item_rules(old), _item_rules(new)
    ocls = {gr.group: gr.when for gr in old.data.classification.groups}
    ncls = {gr.group: gr.when for gr in new.data.classification.groups}

    def why(kind: str, group: str, item: str) -> tuple[str, ...]:
        if kind == "group":
            return (f"classification: {group}",) if ocls.get(group) != ncls.get(group) else ()
        if kind != "status":
            return tuple(
                sorted(
                    edited
                    & {br.rule.id for br in (*old.bound.get(group, ()), *new.bound.get(group, ()))}
                )
            )
        hit = (
            targets_old.get((group, item), set()) | targets_new.get((group, item), set())
        ) & edited
        if hit:
            return tuple(sorted(hit))
        return ("group content",) if _group_changed(old, new, group) else ()

    return why


def _group_changed(old: CompiledKB, new: CompiledKB, gid: str) -> bool:
    return old.groups.get(gid) != new.groups.get(gid)


def impact(facts: Iterable[tuple[str, dict[str, Any]]], old: CompiledKB, new: CompiledKB,
           progress: Callable[[int], None] | None = None) -> Impact:
    """Compare every patient's recommendation under ``old`` and ``new``.

    ``facts``: (patient id, contract facts) of valid patients (invalid ones are the concordance
    run's concern). Exact: every patient is evaluated under both versions.
    """
    out = Impact(old.version, new.version, old.content_hash, new.content_hash)
    rows: dict[tuple[str, str, str, str, str], ChangeRow] = {}
    why = responsible(old, new)
    for n, (pid, f) in enumerate(facts, start=1):
        out.patients += 1
        a, b = flatten(recommend(old, f)), flatten(recommend(new, f))
        diff = differences(a, b)
        if progress is not None and n % 1000 == 0:
            progress(n)
        if not diff:
            continue
        out.changed += 1
        if len(out.changed_ids) < 100_000:
            out.changed_ids.append(pid)
        out.by_group[b.group] = out.by_group.get(b.group, 0) + 1
        for key in diff:
            row = rows.get(key)
            if row is None:
                kind, group, item, o, nw = key
                row = rows[key] = ChangeRow(
                    *key,
                    rules=why(kind, group, item) if kind != "group" else _group_why(why, o, nw),
                )
            row.patients += 1
            if len(row.examples) < EXAMPLES:
                row.examples.append(pid)
    out.rows = sorted(rows.values(), key=lambda r: (-r.patients, r.kind, r.group, r.item))
    out.by_group = dict(sorted(out.by_group.items(), key=lambda kv: -kv[1]))
    return out


def _group_why(
    why: Callable[[str, str, str], tuple[str, ...]], old_group: str, new_group: str
) -> tuple[str, ...]:
    return tuple(sorted(set(why("group", new_group, "")) | set(why("group", old_group, ""))))


def cohort_facts(cohort: Any) -> list[tuple[str, dict[str, Any]]]:
    """(patient id, contract facts) of every valid row of a cohort file or normalised frame."""
    import polars as pl

    from sarcoma_cds.cohort.io import facts_dict, normalise, read_raw

    if not isinstance(cohort, pl.DataFrame):
        cohort = read_raw(cohort)
    norm = (
        cohort if "_err" in cohort.columns else normalise(cohort)
    )  # (a run's rows are normalised already)
    valid = norm.filter(pl.col("_err").list.len() == 0)
    return [(str(r["patient_id"]), facts_dict(r)) for r in valid.iter_rows(named=True)]
