"""The engine: patient facts -> stage, GIST risk, patient group, personalised pathways.

One pass per patient over closures compiled from the knowledge base
(:mod:`sarcoma_cds.domain.knowledge`). Pure: no I/O, no clock, no randomness, so the
same facts and knowledge base always give the same recommendation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sarcoma_cds.domain.facts import FACT_FIELDS, UNKNOWN_VALUES, PatientFacts, parse_facts
from sarcoma_cds.domain.kb_models import Group, Outcome, Step
from sarcoma_cds.domain.knowledge import DERIVED_FROM, SEVERITY, BoundRule, CompiledKB
from sarcoma_cds.domain.recommendation import (
    DISCLAIMER,
    SCHEMA_VERSION,
    AcrossCandidate,
    GistRisk,
    GroupRef,
    GuidelineRef,
    MissingInfo,
    Option,
    OutOfScope,
    PathwayOut,
    Recommendation,
    Stage,
    StepOut,
    Warning,
    fast,
)

_STATUS_WORDS = {
    "preferred": "preferred", "option": "an option", "conditional": "conditional",
    "caution": "to be used with caution", "not_recommended": "not recommended",
}


class _Verdict(NamedTuple):
    """One rule's status for one step or regimen (hashable: part of memo keys)."""

    severity: int
    status: str
    reason: str
    references: tuple[str, ...]
    rule_id: str


class Classified(NamedTuple):
    """What classification found for a view (memoised per distinct view)."""

    kind: str  # group | candidates | conflict | scope | gap | nomatch
    ids: tuple[str, ...]
    reason: str | None
    asks: tuple[tuple[str, str], ...]
    warnings: tuple[Warning, ...]
    lines: tuple[str, ...]


class Personalised(NamedTuple):
    """A group's personalised pathways with what the rules added to the answer."""

    pathways: tuple[PathwayOut, ...]
    lines: tuple[str, ...]
    asks: tuple[tuple[str, str], ...]
    warnings: tuple[Warning, ...]


@dataclass(slots=True)
class _Mark:
    """Statuses, reasons and notes collected for one step or regimen."""

    statuses: list[_Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def status(self) -> str:
        if not self.statuses:
            return "option"
        return max(self.statuses, key=lambda v: v.severity).status

    def reasons(self, ruled_out: bool = False) -> list[str]:
        """Reasons, most restrictive first. When the regimen is ruled out (by its own verdicts,
        or, for a step, by ``ruled_out``: every regimen of it is), the reasons that argued for it
        (preferred/option) are left out: an item never shows reasons that contradict."""
        ordered = sorted(self.statuses, key=lambda v: -v.severity)
        ruled_out = ruled_out or (bool(ordered) and ordered[0].status == "not_recommended")
        seen: list[str] = []
        for v in ordered:
            if ruled_out and v.status in ("preferred", "option"):
                continue
            if v.reason not in seen:
                seen.append(v.reason)
        return seen

    def references(self) -> list[str]:
        refs: list[str] = []
        for v in self.statuses:
            for x in v.references:
                if x not in refs:
                    refs.append(x)
        return refs


@dataclass(slots=True)
class _Context:
    kb: CompiledKB
    view: dict[str, Any]
    missing: dict[str, str] = field(default_factory=dict)
    warnings: list[Warning] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)

    def ask(self, fieldname: str, why: str) -> None:
        if fieldname not in self.missing:
            self.missing[fieldname] = why

    def warn(self, w: Warning) -> None:
        if all(
            (x.code, x.treatment, x.message) != (w.code, w.treatment, w.message)
            for x in self.warnings
        ):
            self.warnings.append(w)


def build_view(kb: CompiledKB, facts: PatientFacts) -> tuple[dict[str, Any], list[str]]:
    """Facts as rules read them: 'unknown' values as absent, stated assumptions, derived facts."""
    view: dict[str, Any] = dict(facts.__dict__)
    for name, unknown in UNKNOWN_VALUES.items():
        if view[name] == unknown:
            view[name] = None
    assumed: list[str] = []
    for name, value, _why in kb.assumptions:
        if view[name] is None:
            view[name] = value
            assumed.append(name)
    view["site_family"] = kb.site_families.get(facts.primary_site)
    view["stage_group"] = None
    view["gist_risk_nih"] = None
    view["gist_risk_afip"] = None
    return view, assumed


