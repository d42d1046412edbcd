"""Cohort concordance: hand-checked cohorts, bad rows, synth determinism, guideline-change
impact."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pl = pytest.importorskip("polars")
pytest.importorskip("duckdb")

from sarcoma_cds import load_kb  # noqa: E402
from sarcoma_cds.cohort.aggregate import summary  # noqa: E402
from sarcoma_cds.cohort.evaluate import evaluate, prepare  # noqa: E402
from sarcoma_cds.cohort.io import CohortError  # noqa: E402
from sarcoma_cds.cohort.synth import synth  # noqa: E402

KB = load_kb()
STS_III = dict(histology="leiomyosarcoma", primary_site="lower_extremity", size_cm="8", grade="3",
               nodes="N0", metastasis="M0", resectability="resectable")
GIST_M1 = dict(
    histology="gist",
    primary_site="stomach",
    size_cm="6",
    metastasis="M1",
    metastatic_burden="disseminated",
)

# patient, facts, delivered, expected group, expected class
HAND = [
    ("c1", STS_III, '["excision"]', "extremity.stage_iii_resectable", "concordant"),
    (
        "c2",
        STS_III,
        "neoadjuvant_radiotherapy_or_chemoradiation;excision",
        "extremity.stage_iii_resectable",
        "concordant",
    ),
    (
        "c3",
        {**GIST_M1, "kit_mutation": "exon_11"},
        "imatinib",
        "gist.recurrent_or_metastatic",
        "concordant",
    ),
    (
        "c4",
        {**GIST_M1, "kit_mutation": "none", "pdgfra_mutation": "d842v"},
        "imatinib",
        "gist.recurrent_or_metastatic",
        "discordant",
    ),
    ("c5", GIST_M1, "imatinib", "gist.recurrent_or_metastatic", "concordant_conditional"),
    ("c6", STS_III, "imatinib", "extremity.stage_iii_resectable", "discordant"),
    ("c7", {**STS_III, "size_cm": None}, "excision", None, "not_assessable"),
    ("c8", {**STS_III, "histology": "rhabdomyosarcoma"}, "excision", None, "not_assessable"),
    ("c9", {**STS_III, "grade": "4"}, "excision", None, "not_assessable"),  # invalid vocabulary
    (
        "c10",
        {**STS_III, "metastatic_burden": "disseminated"},
        "excision",
        None,
        "not_assessable",
    ),  # contradiction
    ("c11", STS_III, "", "extremity.stage_iii_resectable", "not_assessable"),  # nothing delivered
    (
        "c12",
        {**GIST_M1, "kit_mutation": "exon_11"},
        "ifosfamide+mesna+doxorubicin",
        "gist.recurrent_or_metastatic",
        "discordant",
    ),
]


def hand_frame() -> pl.DataFrame:
    rows = []
    for pid, facts, delivered, _, _ in HAND:
        r = {
            "patient_id": pid,
            "centre": "A" if pid < "c5" else "B",
            "diagnosis_date": "2021-03-04",
            "delivered": delivered or None,
        }
        r.update({k: v for k, v in facts.items() if v is not None})
        rows.append(r)
    cols = sorted({k for r in rows for k in r})
    return pl.DataFrame(
        [{c: r.get(c) for c in cols} for r in rows], schema={c: pl.Utf8 for c in cols}
    )


@pytest.mark.parametrize("engine", ["polars", "duckdb", "python"])
def test_hand_checked_cohort(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    hand_frame().write_csv(path)
    res = evaluate(prepare(path, KB), engine)
    got = {r["patient_id"]: (r["group"], r["concordance"]) for r in res.to_dicts()}
    for pid, _, _, group, cls in HAND:
        assert got[pid] == (group, cls), pid
    by = {r["patient_id"]: r for r in res.to_dicts()}
    assert by["c4"]["reason"].startswith("imatinib is not_recommended: PDGFRA D842V")
    assert by["c4"]["statuses"] == "imatinib=not_recommended"
    assert by["c6"]["reason"] == "imatinib is not in any pathway of extremity.stage_iii_resectable"
    assert by["c9"]["reason"].startswith("invalid row: grade: '4' is not allowed")
    assert by["c10"]["reason"].startswith("invalid row: metastatic_burden:")
    assert by["c9"]["valid"] is False and by["c1"]["valid"] is True
    assert "candidates" in by["c7"]["reason"] and by["c7"]["candidates"]
    assert by["c8"]["reason"].startswith("out of scope:")
    assert by["c2"]["stage"] == "IIIA" and by["c2"]["pathway"] == 1
    s = summary(res)
    assert s["patients"] == 12
    assert s["concordance"] == {
        "not_assessable": 5,
        "concordant": 3,
        "concordant_conditional": 1,
        "discordant": 3,
    }
    assert s["assessable"] == 7 and s["invalid_rows"] == 2
    assert s["by_group"]["gist.recurrent_or_metastatic"] == {
        "not_assessable": 0, "concordant": 1, "concordant_conditional": 1, "discordant": 2}
    assert sum(s["by_centre"]["A"].values()) + sum(s["by_centre"]["B"].values()) == 12


def test_lists_as_json_or_semicolons_and_empty_vs_absent(tmp_path: Path) -> None:
    base = {**GIST_M1, "kit_mutation": "exon_11", "patient_id": "x"}
    rows = [
        {
            **base,
            "patient_id": "a",
            "prior_therapies": '["imatinib_standard_dose", "sunitinib"]',
            "delivered": "imatinib",
        },
        {
            **base,
            "patient_id": "b",
            "prior_therapies": "imatinib_standard_dose;sunitinib",
            "delivered": '["imatinib"]',
        },
        {**base, "patient_id": "c", "prior_therapies": "[]", "delivered": "imatinib"},
        {**base, "patient_id": "d", "prior_therapies": "chemo", "delivered": "imatinib"},
        {**base, "patient_id": "e", "delivered": "imatinib;foo+imatinib"},
    ]
    df = pl.DataFrame(rows, schema={k: pl.Utf8 for k in rows[0]} | {"prior_therapies": pl.Utf8})
    p = prepare(df, KB)
    lists = p.norm.get_column("prior_therapies").to_list()
    assert lists[0] == lists[1] == ["imatinib_standard_dose", "sunitinib"]
    assert lists[2] == []
    res = evaluate(p, "polars")
    by = {r["patient_id"]: r for r in res.to_dicts()}
    assert by["a"]["statuses"] == by["b"]["statuses"]
    assert by["d"]["reason"].startswith("invalid row: prior_therapies: not allowed: chemo")
    assert "delivered: unknown treatment or drug: foo+imatinib" in by["e"]["reason"]


def test_unknown_column_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    pl.DataFrame(
        {"patient_id": ["a"], "histology": ["gist"], "primary_site": ["stomach"], "histolgy": ["x"]}
    ).write_csv(path)
    with pytest.raises(CohortError, match="histolgy"):
        prepare(path, KB)


def test_invalid_rows_are_exactly_those_the_contract_rejects() -> None:
    from sarcoma_cds import InvalidFacts, parse_facts
    from sarcoma_cds.cohort.compiler import FACTS
    from sarcoma_cds.cohort.io import facts_dict

    df = synth(300, seed=5, invalid_rate=0.1, kb=KB)
    p = prepare(df, KB)
    raw = df.to_dicts()
    for r in p.norm.to_dicts():
        facts = facts_dict(r)
        # a categorical value outside the vocabulary is NULL in the normalised table (its row is
        # flagged): the contract is given the value as it came in
        for name, (kind, _) in FACTS.items():
            if kind == "cat" and raw[r["row"]].get(name) is not None:
                facts[name] = raw[r["row"]][name]
        try:
            parse_facts(facts)
            ok = True
        except InvalidFacts:
            ok = False
        assert ok == (len(r["_err"]) == 0), (r["patient_id"], r["_err"])


def test_synth_is_deterministic(tmp_path: Path) -> None:
    from sarcoma_cds.cohort.synth import write

    a, b = synth(400, seed=11, kb=KB), synth(400, seed=11, kb=KB)
    assert a.equals(b)
    assert not a.equals(synth(400, seed=12, kb=KB))
    for ext in ("csv", "parquet", "jsonl"):
        write(a, tmp_path / f"s.{ext}")
    r = [
        evaluate(prepare(tmp_path / f"s.{ext}", KB), "polars").drop("diagnosis_date")
        for ext in ("csv", "parquet", "jsonl")
    ]
    assert r[0].equals(r[1]) and r[1].equals(r[2])


def test_synth_discordance_rate_moves_concordance() -> None:
    lo = summary(evaluate(prepare(synth(1500, seed=2, discordance_rate=0.0, kb=KB), KB)))
    hi = summary(evaluate(prepare(synth(1500, seed=2, discordance_rate=0.6, kb=KB), KB)))
    assert lo["concordance"]["discordant"] < hi["concordance"]["discordant"]
    assert lo["concordance_rate"] > 0.8


def _modified_kb(tmp_path: Path) -> Path:
    src = Path(__file__).resolve().parents[1] / "src" / "sarcoma_cds" / "kb" / "data"
    dst = tmp_path / "kb_new"
    shutil.copytree(src, dst)
    p = dst / "rules" / "personalisation.yaml"
    text = p.read_text()
    old = "      - when: {fact: kit_mutation, eq: exon_9}\n        status: preferred"
    assert old in text
    p.write_text(
        text.replace(old, "      - when: {fact: kit_mutation, eq: exon_9}\n        status: caution")
    )
    g = dst / "guideline.yaml"
    # (the top-level version only: the changelog names past versions too)
    g.write_text(re.sub(r'^version: "?1\.0\.0"?$', 'version: "1.1.0"', g.read_text(), flags=re.M))
    return dst


def test_compare_kb_and_kb_diff(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sarcoma_cds.cohort.impact import compare, kb_diff
    from sarcoma_cds.interfaces.cli.main import app

    new_dir = _modified_kb(tmp_path)
    new = load_kb(new_dir)
    rows = [{**GIST_M1, "patient_id": "e9", "kit_mutation": "exon_9", "delivered": "imatinib"},
            {**GIST_M1, "patient_id": "e11", "kit_mutation": "exon_11", "delivered": "imatinib"}]
    df = pl.DataFrame(rows, schema={k: pl.Utf8 for k in rows[0]})
    old_res = evaluate(prepare(df, KB))
    new_res = evaluate(prepare(df, new))
    ch = compare(old_res, new_res)
    assert ch.get_column("patient_id").to_list() == ["e9"]
    assert "imatinib=preferred -> imatinib=caution" in ch.get_column("why")[0]
    lines = kb_diff(KB, new)
    assert any(
        "rule gist_imatinib_genotype" in x and "case 3 status preferred -> caution" in x
        for x in lines
    )

    cohort = tmp_path / "c.jsonl"
    df.write_ndjson(cohort)
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "concordance",
            str(cohort),
            "--out",
            str(tmp_path / "out"),
            "--kb",
            str(new_dir),
            "--compare-kb",
            str(Path(__file__).resolve().parents[1] / "src/sarcoma_cds/kb/data"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1 patients get a different recommendation, 1 a different concordance" in r.output
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["guideline_change"]["patients_changed"] == 1
    assert s["guideline_change"]["recommendation"]["patients_changed"] == 1
    r = runner.invoke(
        app,
        [
            "kb",
            "diff",
            str(Path(__file__).resolve().parents[1] / "src/sarcoma_cds/kb/data"),
            str(new_dir),
        ],
    )
    assert r.exit_code == 0 and "gist_imatinib_genotype" in r.output


def test_cli_concordance_outputs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sarcoma_cds.interfaces.cli.main import app

    runner = CliRunner()
    cohort = tmp_path / "c.parquet"
    r = runner.invoke(app, ["synth", "--n", "500", "--seed", "4", "--out", str(cohort)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["concordance", str(cohort), "--out", str(tmp_path / "o"), "--engine", "duckdb"]
    )
    assert r.exit_code == 0, r.output
    assert "500 patients:" in r.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(s) >= {"patients", "assessable", "concordance", "by_group", "by_centre"}
    assert sum(s["concordance"].values()) == 500
    pts = pl.read_csv(tmp_path / "o" / "patients.csv")
    assert {"patient_id", "group", "stage", "concordance", "reason"} <= set(pts.columns)
    html = (tmp_path / "o" / "report.html").read_text()
    assert "plotly" in html and "<script src=\"http" not in html  # self-contained
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,histology,primary_site,colour\n1,gist,stomach,red\n")
    r = runner.invoke(app, ["concordance", str(bad), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "colour" in r.output


def test_per_patient_engine_reports_progress_per_row() -> None:
    """The per-patient engine takes minutes on big cohorts: it reports rows done, up to all of
    them."""
    prep = prepare(synth(2500, seed=8, invalid_rate=0.02, kb=KB), KB)
    seen: list[int] = []
    evaluate(prep, "python", progress=seen.append)
    valid = prep.norm.filter(pl.col("_err").list.len() == 0).height
    assert seen[0] == 0 and seen[-1] == valid and seen == sorted(seen) and len(seen) >= 3


def test_outputs_are_categorical_and_identical_in_csv_and_parquet(tmp_path: Path) -> None:
    """Text columns are Categorical (each distinct text stored once); both files hold the same
    rows."""
    from sarcoma_cds.cohort.evaluate import TEXT_COLUMNS
    from sarcoma_cds.cohort.run import run_concordance

    src = tmp_path / "c.parquet"
    synth(800, seed=9, invalid_rate=0.05, kb=KB).write_parquet(src)
    run_concordance(src, tmp_path / "o", KB)
    pq = pl.read_parquet(tmp_path / "o" / "patients.parquet")
    assert all(pq.schema[c] == pl.Categorical for c in TEXT_COLUMNS)
    csv = pl.read_csv(tmp_path / "o" / "patients.csv", infer_schema=False)
    as_text = pq.with_columns(pl.all().cast(pl.Utf8))
    assert csv.equals(as_text)


def test_same_cohort_same_files_byte_for_byte(tmp_path: Path) -> None:
    """An audit is reproducible: the same cohort and knowledge base give identical files."""
    from sarcoma_cds.cohort.run import run_concordance

    src = tmp_path / "c.parquet"
    synth(600, seed=10, invalid_rate=0.05, kb=KB).write_parquet(src)
    run_concordance(src, tmp_path / "a", KB)
    run_concordance(src, tmp_path / "b", KB)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {
        "patients.csv",
        "patients.parquet",
        "summary.json",
        "report.html",
        "invalid_rows.csv",
    } <= set(names)
    assert not [
        n for n in names if n.endswith(".partial")
    ]  # (written under a temporary name, then renamed)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_report_heat_map_is_dark_where_facts_are_missing(tmp_path: Path) -> None:
    """The completeness heat map's scale runs from pale yellow (nothing missing) to dark red."""
    import re

    from sarcoma_cds.cohort.run import run_concordance

    src = tmp_path / "c.parquet"
    synth(300, seed=12, kb=KB).write_parquet(src)
    run_concordance(src, tmp_path / "o", KB)
    page = (tmp_path / "o" / "report.html").read_text()
    trace = page[page.index('"type":"heatmap","z"'):]  # (the trace, not the template's defaults)
    scale = re.search(r'"colorscale":(\[\[.*?\]\])', trace)
    assert scale is not None
    stops = json.loads(scale.group(1))
    assert stops[0] == [0.0, "rgb(255,255,204)"] and stops[-1] == [1.0, "rgb(128,0,38)"]


