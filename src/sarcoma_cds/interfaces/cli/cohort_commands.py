"""Cohort commands: ``concordance``, ``synth``, ``kb diff`` and ``kb archive``.

Polars, DuckDB, PySpark and Plotly are imported inside the commands only, so the
core CLI starts fast and works without the ``cohort`` extra. An old knowledge base for
``--compare-kb`` and ``kb diff`` is a directory or a version (packaged or archived, ADR 0303).
"""

from __future__ import annotations

from pathlib import Path

import typer

from sarcoma_cds.interfaces.cli.extras import exit_if_missing, requires
from sarcoma_cds.interfaces.cli.kb_app import kb_app

_ARCHIVE_HELP = (
    "Archive of released knowledge-base versions (default: $SARCOMA_CDS_KB_ARCHIVE, else "
    "./data/kb-archive)."
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _load(ref: str | Path | None, archive: Path | None = None):  # type: ignore[no-untyped-def]
    """A knowledge base from a directory or a version; a bad reference or KB exits 2, no
    traceback."""
    from sarcoma_cds import KnowledgeBaseError
    from sarcoma_cds.kb.archive import KbArchiveError, load_ref

    try:
        return load_ref(None if ref is None else str(ref), archive)
    except KbArchiveError as e:
        raise _fail(str(e)) from None
    except KnowledgeBaseError as e:
        raise _fail(f"knowledge base {ref}: " + "; ".join(e.problems)) from None


@requires("cohort", "concordance")
def concordance(
    cohort: Path = typer.Argument(
        ..., help="Cohort file: .csv, .parquet or .jsonl, one patient a row."
    ),
    out: Path = typer.Option(Path("concordance-out"), "--out", help="Output directory."),
    engine: str = typer.Option(
        "polars", "--engine", help="polars | duckdb | spark | python (per patient)."
    ),
    compare_kb: str | None = typer.Option(
        None,
        "--compare-kb",
        help=(
            "An older knowledge base, a directory or a "
            "version (packaged or archived, e.g. 1.0.0): list the patients whose "
            "group or statuses change, and why."
        ),
    ),
    kb: Path | None = typer.Option(
        None, "--kb", help="Knowledge-base directory (default: the packaged one)."
    ),
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
) -> None:
    """Guideline concordance of the treatment given to a cohort (patients.csv/.parquet,
    summary.json, report.html)."""
    from sarcoma_cds.cohort.evaluate import ENGINES
    from sarcoma_cds.cohort.io import CohortError

    if engine not in ENGINES:
        typer.echo(f"error: --engine: use one of {', '.join(ENGINES)}", err=True)
        raise typer.Exit(2)
    if engine == "spark":
        exit_if_missing("spark", "concordance --engine spark")
    from sarcoma_cds.cohort.run import run_concordance

    if kb is not None and not kb.is_dir():
        raise _fail(f"--kb: {kb} is not a directory")
    new = _load(kb)
    old = _load(compare_kb, kb_archive) if compare_kb is not None else None
    try:
        s = run_concordance(cohort, out, new, engine=engine, compare_kb=old, progress=True)
    except CohortError as e:
        raise _fail(str(e)) from e
    line = s["_line"]
    if "guideline_change" in s:
        gc = s["guideline_change"]
        line += (
            f"; vs {gc['from_version']}: {gc['recommendation']['patients_changed']} patients get "
            "a different "
            f"recommendation, {gc['patients_changed']} a different concordance"
        )
    typer.echo(line + f" -> {out}/")


@requires("cohort", "synth")
def synth_cmd(
    n: int = typer.Option(1000, "--n", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same cohort)."),
    out: Path = typer.Option(..., "--out", help="Output file: .csv, .parquet or .jsonl."),
    discordance_rate: float = typer.Option(
        0.15,
        "--discordance-rate",
        min=0.0,
        max=1.0,
        help="Share of patients given a random (mostly off-pathway) treatment.",
    ),
    kb: str | None = typer.Option(
        None,
        "--kb",
        help=(
            "Knowledge base whose groups and regimens the delivered "
            "treatments are drawn from: a directory or a version (default: the packaged "
            "one), so a draft's new content is exercised."
        ),
    ),
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
) -> None:
    """Write a synthetic cohort (documented distributions; see docs/cohort.md)."""
    from sarcoma_cds.cohort.synth import synth, write

    df = synth(n, seed=seed, discordance_rate=discordance_rate, kb=_load(kb, kb_archive))
    write(df, out)
    typer.echo(f"{n} synthetic patients (seed {seed}) -> {out}")


def kb_diff_cmd(
    old: str = typer.Argument(
        ..., help="Old knowledge base: a directory or a version (packaged or archived)."
    ),
    new: str | None = typer.Argument(
        None, help="New knowledge base: a directory or a version (default: the packaged one)."
    ),
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
    format: str = typer.Option("text", "--format", "-f", help="text | markdown | html."),
    out: Path | None = typer.Option(
        None, "--out", help="Write to this file instead of standard output."
    ),
) -> None:
    """What changed in the algorithm: guideline metadata, groups, steps, regimens, classification,
    definitions, rules case by case (conditions in plain words), tables, fact labels, sources and
    the bibliography."""
    from sarcoma_cds.kb.diff import kb_changes, to_html, to_lines, to_markdown

    if format not in ("text", "markdown", "html"):
        raise _fail("--format: use text, markdown or html")
    a, b = _load(old, kb_archive), _load(new, kb_archive)
    changes = kb_changes(a, b)
    text = {
        "text": lambda: "\n".join(to_lines(a, b, changes)) + "\n",
        "markdown": lambda: to_markdown(a, b, changes),
        "html": lambda: to_html(a, b, changes),
    }[format]()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{len(changes)} changes -> {out}")


@requires("cohort", "kb impact")
def kb_impact_cmd(
    old: str = typer.Argument(
        ..., help="Old knowledge base: a directory or a version (packaged or archived)."
    ),
    new: str = typer.Argument(..., help="New knowledge base: a directory or a version."),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort file: .csv, .parquet or .jsonl."),
    out: Path | None = typer.Option(
        None, "--out", help="Directory for impact.json, impact.md and impact.html."
    ),
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
) -> None:
    """Whose recommendation changes between two knowledge bases: per group and per step or regimen,
    the status changes with counts, example patients and the rule responsible; group moves; new or
    lost warnings and questions."""
    import json

    from sarcoma_cds.cohort.impact_report import page, to_markdown, to_text
    from sarcoma_cds.cohort.io import CohortError
    from sarcoma_cds.cohort.rec_impact import cohort_facts, impact

    a, b = _load(old, kb_archive), _load(new, kb_archive)
    try:
        facts = cohort_facts(cohort)
    except CohortError as e:
        raise _fail(str(e)) from e
    d = impact(facts, a, b).as_dict()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "impact.json").write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
        (out / "impact.md").write_text(to_markdown(d), encoding="utf-8")
        (out / "impact.html").write_text(page(d), encoding="utf-8")
    for line in to_text(d):
        typer.echo(line)
    if out is not None:
        typer.echo(f"-> {out}/impact.json, impact.md, impact.html")