def evaluation_view(kb: CompiledKB, facts: PatientFacts) -> dict[str, Any]:
    """The full view the rules read (assumptions applied, stage or GIST risk derived).

    For tests and tools that evaluate rules directly; ``recommend`` builds the same view.
    """
    view, _ = build_view(kb, facts)
    if facts.histology == "gist":
        _gist_risk(kb, facts, view, [])
    else:
        _stage(kb, facts, view, [])
    return view


def recommend(kb: CompiledKB, raw: Any) -> Recommendation:
    """Personalised recommendation for one patient. Raises ``InvalidFacts`` on bad input."""
    facts = parse_facts(raw)
    view, assumed = build_view(kb, facts)
    ctx = _Context(kb, view)
    guideline = kb.output_cache.get(("guideline",))
    if guideline is None:
        guideline = kb.output_cache.put(
            ("guideline",),
            fast(
                GuidelineRef, id=kb.data.meta.id, version=kb.version, content_hash=kb.content_hash
            ),
            fixed=True,
        )

    derived_lines: list[str] = []
    if facts.histology == "gist":
        stage, risks = None, _gist_risk_cached(kb, facts, view, derived_lines)
    else:
        stage, risks = _stage_cached(kb, facts, view, derived_lines), []

    cls = _classify_cached(kb, view, assumed)
    kind, ids, reason, asks, warnings, lines = cls
    if kind == "scope":  # out of scope: no stage or risk is reported
        stage, risks = None, []
    else:
        ctx.explanation.extend(derived_lines)
    ctx.explanation.extend(lines)
    for f, why in asks:
        ctx.ask(f, why)
    for w in warnings:
        ctx.warn(w)
    oos = fast(OutOfScope, reason=reason) if reason is not None else None
    if kind != "group":
        cands = list(ids) if kind in ("candidates", "conflict") else []
        across = _across_candidates(kb, cands, view) if cands else ()
        return _result(kb, guideline, None, cands, oos, stage, risks, [], ctx, facts, across)
    gid = ids[0]
    group = kb.groups[gid]
    tables = kb.data.gist_risk
    if risks and tables.outside_note and gid not in tables.applies_to_groups:
        ctx.explanation.append(" ".join(tables.outside_note.split()))
    pathways = _personalise(kb, group, ctx)
    ref = kb.output_cache.get(("group-ref", gid))
    if ref is None:
        ref = kb.output_cache.put(("group-ref", gid), fast(
            GroupRef, id=gid, label=group.label, references=tuple(group.references)), fixed=True)
    return _result(kb, guideline, ref, [], None, stage, risks, pathways, ctx, facts)


def _classify_cached(kb: CompiledKB, view: dict[str, Any], assumed: list[str]) -> Classified:
    """Classification reads a few facts (numbers only through their rule thresholds): memoised on
    them."""
    key = ("cls", tuple(assumed), tuple([view[f] is None for f in _DERIVED_INPUTS]),
           kb.classification_key.key(view))
    hit = kb.output_cache.get(key)
    if hit is None:
        ctx = _Context(kb, view)
        kind, ids, reason = _classify(kb, ctx, assumed)
        hit = Classified(kind, ids, reason, tuple(ctx.missing.items()), tuple(ctx.warnings),
                         tuple(ctx.explanation))
        kb.output_cache.put(key, hit)
    return hit


_DERIVED_INPUTS = tuple(sorted({f for v in DERIVED_FROM.values() for f in v}))


