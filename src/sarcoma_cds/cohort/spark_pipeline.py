"""``--engine spark`` end to end on the cluster: the driver never holds the input or the facts.

Spark reads the file; each batch is validated, encoded and decoded on the executors by the
same Polars functions the other engines use (``mapInArrow``), so there is one validation and
one decoding definition; the rules run as Spark SQL (the same IR). The only cross-row facts
are computed by Spark: duplicated ``patient_id`` (a window count), the number of item slots and
the items outside the knowledge base's list (small, collected). The driver receives the
finished patient rows and one "which facts are missing" bitmask per row, for the files, the
summary and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoma_cds.cohort import compiler as C
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


def evaluate_file(path: str | Path, kb: CompiledKB, spark: Any = None, partitions: int | None = None) -> Result:
    """Patients and the missing-fact pattern of ``path``, evaluated with Spark."""
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

    def validate_arrow(batches: Any) -> Any:
        for b in batches:
            if b.num_rows == 0:
                continue
            yield from _batches(validated(pl.DataFrame(pl.from_arrow(b))).cast(dict(norm_schema)))

    norm = raw.mapInArrow(validate_arrow, _ddl(norm_schema)).cache()
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

    def encode_arrow(batches: Any) -> Any:
        for b in batches:
            if b.num_rows == 0:
                continue
            df = pl.DataFrame(pl.from_arrow(b)).cast(dict(norm_schema))
            yield from _batches(encoded(df))

    xcols = tuple(f"x_{j}" for j in range(slots))
    rules, s1 = spark_rules(comp.plan, valid.mapInArrow(encode_arrow, _ddl(enc_schema)), keep=xcols)
    rules_schema = pl.Schema({c: pl.Int64 for c in (*comp.plan.outputs, *xcols)})

    def decoded(df: Any) -> Any:
        return _plain(decode(df, None, vocab, spec))

    dec_schema = decoded(pl.DataFrame(schema=rules_schema)).schema

    def decode_arrow(batches: Any) -> Any:
        for b in batches:
            if b.num_rows == 0:
                continue
            df = pl.DataFrame(pl.from_arrow(b)).select(list(rules_schema)).cast(rules_schema)
            yield from _batches(decoded(df))

    # (the rules' union has a partition per group and input partition: decode in as many
    # batches as the input had partitions)
    out = rules.coalesce(max(1, norm.rdd.getNumPartitions())).mapInArrow(decode_arrow, _ddl(dec_schema))
    # to the driver: the finished rows, and per row a bitmask of the facts that are missing
    miss = sum((F.col(f).isNull().cast("bigint") * (1 << i) for i, f in enumerate(FACT_FIELDS)), F.lit(0))
    base = norm.select("row", "patient_id", "centre", "diagnosis_date", "_err", "items", miss.alias("_missing"))
    base_pl = pl.DataFrame(pl.from_arrow(base.toArrow())).sort("row")
    out_pl = pl.DataFrame(pl.from_arrow(out.toArrow()))
    s1.unpersist()
    norm.unpersist()
    # rows numbered 0.. in input order, like the other engines
    old_rows = base_pl.get_column("row")
    base_pl = base_pl.with_columns(pl.int_range(0, base_pl.height, dtype=pl.Int64).alias("row"))
    if out_pl.height:
        out_pl = out_pl.with_columns(pl.col("row").replace_strict(old_rows, base_pl.get_column("row"),
                                                                   return_dtype=pl.Int64))
    else:
        out_pl = pl.DataFrame(schema=dec_schema)
    out_pl = out_pl.sort("row").with_columns(pl.col(pl.Utf8).cast(pl.Categorical))
    patients = assemble(base_pl.with_columns(pl.col("_err").fill_null([])), out_pl)
    facts = [pl.when((pl.col("_missing") // (1 << i)) % 2 == 1).then(None).otherwise(True).alias(f)
             for i, f in enumerate(FACT_FIELDS)]
    return Result(patients, base_pl.select("row", "patient_id", "centre", "_err", "items", *facts))
