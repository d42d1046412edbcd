"""Human-readable rendering for a terminal (Rich): what to ask first, then the pathways.

Imported only for ``--format text`` so the JSON path starts fast.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.tree import Tree

from sarcoma_cds.domain.kb_models import Group
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.domain.recommendation import Recommendation

STATUS_STYLE = {
    "preferred": ("PREFERRED", "bold green"),
    "option": ("option", "cyan"),
    "conditional": ("CONDITIONAL", "yellow"),
    "caution": ("CAUTION", "bold yellow"),
    "not_recommended": ("NOT RECOMMENDED", "bold red"),
}
TIER = {"first_line": "1st line", "plus": "Plus", "consider": "Consider"}


def _console(out: TextIO) -> Console:
    return Console(file=out, highlight=False, soft_wrap=False, width=110,
                   force_terminal=out.isatty() if hasattr(out, "isatty") else False)


def _drugs(drugs: tuple[str, ...]) -> str:
    return " + ".join(d.replace("_", " ") for d in drugs)


def _badge(status: str) -> str:
    word, style = STATUS_STYLE[status]
    return f"[{style}]{word}[/]"


def render(rec: Recommendation, kb: CompiledKB, out: TextIO) -> None:
    c = _console(out)
    if rec.missing_information:
        c.print("[bold yellow]Missing facts (please provide):[/]")
        for m in rec.missing_information:
            c.print(Padding(f"- [bold]{m.field}[/]: {escape(m.why)}", (0, 0, 0, 2), expand=False))
    if rec.warnings:
        c.print("[bold red]Warnings:[/]")
        for w in rec.warnings:
            what = f" ({w.treatment})" if w.treatment else ""
            c.print(
                Padding(
                    f"! [bold]{w.code}[/]{what}: {escape(w.message)}", (0, 0, 0, 2), expand=False
                )
            )
    if rec.missing_information or rec.warnings:
        c.print()

    if rec.patient_group is not None:
        c.print(
            f"[bold]Patient group:[/] {escape(rec.patient_group.label)}  "
            f"[dim]({rec.patient_group.id})[/]"
        )
    elif rec.out_of_scope is not None:
        c.print(f"[bold]Outside the guideline:[/] {escape(rec.out_of_scope.reason)}")
    else:
        c.print("[bold]Patient group: cannot tell yet.[/] Possible groups:")
        for gid in rec.candidate_groups:
            c.print(f"  - {escape(kb.groups[gid].label)} [dim]({gid})[/]")
        # the informative ones: ruled out, preferred or with a caution in every candidate group
        firm = [
            a
            for a in rec.across_candidates
            if a.status in ("not_recommended", "preferred", "caution")
        ]
        if firm:
            c.print("[bold]Holds whatever the missing facts turn out to be:[/]")
            for a in firm:
                why = f": {escape(a.reasons[0])}" if a.reasons else ""
                c.print(f"  - {' + '.join(a.drugs)} {_badge(a.status)}{why}")
    if rec.stage is not None:
        s = rec.stage
        grp = s.group or ("not pinned: " + " or ".join(s.possible_groups))
        c.print(
            f"[bold]Stage:[/] {s.system}: {s.t or 'T?'} {s.n or 'N?'} {s.m or 'M?'} {s.g or 'G?'} "
            f"-> {grp}"
        )
    for r in rec.gist_risk:
        pct = (
            f" ({r.progression_percent:g}% progression)"
            if r.progression_percent is not None
            else ""
        )
        name = (
            "AFIP, Miettinen & Lasota 2006"
            if r.scheme.startswith("afip")
            else "modified NIH, Joensuu 2008"
        )
        c.print(f"[bold]GIST risk ({name}):[/] {r.category.replace('_', ' ')}{pct}")

    for i, pw in enumerate(rec.pathways, start=1):
        tree = Tree(f"[bold]Pathway {i}[/]")
        for st in pw.steps:
            node = tree.add(
                f"{TIER[st.tier]}: [bold]{escape(st.label)}[/] {_badge(st.status)}"
                f" [dim](applies to {st.applies_to}; refs {', '.join(st.references) or '-'})[/]"
            )
            for why in st.reasons:
                node.add(f"[italic]{escape(why)}[/]")
            for n in st.notes:
                node.add(f"note: {escape(n)}")
            for op in st.options:
                line = "secondary" if op.line == "secondary" else "primary"
                onode = node.add(f"{escape(_drugs(op.drugs))} [dim]({line})[/] {_badge(op.status)}")
                for why in op.reasons:
                    onode.add(f"[italic]{escape(why)}[/]")
                for n in op.notes:
                    onode.add(f"note: {escape(n)}")
        c.print(tree)

    if rec.explanation:
        c.print("[bold]Why:[/]")
        for e in rec.explanation:
            c.print(Padding(f"- {escape(e)}", (0, 0, 0, 2), expand=False))
    c.print(
        f"[dim]Guideline {rec.guideline.id} {rec.guideline.version} "
        f"({rec.guideline.content_hash[:19]}...)[/]"
    )
    c.print(f"[bold]{escape(rec.disclaimer)}[/]")


def render_group_list(kb: CompiledKB, out: TextIO) -> None:
    c = _console(out)
    sites = {
        "extremity": "Extremity and trunk",
        "retroperitoneal": "Retroperitoneal / intra-abdominal",
        "gist": "GIST",
    }
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("group id", no_wrap=True)
    table.add_column("patient group")
    table.add_column("pathways/steps", justify="right", no_wrap=True)
    site = None
    for g in kb.data.groups:
        if g.site != site:
            site = g.site
            table.add_row("", f"[bold]{sites[site]}[/]", "", "")
        steps = sum(len(p.steps) for p in g.pathways)
        table.add_row(str(g.order), g.id, escape(g.label), f"{len(g.pathways)}/{steps}")
    c.print(table)


def render_group(kb: CompiledKB, g: Group, out: TextIO) -> None:
    c = _console(out)
    c.print(
        f"[bold]{escape(g.label)}[/] [dim]({g.id}; source group {g.order} of {len(kb.groups)})[/]"
    )
    c.print(escape(" ".join(g.summary.split())))
    for i, pw in enumerate(g.pathways, start=1):
        tree = Tree(f"[bold]Pathway {i}[/]")
        for st in pw.steps:
            node = tree.add(
                f"{TIER[st.tier]}: [bold]{escape(st.label)}[/] [dim]({st.treatment}; applies to "
                f"{st.applies_to}; refs {', '.join(st.references) or '-'})[/]"
            )
            node.add(escape(" ".join(st.rationale.split())))
            for op in st.options:
                node.add(f"{escape(_drugs(op.drugs))} [dim]({op.line})[/]")
        c.print(tree)
    c.print(f"[dim]References are the source's reference numbers. Guideline {kb.version}.[/]")
