"""One rule definition, several evaluators: they agree patient by patient.

On random synthetic cohorts (missing facts, out-of-scope and invalid rows included),
the per-patient engine (``recommend()`` + the reference concordance), the Polars
evaluator, DuckDB and Spark give the same value in every column of ``patients.csv`` (group,
candidates, out-of-scope, stage and the stages, AFIP and NIH risks still possible, delivered-item
statuses, concordance class, reason, ...).
"""

from __future__ import annotations

import os
import shutil

import pytest

pl = pytest.importorskip("polars")
pytest.importorskip("duckdb")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sarcoma_cds import load_kb  # noqa: E402
from sarcoma_cds.cohort.evaluate import PATIENT_COLUMNS, evaluate, prepare  # noqa: E402
from sarcoma_cds.cohort.synth import synth  # noqa: E402
from sarcoma_cds.domain.facts import FACT_FIELDS  # noqa: E402

KB = load_kb()
COLS = list(PATIENT_COLUMNS)  # every column of patients.csv
DROPPABLE = [f for f in FACT_FIELDS if f not in ("histology", "primary_site")]


@st.composite
def cohorts(draw: st.DrawFn) -> pl.DataFrame:
    seed = draw(st.integers(0, 10_000))
    n = draw(st.integers(1, 120))
    df = synth(n, seed=seed, discordance_rate=draw(st.floats(0, 1)), kb=KB,
               invalid_rate=draw(st.sampled_from([0.0, 0.05])))
    # extra missingness: blank some facts in some rows
    drop = draw(st.lists(st.sampled_from(DROPPABLE), max_size=6, unique=True))
    share = draw(st.floats(0, 1))
    u = [((i * 2654435761 + seed) % 1000) / 1000 for i in range(n)]
    mask = pl.Series([x < share for x in u])
    df = df.with_columns([pl.when(mask).then(None).otherwise(pl.col(c)).alias(c) for c in drop])
    # several delivered items, sometimes none
    extra = draw(
        st.sampled_from([None, "excision", "imatinib", "doxorubicin+ifosfamide+mesna", "surgery"])
    )
    if extra:
        df = df.with_columns(
            pl.when(pl.Series(u) > 0.5)
            .then(pl.col("delivered").list.concat(pl.lit([extra])))
            .otherwise(pl.col("delivered"))
            .list.unique(maintain_order=True)
            .alias("delivered")
        )
    if draw(st.booleans()):
        df = df.with_columns(pl.when(pl.Series(u) < 0.1).then(pl.lit([], dtype=pl.List(pl.Utf8)))
                             .otherwise(pl.col("delivered")).alias("delivered"))
    return df


def _diff(a: pl.DataFrame, b: pl.DataFrame, name: str) -> None:
    a, b = a.select(COLS), b.select(COLS)
    assert a.height == b.height
    for c in COLS:
        bad = a.with_columns(b.get_column(c).alias("_other")).filter(
            pl.col(c).ne_missing(pl.col("_other"))
        )
        assert bad.height == 0, f"{name}: column {c} differs, e.g. {bad.head(2).to_dicts()}"


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cohorts())
def test_polars_duckdb_and_per_patient_engine_agree(df: pl.DataFrame) -> None:
    prep = prepare(df, KB)
    ref = evaluate(prep, "python")
    _diff(evaluate(prep, "polars"), ref, "polars vs per-patient")
    _diff(evaluate(prep, "duckdb"), ref, "duckdb vs per-patient")


def test_large_synthetic_cohort_agrees() -> None:
    prep = prepare(synth(2500, seed=99, invalid_rate=0.02, kb=KB), KB)
    ref = evaluate(prep, "python")
    _diff(evaluate(prep, "polars"), ref, "polars")
    _diff(evaluate(prep, "duckdb"), ref, "duckdb")


def _spark_or_skip():  # type: ignore[no-untyped-def]
    need = os.environ.get("SARCOMA_CDS_REQUIRE_SERVICES") == "1"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if need:
            pytest.fail("SARCOMA_CDS_REQUIRE_SERVICES=1 but pyspark is not installed")
        pytest.skip("pyspark is not installed (pip install 'sarcoma-cds[spark]')")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        if need:
            pytest.fail(
                "SARCOMA_CDS_REQUIRE_SERVICES=1 but no Java runtime (apt-get install "
                "default-jre-headless)"
            )
        pytest.skip("no Java runtime for Spark (apt-get install default-jre-headless)")
    from sarcoma_cds.cohort.backends import spark_session

    return spark_session("local[2]")


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    return _spark_or_skip()


@pytest.mark.spark
def test_spark_agrees_with_per_patient_engine(spark) -> None:  # type: ignore[no-untyped-def]
    for seed, n in ((1, 600),):
        df = synth(n, seed=seed, invalid_rate=0.03, kb=KB, discordance_rate=0.3)
        prep = prepare(df, KB)
        ref = evaluate(prep, "python")
        _diff(evaluate(prep, "spark", spark=spark), ref, f"spark seed {seed}")