def _text(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col(pl.Categorical).cast(pl.Utf8))


def test_typed_parquet_gives_the_same_patients_as_text(tmp_path: Path) -> None:
    """synth's Parquet types categorical facts as the contract's Enum and the date as a date; an
    Enum in another order, a Categorical or a Datetime are accepted too. Every form gives the
    same patients as the all-text file, invalid rows included."""
    from sarcoma_cds.cohort.compiler import FACTS
    from sarcoma_cds.cohort.synth import typed, write

    df = synth(3000, seed=11, kb=KB, invalid_rate=0.03)
    text = tmp_path / "text.parquet"
    df.write_parquet(text)
    want = _text(evaluate(prepare(text, KB)))
    assert (~want["valid"]).sum() > 0

    written = tmp_path / "typed.parquet"
    write(df, written)
    schema = pl.read_parquet_schema(written)
    assert schema["histology"] == pl.Enum(list(FACTS["histology"][1]))
    assert schema["diagnosis_date"] == pl.Date
    assert schema["grade"] == pl.Utf8  # (holds the deliberately invalid values: stays text)
    assert _text(evaluate(prepare(written, KB))).equals(want)

    cats = [
        c for c, (kind, _) in FACTS.items() if kind == "cat" and c in df.columns and c != "grade"
    ]
    other = [
        df.with_columns(pl.col(c).cast(pl.Enum(sorted(FACTS[c][1]))) for c in cats),
        df.with_columns(pl.col(c).cast(pl.Categorical) for c in cats),
        typed(df).with_columns(pl.col("diagnosis_date").cast(pl.Datetime)),
    ]
    for frame in other:
        assert _text(evaluate(prepare(frame, KB))).equals(want)


def test_enum_input_outside_the_vocabulary_is_an_invalid_row() -> None:
    """A Categorical or Enum column is still checked value by value unless its type *is* the
    contract's vocabulary."""
    df = hand_frame().with_columns(pl.col("grade").cast(pl.Categorical))
    res = evaluate(prepare(df, KB))
    row = res.filter(pl.col("patient_id") == "c9").row(0, named=True)
    assert row["valid"] is False
    assert "grade: '4' is not allowed" in str(row["reason"])