def _classify(
    kb: CompiledKB, ctx: _Context, assumed: list[str]
) -> tuple[str, tuple[str, ...], str | None]:
    """Out of scope, one group, candidate groups or a stated gap -- in three-valued logic."""
    view = ctx.view
    ex = ctx.explanation
    undecided: list[str] = []
    for sc in kb.scope_for(view["histology"], view["primary_site"]):
        r = sc.test.test(view)
        if r is True:
            ex.append(f"Out of scope: {' '.join(sc.rule.reason.split())}")
            if sc.rule.warning:
                ctx.warn(
                    _warning(
                        sc.rule.warning.code, sc.rule.warning.treatment, sc.rule.warning.message, ()
                    )
                )
            return "scope", (), " ".join(sc.rule.reason.split())
        if r is None:
            undecided.extend(f for f in FACT_FIELDS if f in sc.test.unknown_fields(view))
    if (
        undecided
    ):  # e.g. age not given: the adult-only scope cannot be checked -- say so, do not hide it
        ex.append(
            "Not given, so the scope check on "
            + ", ".join(kb.label(f) for f in dict.fromkeys(undecided))
            + " could not be made; the source covers adults with soft-tissue sarcoma or GIST."
        )

    trues: list[str] = []
    unknown: list[str] = []
    results: dict[str, bool | None] = {}
    group_rules = kb.group_rules_for(view["histology"], view["primary_site"])
    for gid, test in group_rules:
        r = test.test(view)
        results[gid] = r
        if r is True:
            trues.append(gid)
        elif r is None:
            unknown.append(gid)

    gaps_unknown = [g for g in kb.gaps if g.test.test(view) is None] if not trues else []
    if len(trues) > 1:  # the rule-set test forbids this; kept as a safe failure mode
        ctx.warn(_warning("data_conflict", None, "The facts match more than one patient group: "
                          + ", ".join(trues) + ". No group is chosen.", ()))
        return "conflict", tuple(trues), None
    if not trues and len(unknown) == 1 and not gaps_unknown:
        # Sound inference: every completion of the facts lands in exactly one group or gap
        # (proved by the rule-set test), and all groups but this one are already excluded.
        trues = unknown
        ex.append(
            "Some facts are missing, but every value they could take leads to the same group."
        )
    if not trues:
        for gap in kb.gaps:
            if gap.test.test(view) is True:
                reason = " ".join(gap.rule.reason.split())
                ex.append(f"No pathway in the source: {reason}")
                if gap.rule.warning:
                    ctx.warn(_warning(gap.rule.warning.code, None, gap.rule.warning.message, ()))
                return "gap", (), reason
        if not unknown:
            reason = "No patient group of the source matches these facts."
            ctx.warn(_warning("out_of_guideline", None, reason, ()))
            return "nomatch", (), reason
        deciding: set[str] = set()
        for gid, test in group_rules:
            if gid in unknown:
                deciding |= _raw_fields(test.unknown_fields(view), view)
        for gap in gaps_unknown:
            deciding |= _raw_fields(gap.test.unknown_fields(view), view)
        for name in FACT_FIELDS:
            if name in deciding:
                ctx.ask(
                    name,
                    " ".join(
                        kb.class_asks.get(
                            name, f"Needed to choose between {', '.join(unknown)}."
                        ).split()
                    ),
                )
        ex.append("The facts do not pin one patient group; possible groups: " + ", ".join(unknown)
                  + ". Missing: " + ", ".join(f for f in FACT_FIELDS if f in deciding) + ".")
        _assumption_asks(kb, ctx, assumed, results)
        return "candidates", tuple(unknown), None

    gid = trues[0]
    group = kb.groups[gid]
    used = _group_facts(kb, gid)
    facts_text = "; ".join(
        f"{kb.label(f)}: {kb.value_label(f, view[f])}" + (" (assumed)" if f in assumed else "")
        for f in used if view[f] is not None
    )
    ex.append(f"Patient group '{group.label}' because of {facts_text}.")
    _assumption_asks(kb, ctx, assumed, results)
    return "group", (gid,), None


def _group_facts(kb: CompiledKB, gid: str) -> tuple[str, ...]:
    """Facts read by a group's rule, in contract order, derived stage included (memoised)."""
    key = ("group-facts", gid)
    hit = kb.output_cache.get(key)
    if hit is None:
        test = dict(kb.group_rules)[gid]
        order = (*FACT_FIELDS[:2], "stage_group", *FACT_FIELDS[2:])
        read = set(test.fields) | ({"primary_site"} if "site_family" in test.fields else set())
        hit = tuple(f for f in order if f in read and f not in ("size_cm",))
        kb.output_cache.put(key, hit, fixed=True)
    return hit


def _assumption_asks(
    kb: CompiledKB, ctx: _Context, assumed: list[str], results: dict[str, bool | None]
) -> None:
    """Report an assumed fact only when it mattered: without it some group rule would answer
    differently."""
    view = ctx.view
    for name, value, why in kb.assumptions:
        if name not in assumed:
            continue
        view[name] = None
        changed = any(
            t.test(view) is not results[gid]
            for gid, t in kb.group_rules_for(view["histology"], view["primary_site"])
            if name in t.fields
        )
        view[name] = value
        if changed:
            ctx.ask(name, " ".join(why.split()))
            ctx.explanation.append(
                f"{kb.label(name).capitalize()} not given: read as {kb.value_label(name, value)}.")


