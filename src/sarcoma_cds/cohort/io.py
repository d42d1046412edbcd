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

from sarcoma_cds.cohort.compiler import FACTS, SITES, ItemVocabulary, KBCompilation
from sarcoma_cds.domain.facts import FACT_FIELDS

COHORT_COLUMNS = ("patient_id", "centre", "diagnosis_date", "delivered")
LIST_FIELDS = tuple(f for f in FACT_FIELDS if FACTS[f][0] == "list")


def _ranges() -> dict[str, tuple[Any, bool, Any]]:
    """fact -> (lower bound, lower bound inclusive, upper bound), from the contract's Field
    constraints."""
    from sarcoma_cds.domain.facts import PatientFacts

    out: dict[str, tuple[Any, bool, Any]] = {}
    for name in FACT_FIELDS:
        lo: Any = None
        lo_ok, hi = True, None
        for c in PatientFacts.model_fields[name].metadata:
            if getattr(c, "gt", None) is not None:
                lo, lo_ok = c.gt, False
            elif getattr(c, "ge", None) is not None:
                lo, lo_ok = c.ge, True
            elif getattr(c, "le", None) is not None:
                hi = c.le
        if lo is not None and hi is not None:
            out[name] = (lo, lo_ok, hi)
    return out


RANGES = _ranges()


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
    check_columns(df.columns)
    return df


def check_columns(columns: list[str]) -> None:
    """A misspelt column must never be silently ignored; every cohort needs patient_id."""
    unknown = [c for c in columns if c not in FACT_FIELDS and c not in COHORT_COLUMNS]
    if unknown:
        raise CohortError(
            "unknown column(s) (not contract facts; check the spelling): " + ", ".join(unknown)
        )
    if "patient_id" not in columns:
        raise CohortError("the cohort needs a patient_id column")


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


