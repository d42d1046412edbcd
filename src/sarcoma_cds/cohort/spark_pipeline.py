"""``--engine spark`` end to end on the cluster: the driver never holds the input, the facts or
the whole table of results.

Spark reads the file; each batch is validated, encoded and decoded on the executors by the
same Polars functions the other engines use (``mapInArrow``), so there is one validation and
one decoding definition; the rules run as Spark SQL (the same IR). The only cross-row facts
are computed by Spark: duplicated ``patient_id`` (a window count), the number of item slots and
the items outside the knowledge base's list (small, collected). The finished patient rows
stay on the cluster: Spark computes the summary's and the report's small tables
(:func:`aggregates`), and the driver fetches the rows one range of row numbers at a time to
write the patient files (:func:`write_outputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoma_cds.cohort import compiler as C
from sarcoma_cds.cohort.aggregate import Aggregates
from sarcoma_cds.cohort.io import CohortError, check_columns
from sarcoma_cds.domain.facts import FACT_FIELDS
from sarcoma_cds.domain.knowledge import CompiledKB


@dataclass(frozen=True)
class Result:
    patients: Any  # Polars, PATIENT_COLUMNS, in input order
    norm: Any  # Polars: row, patient_id, centre, _err, items and every fact (NULL where missing)


def _spark_type(dtype: Any) -> str:
    import polars as pl

    if isinstance(dtype, pl.List):
        return f"array<{_spark_type(dtype.inner)}>"
    return {pl.Int64: "bigint", pl.Int32: "int", pl.Float64: "double", pl.Boolean: "boolean",
            pl.Date: "date", pl.Utf8: "string"}[dtype]


def _ddl(schema: Any) -> str:
    return ", ".join(f"`{n}` {_spark_type(t)}" for n, t in schema.items())


def _plain(df: Any) -> Any:
    """Enum/Categorical columns as text (what travels between Spark and Python is Arrow)."""
    import polars as pl

    return df.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.Utf8))


def _small(t: Any) -> Any:
    """The Arrow type Spark accepts for ``t`` (Polars writes large and view types)."""
    import pyarrow as pa

    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
        return pa.list_(_small(t.value_type))
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    return t


def _batches(df: Any) -> Any:
    """A Polars frame as Arrow record batches Spark reads."""
    import pyarrow as pa

    tbl = df.to_arrow()
    tbl = tbl.cast(pa.schema([pa.field(f.name, _small(f.type)) for f in tbl.schema]))
    return tbl.to_batches()


def _per_batch(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A ``mapInArrow`` function: the Polars function ``f`` on each non-empty Arrow batch."""

    def run(batches: Any) -> Any:
        import polars as pl

        for b in batches:
            if b.num_rows:
                yield from _batches(f(pl.DataFrame(pl.from_arrow(b))))

    return run


def read(spark: Any, path: str | Path) -> Any:
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            df = spark.read.option("header", True).option("inferSchema", False).csv(str(p))
        elif suffix in (".parquet", ".pq"):
            df = spark.read.parquet(str(p))
        elif suffix in (".jsonl", ".ndjson"):
            df = spark.read.json(str(p))
        else:
            raise CohortError(f"{p.name}: unsupported file type (use .csv, .parquet or .jsonl)")
    except CohortError:
        raise
    except Exception as e:  # (Spark raises its own analysis errors for unreadable files)
        raise CohortError(f"{p.name}: cannot read: {str(e).splitlines()[0]}") from e
    check_columns(df.columns)
    return df