def _raw_fields(fields: frozenset[str] | set[str], view: dict[str, Any] | None) -> set[str]:
    """Contract facts behind (possibly derived) fields; with ``view``, only those not given."""
    out: set[str] = set()
    for f in fields:
        out |= set(DERIVED_FROM.get(f, (f,)))
    if view is not None:
        out = {f for f in out if view.get(f) is None}
    return out


def _stage_cached(
    kb: CompiledKB, facts: PatientFacts, view: dict[str, Any], ex: list[str]
) -> Stage | None:
    """Staging is a pure function of five facts: memoised on them."""
    system = kb.stager.system_for(facts.primary_site)
    if system is None:
        return None
    size = facts.size_cm
    t = kb.stager.t_category(system, size)
    key = ("stage", facts.primary_site, t, facts.nodes, facts.metastasis, facts.grade)
    hit = kb.output_cache.get(key)
    if hit is None:
        lines: list[str] = []
        tmp: dict[str, Any] = {"stage_group": None}
        st = _stage(kb, facts, tmp, lines)
        size_text = f"size {size:g} cm" if size is not None else None
        templates = tuple(
            ln.replace(size_text, "size \x00 cm") if size_text else ln for ln in lines
        )
        hit = (st, tmp["stage_group"], templates)
        kb.output_cache.put(key, hit)
    st, view["stage_group"], templates = hit
    if size is None:
        ex.extend(templates)
    else:
        size_s = f"{size:g}"
        ex.extend(ln.replace("\x00", size_s) for ln in templates)
    return st


def _gist_risk_cached(
    kb: CompiledKB, facts: PatientFacts, view: dict[str, Any], ex: list[str]
) -> list[GistRisk]:
    """GIST risk is a pure function of four facts: memoised on them."""
    key = ("risk", kb.risk.band_key(facts.primary_site, facts.size_cm, facts.mitotic_rate_per_5mm2),
           view["tumour_rupture"])
    hit = kb.output_cache.get(key)
    if hit is None:
        lines: list[str] = []
        tmp: dict[str, Any] = {"tumour_rupture": view["tumour_rupture"]}
        risks = _gist_risk(kb, facts, tmp, lines)
        hit = (tuple(risks), tmp["gist_risk_afip"], tmp["gist_risk_nih"], tuple(lines))
        kb.output_cache.put(key, hit)
    risks_t, view["gist_risk_afip"], view["gist_risk_nih"], lines_t = hit
    ex.extend(lines_t)
    return list(risks_t)


def _stage(
    kb: CompiledKB, facts: PatientFacts, view: dict[str, Any], ex: list[str]
) -> Stage | None:
    res = kb.stager.stage(
        facts.primary_site, facts.size_cm, facts.nodes, facts.metastasis, facts.grade
    )
    if res is None:
        return None
    view["stage_group"] = res.group if res.group is not None else res.possible
    parts = [
        f"size {facts.size_cm:g} cm -> {res.t}"
        if facts.size_cm is not None
        else "size unknown -> T not known",
        f"nodes {facts.nodes}" + (" (staged as N0)" if facts.nodes == "NX" else "")
        if facts.nodes
        else "nodes unknown",
        f"metastasis {facts.metastasis}" if facts.metastasis else "metastasis unknown",
        f"grade {facts.grade} -> {res.g}" + (" (staged as G1)" if facts.grade == "X" else "")
        if facts.grade
        else "grade unknown",
    ]
    if res.group:
        ex.append(f"{res.system}: " + ", ".join(parts) + f": stage {res.group}.")
    else:
        ex.append(f"{res.system}: " + ", ".join(parts) + ": stage not pinned; possible "
                  + ", ".join(sorted(res.possible)) + ".")
    return fast(Stage, system=res.system, t=res.t, n=res.n, m=res.m, g=res.g, group=res.group,
                possible_groups=tuple(sorted(res.possible)))


