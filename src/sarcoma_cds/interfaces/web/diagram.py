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
#: Conservative average glyph widths (px) in Debian's DejaVu Sans, the widest common fallback:
#: text is wrapped or clipped by these so that it never runs out of its box.
CHAR_BOLD_13 = 8.4
CHAR_12 = 7.4
CHAR_115 = 7.0


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
          dashed: bool = False, lines: list[str] | None = None) -> str:
    fill = "#e6f2f4" if taken else "#ffffff"
    stroke = ACCENT if taken else GREY
    sw = 2.5 if taken else 1.2
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    weight = "700" if taken else "500"
    colour = INK if taken else MUTED
    rows = lines or [_clip(title, int((w - 24) / CHAR_BOLD_13))]
    first = y + (h - 16 * len(rows) - (14 if sub else 0)) / 2 + 13
    parts = [
        f"<g><title>{escape(title)}{(' — ' + escape(sub)) if sub else ''}</title>",
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="{sw}"{dash}/>',
    ]
    parts += [
        f'<text x="{x + 12}" y="{first + 16 * i:.1f}" font-size="13" font-weight="{weight}" '
        f'fill="{colour}">'
        f"{escape(r)}</text>"
        for i, r in enumerate(rows)
    ]
    if sub:
        parts.append(
            f'<text x="{x + 12}" y="{first + 16 * len(rows) + 1:.1f}" font-size="11.5" '
            f'fill="{MUTED}">'
            f"{escape(_clip(sub, int((w - 24) / CHAR_115)))}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _step_h(step: dict[str, Any]) -> float:
    """Height of a step box: one or two label lines, then the status (and regimens) line."""
    label = f'{TIER_LABEL.get(step["tier"], step["tier"])} · {step["label"]}'
    return STEP_H + (15 if len(_wrap(label, int(266 / CHAR_12))) > 1 else 0)


def _regimens(step: dict[str, Any]) -> str:
    """The regimens worth naming in a step box: the preferred ones, else those not ruled out."""
    opts = step.get("options") or []
    pick = [o for o in opts if o["status"] == "preferred"] or [
        o for o in opts if o["status"] != "not_recommended"
    ]
    names = [" + ".join(d.replace("_", " ") for d in o["drugs"]) for o in pick]
    return ", ".join(names[:2]) + (f" +{len(names) - 2} more" if len(names) > 2 else "")


def _steering(rec: dict[str, Any], facts: dict[str, Any], kb: Any) -> list[str]:
    """Short facts that steer the choice: the AJCC stage and a recorded KIT/PDGFRA genotype."""
    out: list[str] = []
    stage = (rec.get("stage") or {}).get("group")
    if stage:
        out.append(f"Stage {stage}")
    for name, short in (("kit_mutation", "KIT"), ("pdgfra_mutation", "PDGFRA")):
        v = facts.get(name)
        if v and v != "none":
            out.append(f"{short} {kb.value_label(name, v)}")
    return out


def _edge(x1: float, y1: float, x2: float, y2: float, taken: bool) -> str:
    mx = (x1 + x2) / 2
    colour = ACCENT if taken else GREY
    sw = 3 if taken else 1.2
    marker = ' marker-end="url(#arrow)"' if taken else ""
    return (f'<path d="M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}" fill="none" stroke="{colour}" '
            f'stroke-width="{sw}"{marker}/>')


def render(rec: dict[str, Any], facts: dict[str, Any], kb: CompiledKB) -> str:
    """SVG markup (a standalone document fragment with its own title and description)."""
    cols = (16.0, 190.0, 390.0, 706.0)
    widths = (150.0, 172.0, 290.0, 310.0)
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

    # groups of the taken site: labels wrapped (never clipped: two stage III groups differ at the
    # end)
    g_y: dict[str, float] = {}
    g_h: dict[str, float] = {}
    site_groups = [g for g in kb.data.groups if g.site == taken_site] if taken_site else []
    y = top
    for g in site_groups:
        taken = g.id == group
        cand = g.id in candidates
        short = g.label.split(": ", 1)[-1]
        short = short[:1].upper() + short[1:]
        rows = _wrap(short, int((widths[2] - 24) / CHAR_BOLD_13))
        gh = float(max(NODE_H, 16 * len(rows) + (14 if cand else 0) + 14))
        g_y[g.id], g_h[g.id] = y, gh
        body.append(
            _node(
                cols[2],
                y,
                widths[2],
                gh,
                short,
                "candidate — facts missing" if cand else "",
                taken or cand,
                dashed=cand,
                lines=rows,
            )
        )
        y += gh + GAP
    groups_bottom = y

    # patient node: histology, site, and what steers the choice (stage, genotype)
    hist = (
        kb.value_label("histology", facts.get("histology", ""))
        if facts.get("histology")
        else "patient"
    )
    site = (
        kb.value_label("primary_site", facts.get("primary_site", ""))
        if facts.get("primary_site")
        else ""
    )
    py = top
    lines = _wrap(hist[:1].upper() + hist[1:], int((widths[0] - 24) / CHAR_BOLD_13))[:3]
    extra = [t for t in (site, *_steering(rec, facts, kb)) if t]
    ph = 16 + 17 * len(lines) + 15 * len(extra)
    body.append(
        f"<g><title>{escape(hist)} — {escape(', '.join(extra))}</title>"
        f'<rect x="{cols[0]}" y="{py}" width="{widths[0]}" height="{ph}" rx="8" fill="#0f3d47"/>'
        + "".join(
            f'<text x="{cols[0] + 12}" y="{py + 20 + 17 * i}" font-size="13" '
            f'font-weight="700" fill="#ffffff">{escape(t)}</text>'
            for i, t in enumerate(lines)
        )
        + "".join(
            f'<text x="{cols[0] + 12}" y="{py + 20 + 17 * len(lines) + 15 * i}" font-size="11.5" '
            f'fill="#d7e8ec">{escape(_clip(t, int((widths[0] - 24) / CHAR_115)))}</text>'
            for i, t in enumerate(extra)
        )
        + "</g>"
    )
    desc.append(f"Patient: {hist}, {', '.join(extra)}.")

    # edges patient -> sites
    for sid, y in site_y.items():
        taken = (sid == taken_site) or (sid == "__oos" and out_of_scope)
        body.insert(0, _edge(cols[0] + widths[0], py + ph / 2, cols[1], y + NODE_H / 2, taken))
    if taken_site:
        desc.append(f"Site: {SITE_SHORT[taken_site]}.")
        sy = site_y[taken_site] + NODE_H / 2
        for gid, y in g_y.items():
            taken = gid == group or gid in candidates
            body.insert(0, _edge(cols[1] + widths[1], sy, cols[2], y + g_h[gid] / 2, taken))
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
        n_best = sum(
            1
            for p in pathways
            if p.get("steps") and SEVERITY.get(p["steps"][0]["status"], 9) == best
        )
        # "best fit" only when one pathway leads; tied pathways are alternatives for the board
        tag = " — best fit" if n_best == 1 and len(pathways) > 1 else (
            f" — one of {n_best} alternatives" if n_best > 1 else "")
        gy = g_y.get(group or "", top) + g_h.get(group or "", NODE_H) / 2
        for pi, p in enumerate(pathways, start=1):
            steps = p.get("steps") or []
            h = 28 + sum(_step_h(s) + 6 for s in steps)
            taken = bool(steps) and SEVERITY.get(steps[0]["status"], 9) == best and best < 4
            x = cols[3]
            body.insert(0, _edge(cols[2] + widths[2], gy, x, py_cursor + 14, taken))
            body.append(f'<rect x="{x}" y="{py_cursor}" width="{widths[3]}" height="{h}" rx="10" '
                        f'fill="{"#f3f8f9" if taken else "#fafbfc"}" '
                        f'stroke="{ACCENT if taken else GREY}" '
                        f'stroke-width="{2.5 if taken else 1.2}"/>')
            body.append(
                f'<text x="{x + 12}" y="{py_cursor + 19}" font-size="12" font-weight="700" '
                f'fill="{ACCENT if taken else MUTED}">Pathway {pi}{tag if taken else ""}</text>'
            )
            sy = py_cursor + 28
            step_desc = []
            for s in steps:
                st = s["status"]
                colour = STATUS_COLOUR.get(st, MUTED)
                label = f'{TIER_LABEL.get(s["tier"], s["tier"])} · {s["label"]}'
                status_text = f'{STATUS_ICON.get(st, "")} {STATUS_LABEL.get(st, st)}'
                rows = _wrap(label, int((widths[3] - 44) / CHAR_12))
                rows = (
                    [*rows[:1], _clip(" ".join(rows[1:]), int((widths[3] - 44) / CHAR_12))]
                    if len(rows) > 1
                    else rows
                )
                regs = _regimens(s)
                room = int((widths[3] - 44) / CHAR_115) - len(status_text) - 3
                sh = _step_h(s)
                body.append(
                    f"<g><title>{escape(label)}: "
                    f"{escape(STATUS_LABEL.get(st, st))}{(' — ' + escape(regs)) if regs else ''}</"
                    "title>"
                    f'<rect x="{x + 10}" y="{sy}" width="{widths[3] - 20}" height="{sh}" rx="6" '
                    'fill="#ffffff" stroke="#d5dbe1"/>'
                    f'<rect x="{x + 10}" y="{sy}" width="6" height="{sh}" rx="3" fill="{colour}"/>'
                    + "".join(
                        f'<text x="{x + 24}" y="{sy + 17 + 15 * i}" font-size="12" '
                        f'fill="{INK}">{escape(r)}</text>'
                        for i, r in enumerate(rows)
                    )
                    + (
                        f'<text x="{x + 24}" y="{sy + 17 + 15 * len(rows) + 1}" font-size="11.5">'
                        f'<tspan font-weight="700" fill="{colour}">{escape(status_text)}</tspan>'
                    )
                    + (
                        f'<tspan fill="{INK}"> · {escape(_clip(regs, max(room, 8)))}</tspan>'
                        if regs
                        else ""
                    )
                    + "</text></g>"
                )
                step_desc.append(f'{label} ({STATUS_LABEL.get(st, st)})')
                sy += sh + 6
            desc.append(f"Pathway {pi}{tag.replace(' — ', ' (') + ')' if taken and tag else ''}: "
                        + "; ".join(step_desc) + ".")
            py_cursor += h + GAP

    height = max(top + 4 * (NODE_H + GAP), groups_bottom if site_groups else top, py_cursor) + 10
    defs = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{ACCENT}"/></marker></defs>'
    )
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