def normalise(df: Any, row: str | None = None, duplicated: str | None = None) -> Any:
    """Every fact column in a canonical type (text, float, int, bool, list of text) plus ``_err``.

    ``_err`` lists the row's problems as ``field: problem`` strings (empty when valid).
    ``row`` / ``duplicated``: columns of ``df`` holding the row number and the "patient_id occurs
    more than once in the whole cohort" flag, when ``df`` is one batch of a bigger cohort (Spark);
    by default they are computed from ``df`` itself.
    """
    import polars as pl

    n = df.height
    cols: list[Any] = [
        (pl.col(row).cast(pl.Int64) if row else pl.int_range(0, n, dtype=pl.Int64)).alias("row")
    ]
    errs: list[Any] = []

    def err(cond: Any, msg: Any, flag: Any = None) -> None:
        """``cond``/``msg``: the problem and its text, evaluated on flagged rows only; ``flag``: a
        cheaper whole-column test that is true at least where ``cond`` is (default: ``cond``)."""
        errs.append((cond, msg, cond if flag is None else flag))

    pid = pl.col("patient_id").cast(pl.Utf8)
    cols.append(pid.alias("patient_id"))
    err(
        pid.is_null() | (pid.str.strip_chars() == ""),
        pl.lit("patient_id: required field is missing"),
    )
    # exact duplicates are found among the rows whose id hash repeats (every copy of a repeated id
    # is such a row, so is_duplicated over the flagged rows is the whole cohort's answer)
    if duplicated:
        err(pid.is_not_null() & pl.col(duplicated), pl.lit("patient_id: duplicated in the cohort"))
    else:
        dup_possible = (df.select(pid.hash().n_unique()).item() != n) if n else False
        err(pid.is_not_null() & pid.is_duplicated(), pl.lit("patient_id: duplicated in the cohort"),
            (pid.is_not_null() & pid.hash().is_duplicated()) if dup_possible else pl.lit(False))
    cols.append(
        (pl.col("centre").cast(pl.Utf8) if "centre" in df.columns else pl.lit(None, pl.Utf8)).alias(
            "centre"
        )
    )
    date_type = df.schema.get("diagnosis_date")
    if date_type == pl.Date:  # (typed input: nothing to parse)
        cols.append(pl.col("diagnosis_date"))
    elif isinstance(date_type, pl.Datetime):
        cols.append(pl.col("diagnosis_date").dt.date())
    elif "diagnosis_date" in df.columns:
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
                cols.append(pl.lit(None, pl.Enum(list(vocab))).alias(name))
            elif df.schema[name] == pl.Enum(
                list(vocab)
            ):  # typed as the vocabulary: every value is in it
                cols.append(c)
            else:
                # (an Enum of the vocabulary: one lookup validates the value and gives the code
                # the evaluators use; a value outside the vocabulary becomes NULL and is flagged)
                s = c.cast(pl.Utf8)
                e = s.cast(pl.Enum(list(vocab)), strict=False)
                cols.append(e.alias(name))
                err(
                    s.is_not_null() & e.is_null(),
                    pl.concat_str(
                        pl.lit(f"{name}: '"),
                        s,
                        pl.lit(f"' is not allowed; expected one of {', '.join(vocab)}"),
                    ),
                )
            if name in ("histology", "primary_site"):
                err(
                    c.is_null() if present else pl.lit(True),
                    pl.lit(f"{name}: required field is missing"),
                )
        elif kind == "bool":
            if not present:
                cols.append(pl.lit(None, pl.Boolean).alias(name))
            elif df.schema[name] == pl.Boolean:
                cols.append(c.alias(name))
            else:
                s = c.cast(pl.Utf8).str.to_lowercase()
                cols.append(
                    pl.when(s == "true").then(True).when(s == "false").then(False).alias(name)
                )
                err(
                    s.is_not_null() & ~s.is_in(["true", "false"]),
                    pl.concat_str(
                        pl.lit(f"{name}: expected true, false or empty, got '"),
                        c.cast(pl.Utf8),
                        pl.lit("'"),
                    ),
                )
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
                err(
                    bad_type,
                    pl.concat_str(
                        pl.lit(f"{name}: expected a number, got '"), c.cast(pl.Utf8), pl.lit("'")
                    ),
                )
            if kind == "int":
                err(
                    x.is_not_null() & (x != x.floor()),
                    pl.concat_str(
                        pl.lit(f"{name}: expected a whole number, got "), x.cast(pl.Utf8)
                    ),
                )
            lo, lo_ok, hi = RANGES.get(name, (None, True, None))
            if lo is not None:
                below = (x < lo) if lo_ok else (x <= lo)
                err(x.is_not_null() & (below | (x > hi)),
                    pl.lit(f"{name}: must be {'>=' if lo_ok else '>'} {lo} and <= {hi}"))
            cols.append(x.alias(name))
        else:  # list
            lst = _as_list(df, name) if present else pl.lit(None, dtype=pl.List(pl.Utf8))
            cols.append(lst.alias(name))
            if present:
                bad = lst.list.eval(
                    pl.element().filter(~pl.element().is_in(list(vocab)))
                ).list.join(", ")
                err(
                    lst.is_not_null() & (bad != ""),
                    pl.concat_str(
                        pl.lit(f"{name}: not allowed: "),
                        bad,
                        pl.lit(f"; expected items of {', '.join(vocab)}"),
                    ),
                    lst.list.eval(~pl.element().is_in(list(vocab))).list.any(),
                )
                err(
                    lst.is_not_null() & (lst.list.len() != lst.list.unique().list.len()),
                    pl.lit(f"{name}: a value is listed twice"),
                    lst.list.len() != lst.list.n_unique(),
                )
    cols.append((_as_list(df, "delivered") if "delivered" in df.columns
                 else pl.lit(None, dtype=pl.List(pl.Utf8))).alias("delivered"))
    # one pass over the whole table: canonical columns and "has a field problem" (cheap flags)
    flags = [pl.coalesce(f, pl.lit(False)) for _, _, f in errs]
    # (lazy: common subexpressions such as the parsed date are computed once)
    out = (
        df.lazy()
        .select([*cols, (pl.any_horizontal(flags) if flags else pl.lit(False)).alias("_bad")])
        .collect(engine="streaming")
    )
    # contradictions (facts.contradictions), on the canonical columns
    m = pl.col("metastasis")
    contra = [
        (
            pl.col("metastatic_burden").is_not_null() & (m == "M0"),
            "metastatic_burden: given only with metastasis M1 (metastasis is M0)",
        ),
        (
            (pl.col("metastatic_sites").list.len() > 0) & (m == "M0"),
            "metastatic_sites: metastatic sites are listed but metastasis is M0",
        ),
        (
            pl.col("progression_extent").is_not_null()
            & (pl.col("disease_status") != "progressive").fill_null(True),
            "progression_extent: given only with disease_status progressive",
        ),
    ]
    bad_rows = out.select(
        pl.col("_bad") | pl.any_horizontal([pl.coalesce(c, pl.lit(False)) for c, _ in contra])
    ).to_series()
    out = out.drop("_bad")
    empty = pl.lit([], dtype=pl.List(pl.Utf8))
    if not bad_rows.any():
        return out.with_columns(empty.alias("_err"))
    # messages only for the flagged rows (usually few): field problems, then contradictions
    sub = df.filter(bad_rows)
    ferr = sub.select(pl.concat_list([pl.when(c).then(msg).cast(pl.Utf8) for c, msg, _ in errs])
                      .list.drop_nulls().alias("_ferr")) if errs else None
    csub = out.filter(bad_rows)
    cerr = csub.select(pl.concat_list([pl.when(c).then(pl.lit(msg)) for c, msg in contra])
                       .list.drop_nulls().alias("_cerr"))
    msgs = pl.concat(
        [csub.select("row"), *([ferr] if ferr is not None else []), cerr], how="horizontal"
    )
    msgs = msgs.select(
        "row",
        (pl.concat_list(["_ferr", "_cerr"]) if ferr is not None else pl.col("_cerr"))
        .list.drop_nulls()
        .alias("_err"),
    )
    # (joined on the narrow row column, then placed beside the wide table: rows stay in order)
    errs_col = (
        out.select("row").join(msgs, on="row", how="left", maintain_order="left").get_column("_err")
    )
    return out.with_columns(errs_col.fill_null(empty).alias("_err"))


