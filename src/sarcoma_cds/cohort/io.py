"""Read a cohort file, validate every row, encode the valid ones for the evaluators.

Validation is per row and per field, like the per-patient contract: a bad value is
reported as ``field: problem`` and the row is kept out of evaluation and statistics,
never coerced. Columns that are not contract facts (or the cohort columns
``patient_id``, ``centre``, ``diagnosis_date``, ``delivered``) are an error for the
whole file: a misspelt column must never be silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sarcoma_cds.cohort.compiler import FACTS, SITES, KBCompilation
from sarcoma_cds.domain.facts import FACT_FIELDS

COHORT_COLUMNS = ("patient_id", "centre", "diagnosis_date", "delivered")
LIST_FIELDS = tuple(f for f in FACT_FIELDS if FACTS[f][0] == "list")


class CohortError(ValueError):
    """The file as a whole cannot be read (format, unknown columns, no patient_id)."""


def read_raw(path: str | Path) -> Any:
    """The file as a Polars DataFrame; CSV is read as text so nothing is coerced on the way in."""
    import polars as pl

    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            df = pl.read_csv(p, infer_schema=False)
        elif suffix in (".parquet", ".pq"):
            df = pl.read_parquet(p)
        elif suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(p, infer_schema_length=None)
        else:
            raise CohortError(f"{p.name}: unsupported file type (use .csv, .parquet or .jsonl)")
    except (OSError, pl.exceptions.PolarsError) as e:
        raise CohortError(f"{p.name}: cannot read: {e}") from e
    unknown = [c for c in df.columns if c not in FACT_FIELDS and c not in COHORT_COLUMNS]
    if unknown:
        raise CohortError("unknown column(s) (not contract facts; check the spelling): " + ", ".join(unknown))
    if "patient_id" not in df.columns:
        raise CohortError("the cohort needs a patient_id column")
    return df


def _as_list(df: Any, name: str) -> Any:
    """A list column from native lists, JSON arrays or ';'-separated text; NULL stays NULL."""
    import polars as pl

    if name not in df.columns:
        return pl.lit(None, dtype=pl.List(pl.Utf8))
    dt = df.schema[name]
    c = pl.col(name)
    if isinstance(dt, pl.List):
        return c.cast(pl.List(pl.Utf8))
    if dt == pl.Null:
        return pl.lit(None, dtype=pl.List(pl.Utf8))
    s = c.cast(pl.Utf8).str.strip_chars()
    is_json = s.str.starts_with("[")
    lst = (pl.when(is_json).then(s.str.strip_chars("[] \t").str.split(","))
           .otherwise(s.str.split(";")))
    lst = lst.list.eval(pl.element().str.strip_chars(" \t\"'")).list.eval(
        pl.element().filter(pl.element().str.len_chars() > 0))
    return pl.when(s.is_null()).then(None).otherwise(lst)


def normalise(df: Any) -> Any:
    """Every fact column in a canonical type (text, float, int, bool, list of text) plus ``_err``.

    ``_err`` lists the row's problems as ``field: problem`` strings (empty when valid).
    """
    import polars as pl

    n = df.height
    cols: list[Any] = [pl.int_range(0, n, dtype=pl.Int64).alias("row")]
    errs: list[Any] = []

    def err(cond: Any, msg: Any) -> None:
        errs.append((cond, msg))

    pid = pl.col("patient_id").cast(pl.Utf8)
    cols.append(pid.alias("patient_id"))
    err(pid.is_null() | (pid.str.strip_chars() == ""), pl.lit("patient_id: required field is missing"))
    err(pid.is_not_null() & pid.is_duplicated(), pl.lit("patient_id: duplicated in the cohort"))
    cols.append((pl.col("centre").cast(pl.Utf8) if "centre" in df.columns else pl.lit(None, pl.Utf8)).alias("centre"))
    if "diagnosis_date" in df.columns:
        raw = pl.col("diagnosis_date").cast(pl.Utf8)
        parsed = raw.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        cols.append(parsed.alias("diagnosis_date"))
        err(raw.is_not_null() & parsed.is_null(),
            pl.concat_str(pl.lit("diagnosis_date: expected an ISO date, got "), raw))
    else:
        cols.append(pl.lit(None, pl.Date).alias("diagnosis_date"))

    for name in FACT_FIELDS:
        kind, vocab = FACTS[name]
        present = name in df.columns and df.schema[name] != pl.Null
        c = pl.col(name)
        if kind == "cat":
            if not present:
                cols.append(pl.lit(None, pl.Utf8).alias(name))
            else:
                s = c.cast(pl.Utf8)
                cols.append(s.alias(name))
                err(s.is_not_null() & ~s.is_in(list(vocab)),
                    pl.concat_str(pl.lit(f"{name}: '"), s, pl.lit(f"' is not allowed; expected one of {', '.join(vocab)}")))
            if name in ("histology", "primary_site"):
                err(c.is_null() if present else pl.lit(True), pl.lit(f"{name}: required field is missing"))
        elif kind == "bool":
            if not present:
                cols.append(pl.lit(None, pl.Boolean).alias(name))
            elif df.schema[name] == pl.Boolean:
                cols.append(c.alias(name))
            else:
                s = c.cast(pl.Utf8).str.to_lowercase()
                cols.append(pl.when(s == "true").then(True).when(s == "false").then(False).alias(name))
                err(s.is_not_null() & ~s.is_in(["true", "false"]),
                    pl.concat_str(pl.lit(f"{name}: expected true, false or empty, got '"), c.cast(pl.Utf8), pl.lit("'")))
        elif kind in ("num", "int"):
            if not present:
                cols.append(pl.lit(None, pl.Float64).alias(name))
                continue
            dt = df.schema[name]
            if dt.is_numeric():
                x = c.cast(pl.Float64)
                bad_type = pl.lit(False)
            else:
                x = c.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
                bad_type = c.is_not_null() & x.is_null()
                err(bad_type, pl.concat_str(pl.lit(f"{name}: expected a number, got '"), c.cast(pl.Utf8), pl.lit("'")))
            if kind == "int":
                err(x.is_not_null() & (x != x.floor()),
                    pl.concat_str(pl.lit(f"{name}: expected a whole number, got "), x.cast(pl.Utf8)))
            lo, lo_ok, hi = {"size_cm": (0, False, 100), "mitotic_rate_per_5mm2": (0, True, 10000),
                             "age_years": (0, True, 120), "ecog": (0, True, 4)}.get(name, (None, True, None))
            if lo is not None:
                below = (x < lo) if lo_ok else (x <= lo)
                err(x.is_not_null() & (below | (x > hi)),
                    pl.lit(f"{name}: must be {'>=' if lo_ok else '>'} {lo} and <= {hi}"))
            cols.append(x.alias(name))
        else:  # list
            lst = _as_list(df, name) if present else pl.lit(None, dtype=pl.List(pl.Utf8))
            cols.append(lst.alias(name))
            if present:
                bad = lst.list.eval(pl.element().filter(~pl.element().is_in(list(vocab)))).list.join(", ")
                err(lst.is_not_null() & (bad != ""),
                    pl.concat_str(pl.lit(f"{name}: not allowed: "), bad, pl.lit(f"; expected items of {', '.join(vocab)}")))
                err(lst.is_not_null() & (lst.list.len() != lst.list.unique().list.len()),
                    pl.lit(f"{name}: a value is listed twice"))
    cols.append((_as_list(df, "delivered") if "delivered" in df.columns
                 else pl.lit(None, dtype=pl.List(pl.Utf8))).alias("delivered"))
    out = df.select(cols)
    # contradictions (facts.contradictions)
    m = pl.col("metastasis")
    cerr = [
        pl.when(pl.col("metastatic_burden").is_not_null() & (m == "M0"))
        .then(pl.lit("metastatic_burden: given only with metastasis M1 (metastasis is M0)")),
        pl.when((pl.col("metastatic_sites").list.len() > 0) & (m == "M0"))
        .then(pl.lit("metastatic_sites: metastatic sites are listed but metastasis is M0")),
        pl.when(pl.col("progression_extent").is_not_null()
                & (pl.col("disease_status").fill_null("") != "progressive"))
        .then(pl.lit("progression_extent: given only with disease_status progressive")),
    ]
    # messages are built only for the rows that have a problem (usually few): cheap on big cohorts
    conds = [pl.coalesce(c, pl.lit(False)) for c, _ in errs]
    bad_field = df.select(pl.any_horizontal(conds).alias("b")).to_series() if conds else pl.Series([False] * n)
    out = out.with_columns(pl.concat_list(cerr).list.drop_nulls().alias("_cerr"))
    bad_rows = bad_field | (out.get_column("_cerr").list.len() > 0)
    if bad_rows.any():
        sub = df.with_row_index("row").filter(bad_rows)
        msgs = sub.select(pl.col("row").cast(pl.Int64), pl.concat_list(
            [pl.when(c).then(m).cast(pl.Utf8) for c, m in errs]).list.drop_nulls().alias("_ferr"))
        out = out.join(msgs, on="row", how="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.List(pl.Utf8)).alias("_ferr"))
    out = out.with_columns(pl.col("_ferr").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
    out = out.with_columns(pl.concat_list(["_ferr", "_cerr"]).list.drop_nulls().alias("_err")).drop("_ferr", "_cerr")
    return out


def check_delivered(norm: Any, comp: KBCompilation) -> Any:
    """Add ``items`` (canonical delivered items, de-duplicated) and their problems to ``_err``."""
    import polars as pl

    # canonical items per distinct delivered list (few distinct lists), joined back
    key = pl.col("delivered").list.join("\x1f")
    distinct = norm.select(key.alias("_dk"), "delivered").unique("_dk").with_columns(
        pl.col("delivered").list.eval(
            pl.element().str.split("+").list.eval(pl.element().str.strip_chars()).list.sort().list.join("+")
        ).list.unique(maintain_order=True).alias("items")).drop("delivered")
    norm = norm.with_columns(key.alias("_dk")).join(distinct, on="_dk", how="left", nulls_equal=True).drop("_dk")
    uniq = norm.select(pl.col("items").explode().drop_nulls().unique()).to_series().to_list()
    bad = [u for u in uniq if not _known_item(u, comp)]
    if bad:
        flag = pl.col("items").list.eval(pl.element().filter(pl.element().is_in(bad))).list.join(", ")
        norm = norm.with_columns(
            pl.when(pl.col("items").is_not_null() & (flag != ""))
            .then(pl.col("_err").list.concat(pl.concat_list(pl.concat_str(
                pl.lit("delivered: unknown treatment or drug: "), flag))))
            .otherwise(pl.col("_err")).alias("_err"))
    return norm


def _known_item(item: str, comp: KBCompilation) -> bool:
    if item in comp.treatments:
        return True
    parts = item.split("+")
    return all(p in comp.drugs for p in parts) and len(parts) > 0


def encode(norm: Any, comp: KBCompilation) -> Any:
    """Encoded columns for the evaluators (valid rows only): see :mod:`sarcoma_cds.cohort.compiler`."""
    import polars as pl

    cols: list[Any] = [pl.col("row")]
    for name in FACT_FIELDS:
        kind, vocab = FACTS[name]
        c = pl.col(name)
        if kind == "cat":
            cols.append(c.replace_strict(list(vocab), [1 << i for i in range(len(vocab))], default=None,
                                         return_dtype=pl.Int64).alias(f"f_{name}"))
        elif kind == "bool":
            cols.append(pl.when(c).then(2).when(~c).then(1).cast(pl.Int64).alias(f"f_{name}"))
        elif kind == "list":
            bits = c.list.eval(pl.element().replace_strict(
                list(vocab), [1 << i for i in range(len(vocab))], default=0, return_dtype=pl.Int64)).list.sum()
            cols.append(pl.when(c.is_null()).then(None).otherwise(bits).cast(pl.Int64).alias(f"f_{name}"))
        else:
            cols.append(c.cast(pl.Float64).alias(f"f_{name}"))
    cols.append(pl.col("primary_site").replace_strict(list(SITES), list(range(len(SITES))), default=None,
                                                      return_dtype=pl.Int64).alias("i_primary_site"))
    idx = pl.col("items").list.eval(pl.element().replace_strict(
        comp.items, list(range(len(comp.items))), default=-1, return_dtype=pl.Int64))
    cols.append(pl.col("items").list.len().fill_null(0).cast(pl.Int64).alias("n_items"))
    for j in range(comp.slots):
        cols.append(idx.list.get(j, null_on_oob=True).alias(f"d_{j}"))
    return norm.select(cols)


def max_items(norm: Any) -> int:
    import polars as pl

    v = norm.select(pl.col("items").list.len().max()).item()
    return max(1, int(v or 0))


def facts_dict(rec: dict[str, Any]) -> dict[str, Any]:
    """One normalised row as contract facts (for the per-patient engine)."""
    out: dict[str, Any] = {}
    for name in FACT_FIELDS:
        v = rec.get(name)
        if v is None:
            continue
        kind = FACTS[name][0]
        if kind == "int":
            v = int(v)
        elif kind == "list":
            v = list(v)
        out[name] = v
    return out
