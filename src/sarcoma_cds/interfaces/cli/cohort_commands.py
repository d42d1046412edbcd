"""Cohort commands: ``concordance``, ``synth`` and ``kb diff``.

Polars, DuckDB, PySpark and Plotly are imported inside the commands only, so the
core CLI starts fast and works without the ``cohort`` extra.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sarcoma_cds.interfaces.cli.kb_app import kb_app


def _load(path: Path | None):  # type: ignore[no-untyped-def]
    from sarcoma_cds import load_kb

    return load_kb(path) if path is not None else load_kb()


def concordance(
    cohort: Path = typer.Argument(..., help="Cohort file: .csv, .parquet or .jsonl, one patient a row."),
    out: Path = typer.Option(Path("concordance-out"), "--out", help="Output directory."),
    engine: str = typer.Option("polars", "--engine", help="polars | duckdb | spark | python (per patient)."),
    compare_kb: Path | None = typer.Option(None, "--compare-kb", help="An older knowledge-base directory: "
                                           "list the patients whose group or statuses change, and why."),
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge-base directory (default: the packaged one)."),
) -> None:
    """Guideline concordance of the treatment given to a cohort (patients.csv/.parquet, summary.json, report.html)."""
    from sarcoma_cds.cohort.evaluate import ENGINES
    from sarcoma_cds.cohort.io import CohortError

    if engine not in ENGINES:
        typer.echo(f"error: --engine: use one of {', '.join(ENGINES)}", err=True)
        raise typer.Exit(2)
    from sarcoma_cds.cohort.run import run_concordance

    try:
        old = _load(compare_kb) if compare_kb is not None else None
        s = run_concordance(cohort, out, _load(kb), engine=engine, compare_kb=old, progress=True)
    except CohortError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    line = s["_line"]
    if "guideline_change" in s:
        line += f"; {s['guideline_change']['patients_changed']} patients change vs {s['guideline_change']['from_version']}"
    typer.echo(line + f" -> {out}/")


def synth_cmd(
    n: int = typer.Option(1000, "--n", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same cohort)."),
    out: Path = typer.Option(..., "--out", help="Output file: .csv, .parquet or .jsonl."),
    discordance_rate: float = typer.Option(0.15, "--discordance-rate", min=0.0, max=1.0,
                                           help="Share of patients given a random (mostly off-pathway) treatment."),
) -> None:
    """Write a synthetic cohort (documented distributions; see docs/cohort.md)."""
    from sarcoma_cds.cohort.synth import synth, write

    df = synth(n, seed=seed, discordance_rate=discordance_rate)
    write(df, out)
    typer.echo(f"{n} synthetic patients (seed {seed}) -> {out}")


def kb_diff_cmd(
    old: Path = typer.Argument(..., help="Old knowledge-base directory."),
    new: Path = typer.Argument(None, help="New knowledge-base directory (default: the packaged one)."),
) -> None:
    """What changed in the algorithm: groups, classification, steps, regimens, rules."""
    from sarcoma_cds.cohort.impact import kb_diff

    for line in kb_diff(_load(old), _load(new)):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("concordance")(concordance)
    app.command("synth")(synth_cmd)
    kb_app.command("diff")(kb_diff_cmd)
    if not any(g.name == "kb" for g in app.registered_groups):
        app.add_typer(kb_app, name="kb")