def check_delivered(norm: Any, comp: KBCompilation | ItemVocabulary) -> Any:
    """Add ``items`` (canonical delivered items, de-duplicated) and their problems to ``_err``."""
    return check_delivered_items(norm, comp)[0]


def check_delivered_items(norm: Any, comp: KBCompilation | ItemVocabulary) -> tuple[Any, list[str]]:
    """:func:`check_delivered`, and every distinct item of the cohort (the decoder's vocabulary
    comes from it without reading the lists again)."""
    import polars as pl

    # canonical form per distinct delivered element (few distinct elements), mapped over the lists
    # (the same Polars string expression as before, on the distinct elements only)
    elems = norm.select(pl.col("delivered").explode().drop_nulls().unique()).with_columns(
        pl.col("delivered").str.split("+").list.eval(pl.element().str.strip_chars()).list.sort().list.join("+")
        .alias("canon"))
    canon = dict(
        zip(
            elems.get_column("delivered").to_list(),
            elems.get_column("canon").to_list(),
            strict=True,
        )
    )
    # (every non-null element is a key, so the non-strict replace is exact; replace_strict inside
    # list.eval takes a slow path on some list layouts). Both steps are skipped when they would
    # change nothing: elements already canonical (the usual case), no item listed twice.
    items = pl.col("delivered")
    if any(k != v for k, v in canon.items()):
        items = items.list.eval(pl.element().replace(list(canon), list(canon.values())))
    norm = norm.with_columns(items.alias("items"))
    if norm.select((pl.col("items").list.len() != pl.col("items").list.n_unique()).any()).item():
        norm = norm.with_columns(pl.col("items").list.unique(maintain_order=True))
    bad = sorted({u for u in canon.values() if not _known_item(u, comp)})
    if bad:
        flag = (
            pl.col("items").list.eval(pl.element().filter(pl.element().is_in(bad))).list.join(", ")
        )
        norm = norm.with_columns(
            pl.when(pl.col("items").is_not_null() & (flag != ""))
            .then(pl.col("_err").list.concat(pl.concat_list(pl.concat_str(
                pl.lit("delivered: unknown treatment or drug: "), flag))))
            .otherwise(pl.col("_err")).alias("_err"))
    return norm, sorted(set(canon.values()))


def _known_item(item: str, comp: KBCompilation | ItemVocabulary) -> bool:
    if item in comp.treatments:
        return True
    parts = item.split("+")
    return all(p in comp.drugs for p in parts) and len(parts) > 0


def encode_with_items(norm: Any, comp: KBCompilation,
                      present: list[str] | None = None) -> tuple[Any, Any, list[str]]:
    """Encoded columns for the evaluators (valid rows only: see :mod:`sarcoma_cds.cohort.compiler`),
    and item codes ``x_j`` into ``vocab`` (``comp.items`` then any other known item of these rows)
    for the decoder: a row's items without going back to strings. ``present``: the items that
    occur (at least those of ``norm``), when known."""
    vocab = _vocab(norm, comp, present)
    enc = encode_items(norm, comp.items, comp.slots, vocab, encode_facts(norm))
    xcols = [f"x_{j}" for j in range(comp.slots)]
    return enc.drop(xcols), enc.select("row", *xcols), vocab


