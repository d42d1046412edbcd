"""``kb diff``: every change between two knowledge bases, in words a guideline committee reads.

Covers the guideline metadata, groups, pathway steps and regimens, the classification (group
rules, out-of-scope rules, gaps, assumptions, asks, site families), definitions, personalisation
rules case by case, the staging and GIST risk tables, fact labels, named sources and the
bibliography. Conditions are shown in plain words (:mod:`sarcoma_cds.kb.words`). Tables and
other nested data are compared leaf by leaf, list items named by their id where they have one,
so an AJCC cut-off moved from 10 to 11 cm reads as such instead of "no change".
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sarcoma_cds.domain.kb_models import Case, Condition, Group, Outcome, Rule, Step
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.kb.words import words

SECTIONS = (
    "guideline",
    "groups",
    "steps",
    "regimens",
    "classification",
    "definitions",
    "rules",
    "tables",
    "facts",
    "sources",
    "bibliography",
)
_ID_KEYS = ("id", "t", "group", "field", "version", "number")


@dataclass(frozen=True, slots=True)
class Change:
    """One change: ``sign`` is ``+`` (added), ``-`` (removed) or ``~`` (changed)."""

    section: str
    sign: str
    subject: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.sign} {self.subject}" + (f": {self.detail}" if self.detail else "")


def _dump(x: Any) -> Any:
    return (
        x.model_dump(mode="json", by_alias=True, exclude_none=True)
        if isinstance(x, BaseModel)
        else x
    )


def _leaves(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, old, new) for every differing leaf of two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            yield from _leaves(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return
    if isinstance(a, list) and isinstance(b, list):
        ka, kb_ = _keyed(a), _keyed(b)
        if ka is not None and kb_ is not None:
            for k in list(ka) + [k for k in kb_ if k not in ka]:
                yield from _leaves(ka.get(k), kb_.get(k), f"{path}[{k}]")
            return
        if len(a) == len(b) and all(isinstance(x, dict | list) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from _leaves(x, y, f"{path}[{i + 1}]")
            return
    if a != b:
        yield path, a, b


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    for key in _ID_KEYS:
        if items and all(isinstance(x, dict) and isinstance(x.get(key), str) for x in items):
            names = [x[key] for x in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items, strict=True))
    return None


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    text = " ".join(str(v).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _data_changes(section: str, subject: str, a: Any, b: Any) -> list[Change]:
    return [
        Change(
            section,
            "+" if o is None else "-" if n is None else "~",
            f"{subject} {p}".strip(),
            f"{_show(o)} -> {_show(n)}",
        )
        for p, o, n in _leaves(_dump(a), _dump(b))
    ]


def _cond(c: Condition | None, kb: CompiledKB) -> str:
    return "-" if c is None else words(c, kb)


def _outcome(oc: Outcome | None, kb: CompiledKB) -> str:
    if oc is None:
        return "-"
    parts = []
    if isinstance(oc, Case):
        parts.append(f"when {words(oc.when, kb)}")
    if oc.status:
        parts.append(f"status {oc.status}")
    if oc.note:
        parts.append("note")
    if oc.warning:
        parts.append(
            f"warning {oc.warning.code}"
            + (f" ({oc.warning.treatment})" if oc.warning.treatment else "")
        )
    if oc.ask:
        parts.append("asks " + ", ".join(a.field for a in oc.ask))
    return "; ".join(parts)


def _case_changes(subject: str, i: str, a: Outcome | None, b: Outcome | None, old: CompiledKB,
                  new: CompiledKB) -> list[Change]:
    if a is None or b is None:
        sign = "+" if a is None else "-"
        return [
            Change(
                "rules",
                sign,
                subject,
                f"{i} {_outcome(b if a is None else a, new if a is None else old)}",
            )
        ]
    out = []
    if isinstance(a, Case) and isinstance(b, Case) and a.when != b.when:
        out.append(
            Change(
                "rules",
                "~",
                subject,
                f"{i} condition: {words(a.when, old)} -> {words(b.when, new)}",
            )
        )
    if a.status != b.status:
        out.append(Change("rules", "~", subject, f"{i} status {a.status} -> {b.status}"))
    for f in ("reason", "note"):
        if getattr(a, f) != getattr(b, f):
            out.append(
                Change(
                    "rules",
                    "~",
                    subject,
                    f"{i} {f}: {_show(getattr(a, f))} -> {_show(getattr(b, f))}",
                )
            )
    if a.warning != b.warning:
        out += [Change("rules", "~", subject, f"{i} warning.{c.detail}") for c in
                _data_changes("rules", "", a.warning, b.warning)]
    if a.ask != b.ask:
        out.append(
            Change(
                "rules",
                "~",
                subject,
                f"{i} asks {[x.field for x in a.ask]} -> {[x.field for x in b.ask]}"
                if [x.field for x in a.ask] != [x.field for x in b.ask]
                else f"{i} ask wording changed",
            )
        )
    return out


def _rule_changes(a: Rule, b: Rule, old: CompiledKB, new: CompiledKB) -> list[Change]:
    subject = f"rule {a.id}"
    out: list[Change] = []
    for f in ("description", "references", "source", "groups"):
        if getattr(a, f) != getattr(b, f):
            out.append(
                Change(
                    "rules", "~", subject, f"{f}: {_show(getattr(a, f))} -> {_show(getattr(b, f))}"
                )
            )
    if a.only_if != b.only_if:
        out.append(
            Change(
                "rules",
                "~",
                subject,
                f"only if: {_cond(a.only_if, old)} -> {_cond(b.only_if, new)}",
            )
        )
    out += [Change("rules", "~", subject, f"targets{c.subject[len(subject):]}: {c.detail}")
            for c in _data_changes("rules", subject, a.targets, b.targets)]
    for i in range(max(len(a.cases), len(b.cases))):
        ca = a.cases[i] if i < len(a.cases) else None
        cb = b.cases[i] if i < len(b.cases) else None
        out += _case_changes(subject, f"case {i + 1}", ca, cb, old, new)
    out += (
        _case_changes(subject, "unknown", a.unknown, b.unknown, old, new)
        if (a.unknown or b.unknown)
        else []
    )
    return out


def _steps(g: Group) -> dict[tuple[int, str], Step]:
    return {(pi, st.treatment): st for pi, pw in enumerate(g.pathways, start=1) for st in pw.steps}


def _group_changes(a: Group | None, b: Group | None) -> list[Change]:
    g = b if a is None else a
    assert g is not None
    if a is None or b is None:
        return [Change("groups", "+" if a is None else "-", f"group {g.id}", g.label)]
    out = [
        Change(
            "groups", "~", f"group {a.id}", f"{f}: {_show(getattr(a, f))} -> {_show(getattr(b, f))}"
        )
        for f in ("label", "site", "source_heading", "order", "summary", "references")
        if getattr(a, f) != getattr(b, f)
    ]
    sa, sb = _steps(a), _steps(b)
    for key in list(sa) + [k for k in sb if k not in sa]:
        subject = f"{a.id} pathway {key[0]}: step {key[1]}"
        x, y = sa.get(key), sb.get(key)
        if x is None or y is None:
            st = y if x is None else x
            assert st is not None
            out.append(
                Change(
                    "steps",
                    "+" if x is None else "-",
                    subject,
                    f"{st.tier}, {len(st.options)} regimens",
                )
            )
            continue
        for f in (
            "tier",
            "label",
            "applies_to",
            "references",
            "modalities",
            "options_cover_step",
            "rationale",
        ):
            if getattr(x, f) != getattr(y, f):
                out.append(
                    Change(
                        "steps",
                        "~",
                        subject,
                        f"{f}: {_show(getattr(x, f))} -> {_show(getattr(y, f))}",
                    )
                )
        ox = {"+".join(sorted(o.drugs)): o for o in x.options}
        oy = {"+".join(sorted(o.drugs)): o for o in y.options}
        for d in list(ox) + [d for d in oy if d not in ox]:
            if d not in oy:
                out.append(Change("regimens", "-", f"{subject} regimen {d}", ox[d].line))
            elif d not in ox:
                out.append(Change("regimens", "+", f"{subject} regimen {d}", oy[d].line))
            else:
                out += [
                    Change(
                        "regimens",
                        "~",
                        f"{subject} regimen {d}",
                        f"{f} {_show(getattr(ox[d], f))} -> {_show(getattr(oy[d], f))}",
                    )
                    for f in ("line", "references")
                    if getattr(ox[d], f) != getattr(oy[d], f)
                ]
    return out


def _by_id(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    for k in list(old) + [k for k in new if k not in old]:
        if old.get(k) != new.get(k):
            yield k, old.get(k), new.get(k)


def _classification(old: CompiledKB, new: CompiledKB) -> list[Change]:
    a, b = old.data.classification, new.data.classification
    out: list[Change] = []
    for gid, x, y in _by_id(
        {g.group: g.when for g in a.groups}, {g.group: g.when for g in b.groups}
    ):
        out.append(
            Change(
                "classification",
                "~" if x and y else "+" if y else "-",
                f"group rule {gid}",
                f"{_cond(x, old)} -> {_cond(y, new)}",
            )
        )
    for kind, xs, ys in (("out_of_scope", a.out_of_scope, b.out_of_scope), ("gap", a.gaps, b.gaps)):
        for sid, x, y in _by_id({s.id: s for s in xs}, {s.id: s for s in ys}):
            if x is None or y is None:
                s = y if x is None else x
                out.append(Change("classification", "+" if x is None else "-", f"{kind} {sid}",
                                  _cond(s.when, new if x is None else old)))
                continue
            if x.when != y.when:
                out.append(
                    Change(
                        "classification",
                        "~",
                        f"{kind} {sid}",
                        f"{_cond(x.when, old)} -> {_cond(y.when, new)}",
                    )
                )
            out += [
                Change("classification", c.sign, f"{kind} {sid} {c.subject}", c.detail)
                for c in _data_changes(
                    "classification", "", x.model_copy(update={"when": y.when}), y
                )
            ]
    out += _data_changes(
        "classification",
        "rules/classification.yaml assumption",
        {x.field: _dump(x) for x in a.assumptions},
        {x.field: _dump(x) for x in b.assumptions},
    )
    out += _data_changes(
        "classification",
        "rules/classification.yaml ask",
        {x.field: x.why for x in a.asks},
        {x.field: x.why for x in b.asks},
    )
    out += _data_changes(
        "classification",
        "rules/classification.yaml site_families",
        a.site_families,
        b.site_families,
    )
    return out


def kb_changes(old: CompiledKB, new: CompiledKB) -> list[Change]:
    """Every change from ``old`` to ``new``, in :data:`SECTIONS` order."""
    out = _data_changes("guideline", "guideline.yaml", old.data.meta, new.data.meta)
    for gid in list(old.groups) + [g for g in new.groups if g not in old.groups]:
        out += _group_changes(old.groups.get(gid), new.groups.get(gid))
    out += _classification(old, new)
    for name, x, y in _by_id(dict(old.data.definitions), dict(new.data.definitions)):
        out.append(
            Change(
                "definitions",
                "~" if x and y else "+" if y else "-",
                f"definition {name}",
                f"{_cond(x, old)} -> {_cond(y, new)}",
            )
        )
    orr = {r.id: r for r in old.data.rules.rules}
    nrr = {r.id: r for r in new.data.rules.rules}
    for rid, x, y in _by_id(orr, nrr):
        if x is None or y is None:
            r = y if x is None else x
            out.append(Change("rules", "+" if x is None else "-", f"rule {rid}", r.description))
        else:
            out += _rule_changes(x, y, old, new) or [Change("rules", "~", f"rule {rid}", "changed")]
    out += _data_changes("tables", "tables/ajcc8.yaml", old.data.ajcc, new.data.ajcc)
    out += _data_changes("tables", "tables/gist_risk.yaml", old.data.gist_risk, new.data.gist_risk)
    out += _data_changes(
        "facts",
        "facts.yaml",
        {k: _dump(v) for k, v in old.data.fact_labels.items()},
        {k: _dump(v) for k, v in new.data.fact_labels.items()},
    )
    out += _data_changes(
        "sources",
        "sources.yaml",
        {k: _dump(v) for k, v in old.data.sources.items()},
        {k: _dump(v) for k, v in new.data.sources.items()},
    )
    out += _data_changes(
        "bibliography", "bibliography.yaml", _bibliography(old), _bibliography(new)
    )
    return sorted(out, key=lambda c: SECTIONS.index(c.section))


def _bibliography(kb: CompiledKB) -> Any:
    bib = kb.data.bibliography
    return (
        {}
        if bib is None
        else {"note": bib.note, **{k: _dump(v) for k, v in bib.references.items()}}
    )


def _title(old: CompiledKB, new: CompiledKB) -> str:
    return (
        f"knowledge base {old.version} ({old.content_hash[:19]}) -> {new.version} "
        f"({new.content_hash[:19]})"
    )


def to_lines(old: CompiledKB, new: CompiledKB, changes: list[Change]) -> list[str]:
    """Plain lines: the title, then one line per change."""
    return [_title(old, new), *(c.line() for c in changes)] if changes else [
        _title(old, new), "no change in content (the files differ only in layout or comments)"
        if old.content_hash != new.content_hash else "no change: identical content"]


def to_markdown(old: CompiledKB, new: CompiledKB, changes: list[Change]) -> str:
    out = [f"# {_title(old, new)}", ""]
    for section in SECTIONS:
        rows = [c for c in changes if c.section == section]
        if rows:
            out += [
                f"## {section.capitalize()} ({len(rows)})",
                "",
                "| | what | change |",
                "|---|---|---|",
            ]
            out += [
                f"| {c.sign} | {c.subject.replace('|', '/')} | {c.detail.replace('|', '/')} |"
                for c in rows
            ]
            out.append("")
    if not changes:
        out.append("No change.")
    return "\n".join(out) + "\n"


def to_html(old: CompiledKB, new: CompiledKB, changes: list[Change]) -> str:
    e = html.escape
    body = [f"<h1>{e(_title(old, new))}</h1>"]
    for section in SECTIONS:
        rows = [c for c in changes if c.section == section]
        if rows:
            body.append(f"<h2>{e(section.capitalize())} ({len(rows)})</h2><table>" + "".join(
                f'<tr class="s{ {"+": "add", "-": "del", "~": "mod"}[c.sign]}"><td>{e(c.sign)}</td>'
                f"<td>{e(c.subject)}</td><td>{e(c.detail)}</td></tr>" for c in rows) + "</table>")
    if not changes:
        body.append("<p>No change.</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>'
        + e(_title(old, new))
        + (
            "</title><style>body{font-family:system-ui,sans-serif;margin:24px "
            "auto;max-width:1200px}"
            "table{border-collapse:collapse;width:100%;font-size:14px}td{border-bottom:1px solid "
            "#eee;padding:4px 8px;"
            "vertical-align:top}.sadd td:first-child{color:#2e7d32}.sdel "
            "td:first-child{color:#c62828}"
            "</style></head><body>"
        ) + "".join(body) + "</body></html>\n"
    )
