"""``sarcoma-cds concordance``: evaluate a cohort file and write the output files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sarcoma_cds.cohort.aggregate import Aggregates, aggregates, one_line, summary_of
from sarcoma_cds.cohort.evaluate import evaluate, prepare, prepare_for
from sarcoma_cds.cohort.outputs import PARQUET, atomic, invalid_rows
from sarcoma_cds.cohort.progress import progress_bar, rows_task
from sarcoma_cds.domain.knowledge import CompiledKB


def run_concordance(cohort: str | Path, out_dir: str | Path, kb: CompiledKB, engine: str = "polars",
                    compare_kb: CompiledKB | None = None, progress: bool = False) -> dict[str, Any]:
    from contextlib import nullcontext

    import polars as pl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = ["read and validate", f"evaluate ({engine})", "aggregate", "write files", "report"]
    if compare_kb is not None:
        steps.insert(2, "evaluate old knowledge base")
    ctx: Any = nullcontext()
    bar = None
    if progress:
        from rich.console import Console

        # on stderr: stdout carries only the result line (scripts read it)
        ctx = progress_bar(Console(stderr=True))
    with ctx as prog:
        if prog is not None:
            bar = prog.add_task(steps[0], total=len(steps))

        def step(i: int) -> None:
            if prog is not None and bar is not None:
                prog.update(bar, completed=i, description=steps[min(i, len(steps) - 1)])

        # spark: read, validated, evaluated and aggregated on the cluster (spark_pipeline)
        if engine == "spark":
            from sarcoma_cds.cohort.spark_pipeline import evaluate_file, write_outputs

            agg = write_outputs(cohort, out, kb, progress=rows_task(prog, "patients written"))
            step(2)
            changes = None
            if compare_kb is not None:  # (both versions' patients on the driver)
                from sarcoma_cds.cohort.impact import compare

                new = pl.read_parquet(out / "patients.parquet")
                changes = compare(evaluate_file(cohort, compare_kb).patients, new)
                step(3)
            rec = _recommendation_impact(cohort, compare_kb, kb)
            s = _summary_and_report(
                agg, kb, engine, compare_kb, (changes, rec), out, step, len(steps)
            )
        else:
            s = _in_process(cohort, out, kb, engine, compare_kb, prog, step, steps)
        step(len(steps))
    s["_line"] = one_line(s)
    return s


def _in_process(cohort: str | Path, out: Path, kb: CompiledKB, engine: str,
                compare_kb: CompiledKB | None, prog: Any, step: Callable[[int], None],
                steps: list[str]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    prep = prepare(cohort, kb)
    norm = prep.norm
    steps[1] += f": {norm.height:,} patients"
    step(1)
    per_row = None
    if engine == "python":  # (minutes for big cohorts: show the rows and the time left)
        valid = norm.filter(pl.col("_err").list.len() == 0).height
        report = rows_task(prog, "patients evaluated")
        if report is not None:
            def per_row(n: int) -> None:
                report(n, valid)
    patients = evaluate(prep, engine, progress=per_row)
    step(2)
    changes = None
    if compare_kb is not None:
        from sarcoma_cds.cohort.impact import compare

        changes = compare(evaluate(prepare_for(prep, compare_kb), engine), patients)
        step(3)
    rec = _recommendation_impact(norm, compare_kb, kb)
    # the patient files are written on two worker threads (Polars releases the GIL) while
    # the summary and the report (mostly Python: plotly) are built
    pool = ThreadPoolExecutor(2)
    written = [
        pool.submit(atomic, out / "patients.parquet",
                    lambda p: patients.write_parquet(p, **PARQUET)),
        pool.submit(atomic, out / "patients.csv", lambda p: patients.write_csv(p, batch_size=8192)),
    ]
    try:
        atomic(out / "invalid_rows.csv", invalid_rows(norm).write_csv)
        s = _summary_and_report(
            aggregates(patients, norm),
            kb,
            engine,
            compare_kb,
            (changes, rec),
            out,
            step,
            len(steps),
        )
        for w in written:
            w.result()
    finally:
        pool.shutdown(wait=True)
    return s


def _recommendation_impact(
    cohort: Any, old: CompiledKB | None, new: CompiledKB
) -> dict[str, Any] | None:
    """Whose recommendation changes between the versions (per patient, exact; ADR 0308)."""
    if old is None:
        return None
    from sarcoma_cds.cohort.rec_impact import cohort_facts, impact

    return impact(cohort_facts(cohort), old, new).as_dict()


def _summary_and_report(agg: Aggregates, kb: CompiledKB, engine: str, compare_kb: CompiledKB | None,
                        changes_and_impact: tuple[Any, dict[str, Any] | None], out: Path,
                        step: Callable[[int], None], n_steps: int) -> dict[str, Any]:
    from sarcoma_cds.cohort.report import build

    changes, rec = changes_and_impact
    s = summary_of(agg, kb=kb)
    s["guideline"] = {"version": kb.version, "content_hash": kb.content_hash}
    s["engine"] = engine
    if changes is not None:
        # patients_changed: the concordance of the treatment given changes; the recommendation
        # itself (status of every step and regimen, group, warnings, questions): "recommendation"
        s["guideline_change"] = {
            "from_version": compare_kb.version if compare_kb else None,
            "from_content_hash": compare_kb.content_hash if compare_kb else None,
            "patients_changed": changes.height,
            "recommendation": rec,
        }
    step(n_steps - 2)
    if changes is not None:
        atomic(out / "guideline_change.csv", changes.write_csv)
    summary_text = json.dumps(s, indent=1, default=str)
    atomic(out / "summary.json", lambda p: p.write_text(summary_text))
    step(n_steps - 1)
    report = build(s, agg)
    atomic(out / "report.html", lambda p: p.write_text(report, encoding="utf-8"))
    return s