def _gist_risk(
    kb: CompiledKB, facts: PatientFacts, view: dict[str, Any], ex: list[str]
) -> list[GistRisk]:
    site = facts.primary_site
    afip = kb.risk.afip_risk(site, facts.size_cm, facts.mitotic_rate_per_5mm2)
    nih = kb.risk.nih_risk(site, facts.size_cm, facts.mitotic_rate_per_5mm2, view["tumour_rupture"])
    view["gist_risk_afip"] = afip.category if afip.category is not None else afip.possible
    view["gist_risk_nih"] = nih.category if nih.category is not None else nih.possible
    out: list[GistRisk] = []
    if afip.category is not None:
        # 'insufficient_data' only where the study has no data (an empty cell, or a site without
        # a column); a missing fact gives no category (the fact is asked where it matters)
        out.append(fast(GistRisk, scheme=afip.scheme, category=afip.category,
                        progression_percent=afip.progression_percent, basis=afip.basis))
        pct = (
            f", {afip.progression_percent:g}% progression in the study"
            if afip.progression_percent is not None
            else ""
        )
        ex.append(
            f"GIST risk, AFIP (Miettinen & Lasota 2006): {afip.category.replace('_', ' ')}{pct} "
            f"({afip.basis})."
        )
    else:
        ex.append(f"GIST risk, AFIP (Miettinen & Lasota 2006): cannot be computed; {afip.basis}.")
    if nih.category is not None:
        out.append(
            fast(
                GistRisk,
                scheme=nih.scheme,
                category=nih.category,
                progression_percent=None,
                basis=nih.basis,
            )
        )
        ex.append(
            f"GIST risk, modified NIH (Joensuu 2008): {nih.category.replace('_', ' ')} "
            f"({nih.basis})."
        )
    else:
        ex.append(f"GIST risk, modified NIH (Joensuu 2008): cannot be computed; {nih.basis}.")
    return out


def _warning(code: str, treatment: str | None, message: str, refs: tuple[str, ...]) -> Warning:
    return fast(Warning, code=code, treatment=treatment, message=" ".join(message.split()),
                references=tuple(refs))


def _apply(
    ctx: _Context, br: BoundRule, oc: Outcome, marks: dict[Any, _Mark], group: Group
) -> None:
    rule = br.rule
    refs = rule.references
    if oc.status is not None or oc.note is not None:
        reason = " ".join((oc.reason or "").split())
        note = " ".join(oc.note.split()) if oc.note else None
        for addr in (*br.steps, *br.options):
            m = marks.get(addr)
            if m is None:
                m = marks[addr] = _Mark()
            if oc.status is not None:
                m.statuses.append(_Verdict(SEVERITY[oc.status], oc.status, reason, refs, rule.id))
            if note and note not in m.notes:
                m.notes.append(note)
    for a in oc.ask:
        ctx.ask(a.field, " ".join(a.why.split()))
    if oc.warning is not None:
        ctx.warn(_warning(oc.warning.code, oc.warning.treatment, oc.warning.message, refs))


def _personalise(kb: CompiledKB, group: Group, ctx: _Context) -> tuple[PathwayOut, ...]:
    """Apply the group's rules, memoised on the facts they read (see MemoKeySpec)."""
    view = ctx.view
    outer = ("pers", group.id, kb.personalisation_keys[group.id].key(view))
    hit = kb.output_cache.get(outer)
    if hit is None:
        hit = _personalise_uncached(kb, group, view)
        kb.output_cache.put(outer, hit)
    pathways, lines, asks, warnings = hit
    ctx.explanation.extend(lines)
    for f, why in asks:
        ctx.ask(f, why)
    for w in warnings:
        ctx.warn(w)
    return pathways


def _across_candidates(
    kb: CompiledKB, gids: list[str], view: dict[str, Any]
) -> tuple[AcrossCandidate, ...]:
    """Contract 1.1: regimens whose status is the same in every candidate group that lists them.

    Each candidate group is personalised on the facts as given (missing facts unknown, so a
    status that depends on them is 'conditional' there); a status shared by every group that
    lists the regimen therefore holds whatever the missing facts turn out to be.
    """
    key = ("across", tuple(gids), tuple(kb.personalisation_keys[g].key(view) for g in gids))
    hit: tuple[AcrossCandidate, ...] | None = kb.output_cache.get(key)
    if hit is not None:
        return hit
    found: dict[frozenset[str], tuple[tuple[str, ...], set[str], list[str], list[str]]] = {}
    for gid in gids:
        pathways = _personalise_uncached(kb, kb.groups[gid], view).pathways
        for pw in pathways:
            for st in pw.steps:
                for op in st.options:
                    _, statuses, groups, reasons = found.setdefault(
                        frozenset(op.drugs), (op.drugs, set(), [], [])
                    )
                    statuses.add(op.status)
                    if gid not in groups:
                        groups.append(gid)
                    reasons.extend(r for r in op.reasons if r not in reasons)
    hit = tuple(
        fast(AcrossCandidate, drugs=drugs, status=next(iter(statuses)), groups=tuple(groups),
             reasons=tuple(reasons))
        for drugs, statuses, groups, reasons in found.values() if len(statuses) == 1
    )
    kb.output_cache.put(key, hit)
    return hit