def evaluate_file(path: str | Path, kb: CompiledKB, spark: Any = None,
                  partitions: int | None = None) -> Result:
    """Patients and the missing-fact pattern of ``path``, evaluated with Spark and collected on
    the driver (for tests, small cohorts and ``--compare-kb``; :func:`write_outputs` does not
    collect)."""
    import polars as pl

    from sarcoma_cds.cohort.evaluate import PATIENT_COLUMNS, TEXT_COLUMNS

    finished, done = finished_rows(path, kb, spark, partitions)
    try:
        rows = pl.DataFrame(pl.from_arrow(finished.toArrow())).sort("row")
    finally:
        done()
    patients = rows.select(PATIENT_COLUMNS).with_columns(
        pl.col(c).cast(pl.Categorical) for c in TEXT_COLUMNS)
    facts = [pl.when((pl.col("_missing") // (1 << i)) % 2 == 1).then(None).otherwise(True).alias(f)
             for i, f in enumerate(FACT_FIELDS)]
    return Result(patients, rows.select("row", "patient_id", "centre", pl.col("_err").fill_null([]),
                                        "items", *facts))


def finished_rows(path: str | Path, kb: CompiledKB, spark: Any = None,
                  partitions: int | None = None) -> tuple[Any, Any]:
    """The finished patient rows of ``path`` as a Spark DataFrame, cached on the cluster: ``row``
    (0.. in input order), the patient columns (text), ``_err``, ``items`` and ``_missing`` (bit i
    set: ``FACT_FIELDS[i]`` is missing). Returns it with a function that releases the caches."""
    import polars as pl
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sarcoma_cds.cohort.backends import spark_rules, spark_session
    from sarcoma_cds.cohort.evaluate import DecodeSpec, assemble, decode
    from sarcoma_cds.cohort.io import (
        check_delivered,
        encode_facts,
        encode_items,
        item_vocab,
        normalise,
    )

    spark = spark or spark_session()
    raw = read(spark, path)
    # input order, before any shuffle (ids increase with the file's order)
    raw = raw.withColumn("_row", F.monotonically_increasing_id())
    pid = F.col("patient_id").cast("string")
    raw = raw.withColumn("_dup", F.when(pid.isNull(), F.lit(False))
                         .otherwise(F.count(F.lit(1)).over(Window.partitionBy(pid)) > 1))
    if partitions:
        raw = raw.repartition(partitions)
    voc = C.item_vocabulary(kb)
    raw_schema = raw.schema

    def validated(batch: Any) -> Any:
        rows = check_delivered(normalise(batch, row="_row", duplicated="_dup"), voc)
        return _plain(rows.drop("delivered"))

    # the output schema: validate an empty batch of the same columns
    from pyspark.sql.pandas.types import to_arrow_schema

    empty = pl.DataFrame(pl.from_arrow(to_arrow_schema(raw_schema).empty_table()))
    norm_schema = validated(empty).schema

    norm = raw.mapInArrow(_per_batch(lambda df: validated(df).cast(dict(norm_schema))),
                          _ddl(norm_schema)).cache()
    valid = norm.filter(F.size("_err") == 0)
    stats = valid.agg(F.max(F.size("items")).alias("k")).collect()[0]
    slots = max(1, int(stats["k"] or 0))
    present = [r[0] for r in valid.select(F.explode("items")).distinct().collect()]
    comp = C.compile_kb_plan(kb, slots)
    vocab = item_vocab(comp.items, present)
    items, spec = list(comp.items), DecodeSpec.of(comp)

    def encoded(df: Any) -> Any:
        return encode_items(df, items, slots, vocab, encode_facts(df))

    enc_schema = encoded(pl.DataFrame(schema=norm_schema)).schema

    xcols = tuple(f"x_{j}" for j in range(slots))
    enc = valid.mapInArrow(_per_batch(lambda df: encoded(df.cast(dict(norm_schema)))),
                           _ddl(enc_schema))
    rules, s1 = spark_rules(comp.plan, enc, keep=xcols)
    rules_schema = pl.Schema({c: pl.Int64 for c in (*comp.plan.outputs, *xcols)})

    def decoded(df: Any) -> Any:
        return _plain(decode(df, None, vocab, spec))

    dec_schema = decoded(pl.DataFrame(schema=rules_schema)).schema

    # (the rules' union has a partition per group and input partition: decode in as many
    # batches as the input had partitions)
    out = rules.coalesce(max(1, norm.rdd.getNumPartitions())).mapInArrow(
        _per_batch(lambda df: decoded(df.select(list(rules_schema)).cast(rules_schema))),
        _ddl(dec_schema))
    # per row, a bitmask of the facts that are missing (for the completeness figures)
    miss = sum((F.col(f).isNull().cast("bigint") * (1 << i) for i, f in enumerate(FACT_FIELDS)),
               F.lit(0))
    base = norm.select("row", "patient_id", "centre", "diagnosis_date", "_err", "items",
                       miss.alias("_missing"))
    # rows numbered 0.. in input order, like the other engines: monotonically_increasing_id is
    # (input partition << 33) + position in it, so a row's number is the rows of the earlier
    # partitions plus its position (one small count per partition, no global sort)
    counts = dict(base.groupBy(F.shiftright("row", 33).alias("p")).count().collect())
    offsets, total = [], 0
    for p in range(max(counts, default=-1) + 1):
        offsets.append(total)
        total += counts.get(p, 0)
    number = (F.element_at(F.array(*[F.lit(o) for o in offsets] or [F.lit(0)]),
                           F.shiftright("row", 33).cast("int") + 1)
              + F.col("row").bitwiseAND((1 << 33) - 1))
    joined = base.join(out, on="row", how="left").withColumn("row", number.cast("bigint"))
    joined_schema = pl.Schema({**dict(norm_schema.items()), "_missing": pl.Int64,
                               **dict(dec_schema.items())})
    base_cols = ["row", "patient_id", "centre", "diagnosis_date", "_err", "items"]

    def finished(df: Any) -> Any:
        df = df.sort("row")
        rows = df.select(*base_cols).with_columns(pl.col("_err").fill_null([]))
        out_rows = df.filter(pl.col("concordance").is_not_null()).select(list(dec_schema))
        pat = assemble(rows, out_rows)
        return _plain(pat.insert_column(0, df.get_column("row"))
                      .with_columns(rows.get_column("_err"), df.get_column("items"),
                                    df.get_column("_missing")))

    fin_columns = [c for c in [*base_cols, "_missing", *dec_schema] if c in joined_schema]
    fin_schema = finished(pl.DataFrame(schema={c: joined_schema[c] for c in fin_columns})).schema

    def typed(df: Any) -> Any:
        return df.cast({c: t for c, t in joined_schema.items() if c in df.columns})

    rows = joined.mapInArrow(_per_batch(lambda df: finished(typed(df))), _ddl(fin_schema)).cache()

    def done() -> None:
        rows.unpersist()
        s1.unpersist()
        norm.unpersist()

    return rows, done


def aggregates(rows: Any) -> Aggregates:
    """The summary's and the report's small tables, computed by Spark (nothing per patient
    reaches the driver)."""
    import polars as pl
    from pyspark.sql import functions as F

    def collect(df: Any) -> Any:
        return pl.DataFrame(pl.from_arrow(df.toArrow()))

    valid = F.col("valid")

    def missing(i: int) -> Any:
        return F.shiftright("_missing", i).bitwiseAND(1) == 1

    cube = collect(rows.groupBy("group", "centre", F.col("year").cast("string").alias("year"),
                                "concordance", "valid").agg(F.count(F.lit(1)).alias("len")))
    n = int(cube.get_column("len").sum())
    invalid = int(cube.filter(~pl.col("valid")).get_column("len").sum())
    cube = cube.group_by("group", "centre", "year", "concordance").agg(pl.col("len").sum())
    reasons = collect(rows.where(F.col("concordance") == "discordant").groupBy("reason")
                      .agg(F.count(F.lit(1)).alias("len")))
    by_centre = collect(rows.groupBy("centre").agg(
        F.sum(valid.cast("bigint")).alias("_n"),
        *[F.sum((valid & missing(i)).cast("bigint")).alias(f) for i, f in enumerate(FACT_FIELDS)]))
    by_cands = collect(rows.where(valid & F.col("candidates").isNotNull())
                       .groupBy(F.col("candidates").alias("_cands"))
                       .agg(*[F.sum(missing(i).cast("bigint")).alias(f)
                              for i, f in enumerate(FACT_FIELDS)]))
    return Aggregates(n, invalid, cube, reasons, by_centre, by_cands)


def write_outputs(path: str | Path, out: Path, kb: CompiledKB, spark: Any = None,
                  partitions: int | None = None, rows_per_chunk: int = 250_000,
                  progress: Callable[[int, int], None] | None = None) -> Aggregates:
    """Evaluate ``path`` on the cluster and write patients.parquet, patients.csv and
    invalid_rows.csv into ``out``; return the :class:`~sarcoma_cds.cohort.aggregate.Aggregates`
    for the summary and the report. ``progress(rows written, rows in all)`` is called after the
    aggregates and after each chunk (the chunks are what takes long on big cohorts).

    The driver holds one chunk of finished rows at a time (about ``rows_per_chunk``): Spark
    sorts the rows into ranges of row numbers, the driver fetches one range after another
    (``toLocalIterator``) and appends it to Arrow files on local disk; Polars' streaming engine
    then writes the two patient files from those, in the same format as the other engines.
    """
    import io
    import shutil
    import tempfile

    import polars as pl

    from sarcoma_cds.cohort.evaluate import PATIENT_COLUMNS, TEXT_COLUMNS
    from sarcoma_cds.cohort.outputs import PARQUET, atomic, invalid_rows

    rows, done = finished_rows(path, kb, spark, partitions)
    tmp = Path(tempfile.mkdtemp(prefix="sarcoma-cds-spark-", dir=out))
    try:
        agg = aggregates(rows)
        ranges = max(1, -(-agg.patients // rows_per_chunk))
        ordered = rows.repartitionByRange(ranges, "row").sortWithinPartitions("row")

        def to_ipc(batches: Any) -> Any:
            import pyarrow as pa

            for b in batches:
                if b.num_rows:
                    sink = io.BytesIO()
                    pl.DataFrame(pl.from_arrow(b)).write_ipc(sink)
                    yield pa.record_batch([pa.array([sink.getvalue()], pa.binary())], names=["ipc"])

        chunks: list[Path] = []
        written = 0
        if progress is not None:
            progress(0, agg.patients)
        with open(tmp / "invalid_rows.csv", "wb") as inval:
            for r in ordered.mapInArrow(to_ipc, "ipc binary").toLocalIterator():
                chunk = pl.read_ipc(io.BytesIO(r["ipc"]))
                chunks.append(tmp / f"{len(chunks):08d}.arrow")
                chunk.select(PATIENT_COLUMNS).write_ipc(chunks[-1])
                written += chunk.height
                if progress is not None:
                    progress(written, agg.patients)
                invalid_rows(chunk.with_columns(pl.col("_err").fill_null([]))).write_csv(
                    inval, include_header=inval.tell() == 0)
        if not chunks:  # (an empty cohort: the files with their columns only)
            empty = pl.DataFrame(schema={"row": pl.Int64, "patient_id": pl.Utf8,
                                         "_err": pl.List(pl.Utf8)})
            invalid_rows(empty).write_csv(tmp / "invalid_rows.csv")
            types = {"diagnosis_date": pl.Date, "year": pl.Int32, "valid": pl.Boolean,
                     "pathway": pl.Int64}
            pl.DataFrame(schema={c: types.get(c, pl.Utf8) for c in PATIENT_COLUMNS}) \
                .write_ipc(tmp / "empty.arrow")
            chunks.append(tmp / "empty.arrow")
        atomic(out / "invalid_rows.csv", lambda p: shutil.move(tmp / "invalid_rows.csv", p))
        lf = pl.scan_ipc(chunks).with_columns(pl.col(c).cast(pl.Categorical) for c in TEXT_COLUMNS)
        atomic(out / "patients.csv", lambda p: lf.sink_csv(p, batch_size=8192))
        atomic(out / "patients.parquet", lambda p: lf.sink_parquet(p, **PARQUET))
        return agg
    finally:
        done()
        shutil.rmtree(tmp, ignore_errors=True)
