"""How the cohort output files are written, whichever engine evaluated the cohort.

Shared by the in-process run (:mod:`sarcoma_cds.cohort.run`) and the Spark pipeline
(:mod:`sarcoma_cds.cohort.spark_pipeline`), which ``run`` calls: kept apart from both so that
neither imports the other for them (the two modules used to import each other).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


def invalid_rows(norm: pl.DataFrame) -> pl.DataFrame:
    """One row per problem of each invalid row: row, patient_id, field, message."""
    import polars as pl

    problems = pl.col("problem").str.split_exact(": ", 1).struct.rename_fields(["field", "message"])
    return (norm.filter(pl.col("_err").list.len() > 0)
            .select("row", "patient_id", pl.col("_err").alias("problem")).explode("problem")
            .with_columns(problems).unnest("problem"))


# zstd level 1 (the same size as the default level here, less CPU); no min/max statistics: rows
# are in input order, so every row group spans every value and min/max would prune nothing,
# and computing them costs a sixth of the write (null counts are kept)
PARQUET: dict[str, Any] = {
    "compression": "zstd", "compression_level": 1,
    "statistics": {"min": False, "max": False, "distinct_count": False, "null_count": True},
}


def atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write to a temporary name, then rename: an interrupted run never leaves half a file in
    place of the previous one."""
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    os.replace(tmp, path)