def _personalise_uncached(kb: CompiledKB, group: Group, view: dict[str, Any]) -> Personalised:
    """Evaluate the group's rules. Outcomes depend only on which cases held, so the built
    pathways, explanation lines, asks and warnings are shared per signature."""
    applied: list[tuple[BoundRule, Outcome]] = []
    signature: list[int] = []
    for i, br in enumerate(kb.bound[group.id]):
        if br.only_if is not None and br.only_if.test(view) is not True:
            continue
        any_true = False
        any_unknown = False
        for j, cc in enumerate(br.cases):
            r = cc.test.test(view)
            if r is True:
                any_true = True
                applied.append((br, cc.case))
                signature.append(i * 64 + j)
            elif r is None:
                any_unknown = True
        if not any_true and any_unknown and br.unknown is not None:
            applied.append((br, br.unknown))
            signature.append(i * 64 + 63)
    key = ("signature", group.id, tuple(signature))
    hit = kb.output_cache.get(key)
    if hit is None:
        tmp = _Context(kb, view)
        marks: dict[Any, _Mark] = {}
        for br, oc in applied:
            _apply(tmp, br, oc, marks, group)
        pathways = _build_pathways(kb, group, marks, tmp.explanation)
        hit = Personalised(
            pathways, tuple(tmp.explanation), tuple(tmp.missing.items()), tuple(tmp.warnings)
        )
        kb.output_cache.put(key, hit)
    return hit


def _build_pathways(
    kb: CompiledKB, group: Group, marks: dict[Any, _Mark], ex: list[str]
) -> tuple[PathwayOut, ...]:
    if not marks:
        return kb_defaults(kb, group)
    out: list[PathwayOut] = []
    defaults = kb_defaults(kb, group)
    for pi, pw in enumerate(group.pathways):
        steps: list[StepOut] = []
        touched = False
        for si, st in enumerate(pw.steps):
            default_step = defaults[pi].steps[si]
            sm = marks.get((pi, si))
            opt_marks = [marks.get((pi, si, oi)) for oi in range(len(st.options))]
            if sm is None and not any(opt_marks):
                steps.append(default_step)
                continue
            touched = True
            opts: list[Option] = []
            best = 99
            for oi, op in enumerate(st.options):
                m = opt_marks[oi]
                if m is None:
                    opt = default_step.options[oi]
                else:
                    opt, line = _option_out(kb, group.id, (pi, si, oi), st, op.drugs, op.line, m)
                    if line:
                        ex.append(line)
                best = min(best, SEVERITY[opt.status])
                opts.append(opt)
            status = sm.status() if sm else "option"
            reasons = sm.reasons() if sm else []
            if st.options_cover_step and opts:
                derived = _BY_SEVERITY[best]
                if SEVERITY[derived] > SEVERITY[status] or (
                    derived == "preferred" and not (sm and sm.statuses)
                ):
                    status = derived
                    # a step whose regimens are all ruled out keeps no reason arguing for it
                    own = sm.reasons(ruled_out=derived == "not_recommended") if sm else []
                    reasons = [*own, DERIVED_REASON[derived]]
            step = fast(
                StepOut,
                tier=st.tier,
                treatment=st.treatment,
                label=st.label,
                applies_to=st.applies_to,
                status=status,
                reasons=tuple(reasons),
                rationale=default_step.rationale,
                references=default_step.references,
                options=tuple(opts),
                notes=tuple(sm.notes) if sm else (),
                id=default_step.id,
            )
            steps.append(step)
            if (sm and sm.statuses) or status != "option":
                ex.append(
                    f"{st.label} (pathway {pi + 1}): {_STATUS_WORDS[status]} - " + " ".join(reasons)
                )
        out.append(
            fast(PathwayOut, steps=tuple(steps), id=defaults[pi].id) if touched else defaults[pi]
        )
    return tuple(out)


_BY_SEVERITY = {v: k for k, v in SEVERITY.items()}
#: Why a drug-only step took its status from its regimens (shared with the cohort evaluator).
DERIVED_REASON = {
    "preferred": "A regimen of this step is preferred for these facts.",
    "not_recommended": "None of this step's regimens fits these facts.",
    "conditional": "Every regimen of this step still depends on a fact that is not recorded.",
    "caution": "Every regimen of this step needs caution for these facts.",
    "option": "",
}