def encode_lazy(
    norm: Any, comp: KBCompilation, present: list[str] | None = None
) -> tuple[Any, list[str]]:
    """The encoded columns and the item codes ``x_j`` as one LazyFrame (the evaluator computes
    them as it streams, nothing wide is materialised), and ``vocab`` (``present``: as for
    :func:`encode_with_items`)."""
    vocab = _vocab(norm, comp, present)
    return encode_items(norm.lazy(), comp.items, comp.slots, vocab, encode_facts(norm)), vocab


def encode_facts(norm: Any) -> list[Any]:
    """Expressions over ``norm`` (a DataFrame: the codes depend on its column types)."""
    import polars as pl

    schema = norm.collect_schema() if hasattr(norm, "collect_schema") else norm.schema
    cols: list[Any] = [pl.col("row")]
    for name in FACT_FIELDS:
        kind, vocab = FACTS[name]
        c = pl.col(name)
        if kind == "cat":
            if schema[name] == pl.Enum(
                list(vocab)
            ):  # (normalise's columns: code -> bit, no strings)
                bits = pl.lit(pl.Series([1 << i for i in range(len(vocab))], dtype=pl.Int64))
                cols.append(bits.gather(c.to_physical()).alias(f"f_{name}"))
            else:
                cols.append(
                    c.cast(pl.Utf8)
                    .replace_strict(
                        list(vocab),
                        [1 << i for i in range(len(vocab))],
                        default=None,
                        return_dtype=pl.Int64,
                    )
                    .alias(f"f_{name}")
                )
        elif kind == "bool":
            cols.append(pl.when(c).then(2).when(~c).then(1).cast(pl.Int64).alias(f"f_{name}"))
        elif kind == "list":
            # (replace_strict inside list.eval takes a slow path on some list layouts: text
            # replace + cast, exact for vocabulary items, 0 for anything else)
            e = pl.element()
            bits = c.list.eval(
                pl.when(e.is_in(list(vocab)))
                .then(
                    e.replace(list(vocab), [str(1 << i) for i in range(len(vocab))]).cast(
                        pl.Int64, strict=False
                    )
                )
                .otherwise(pl.lit(0, pl.Int64))
            ).list.sum()
            cols.append(pl.when(c.is_null()).then(None).otherwise(bits).cast(pl.Int64).alias(f"f_{name}"))
        else:
            # whole-number facts stay integers: stage 2 may key on them
            # (cohort/pack.py packs integers)
            cols.append(c.cast(pl.Int64 if kind == "int" else pl.Float64).alias(f"f_{name}"))
    site = pl.col("primary_site")
    if schema["primary_site"] == pl.Enum(list(SITES)):
        cols.append(site.to_physical().cast(pl.Int64).alias("i_primary_site"))
    else:
        cols.append(
            site.cast(pl.Utf8)
            .replace_strict(
                list(SITES), list(range(len(SITES))), default=None, return_dtype=pl.Int64
            )
            .alias("i_primary_site")
        )
    return cols


def item_vocab(items: list[str] | tuple[str, ...], present: list[str]) -> list[str]:
    """The decoder's item codes: the knowledge base's items, then the other items present,
    sorted."""
    known = set(items)
    return [*items, *sorted({x for x in present if x not in known})]


def _vocab(norm: Any, comp: KBCompilation, present: list[str] | None = None) -> list[str]:
    import polars as pl

    if present is None:
        present = norm.select(pl.col("items").explode().drop_nulls().unique()).to_series().to_list()
    return item_vocab(comp.items, present)


def encode_items(
    norm: Any, items: list[str] | tuple[str, ...], slots: int, vocab: list[str], cols: list[Any]
) -> Any:
    """``cols`` plus ``n_items``; ``d_j``: index of the row's j-th item in ``items`` (-1: not
    there); ``x_j``: its index in ``vocab`` (for decoding). ``norm``: a DataFrame or LazyFrame."""
    import polars as pl

    n = len(items)
    cols = [*cols, pl.col("items").list.len().fill_null(0).cast(pl.Int64).alias("n_items")]
    for j in range(slots):
        cols.append(pl.col("items").list.get(j, null_on_oob=True).replace_strict(
            vocab, list(range(len(vocab))), default=None, return_dtype=pl.Int64).alias(f"x_{j}"))
    enc = norm.select(cols)
    return enc.with_columns(
        pl.when(pl.col(f"x_{j}") < n)
        .then(pl.col(f"x_{j}"))
        .when(pl.col(f"x_{j}").is_not_null())
        .then(-1)
        .alias(f"d_{j}")
        for j in range(slots)
    )


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
