"""Guideline-change impact: which patients change between two knowledge-base versions, and
what changed in the algorithm itself (``kb diff``)."""

from __future__ import annotations

from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB


def compare(old: Any, new: Any) -> Any:
    """Patients whose group, candidates, out-of-scope, delivered-item statuses or class differ.

    ``old`` and ``new`` are patient frames from :func:`sarcoma_cds.cohort.evaluate.evaluate`
    on the same cohort. ``why`` names every changed column, old -> new.
    """
    import polars as pl

    cols = ["group", "candidates", "out_of_scope", "statuses", "concordance"]
    j = new.select("patient_id", *cols, "reason").join(
        old.select("patient_id", *cols), on="patient_id", how="left", suffix="_old")
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in cols])
    why = pl.concat_list([
        pl.when(pl.col(c).ne_missing(pl.col(f"{c}_old"))).then(pl.concat_str(
            pl.lit(f"{c}: "), pl.col(f"{c}_old").fill_null("-"), pl.lit(" -> "), pl.col(c).fill_null("-")))
        for c in cols]).list.drop_nulls().list.join(" | ")
    return j.filter(changed).with_columns(why.alias("why")).select(
        "patient_id", "group_old", "group", "concordance_old", "concordance", "why")


def _items(kb: CompiledKB) -> tuple[dict[str, Any], dict[tuple[str, int, str], Any], dict[tuple[str, int, str, str], Any]]:
    groups = {gid: g for gid, g in kb.groups.items()}
    steps = {}
    options = {}
    for gid, g in groups.items():
        for pi, pw in enumerate(g.pathways):
            for st in pw.steps:
                steps[(gid, pi + 1, st.treatment)] = st
                for op in st.options:
                    options[(gid, pi + 1, st.treatment, "+".join(sorted(op.drugs)))] = op
    return groups, steps, options


def kb_diff(old: CompiledKB, new: CompiledKB) -> list[str]:
    """Human-readable lines: groups, group rules, pathway steps, regimens and personalisation rules."""
    out: list[str] = [f"knowledge base {old.version} ({old.content_hash[:19]}) -> {new.version} ({new.content_hash[:19]})"]
    og, os_, oo = _items(old)
    ng, ns, no = _items(new)
    for gid in sorted(set(og) | set(ng)):
        if gid not in og:
            out.append(f"+ group {gid}: {ng[gid].label}")
        elif gid not in ng:
            out.append(f"- group {gid}: {og[gid].label}")
        elif og[gid].label != ng[gid].label:
            out.append(f"~ group {gid}: label {og[gid].label!r} -> {ng[gid].label!r}")
    orules = {g: t.source for g, t in old.group_rules}
    nrules = {g: t.source for g, t in new.group_rules}
    for gid in sorted(set(orules) & set(nrules)):
        if orules[gid] != nrules[gid]:
            out.append(f"~ classification rule of {gid} changed")
    odefs, ndefs = dict(old.data.definitions), dict(new.data.definitions)
    for name in sorted(set(odefs) | set(ndefs)):
        if odefs.get(name) != ndefs.get(name):
            sign = "+" if name not in odefs else "-" if name not in ndefs else "~"
            out.append(f"{sign} definition {name}")
    for key in sorted(set(os_) | set(ns)):
        label = f"{key[0]} pathway {key[1]}: step {key[2]}"
        if key not in os_:
            out.append(f"+ {label} ({ns[key].tier})")
        elif key not in ns:
            out.append(f"- {label} ({os_[key].tier})")
        else:
            a, b = os_[key], ns[key]
            for f in ("tier", "applies_to", "options_cover_step", "references"):
                if getattr(a, f) != getattr(b, f):
                    out.append(f"~ {label}: {f} {getattr(a, f)!r} -> {getattr(b, f)!r}")
    for okey in sorted(set(oo) | set(no)):
        label = f"{okey[0]} pathway {okey[1]}: {okey[2]} regimen {okey[3]}"
        if okey not in oo:
            out.append(f"+ {label}")
        elif okey not in no:
            out.append(f"- {label}")
        elif oo[okey].line != no[okey].line:
            out.append(f"~ {label}: line {oo[okey].line} -> {no[okey].line}")
    orr = {r.id: r for r in old.data.rules.rules}
    nrr = {r.id: r for r in new.data.rules.rules}
    for rid in sorted(set(orr) | set(nrr)):
        if rid not in orr:
            out.append(f"+ rule {rid}: {nrr[rid].description}")
        elif rid not in nrr:
            out.append(f"- rule {rid}: {orr[rid].description}")
        elif orr[rid] != nrr[rid]:
            a, b = orr[rid], nrr[rid]
            what = [f for f in ("groups", "only_if", "targets", "cases", "unknown", "references")
                    if getattr(a, f) != getattr(b, f)]
            detail = ""
            if "cases" in what and len(a.cases) == len(b.cases):
                for i, (ca, cb) in enumerate(zip(a.cases, b.cases, strict=True)):
                    if ca.status != cb.status:
                        detail += f"; case {i + 1} status {ca.status} -> {cb.status}"
                    if ca.when != cb.when:
                        detail += f"; case {i + 1} condition changed"
            out.append(f"~ rule {rid}: {', '.join(what)} changed{detail}")
    osc = {s.rule.id: s.rule for s in (*old.scope, *old.gaps)}
    nsc = {s.rule.id: s.rule for s in (*new.scope, *new.gaps)}
    for sid in sorted(set(osc) | set(nsc)):
        if osc.get(sid) != nsc.get(sid):
            sign = "+" if sid not in osc else "-" if sid not in nsc else "~"
            out.append(f"{sign} scope/gap rule {sid}")
    if len(out) == 1:
        out.append("no change in groups, pathways, regimens or rules")
    return out
