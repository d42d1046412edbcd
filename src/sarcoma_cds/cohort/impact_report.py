"""The recommendation-level impact as text, Markdown and an HTML section (``kb impact``, and the
``report.html`` of ``concordance --compare-kb``): one renderer so every place says the same."""

from __future__ import annotations

import html
from typing import Any

#: rows shown in full (the JSON keeps them all)
TOP = 40


def _describe(c: dict[str, Any], group: bool = True) -> str:
    where = f"{c['group']}: " if group else ""
    if c["kind"] == "group":
        return f"moves from {c['old']} to {c['new']}"
    if c["kind"] == "status":
        return f"{where}{c['item']}: {c['old']} -> {c['new']}"
    if c["kind"] == "warning":
        return f"{where}warning {c['item']} {'added' if c['old'] == '-' else 'no longer given'}"
    return f"{where}question {c['item']} {'now asked' if c['old'] == '-' else 'no longer asked'}"


def headline(d: dict[str, Any]) -> str:
    """One line: how many patients' recommendation changes between the two versions."""
    share = 100 * d["share_changed"]
    return (
        f"knowledge base {d['from_version']} -> {d['to_version']}: {d['patients_changed']:,} of "
        f"{d['patients']:,} patients ({share:.1f} %) get a different recommendation"
    )


def to_text(d: dict[str, Any]) -> list[str]:
    """Plain lines for the terminal (most patients first)."""
    out = [headline(d)]
    for c in d["changes"][:TOP]:
        rules = f"  [{', '.join(c['rules'])}]" if c["rules"] else ""
        out.append(
            f"  {c['patients']:>6,}  {_describe(c)}{rules}  e.g. {', '.join(c['examples'][:3])}"
        )
    if len(d["changes"]) > TOP:
        out.append(f"  ... {len(d['changes']) - TOP} more kinds of change (all in the JSON)")
    return out


def to_markdown(d: dict[str, Any]) -> str:
    lines = [
        f"# Recommendation impact: {d['from_version']} -> {d['to_version']}",
        "",
        headline(d) + ".",
        "",
        f"Knowledge bases: {d['from_version']} ({d['from_content_hash'][:19]}) and "
        f"{d['to_version']} ({d['to_content_hash'][:19]}).",
        "",
        "| patients | group | change | rules responsible | example patients |",
        "|---:|---|---|---|---|",
    ]
    for c in d["changes"]:
        lines.append(
            f"| {c['patients']:,} | {c['group']} | {_describe(c, group=False).replace('|', '/')} | "
            f"{', '.join(c['rules']) or '-'} | {', '.join(c['examples'][:3])} |"
        )
    if d["by_group"]:
        lines += [
            "",
            "| group (new version) | patients whose recommendation changes |",
            "|---|---:|",
        ]
        lines += [f"| {g} | {n:,} |" for g, n in d["by_group"].items()]
    return "\n".join(lines) + "\n"


def to_html(d: dict[str, Any]) -> str:
    """A self-contained section (no scripts) for ``report.html`` or a page of its own."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{c['patients']:,}</td><td>{e(c['kind'])}</td><td>{e(c['group'])}</td><td>{e(c['item'])}</td>"
        f"<td>{e(c['old'])} &rarr; {e(c['new'])}</td><td>{e(', '.join(c['rules']) or '-')}</td>"
        f"<td>{e(', '.join(c['examples'][:3]))}</td></tr>" for c in d["changes"][:TOP * 5])
    return (
        f'<div class="card" id="recommendation-impact"><h3>Recommendation impact: knowledge base '
        f"{e(d['from_version'])} ({e(d['from_content_hash'][:19])}) &rarr; {e(d['to_version'])} "
        f"({e(d['to_content_hash'][:19])})</h3><p>{e(headline(d))}. Every patient's personalised "
        "recommendation (group, every step and regimen status, warnings, questions) under both "
        "versions."
        "</p><table><tr><th>Patients</th><th>Kind</th><th>Group</th><th>Step / regimen / warning "
        "/ question</th><th>Change</th><th>Rules responsible</th><th>Example "
        f"patients</th></tr>{rows}</table></div>"
    )


def page(d: dict[str, Any]) -> str:
    """:func:`to_html` as a whole page (``kb impact --out``)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Recommendation impact '
        f"{html.escape(d['from_version'])} to "
        f"{html.escape(d['to_version'])}</title><style>body{{font-family:"
        "system-ui,sans-serif;margin:24px "
        "auto;max-width:1280px}}table{{border-collapse:collapse;width:100%;"
        "font-size:14px}}td,th{{border-bottom:1px solid #eee;padding:4px "
        "8px;text-align:left;vertical-align:top}}"
        f"</style></head><body>{to_html(d)}</body></html>"
    )