def _option_out(
    kb: CompiledKB, gid: str, addr: tuple[int, int, int], step: Step, drugs: tuple[str, ...],
    line: str, m: _Mark,
) -> tuple[Option, str]:
    """The personalised regimen and its explanation line, memoised: outcomes repeat across
    patients."""
    key = ("option", gid, addr, tuple(m.statuses), tuple(m.notes))
    hit: tuple[Option, str] | None = kb.output_cache.get(key)
    if hit is not None:
        return hit
    status = m.status()
    reasons = tuple(m.reasons())
    notes = tuple(m.notes)
    rule_refs = tuple(m.references())
    refs = tuple(dict.fromkeys((*step.references, *rule_refs)))
    opt = fast(
        Option, drugs=drugs, line=line, status=status, reasons=reasons, notes=notes, references=refs
    )
    text = ""
    if m.statuses:
        text = (
            f"{' + '.join(drugs)} ({step.label}): {_STATUS_WORDS[status]} - "
            + " ".join(reasons)
            + f" [refs {', '.join(rule_refs)}]"
        )
    kb.output_cache.put(key, (opt, text))
    return opt, text


def kb_defaults(kb: CompiledKB, group: Group) -> tuple[PathwayOut, ...]:
    """The group's pathways with no rule applied (every status 'option'), built once and shared."""
    cached: tuple[PathwayOut, ...] | None = kb.output_cache.get(("defaults", group.id))
    if cached is not None:
        return cached
    out = tuple(
        fast(
            PathwayOut,
            id=f"{group.id}/{pi + 1}",
            steps=tuple(
                fast(
                    StepOut,
                    tier=st.tier,
                    treatment=st.treatment,
                    label=st.label,
                    applies_to=st.applies_to,
                    status="option",
                    reasons=(),
                    rationale=" ".join(st.rationale.split()),
                    references=tuple(st.references),
                    notes=(),
                    id=f"{group.id}/{pi + 1}/{st.treatment}",
                    options=tuple(
                        fast(
                            Option,
                            drugs=op.drugs,
                            line=op.line,
                            status="option",
                            reasons=(),
                            notes=(),
                            references=tuple(st.references),
                        )
                        for op in st.options
                    ),
                )
                for st in pw.steps
            ),
        )
        for pi, pw in enumerate(group.pathways)
    )
    kb.output_cache.put(("defaults", group.id), out, fixed=True)
    return out


def _missing_info(kb: CompiledKB, field_name: str, why: str) -> MissingInfo:
    key = ("missing", field_name, why)
    hit = kb.output_cache.get(key)
    if hit is None:
        hit = fast(MissingInfo, field=field_name, why=why)
        kb.output_cache.put(key, hit)
    return hit


def _informative(facts: PatientFacts, name: str) -> bool:
    v = getattr(facts, name, None)
    return v is not None and v != UNKNOWN_VALUES.get(name) and not (name == "grade" and v == "X")


def _result(
    kb: CompiledKB, guideline: GuidelineRef, group: GroupRef | None, candidates: list[str],
    oos: OutOfScope | None, stage: Stage | None, risks: list[GistRisk],
    pathways: list[PathwayOut] | tuple[PathwayOut, ...],
    ctx: _Context,
    facts: PatientFacts,
    across: tuple[AcrossCandidate, ...] = (),
) -> Recommendation:
    # a fact that was given is not missing, whatever rule asked for it (a rule's "unknown" case
    # lists every input of a derived fact, e.g. size and mitotic rate for the GIST risk);
    # values that say "not known" (KIT/PDGFRA 'unknown', grade X: not assessable) are still asked
    missing = tuple(
        _missing_info(kb, f, w) for f, w in ctx.missing.items() if not _informative(facts, f)
    )
    return fast(
        Recommendation,
        schema_version=SCHEMA_VERSION,
        guideline=guideline,
        patient_group=group,
        candidate_groups=tuple(candidates),
        out_of_scope=oos,
        stage=stage,
        gist_risk=tuple(risks),
        pathways=tuple(pathways),
        missing_information=missing,
        warnings=tuple(ctx.warnings),
        explanation=tuple(ctx.explanation),
        across_candidates=across,
        disclaimer=DISCLAIMER,
    )
