"""The decision diagram: this patient's path through the algorithm, drawn as SVG server-side.

Columns: patient -> site family -> patient group -> pathways and their steps. The taken
branch is drawn bold in the accent colour; other branches stay visible in grey. Each step
box carries its status as text and symbol (not colour alone).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from sarcoma_cds import CompiledKB
from sarcoma_cds.domain.recommendation import SEVERITY
from sarcoma_cds.interfaces.web.present import SITE_SHORT, STATUS_ICON, STATUS_LABEL, TIER_LABEL

ACCENT = "#0b5d6b"
GREY = "#b8c2cc"
INK = "#1c2733"
MUTED = "#5b6875"
STATUS_COLOUR = {
    "preferred": "#1e6b3a", "option": "#1f5f99", "conditional": "#8a5a00",
    "caution": "#9a4d00", "not_recommended": "#a1262d",
}

NODE_H = 44
GAP = 12
STEP_H = 42


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _wrap(text: str, n: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= n:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _node(x: float, y: float, w: float, h: float, title: str, sub: str, taken: bool,
          dashed: bool = False) -> str:
    fill = "#e6f2f4" if taken else "#ffffff"
    stroke = ACCENT if taken else GREY
    sw = 2.5 if taken else 1.2
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    weight = "700" if taken else "500"
    colour = INK if taken else MUTED
    parts = [
        f'<g><title>{escape(title)}{(" — " + escape(sub)) if sub else ""}</title>',
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="{sw}"{dash}/>',
        f'<text x="{x + 12}" y="{y + (18 if sub else h / 2 + 5)}" font-size="13" '
        f'font-weight="{weight}" fill="{colour}">{escape(_clip(title, int(w / 7.2)))}</text>',
    ]
    if sub:
        parts.append(f'<text x="{x + 12}" y="{y + 35}" font-size="11.5" fill="{MUTED}">'
                     f'{escape(_clip(sub, int(w / 6.4)))}</text>')
    parts.append("</g>")
    return "".join(parts)


def _edge(x1: float, y1: float, x2: float, y2: float, taken: bool) -> str:
    mx = (x1 + x2) / 2
    colour = ACCENT if taken else GREY
    sw = 3 if taken else 1.2
    marker = ' marker-end="url(#arrow)"' if taken else ""
    return (f'<path d="M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}" fill="none" stroke="{colour}" '
            f'stroke-width="{sw}"{marker}/>')


def render(rec: dict[str, Any], facts: dict[str, Any], kb: CompiledKB) -> str:
    """SVG markup (a standalone document fragment with its own title and description)."""
    cols = (16.0, 190.0, 372.0, 690.0)
    widths = (150.0, 150.0, 284.0, 300.0)
    width = cols[3] + widths[3] + 16
    group = (rec.get("patient_group") or {}).get("id")
    candidates = list(rec.get("candidate_groups") or [])
    out_of_scope = rec.get("out_of_scope") is not None
    taken_site: str | None = None
    if group in kb.groups:
        taken_site = kb.groups[group].site
    elif candidates and candidates[0] in kb.groups:
        taken_site = kb.groups[candidates[0]].site

    body: list[str] = []
    desc: list[str] = []
    top = 40.0
    # column headings
    for x, head in zip(cols, ("Patient", "Site", "Patient group", "Pathways and steps"),
                       strict=True):
        body.append(f'<text x="{x}" y="22" font-size="12" font-weight="700" '
                    f'letter-spacing="0.06em" fill="{MUTED}">{head.upper()}</text>')

    # sites (+ out of scope)
    sites = [("extremity", SITE_SHORT["extremity"]),
             ("retroperitoneal", SITE_SHORT["retroperitoneal"]),
             ("gist", SITE_SHORT["gist"]), ("__oos", "Out of scope")]
    site_y: dict[str, float] = {}
    for i, (sid, label) in enumerate(sites):
        y = top + i * (NODE_H + GAP)
        site_y[sid] = y
        taken = (sid == taken_site) or (sid == "__oos" and out_of_scope)
        body.append(_node(cols[1], y, widths[1], NODE_H, label, "", taken))

    # groups of the taken site
    g_y: dict[str, float] = {}
    site_groups = [g for g in kb.data.groups if g.site == taken_site] if taken_site else []
    for i, g in enumerate(site_groups):
        y = top + i * (NODE_H + GAP)
        g_y[g.id] = y
        taken = g.id == group
        cand = g.id in candidates
        short = g.label.split(": ", 1)[-1]
        body.append(_node(cols[2], y, widths[2], NODE_H, short[:1].upper() + short[1:],
                          "candidate — facts missing" if cand else "", taken or cand, dashed=cand))

    # patient node
    hist = (kb.value_label("histology", facts.get("histology", ""))
            if facts.get("histology") else "patient")
    site = (kb.value_label("primary_site", facts.get("primary_site", ""))
            if facts.get("primary_site") else "")
    py = top
    lines = _wrap(hist[:1].upper() + hist[1:], 16)[:3]
    ph = 30 + 17 * len(lines)
    body.append(
        f'<g><title>{escape(hist)} — {escape(site)}</title>'
        f'<rect x="{cols[0]}" y="{py}" width="{widths[0]}" height="{ph}" rx="8" fill="#0f3d47"/>'
        + "".join(f'<text x="{cols[0] + 12}" y="{py + 20 + 17 * i}" font-size="13" '
                  f'font-weight="700" fill="#ffffff">{escape(t)}</text>'
                  for i, t in enumerate(lines))
        + f'<text x="{cols[0] + 12}" y="{py + 22 + 17 * len(lines)}" font-size="11.5" '
          f'fill="#d7e8ec">{escape(_clip(site, 22))}</text></g>'
    )
    desc.append(f"Patient: {hist}, {site}.")

    # edges patient -> sites
    for sid, y in site_y.items():
        taken = (sid == taken_site) or (sid == "__oos" and out_of_scope)
        body.insert(0, _edge(cols[0] + widths[0], py + ph / 2, cols[1], y + NODE_H / 2, taken))
    if taken_site:
        desc.append(f"Site: {SITE_SHORT[taken_site]}.")
        sy = site_y[taken_site] + NODE_H / 2
        for gid, y in g_y.items():
            taken = gid == group or gid in candidates
            body.insert(0, _edge(cols[1] + widths[1], sy, cols[2], y + NODE_H / 2, taken))
    if out_of_scope:
        desc.append("Out of scope of the algorithm: " + str(rec["out_of_scope"].get("reason", "")))
    if group:
        desc.append(f"Group: {rec['patient_group']['label']}.")
    elif candidates:
        desc.append("Group not pinned; candidates: " + ", ".join(candidates) + ".")

    # pathways of the group
    py_cursor = top
    pathways = rec.get("pathways") or []
    if pathways:
        best = min(SEVERITY.get(p["steps"][0]["status"], 9) for p in pathways if p.get("steps"))
        gy = g_y.get(group or "", top) + NODE_H / 2
        for pi, p in enumerate(pathways, start=1):
            steps = p.get("steps") or []
            h = 28 + len(steps) * (STEP_H + 6)
            taken = bool(steps) and SEVERITY.get(steps[0]["status"], 9) == best and best < 4
            x = cols[3]
            body.insert(0, _edge(cols[2] + widths[2], gy, x, py_cursor + 14, taken))
            body.append(f'<rect x="{x}" y="{py_cursor}" width="{widths[3]}" height="{h}" rx="10" '
                        f'fill="{"#f3f8f9" if taken else "#fafbfc"}" '
                        f'stroke="{ACCENT if taken else GREY}" '
                        f'stroke-width="{2.5 if taken else 1.2}"/>')
            body.append(f'<text x="{x + 12}" y="{py_cursor + 19}" font-size="12" font-weight="700" '
                        f'fill="{ACCENT if taken else MUTED}">'
                        f'Pathway {pi}{" — best fit" if taken else ""}</text>')
            sy = py_cursor + 28
            step_desc = []
            for s in steps:
                st = s["status"]
                colour = STATUS_COLOUR.get(st, MUTED)
                label = f'{TIER_LABEL.get(s["tier"], s["tier"])} · {s["label"]}'
                status_text = f'{STATUS_ICON.get(st, "")} {STATUS_LABEL.get(st, st)}'
                body.append(
                    f'<g><title>{escape(label)}: {escape(STATUS_LABEL.get(st, st))}</title>'
                    f'<rect x="{x + 10}" y="{sy}" width="{widths[3] - 20}" height="{STEP_H}" '
                    f'rx="6" fill="#ffffff" stroke="#d5dbe1"/>'
                    f'<rect x="{x + 10}" y="{sy}" width="6" height="{STEP_H}" rx="3" '
                    f'fill="{colour}"/>'
                    f'<text x="{x + 24}" y="{sy + 17}" font-size="12" fill="{INK}">'
                    f'{escape(_clip(label, 40))}</text>'
                    f'<text x="{x + 24}" y="{sy + 33}" font-size="11.5" font-weight="700" '
                    f'fill="{colour}">{escape(status_text)}</text></g>'
                )
                step_desc.append(f'{label} ({STATUS_LABEL.get(st, st)})')
                sy += STEP_H + 6
            desc.append(f"Pathway {pi}{' (best fit)' if taken else ''}: "
                        + "; ".join(step_desc) + ".")
            py_cursor += h + GAP

    height = max(top + 4 * (NODE_H + GAP), top + len(site_groups) * (NODE_H + GAP), py_cursor) + 10
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
            'markerHeight="6" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{ACCENT}"/></marker></defs>')
    title = "Decision diagram: this patient's path through the algorithm"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-labelledby="dg-title dg-desc" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" '
        'class="diagram">'
        f'<title id="dg-title">{escape(title)}</title>'
        f'<desc id="dg-desc">{escape(" ".join(desc))}</desc>'
        f'{defs}{"".join(body)}</svg>'
    )
