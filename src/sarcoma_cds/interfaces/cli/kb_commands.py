"""Knowledge-base review commands: ``kb render`` (the whole knowledge base as one document for the
committee). Core only, except ``--pdf`` (WeasyPrint, the 'web' extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sarcoma_cds.interfaces.cli.extras import exit_if_missing
from sarcoma_cds.interfaces.cli.kb_app import kb_app


def kb_render_cmd(
    kb: Path | None = typer.Option(
        None, "--kb", help="Knowledge-base directory (default: the packaged one)."
    ),
    html_out: Path | None = typer.Option(
        None, "--html", help="Write the document as HTML to this file."
    ),
    pdf_out: Path | None = typer.Option(
        None, "--pdf", help="Write it as PDF (needs the 'web' extra)."
    ),
) -> None:
    """The whole knowledge base as one document for review: every group with its entry criteria in
    plain words, pathways, regimens, rules, references, bibliography and governance."""
    from sarcoma_cds import KnowledgeBaseError, load_kb
    from sarcoma_cds.kb.render import render_html

    if html_out is None and pdf_out is None:
        sys.stderr.write("error: give --html FILE and/or --pdf FILE\n")
        raise typer.Exit(2)
    try:
        compiled = load_kb(kb)
    except KnowledgeBaseError as e:
        for p in e.problems:
            sys.stderr.write(f"error: knowledge base: {p}\n")
        raise typer.Exit(2) from None
    doc = render_html(compiled)
    if html_out is not None:
        html_out.write_text(doc, encoding="utf-8")
        typer.echo(f"knowledge base {compiled.version} -> {html_out}")
    if pdf_out is not None:
        exit_if_missing("web", "kb render --pdf")
        from weasyprint import HTML

        HTML(string=doc).write_pdf(str(pdf_out))
        typer.echo(f"knowledge base {compiled.version} -> {pdf_out}")


def register(app: typer.Typer) -> None:
    kb_app.command("render")(kb_render_cmd)
    if not any(g.name == "kb" for g in app.registered_groups):
        app.add_typer(kb_app, name="kb")
