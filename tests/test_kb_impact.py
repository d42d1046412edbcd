"""Recommendation-level impact of a guideline change (``kb impact``, ``concordance --compare-kb``).

The impact of a known change must be reported exactly: each test makes one change to a copy of
the knowledge base and checks the number of patients reported against a count computed here
independently, from the cohort's facts and the vectorised evaluator's groups.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pl = pytest.importorskip("polars")

from sarcoma_cds import load_kb  # noqa: E402
from sarcoma_cds.cohort.evaluate import evaluate, prepare  # noqa: E402
from sarcoma_cds.cohort.rec_impact import cohort_facts, impact  # noqa: E402
from sarcoma_cds.cohort.synth import synth  # noqa: E402
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR  # noqa: E402

KB = load_kb()
RULES = "rules/personalisation.yaml"
NTRK_OPTION = "      - when: {fact: ntrk_fusion, eq: true}\n        status: option"
GROUP6 = "groups/06-extremity.stage_iv_disseminated.yaml"


def _edited(tmp_path: Path, rel: str, old: str, new: str, name: str = "kb") -> Path:
    dst = tmp_path / name
    shutil.copytree(DEFAULT_KB_DIR, dst)
    text = (dst / rel).read_text()
    assert old in text
    (dst / rel).write_text(text.replace(old, new, 1))
    return dst


@pytest.fixture(scope="module")
def cohort() -> object:
    return synth(6000, seed=11, kb=KB)


def test_ntrk_status_flip_is_counted_exactly(tmp_path: Path, cohort: object) -> None:
    """1.1.0 makes the TRK inhibitors `option` (the source: "may be used"); the draft before it had
    them `preferred`. Every NTRK-fusion patient of the rule's groups changes, except those whose
    TRK inhibitors are ruled out anyway (failure or intolerance recorded)."""
    old = load_kb(_edited(tmp_path, RULES, NTRK_OPTION, NTRK_OPTION.replace("option", "preferred")))
    result = impact(cohort_facts(cohort), old, KB)

    rule = next(r for r in KB.data.rules.rules if r.id == "ntrk_fusion_sts")
    groups = evaluate(prepare(cohort, KB)).select("patient_id", "group")
    trk_out = pl.col("progressed_on").list.contains("trk_inhibitor").fill_null(False) | \
        pl.col("intolerant_of").list.contains("trk_inhibitor").fill_null(False)
    expected = cohort.join(groups, on="patient_id").filter(  # type: ignore[attr-defined]
        pl.col("group").is_in(list(rule.groups)) & pl.col("ntrk_fusion").fill_null(False) & ~trk_out
    )
    assert expected.height > 5  # (the cohort exercises the change)
    assert result.changed == expected.height
    assert sorted(result.changed_ids) == sorted(expected.get_column("patient_id").to_list())
    rows = [r for r in result.rows if r.item.endswith("/larotrectinib")]
    assert rows and all(
        (r.old, r.new, r.rules) == ("preferred", "option", ("ntrk_fusion_sts",)) for r in rows
    )
    assert sum(r.patients for r in rows) == expected.height
    assert all(r.kind == "status" for r in result.rows)


def test_an_added_regimen_is_counted_for_every_patient_of_the_group(
    tmp_path: Path, cohort: object
) -> None:
    new = load_kb(_edited(tmp_path, GROUP6, "          - drugs: [eribulin]\n",
                          "          - drugs: [eribulin]\n            line: secondary\n"
                          "          - drugs: [gemcitabine, docetaxel]\n"))
    result = impact(cohort_facts(cohort), KB, new)
    in_group = (
        evaluate(prepare(cohort, KB))
        .filter(pl.col("group") == "extremity.stage_iv_disseminated")
        .height
    )
    added = [r for r in result.rows if r.item.endswith("/docetaxel+gemcitabine")]
    assert len(added) == 1 and added[0].old == "-" and added[0].rules == ("group content",)
    assert added[0].patients == in_group == result.changed
    assert result.by_group == {"extremity.stage_iv_disseminated": in_group}


def test_kb_impact_command_and_compare_kb_report(tmp_path: Path, cohort: object) -> None:
    from typer.testing import CliRunner

    from sarcoma_cds.interfaces.cli.main import app

    old_dir = _edited(
        tmp_path, RULES, NTRK_OPTION, NTRK_OPTION.replace("option", "preferred"), "old"
    )
    path = tmp_path / "c.parquet"
    cohort.write_parquet(path)  # type: ignore[attr-defined]
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "kb",
            "impact",
            str(old_dir),
            str(DEFAULT_KB_DIR),
            "--cohort",
            str(path),
            "--out",
            str(tmp_path / "imp"),
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "imp" / "impact.json").read_text())
    assert "get a different recommendation" in r.output and "[ntrk_fusion_sts]" in r.output
    assert d["patients_changed"] > 0 and d["changes"][0]["rules"] == ["ntrk_fusion_sts"]
    assert "| ntrk_fusion_sts |" in (tmp_path / "imp" / "impact.md").read_text()

    r = runner.invoke(
        app,
        ["concordance", str(path), "--out", str(tmp_path / "out"), "--compare-kb", str(old_dir)],
    )
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["guideline_change"]["recommendation"]["patients_changed"] == d["patients_changed"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="recommendation-impact"' in page and KB.content_hash[:19] in page

    # synth --kb: the delivered treatments come from the named knowledge base (a draft's regimens
    # occur)
    r = runner.invoke(
        app, ["synth", "--n", "50", "--kb", str(old_dir), "--out", str(tmp_path / "s.csv")]
    )
    assert r.exit_code == 0 and (tmp_path / "s.csv").exists(), r.output
    r = runner.invoke(app, ["synth", "--n", "5", "--kb", "9.9.9", "--out", str(tmp_path / "t.csv")])
    assert r.exit_code == 2 and "neither a directory nor a known version" in r.output


def test_a_lost_question_is_reported_with_its_rule(tmp_path: Path, cohort: object) -> None:
    ask = (
        "      ask:\n        - field: ntrk_fusion\n          why: NTRK gene fusion status decides "
        "whether larotrectinib, entrectinib or repotrectinib fit.\n"
    )
    new = load_kb(_edited(tmp_path, RULES, ask, ""))
    result = impact(cohort_facts(cohort), KB, new)
    lost = [r for r in result.rows if r.kind == "question"]
    assert lost and all(
        (r.item, r.old, r.new, r.rules) == ("ntrk_fusion", "asked", "-", ("ntrk_fusion_sts",))
        for r in lost
    )
    assert {r.kind for r in result.rows} == {"question"}


def test_memoised_recommendations_do_not_leak_between_patients() -> None:
    """Found by the impact tool: the memo key banded ECOG at >= 3 only, so a patient with ECOG 1
    (the anthracycline-ifosfamide caution does not apply) and one with ECOG 2 (it does, EORTC
    62012 eligibility) shared a cached result. The answer must not depend on who came before."""
    ecog1 = {
        "histology": "angiosarcoma",
        "primary_site": "upper_extremity",
        "size_cm": 8.2,
        "grade": "2",
        "nodes": "N0",
        "metastasis": "M1",
        "metastatic_burden": "oligometastatic",
        "resectability": "resectable",
        "disease_status": "primary",
        "age_years": 55,
        "ecog": 1,
    }
    ecog2 = {**ecog1, "ecog": 2}
    from sarcoma_cds.cohort.rec_impact import flatten
    from sarcoma_cds.domain.engine import recommend

    alone = flatten(recommend(load_kb(DEFAULT_KB_DIR), ecog2))
    kb = load_kb(DEFAULT_KB_DIR)
    recommend(kb, ecog1)
    assert flatten(recommend(kb, ecog2)) == alone
    assert "caution" in alone.items.values()
