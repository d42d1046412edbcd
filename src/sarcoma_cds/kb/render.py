"""``kb render``: the whole knowledge base as one document for the committee that reviews it.

Every group with its entry criteria in plain words, its pathways, steps and regimens with their
references, the personalisation rules that act in it (each case in plain words and the status it
sets), the classification's out-of-scope rules, gaps and assumptions, the definitions, the
bibliography and the governance data. One self-contained HTML file (no scripts), printable;
``--pdf`` renders the same HTML with WeasyPrint (the 'web' extra).
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from sarcoma_cds.domain.kb_models import Group, Outcome, Rule
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.kb.words import words

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:24px "
    "auto;max-width:1100px;color:#222;line-height:1.4}"
    "h2{border-top:2px solid #ddd;padding-top:12px;page-break-before:always}h2.first{page-break-be"
    "fore:auto}table{border-collapse:collapse;width:100%;font-size:13px;margin:6px "
    "0}td,th{border-bottom:1px solid #eee;"
    "padding:3px 6px;text-align:left;vertical-align:top}.meta{color:#555}.crit{background:#f5f7fa;"
    "padding:6px 10px}"
    ".s-preferred{color:#1b5e20}.s-not_recommended{color:#b71c1c}.s-caution{color:#e65100}"
)


def _e(x: object) -> str:
    return html.escape(str(x))


def _refs(refs: Iterable[str]) -> str:
    refs = list(refs)
    return f" <span class=\"meta\">[{_e(', '.join(refs))}]</span>" if refs else ""


def _outcome(oc: Outcome) -> str:
    parts = []
    if oc.status:
        parts.append(
            f'<b class="s-{oc.status}">{_e(oc.status)}</b>: '
            f'{_e(" ".join((oc.reason or "").split()))}'
        )
    if oc.note:
        parts.append(f"note: {_e(' '.join(oc.note.split()))}")
    if oc.warning:
        parts.append(f"warning ({_e(oc.warning.code)}): {_e(' '.join(oc.warning.message.split()))}")
    if oc.ask:
        parts.append("asks for " + _e(", ".join(a.field for a in oc.ask)))
    return "<br>".join(parts)


def _rule(rule: Rule, kb: CompiledKB) -> str:
    rows = "".join(
        f"<tr><td>if {_e(words(c.when, kb))}</td><td>{_outcome(c)}</td></tr>" for c in rule.cases
    )
    if rule.unknown:
        rows += f"<tr><td>if that cannot be decided</td><td>{_outcome(rule.unknown)}</td></tr>"
    guard = (
        f'<br><span class="meta">only if {_e(words(rule.only_if, kb))}</span>'
        if rule.only_if
        else ""
    )
    return (f"<h4>{_e(rule.id)}{_refs(rule.references)}</h4><p>{_e(rule.description)}{guard}</p>"
            f"<table>{rows}</table>")


def _group(g: Group, kb: CompiledKB, entry: str) -> str:
    out = [
        f'<h2 id="{_e(g.id)}">{g.order}. {_e(g.label)}</h2>',
        f'<p class="meta">{_e(g.id)}; source heading: '
        f'{_e(g.source_heading)}{_refs(g.references)}</p>',
        f"<p>{_e(g.summary)}</p>",
        f'<p class="crit"><b>Entry criteria:</b> {_e(entry)}</p>',
    ]
    for pi, pw in enumerate(g.pathways, start=1):
        out.append(
            f"<h3>Pathway {pi}</h3><table><tr><th>Tier</th><th>Step</th><th>Regimens</th></tr>"
        )
        for st in pw.steps:
            regs = "<br>".join(
                f"{_e(' + '.join(o.drugs))} ({_e(o.line)}){_refs(o.references)}" for o in st.options
            )
            out.append(
                f"<tr><td>{_e(st.tier)} ({_e(st.applies_to)})</td><td><b>{_e(st.label)}</b>"
                f'{_refs(st.references)}<br><span class="meta">{_e(st.treatment)}</span><br>'
                f"{_e(' '.join(st.rationale.split()))}</td><td>{regs or '-'}</td></tr>"
            )
        out.append("</table>")
    rules = [
        br.rule for br in kb.bound.get(g.id, ()) if br.rule.groups
    ]  # (rules for every group: at the end)
    if rules:
        out.append(f"<h3>Personalisation in this group ({len(rules)} rules)</h3>")
        out += [_rule(r, kb) for r in rules]
    return "".join(out)


def render_html(kb: CompiledKB) -> str:
    """The knowledge base as one HTML document."""
    meta = kb.data.meta
    cls = kb.data.classification
    entry = {gid: words(t.source, kb) for gid, t in kb.group_rules}
    approvals = (
        "".join(f"<li>{_e(a.name)}, {_e(a.role)}, {_e(a.date)}</li>" for a in meta.approvals)
        or "<li>none recorded</li>"
    )
    log = "".join(
        f"<li><b>{_e(c.version)}</b> ({_e(c.date)}): {_e(' '.join(c.changes))}</li>"
        for c in meta.changelog
    )
    toc = "".join(f'<li><a href="#{_e(g.id)}">{_e(g.label)}</a></li>' for g in kb.data.groups)
    scope = "".join(
        f"<tr><td>{_e(s.rule.id)}</td><td>{_e(words(s.rule.when, kb))}</td>"
        f"<td>{_e(' '.join(s.rule.reason.split()))}</td></tr>"
        for s in (*kb.scope, *kb.gaps)
    )
    assume = "".join(
        f"<tr><td>{_e(kb.label(a.field))}</td><td>{_e(kb.value_label(a.field, a.value))}</td>"
        f"<td>{_e(' '.join(a.why.split()))}</td></tr>"
        for a in cls.assumptions
    )
    defs = "".join(f"<tr><td>'{_e(n.replace('_', ' '))}'</td><td>{_e(words(c, kb))}</td></tr>"
                   for n, c in kb.data.definitions.items())
    bib = kb.data.bibliography
    bib_rows = (
        ""
        if bib is None
        else "".join(
            f"<tr><td>[{_e(n)}]</td><td>{_e(e.citation or 'the source gives the number only')}</td"
            "></tr>"
            for n, e in sorted(bib.references.items(), key=lambda kv: int(kv[0]))
        )
    )
    sources = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v.citation)}</td></tr>" for k, v in kb.data.sources.items()
    )
    general = [r for r in kb.data.rules.rules if not r.groups]
    body = [
        f"<h1>{_e(meta.title)}</h1>",
        f'<p class="meta">Knowledge base {_e(meta.id)} {_e(meta.version)}, '
        f'{_e(kb.content_hash)}<br>'
        f"Status <b>{_e(meta.status)}</b>; released {_e(meta.released)}; review by "
        f"{_e(meta.review_by or '-')}</p>",
        f"<p>{_e(' '.join(meta.source.split()))}</p><p><i>{_e(' '.join(meta.disclaimer.split()))}<"
        "/i></p>",
        f"<h3>Approvals</h3><ul>{approvals}</ul><h3>Changes</h3><ul>{log}</ul>",
        f"<h3>Groups</h3><ol>{toc}</ol>",
        '<h2 class="first">Who is in scope</h2><table><tr><th>Rule</th><th>When</th><th>What the '
        'patient is told</th></tr>'
        f"{scope}</table><h3>Assumed when not given</h3><table>{assume}</table>",
        *(_group(g, kb, entry.get(g.id, "-")) for g in kb.data.groups),
        f"<h2>Rules for every group ({len(general)})</h2>" if general else "",
        *(_rule(r, kb) for r in general),
        f"<h2>Definitions</h2><table>{defs}</table>",
        f"<h2>Bibliography</h2><p>{_e(bib.note if bib else 'no bibliography.yaml')}</p><table>"
        f"{bib_rows}</table>",
        f"<h3>Named sources beyond the algorithm</h3><table>{sources}</table>",
    ]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(meta.title)} '
        f"{_e(meta.version)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
