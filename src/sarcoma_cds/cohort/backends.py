"""Three small backends for the IR: Polars expressions, DuckDB SQL, PySpark Columns.

Each runs a :class:`~sarcoma_cds.cohort.ir.Plan` over the encoded cohort table and
returns the plan's integer output columns as a Polars DataFrame (DuckDB and Spark sorted by
``row``; Polars once per distinct stage-2 key, see :func:`run_polars`).
The libraries are imported inside the functions: the core CLI must start fast.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from sarcoma_cds.cohort import ir

# --------------------------------------------------------------------------- Polars


_POLARS_LITS: dict[tuple[str, type, str], Any] = {}


def to_polars(e: ir.E, memo: dict[int, tuple[ir.E, Any]] | None = None) -> Any:
    """A Polars expression. ``memo`` (node id -> (node, expression)), shared across the calls of one
    plan, translates a subtree shared by several columns once (Polars expressions are immutable).
    Literals are cached for the process: building ``pl.lit(value, dtype)`` is slow in Python."""
    import polars as pl

    if memo is None:
        memo = {}

    def t(e: ir.E) -> Any:
        hit = memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        out = _t(e)
        memo[id(e)] = (e, out)  # (the node is kept alive with its entry: its id cannot be reused)
        return out

    def _t(e: ir.E) -> Any:
        if isinstance(e, ir.Col):
            return pl.col(e.name)
        if isinstance(e, ir.Lit):
            key = (e.kind, type(e.value), repr(e.value))  # (repr: -0.0 and 0.0 stay apart)
            lit = _POLARS_LITS.get(key)
            if lit is None:
                dtype = {"int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}[e.kind]
                lit = _POLARS_LITS[key] = pl.lit(e.value, dtype=dtype)
            return lit
        if isinstance(e, ir.And):
            return reduce(lambda a, b: a & b, (t(x) for x in e.args))
        if isinstance(e, ir.Or):
            return reduce(lambda a, b: a | b, (t(x) for x in e.args))
        if isinstance(e, ir.Not):
            return ~t(e.arg)
        if isinstance(e, ir.Cmp):
            a, b = t(e.a), t(e.b)
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[
                e.op
            ]
        if isinstance(e, ir.Arith):
            a, b = t(e.a), t(e.b)
            if e.op == "&":
                return a & b
            return {"+": a + b, "-": a - b, "*": a * b, "//": a // b, "%": a % b}[e.op]
        if isinstance(e, ir.IsNull):
            return t(e.arg).is_null()
        if isinstance(e, ir.Coalesce):
            return pl.coalesce([t(x) for x in e.args])
        if isinstance(e, ir.Case):
            (c0, v0), *rest = e.branches
            w: Any = pl.when(t(c0)).then(t(v0))
            for c, v in rest:
                w = w.when(t(c)).then(t(v))
            return w.otherwise(t(e.default))
        if isinstance(e, ir.Greatest):
            return pl.max_horizontal([t(x) for x in e.args])
        if isinstance(e, ir.Least):
            return pl.min_horizontal([t(x) for x in e.args])
        if isinstance(e, ir.Lookup):
            return t(e.index).replace_strict(
                list(range(len(e.table))), list(e.table), default=None, return_dtype=pl.Int64)
        raise TypeError(e)

    return t(e)


def run_polars(plan: ir.Plan, table: Any, keep: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """``table``: a Polars DataFrame of encoded columns (with ``row`` and ``n_items``); ``keep``:
    its
    columns to pass through.

    Stage 1 runs on every row. Stage 2 runs once per distinct *stage-2 key*: the group, the
    columns that group's stage 2 reads (:func:`~sarcoma_cds.cohort.ir.stage2_reads`; the others
    are set to NULL in the key), the stage-1 outputs and ``keep`` (a cohort has far fewer
    distinct keys than patients). Returns ``(rows, outcomes)``: ``outcomes`` has the plan's
    outputs and ``keep`` once per distinct key, its ``row`` being the key's index (in no
    particular order); ``rows`` has ``row`` (the input row, in table order) and ``outcome``
    (the index of its key in ``outcomes``).
    """
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    from sarcoma_cds.cohort.pack import pack

    memo: dict[int, tuple[ir.E, Any]] = {}
    lf = table.lazy()
    for layer in plan.stage1:
        lf = lf.with_columns([to_polars(e, memo).alias(n) for n, e in layer.columns])
    per_group, default_reads = ir.stage2_reads(plan)
    made = {n for layers in plan.stage2.values() for layer in layers for n, _ in layer.columns}
    made |= {n for n, _ in plan.stage2_default}
    always = ({c for c in plan.outputs if c not in made} | set(keep) | {"group_idx", "n_items"}) - {
        "row"
    }
    in_group = pl.col("group_idx").is_not_null() & (pl.col("n_items") > 0)
    key_exprs = [pl.col(c) for c in sorted(always)]
    for c in sorted(set().union(*per_group.values(), default_reads) - always - {"row"}):
        # (NULL where the row's stage 2 does not read the column: it cannot change the outcome)
        groups = [g for g, cols in per_group.items() if c in cols]
        reads = in_group & pl.col("group_idx").is_in(groups) if groups else pl.lit(False)
        if c in default_reads:
            reads = reads | ~in_group
        key_exprs.append(pl.when(reads).then(pl.col(c)).alias(c))
    key_cols = [e.meta.output_name() for e in key_exprs]

    def stage2_exprs() -> tuple[list[tuple[int, list[list[Any]]]], list[Any]]:
        per = [(g, [[to_polars(e, memo).alias(n) for n, e in layer.columns] for layer in layers])
               for g, layers in plan.stage2.items()]
        return per, [to_polars(e, memo).alias(n) for n, e in plan.stage2_default]

    # stage 2's expressions are built (Python) while stage 1 runs (Polars, GIL released); only
    # the key columns are materialised (the streaming engine keeps row order)
    with ThreadPoolExecutor(1) as pool:
        built = pool.submit(stage2_exprs)
        s1 = lf.select("row", *key_exprs).collect(engine="streaming")
        words, unpack = pack(s1, key_cols, wide=True)
        keyed = s1.select("row", *words)
        wnames = [w.meta.output_name() for w in words]
        # (sorted: the same cohort gives the same outcome order, run after run)
        keys = keyed.select(wnames).unique().sort(wnames).with_row_index("outcome")
        distinct = unpack(keys).with_columns(pl.col("outcome").cast(pl.Int64).alias("row"))
        per, default = built.result()
    outs = [*(pl.col(c).cast(pl.Int64) for c in plan.outputs), *(pl.col(c) for c in keep)]
    parts = []
    for g, layers_exprs in per:
        p = distinct.lazy().filter((pl.col("group_idx") == g) & (pl.col("n_items") > 0))
        for exprs in layers_exprs:
            p = p.with_columns(exprs)
        parts.append(p.select(outs))
    parts.append(distinct.lazy().filter(~in_group).with_columns(default).select(outs))
    outcomes = pl.concat(parts).collect()
    rows = keyed.join(keys, on=wnames, how="left", maintain_order="left").select("row", "outcome")
    return rows, outcomes


# --------------------------------------------------------------------------- DuckDB


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_sql(e: ir.E, dialect: str = "duckdb") -> str:
    """SQL text for DuckDB or Spark SQL (they differ in quoting, integer division and arrays)."""
    spark = dialect == "spark"

    def t(e: ir.E) -> str:
        if isinstance(e, ir.Col):
            return f"`{e.name}`" if spark else _q(e.name)
        if isinstance(e, ir.Lit):
            if e.value is None:
                return {"int": "CAST(NULL AS BIGINT)", "float": "CAST(NULL AS DOUBLE)",
                        "bool": "CAST(NULL AS BOOLEAN)"}[e.kind]
            if e.kind == "bool":
                return "TRUE" if e.value else "FALSE"
            if e.kind == "float":
                return f"CAST({float(e.value)!r} AS DOUBLE)"
            return f"CAST({int(e.value)} AS BIGINT)"
        if isinstance(e, ir.And):
            return "(" + " AND ".join(t(x) for x in e.args) + ")"
        if isinstance(e, ir.Or):
            return "(" + " OR ".join(t(x) for x in e.args) + ")"
        if isinstance(e, ir.Not):
            return f"(NOT {t(e.arg)})"
        if isinstance(e, ir.Cmp):
            op = {"==": "=", "!=": "<>"}.get(e.op, e.op)
            return f"({t(e.a)} {op} {t(e.b)})"
        if isinstance(e, ir.Arith):
            op = "div" if spark and e.op == "//" else e.op
            return f"({t(e.a)} {op} {t(e.b)})"
        if isinstance(e, ir.IsNull):
            return f"({t(e.arg)} IS NULL)"
        if isinstance(e, ir.Coalesce):
            return "COALESCE(" + ", ".join(t(x) for x in e.args) + ")"
        if isinstance(e, ir.Case):
            body = " ".join(f"WHEN {t(c)} THEN {t(v)}" for c, v in e.branches)
            return f"(CASE {body} ELSE {t(e.default)} END)"
        if isinstance(e, ir.Greatest):
            return "GREATEST(" + ", ".join(t(x) for x in e.args) + ")"
        if isinstance(e, ir.Least):
            return "LEAST(" + ", ".join(t(x) for x in e.args) + ")"
        if isinstance(e, ir.Lookup):
            vals = ", ".join("NULL" if v is None else str(int(v)) for v in e.table)
            if spark:
                return (
                    f"element_at(CAST(array({vals}) AS ARRAY<BIGINT>), CAST({t(e.index)} + 1 AS "
                    "INT))"
                )
            return f"(CAST([{vals}] AS BIGINT[])[{t(e.index)} + 1])"
        raise TypeError(e)

    return t(e)


def _layered_sql(source: str, layers: list[ir.Layer], where: str | None = None) -> str:
    sql = f"SELECT * FROM {source}" + (f" WHERE {where}" if where else "")
    for layer in layers:
        cols = ", ".join(f"{to_sql(e)} AS {_q(n)}" for n, e in layer.columns)
        if cols:
            sql = f"SELECT *, {cols} FROM ({sql})"
    return sql


def run_duckdb(plan: ir.Plan, table: Any, threads: int | None = None) -> Any:
    import duckdb
    import polars as pl

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads TO {int(threads)}")
    arrow = table.to_arrow()
    con.register("cohort_in", arrow)
    con.execute("CREATE TEMP TABLE s1 AS " + _layered_sql("cohort_in", plan.stage1))
    outs = ", ".join(f"CAST({_q(c)} AS BIGINT) AS {_q(c)}" for c in plan.outputs)
    parts = []
    for g, layers in plan.stage2.items():
        inner = _layered_sql("s1", layers, where=f'"group_idx" = {g} AND "n_items" > 0')
        parts.append(f"SELECT {outs} FROM ({inner})")
    default = ", ".join(f"{to_sql(e)} AS {_q(n)}" for n, e in plan.stage2_default)
    rest = (
        f'SELECT *, {default} FROM s1 WHERE NOT (COALESCE("group_idx" IS NOT NULL AND "n_items" > '
        '0, FALSE))'
    )
    parts.append(f"SELECT {outs} FROM ({rest})")
    sql = " UNION ALL ".join(parts) + ' ORDER BY "row"'
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    out = pl.from_arrow(fetch())
    con.close()
    return out


# --------------------------------------------------------------------------- Spark


def to_spark(e: ir.E) -> Any:
    """A PySpark Column. Built from Spark SQL text with ``F.expr``: one JVM call per column
    instead of one per node (Py4J round trips dominate otherwise)."""
    from pyspark.sql import functions as F

    return F.expr(to_sql(e, "spark"))


_SPARK: Any = None


def spark_session(master: str = "local[2]") -> Any:
    """One shared local session per process (tests and CLI)."""
    global _SPARK
    if _SPARK is None:
        import os
        import sys

        from pyspark.sql import SparkSession

        # Python workers run this interpreter (its packages: Polars, this project) unless the
        # cluster says otherwise
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(master)
        if master.startswith("local") and not os.environ.get("SPARK_LOCAL_IP"):
            # local mode talks to itself only: bind loopback, not the machine's network address
            # (Spark's default, reachable from the network); SPARK_LOCAL_IP still overrides
            os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # (read by the JVM started below)
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1") \
                .config("spark.driver.host", "127.0.0.1")
        _SPARK = (builder.appName("sarcoma-cds-cohort")
                  .config("spark.sql.shuffle.partitions", "4")
                  .config("spark.ui.enabled", "false")
                  .config("spark.ui.showConsoleProgress", "false")
                  .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
                  .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                  .config("spark.driver.memory", "2g")
                  .getOrCreate())
        _SPARK.sparkContext.setLogLevel("ERROR")
    return _SPARK


def run_spark(plan: ir.Plan, table: Any, spark: Any = None) -> Any:
    import polars as pl

    spark = spark or spark_session()
    df = spark.createDataFrame(table.to_arrow())  # PySpark >= 4: Arrow in, Arrow out (no pandas)
    res, s1 = spark_rules(plan, df)
    arrow = res.toArrow()
    s1.unpersist()
    out = pl.DataFrame(pl.from_arrow(arrow))
    if out.height == 0:
        return pl.DataFrame({c: pl.Series([], dtype=pl.Int64) for c in plan.outputs})
    return out.with_columns([pl.col(c).cast(pl.Int64) for c in plan.outputs]).sort("row")


def spark_rules(plan: ir.Plan, df: Any, keep: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """The plan over a Spark DataFrame of encoded columns: (the outputs plus ``keep``, the cached
    stage-1 frame to unpersist once the result has been used)."""
    from pyspark.sql import functions as F

    for layer in plan.stage1:
        df = df.select("*", *[to_spark(e).alias(n) for n, e in layer.columns])
    s1 = df.cache()
    outs = [*(F.col(c).cast("bigint").alias(c) for c in plan.outputs), *(F.col(c) for c in keep)]
    parts = []
    for g, layers in plan.stage2.items():
        p = s1.filter((F.col("group_idx") == g) & (F.col("n_items") > 0))
        for layer in layers:
            p = p.select("*", *[to_spark(e).alias(n) for n, e in layer.columns])
        parts.append(p.select(*outs))
    has = F.coalesce(F.col("group_idx").isNotNull() & (F.col("n_items") > 0), F.lit(False))
    rest = s1.filter(~has).select("*", *[to_spark(e).alias(n) for n, e in plan.stage2_default])
    parts.append(rest.select(*outs))
    return reduce(lambda a, b: a.unionByName(b), parts), s1