def kb_archive_cmd(
    kb: Path | None = typer.Option(
        None, "--kb", help="Knowledge-base directory to archive (default: the packaged one)."
    ),
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
    to: Path | None = typer.Option(None, "--to", hidden=True, help="Deprecated: use --kb-archive."),
    approved_by: str | None = typer.Option(
        None,
        "--approved-by",
        help=(
            "Record in the archive's hash-chained "
            "approval ledger that this person (listed in guideline.yaml "
            "approvals) approved this version and content hash."
        ),
    ),
    role: str = typer.Option("", "--role", help="The approver's role (with --approved-by)."),
) -> None:
    """Keep a copy of a knowledge-base version in the archive, to compare cohorts against it later;
    with --approved-by, also record who approved it."""
    from sarcoma_cds import KnowledgeBaseError
    from sarcoma_cds.kb.archive import KbArchiveError, archive_kb

    if kb is not None and not kb.is_dir():
        raise _fail(f"--kb: {kb} is not a directory")
    if to is not None:  # (the one name is --kb-archive, as in concordance and kb diff)
        typer.echo("warning: --to is deprecated; use --kb-archive", err=True)
    if (
        approved_by is not None
    ):  # an approval is recorded only for content that passes the release gate
        from sarcoma_cds.kb.gate import release_gate

        gate = release_gate(kb, archive=kb_archive or to)
        if not gate.ok:
            raise _fail(
                "the knowledge base does not pass the release gate (validate-kb), nothing "
                "archived: "
                + "; ".join(gate.problems)
            )
    try:
        a = archive_kb(kb, kb_archive or to)
    except KbArchiveError as e:
        raise _fail(str(e)) from None
    except KnowledgeBaseError as e:
        raise _fail(f"knowledge base {kb}: " + "; ".join(e.problems)) from None
    except OSError as e:
        raise _fail(f"cannot write the archive: {e}") from None
    if a.created:
        typer.echo(f"archived knowledge base {a.version} ({a.content_hash[:19]}) -> {a.path}")
    else:
        typer.echo(
            f"knowledge base {a.version} is already archived in {a.path} with the same content "
            f"({a.content_hash[:19]}); nothing to do"
        )
    if approved_by is not None:
        from sarcoma_cds.kb.archive import archive_dir
        from sarcoma_cds.kb.governance import LEDGER, record_approval

        try:
            rec = record_approval(archive_dir(kb_archive or to), _load(a.path), approved_by, role)
        except ValueError as e:
            raise _fail(str(e)) from None
        typer.echo(
            f"approval by {approved_by} of {a.version} recorded in "
            f"{archive_dir(kb_archive or to) / LEDGER} ({rec['hash'][:19]})"
        )


def kb_approvals_cmd(
    kb_archive: Path | None = typer.Option(None, "--kb-archive", help=_ARCHIVE_HELP),
) -> None:
    """List the approvals recorded in the archive and verify their hash chain (exit 2 if broken)."""
    from sarcoma_cds.kb.archive import archive_dir
    from sarcoma_cds.kb.governance import read_ledger, verify_ledger

    root = archive_dir(kb_archive)
    for rec in read_ledger(root):
        typer.echo(
            f"{rec['recorded_at']}  {rec['version']}  {rec['content_hash'][:19]}  {rec['approver']}"
            f"{' (' + rec['role'] + ')' if rec.get('role') else ''}  {rec['hash'][:19]}"
        )
    problems = verify_ledger(root)
    if problems:
        for p in problems:
            typer.echo(f"error: {p}", err=True)
        raise typer.Exit(2)
    typer.echo(f"approval ledger in {root}: {len(read_ledger(root))} record(s), chain intact")


def register(app: typer.Typer) -> None:
    app.command("concordance")(concordance)
    app.command("synth")(synth_cmd)
    kb_app.command("diff")(kb_diff_cmd)
    kb_app.command("impact")(kb_impact_cmd)
    kb_app.command("archive")(kb_archive_cmd)
    kb_app.command("approvals")(kb_approvals_cmd)
    if not any(g.name == "kb" for g in app.registered_groups):
        app.add_typer(kb_app, name="kb")