@pytest.mark.spark
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(cohorts())
def test_spark_agrees_on_random_cohorts(spark, df: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    prep = prepare(df, KB)
    _diff(evaluate(prep, "spark", spark=spark), evaluate(prep, "python"), "spark")


@pytest.mark.spark
def test_spark_pipeline_reads_validates_and_writes_what_polars_does(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--engine spark`` reads and validates on the cluster (several partitions, a duplicated
    patient_id split across them, invalid rows): the same patients, errors and missing facts as
    the Polars pipeline, and the same files."""
    import json

    from sarcoma_cds.cohort.run import run_concordance
    from sarcoma_cds.cohort.spark_pipeline import evaluate_file, write_outputs
    from sarcoma_cds.cohort.synth import write

    df = synth(1500, seed=21, invalid_rate=0.05, kb=KB, discordance_rate=0.3)
    ids = df.get_column("patient_id").to_list()
    ids[1490], ids[700] = ids[3], ids[10]  # duplicates far apart
    df = df.with_columns(pl.Series("patient_id", ids))
    for suffix in ("parquet", "csv"):
        src = tmp_path / f"cohort.{suffix}"
        write(df, src)
        ref = prepare(src, KB)
        res = evaluate_file(src, KB, spark, partitions=3)
        assert res.patients.with_columns(pl.all().cast(pl.Utf8)).equals(
            evaluate(ref).with_columns(pl.all().cast(pl.Utf8))), suffix
        assert res.norm.get_column("_err").equals(ref.norm.get_column("_err"))
        assert res.norm.get_column("_err").list.len().gt(0).sum() >= 4  # (the duplicates at least)
        for f in FACT_FIELDS:
            assert res.norm.get_column(f).is_null().equals(ref.norm.get_column(f).is_null()), f
        a, b = tmp_path / f"polars-{suffix}", tmp_path / f"spark-{suffix}"
        run_concordance(src, a, KB)
        run_concordance(src, b, KB, engine="spark")
        for name in ("patients.csv", "invalid_rows.csv", "report.html"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sa.pop("engine") == "polars" and sb.pop("engine") == "spark" and sa == sb
        pa_, pb = (pl.read_parquet(d / "patients.parquet") for d in (a, b))
        assert pb.schema == pa_.schema and pb.equals(pa_)
    # the driver takes the finished rows range by range: in 4 ranges, the same files
    c = tmp_path / "spark-chunked"
    c.mkdir()
    seen: list[tuple[int, int]] = []
    agg = write_outputs(tmp_path / "cohort.parquet", c, KB, spark, partitions=3, rows_per_chunk=400,
                        progress=lambda done, total: seen.append((done, total)))
    assert agg.patients == 1500
    # progress in rows: from 0 to all, one report per range
    assert (
        seen[0] == (0, 1500)
        and seen[-1] == (1500, 1500)
        and len(seen) >= 4
        and seen == sorted(seen)
    )
    d = tmp_path / "polars-parquet"
    for name in ("patients.csv", "invalid_rows.csv"):
        assert (c / name).read_bytes() == (d / name).read_bytes(), name
    assert pl.read_parquet(c / "patients.parquet").equals(pl.read_parquet(d / "patients.parquet"))
    assert not [
        p for p in c.iterdir() if p.name.startswith("sarcoma-cds-spark-")
    ]  # (temporary files removed)


@pytest.mark.spark
def test_spark_pipeline_on_empty_and_all_invalid_cohorts(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No rows at all, and no valid row: the Spark pipeline still writes the files the Polars
    pipeline writes (header-only patient files, every row in invalid_rows.csv)."""
    import json

    from sarcoma_cds.cohort.run import run_concordance

    df = synth(40, seed=4, kb=KB)
    cohorts = {"empty": df.head(0), "all-invalid": df.with_columns(pl.lit("9").alias("grade"))}
    for name, frame in cohorts.items():
        src = tmp_path / f"{name}.parquet"
        frame.write_parquet(src)
        a, b = tmp_path / f"polars-{name}", tmp_path / f"spark-{name}"
        run_concordance(src, a, KB)
        run_concordance(src, b, KB, engine="spark")
        for f in ("patients.csv", "invalid_rows.csv", "report.html"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), (name, f)
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        sa.pop("engine"), sb.pop("engine")
        assert sa == sb, name
        assert pl.read_parquet(b / "patients.parquet").height == frame.height
    bad = pl.read_csv(tmp_path / "spark-all-invalid" / "invalid_rows.csv")
    assert bad.filter(pl.col("field") == "grade").get_column("row").n_unique() == 40
