"""Guideline-change impact on concordance: which patients' concordance changes between two
knowledge-base versions; ``kb_diff`` (what changed in the algorithm) is kept here for callers.
The recommendation-level impact is :mod:`sarcoma_cds.cohort.rec_impact`."""

from __future__ import annotations

from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB


def compare(old: Any, new: Any) -> Any:
    """Patients whose group, candidates, out-of-scope, delivered-item statuses or class differ.

    ``old`` and ``new`` are patient frames from :func:`sarcoma_cds.cohort.evaluate.evaluate`
    on the same cohort. ``why`` names every changed column, old -> new.
    """
    import polars as pl

    cols = ["group", "candidates", "out_of_scope", "statuses", "concordance"]
    j = new.select("patient_id", *cols, "reason").join(
        old.select("patient_id", *cols), on="patient_id", how="left", suffix="_old")
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in cols])
    why = (
        pl.concat_list(
            [
                pl.when(pl.col(c).ne_missing(pl.col(f"{c}_old"))).then(
                    pl.concat_str(
                        pl.lit(f"{c}: "),
                        pl.col(f"{c}_old").fill_null("-"),
                        pl.lit(" -> "),
                        pl.col(c).fill_null("-"),
                    )
                )
                for c in cols
            ]
        )
        .list.drop_nulls()
        .list.join(" | ")
    )
    return j.filter(changed).with_columns(why.alias("why")).select(
        "patient_id", "group_old", "group", "concordance_old", "concordance", "why")


def kb_diff(old: CompiledKB, new: CompiledKB) -> list[str]:
    """Human-readable lines: every change between the two knowledge bases
    (:mod:`sarcoma_cds.kb.diff`)."""
    from sarcoma_cds.kb.diff import kb_changes, to_lines

    return to_lines(old, new, kb_changes(old, new))
