"""Clinical safety II (issue 10): each class of error found by the clinical review, at its root.

Every test goes through ``recommend()`` only and checks one behaviour in both directions
(the facts that trigger it, and the nearest facts that must not). The hazard log
(docs/safety/hazard-log.md) names these tests as the proof of its controls.
"""

from __future__ import annotations

from typing import Any

import pytest

from sarcoma_cds import InvalidFacts, recommend

# ------------------------------------------------------------------ patients
STS: dict[str, Any] = {
    "histology": "leiomyosarcoma",
    "primary_site": "lower_extremity",
    "size_cm": 8.0,
    "depth": "deep",
    "grade": "3",
    "nodes": "N0",
    "metastasis": "M0",
    "disease_status": "primary",
    "age_years": 55,
    "ntrk_fusion": False,
}
DISSEMINATED = {
    **STS,
    "metastasis": "M1",
    "metastatic_burden": "disseminated",
    "metastatic_sites": ["lung"],
}
LPS_DISSEMINATED = {**DISSEMINATED, "histology": "liposarcoma_dedifferentiated"}
GIST: dict[str, Any] = {
    "histology": "gist",
    "primary_site": "stomach",
    "size_cm": 7.0,
    "mitotic_rate_per_5mm2": 8,
    "kit_mutation": "exon_11",
    "pdgfra_mutation": "none",
    "sdh_deficient": False,
    "braf_v600e": False,
    "ntrk_fusion": False,
    "age_years": 60,
}
GIST_PROGRESSIVE = {
    **GIST,
    "disease_status": "progressive",
    "metastasis": "M1",
    "metastatic_burden": "disseminated",
    "metastatic_sites": ["liver"],
    "progression_extent": "widespread",
}
ANTHRACYCLINE_REGIMENS = [
    ["doxorubicin"],
    ["epirubicin"],
    ["liposomal_doxorubicin"],
    ["doxorubicin", "dacarbazine"],
    ["doxorubicin", "ifosfamide", "mesna"],
    ["epirubicin", "ifosfamide", "mesna"],
]
SECOND_LINE = [["pazopanib"], ["trabectedin"], ["eribulin"]]


def rec(facts: dict[str, Any]) -> dict[str, Any]:
    return recommend(facts).model_dump(mode="json")


def group(r: dict[str, Any]) -> str | None:
    return r["patient_group"]["id"] if r["patient_group"] else None


def options(r: dict[str, Any], drugs: list[str]) -> list[dict[str, Any]]:
    want = sorted(drugs)
    found = [
        op
        for pw in r["pathways"]
        for st in pw["steps"]
        for op in st["options"]
        if sorted(op["drugs"]) == want
    ]
    assert found, f"no regimen {drugs}"
    return found


def status(r: dict[str, Any], drugs: list[str]) -> str:
    statuses = {op["status"] for op in options(r, drugs)}
    assert len(statuses) == 1, (drugs, statuses)
    return statuses.pop()


def step(r: dict[str, Any], treatment: str) -> dict[str, Any]:
    return next(st for pw in r["pathways"] for st in pw["steps"] if st["treatment"] == treatment)


def missing(r: dict[str, Any]) -> set[str]:
    return {m["field"] for m in r["missing_information"]}


def warned(r: dict[str, Any], code: str, *words: str) -> bool:
    return any(
        w["code"] == code and all(x.lower() in w["message"].lower() for x in words)
        for w in r["warnings"]
    )


# ------------------------------------------------------------------ contract 1.1 input
def test_treatment_history_vocabulary_and_errors() -> None:
    ok = recommend({**DISSEMINATED, "prior_therapies": ["ifosfamide", "trk_inhibitor"],
                    "progressed_on": ["pazopanib"], "intolerant_of": ["radiotherapy"]})
    assert ok.schema_version == "1.1"
    with pytest.raises(InvalidFacts) as e:
        recommend({**DISSEMINATED, "progressed_on": ["surgery"]})  # not a systemic therapy
    assert "progressed_on" in str(e.value)
    with pytest.raises(InvalidFacts) as e:
        recommend({**DISSEMINATED, "intolerant_of": ["anthracycline", "anthracycline"]})
    assert "intolerant_of" in str(e.value)


# ------------------------------------------------------------------ 1. treatment history
@pytest.mark.parametrize(
    "history",
    [
        {"progressed_on": ["anthracycline"]},
        {"intolerant_of": ["anthracycline"]},
        {"prior_therapies": [], "intolerant_of": ["anthracycline"]},
    ],
)
def test_anthracycline_failure_or_intolerance_opens_second_line(history: dict[str, Any]) -> None:
    r = rec({**LPS_DISSEMINATED, **history})
    assert status(r, ["pazopanib"]) == "not_recommended"  # adipocytic
    assert status(r, ["trabectedin"]) == "option"
    assert status(r, ["eribulin"]) == "option"
    for regimen in ANTHRACYCLINE_REGIMENS:
        assert status(r, regimen) == "not_recommended", regimen


def test_anthracycline_only_given_is_asked_not_assumed() -> None:
    r = rec({**LPS_DISSEMINATED, "prior_therapies": ["anthracycline"]})
    for regimen in [*ANTHRACYCLINE_REGIMENS, ["trabectedin"]]:
        assert status(r, regimen) == "conditional", regimen
    assert {"progressed_on", "intolerant_of"} <= missing(r)


def test_anthracycline_given_without_failure_recorded_is_first_line_again() -> None:
    r = rec(
        {
            **LPS_DISSEMINATED,
            "prior_therapies": ["anthracycline"],
            "progressed_on": [],
            "intolerant_of": [],
        }
    )
    assert status(r, ["doxorubicin"]) == "option"
    assert status(r, ["trabectedin"]) == "not_recommended"
    assert not {"progressed_on", "intolerant_of"} & missing(r)


def test_no_anthracycline_yet_second_line_not_recommended() -> None:
    r = rec({**LPS_DISSEMINATED, "prior_therapies": []})
    assert status(r, ["trabectedin"]) == "not_recommended"
    assert status(r, ["doxorubicin"]) == "option"


def test_ifosfamide_failure_rules_out_ifosfamide_combinations_only() -> None:
    r = rec({**DISSEMINATED, "progressed_on": ["ifosfamide"]})
    assert status(r, ["doxorubicin", "ifosfamide", "mesna"]) == "not_recommended"
    assert status(r, ["doxorubicin"]) == "option"


def test_progressive_gist_after_standard_imatinib_escalation_and_switch() -> None:
    r = rec({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_standard_dose"],
             "progressed_on": ["imatinib_standard_dose"]})
    assert group(r) == "gist.progressive"
    assert status(r, ["imatinib"]) == "caution"  # escalation only; the standard dose failed
    assert "high-dose" in " ".join(options(r, ["imatinib"])[0]["reasons"])
    assert status(r, ["sunitinib"]) == "option"


def test_progressive_gist_given_standard_imatinib_escalation_is_an_option() -> None:
    r = rec({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_standard_dose"]})
    assert status(r, ["imatinib"]) == "option"


def test_progressive_gist_after_high_dose_imatinib_reintroduction_allowed() -> None:
    r = rec({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_high_dose"]})
    assert status(r, ["imatinib"]) == "caution"
    assert "palliate" in " ".join(options(r, ["imatinib"])[0]["reasons"])


def test_progressive_gist_never_on_a_tki_is_not_denied_imatinib() -> None:
    r = rec({**GIST_PROGRESSIVE, "prior_therapies": []})
    assert status(r, ["imatinib"]) in ("option", "preferred")
    assert status(r, ["sunitinib"]) == "not_recommended"


def test_after_sunitinib_failure_no_acceptable_sunitinib_and_limit_stated() -> None:
    r = rec({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_standard_dose", "sunitinib"],
             "progressed_on": ["imatinib_standard_dose", "sunitinib"]})
    assert status(r, ["sunitinib"]) == "not_recommended"
    assert warned(r, "out_of_guideline", "specialist")
    before = rec({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_standard_dose"]})
    assert not warned(before, "out_of_guideline")


def test_d842v_progressing_on_avapritinib_no_sunitinib_and_limit_stated() -> None:
    r = rec({**GIST_PROGRESSIVE, "kit_mutation": "none", "pdgfra_mutation": "d842v",
             "prior_therapies": ["avapritinib"], "progressed_on": ["avapritinib"]})
    assert status(r, ["sunitinib"]) == "not_recommended"
    assert status(r, ["imatinib"]) == "not_recommended"
    assert warned(r, "out_of_guideline", "avapritinib")


def test_recurrence_during_adjuvant_imatinib_is_imatinib_failure() -> None:
    base = {**GIST, "disease_status": "recurrent", "prior_therapies": ["imatinib_standard_dose"]}
    failed = rec({**base, "progressed_on": ["imatinib_standard_dose"]})
    assert group(failed) == "gist.progressive"
    assert status(failed, ["sunitinib"]) == "option"
    assert status(failed, ["imatinib"]) != "preferred"
    fresh = rec({**base, "progressed_on": []})  # recurred after adjuvant imatinib was completed
    assert group(fresh) == "gist.recurrent_or_metastatic"
    assert status(fresh, ["imatinib"]) == "preferred"
    unknown = rec(base)  # the difference decides the group: asked
    assert group(unknown) is None
    assert set(unknown["candidate_groups"]) == {"gist.progressive", "gist.recurrent_or_metastatic"}
    assert "progressed_on" in missing(unknown)


def test_failed_tki_outside_progressive_pathway_is_not_a_fresh_start() -> None:
    r = rec(
        {
            **GIST,
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "disease_status": "primary",
            "progressed_on": ["imatinib_standard_dose"],
        }
    )
    assert group(r) == "gist.recurrent_or_metastatic"
    assert status(r, ["imatinib"]) == "not_recommended"


# ------------------------------------------------------------------ 2. fitness and cardiac risk
CARDIOTOXIC = [
    (DISSEMINATED, ["doxorubicin"]),
    (DISSEMINATED, ["epirubicin"]),
    (DISSEMINATED, ["liposomal_doxorubicin"]),
    (DISSEMINATED, ["doxorubicin", "ifosfamide", "mesna"]),
    ({**STS, "resectability": "resectable"}, ["doxorubicin", "ifosfamide", "mesna"]),
    (
        {
            **GIST,
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "disease_status": "primary",
        },
        ["imatinib"],
    ),
    (
        {
            **GIST,
            "metastasis": "M0",
            "disease_status": "primary",
            "tumour_rupture": False,
            "resection_status": "not_resected",
            "resectability": "unresectable",
        },
        ["imatinib"],
    ),
    ({**GIST_PROGRESSIVE, "prior_therapies": ["imatinib_standard_dose"]}, ["sunitinib"]),
    ({**DISSEMINATED, "progressed_on": ["anthracycline"]}, ["pazopanib"]),
]


@pytest.mark.parametrize("facts,regimen", CARDIOTOXIC)
def test_heart_failure_cautions_every_cardiotoxic_drug(
    facts: dict[str, Any], regimen: list[str]
) -> None:
    without = rec(facts)
    with_hf = rec({**facts, "comorbidities": ["heart_failure"]})
    assert status(without, regimen) in ("preferred", "option"), status(without, regimen)
    assert status(with_hf, regimen) == "caution"
    reasons = " ".join(options(with_hf, regimen)[0]["reasons"])
    assert "heart failure" in reasons.lower()
    assert options(with_hf, regimen)[0]["references"], "the label is cited"


def test_beyond_source_statements_say_so_and_cite_a_named_source() -> None:
    r = recommend({**DISSEMINATED, "comorbidities": ["heart_failure"]})
    op = next(
        o for pw in r.pathways for st in pw.steps for o in st.options if o.drugs == ("doxorubicin",)
    )
    assert any(x.startswith("Beyond the source algorithm") for x in op.reasons)
    assert "label-doxorubicin" in op.references


@pytest.mark.parametrize(
    "fitness,expected",
    [
        ({"ecog": 3}, "caution"),
        ({"ecog": 4}, "caution"),
        ({"ecog": 1}, "option"),
        ({"age_years": 78}, "caution"),
        ({"age_years": 45, "ecog": 0}, "option"),
    ],
)
def test_performance_status_and_age_make_combination_chemotherapy_a_caution(fitness: dict[str, Any],
                                                                            expected: str) -> None:
    r = rec({**DISSEMINATED, **fitness})
    assert status(r, ["doxorubicin", "ifosfamide", "mesna"]) == expected
    assert status(r, ["doxorubicin"]) == "option"  # a single agent is not a combination


# ------------------------------------------------------------------ 3. grade X is unknown, not low
def test_grade_x_stage_i_is_staged_as_ajcc_says_but_warned_and_asked() -> None:
    r = rec({**STS, "size_cm": 4.0, "grade": "X", "resectability": "resectable"})
    assert r["stage"]["group"] == "IA"  # AJCC 8: GX staged as G1
    assert group(r) == "extremity.stage_i"
    assert warned(r, "out_of_guideline", "grade x", "radiotherapy")
    assert "grade" in missing(r)
    low = rec({**STS, "size_cm": 4.0, "grade": "1", "resectability": "resectable"})
    assert not warned(low, "out_of_guideline")


def test_grade_x_adjuvant_chemotherapy_is_conditional_not_a_caution() -> None:
    r = rec({**STS, "grade": "X", "nodes": "N1", "resectability": "resectable"})
    assert group(r) == "extremity.stage_iii_resectable"
    assert step(r, "adjuvant_systemic_therapy")["status"] == "conditional"
    assert "grade" in missing(r)


# ------------------------------------------------------------------ 4. margins
def test_r2_after_limb_surgery_warns_and_puts_re_resection_first() -> None:
    r = rec({**STS, "resectability": "resectable", "resection_status": "R2"})
    assert warned(r, "out_of_guideline", "re-resection")
    assert any("re-resection" in n for n in step(r, "excision")["notes"])
    r0 = rec({**STS, "resectability": "resectable", "resection_status": "R0"})
    assert not warned(r0, "out_of_guideline")


def test_observation_or_boost_note_only_for_positive_margins_after_neoadjuvant_radiotherapy() -> (
    None
):
    base = {**STS, "resectability": "resectable"}
    note = "observation or a boost"
    after_rt = rec(
        {**base, "resection_status": "R1", "prior_therapies": ["radiotherapy", "surgery"]}
    )
    assert any(
        note in n for n in step(after_rt, "neoadjuvant_radiotherapy_or_chemoradiation")["notes"]
    )
    for facts in (
        {**base, "resection_status": "R2", "prior_therapies": ["radiotherapy", "surgery"]},
        {**base, "resection_status": "R1", "prior_therapies": ["surgery"]},
    ):
        r = rec(facts)
        assert not any(
            note in n for n in step(r, "neoadjuvant_radiotherapy_or_chemoradiation")["notes"]
        )


# ------------------------------------------------------------------ 5. retroperitoneal chemotherapy
RP = {**STS, "primary_site": "retroperitoneum", "resectability": "resectable"}


@pytest.mark.parametrize(
    "facts", [{"grade": "1"}, {"histology": "liposarcoma_well_differentiated", "grade": "2"}]
)
def test_retroperitoneal_low_grade_chemotherapy_not_plainly_offered(facts: dict[str, Any]) -> None:
    r = rec({**RP, **facts})
    assert step(r, "adjuvant_chemotherapy")["status"] == "not_recommended"
    assert step(r, "neoadjuvant_systemic_therapy")["status"] == "caution"
    assert {op["status"] for op in step(r, "adjuvant_chemotherapy")["options"]} == {
        "not_recommended"
    }
    assert {op["status"] for op in step(r, "neoadjuvant_systemic_therapy")["options"]} == {
        "caution"
    }


def test_retroperitoneal_high_grade_chemotherapy_stays_an_option() -> None:
    r = rec({**RP, "grade": "3"})
    assert step(r, "adjuvant_chemotherapy")["status"] == "option"
    unknown = rec({**RP, "grade": "X"})
    assert step(unknown, "adjuvant_chemotherapy")["status"] == "conditional"


# --------------------------------------------------------- 6. records after surgery, contradictions
def test_resected_tumour_with_blank_resectability_keeps_the_adjuvant_decision() -> None:
    r = rec({**STS, "resection_status": "R0"})
    assert group(r) == "extremity.stage_iii_resectable"
    assert "resectability" not in missing(r)


def test_r0_with_unresectable_is_a_data_conflict() -> None:
    r = rec({**STS, "resection_status": "R0", "resectability": "unresectable"})
    assert group(r) == "extremity.stage_iii_resectable"
    assert warned(r, "data_conflict", "r0", "unresectable")
    g = rec({**GIST, "metastasis": "M0", "disease_status": "primary", "tumour_rupture": False,
             "resection_status": "R0", "resectability": "unresectable"})
    assert g["patient_group"] is None and warned(g, "data_conflict", "unresectable")


def test_oligometastatic_with_three_sites_is_a_data_conflict() -> None:
    facts = {**STS, "metastasis": "M1", "metastatic_burden": "oligometastatic"}
    assert warned(
        rec({**facts, "metastatic_sites": ["lung", "liver", "bone"]}),
        "data_conflict",
        "oligometastatic",
    )
    assert not warned(rec({**facts, "metastatic_sites": ["lung", "liver"]}), "data_conflict")


def test_gist_only_facts_on_a_non_gist_record_and_n1_gist_are_data_conflicts() -> None:
    assert warned(
        rec({**STS, "resectability": "resectable", "kit_mutation": "exon_11"}),
        "data_conflict",
        "gist",
    )
    assert not warned(
        rec({**STS, "resectability": "resectable", "nf1_mutation": True}), "data_conflict"
    )
    g = {**GIST, "metastasis": "M0", "disease_status": "primary", "tumour_rupture": False,
         "resection_status": "not_resected", "resectability": "resectable"}
    assert warned(rec({**g, "nodes": "N1"}), "data_conflict", "N1")
    assert not warned(rec({**g, "nodes": "N0"}), "data_conflict")


# -------------------------------------------------------------- 7. statuses as strong as the source
def test_ntrk_in_soft_tissue_sarcoma_is_an_option_not_preferred() -> None:
    r = rec({**DISSEMINATED, "ntrk_fusion": True})
    assert status(r, ["larotrectinib"]) == "option"
    g = rec(
        {
            **GIST,
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "disease_status": "primary",
            "ntrk_fusion": True,
        }
    )
    assert status(g, ["larotrectinib"]) == "preferred"  # "preferred" for NTRK fusion-positive GIST


def test_sdh_deficient_gist_choices_are_options() -> None:
    r = rec({**GIST, "kit_mutation": "none", "sdh_deficient": True, "metastasis": "M1",
             "metastatic_burden": "disseminated", "disease_status": "primary"})
    for regimen in (["sunitinib"], ["regorafenib"], ["pazopanib"], ["imatinib", "binimetinib"]):
        assert status(r, regimen) == "option", regimen


def test_kit_exon9_high_dose_note_only_where_the_source_gives_it() -> None:
    note = "high-dose imatinib should be considered"
    met = rec(
        {
            **GIST,
            "kit_mutation": "exon_9",
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "disease_status": "primary",
        }
    )
    assert any(note in n for n in options(met, ["imatinib"])[0]["notes"])
    adjuvant = rec(
        {
            **GIST,
            "kit_mutation": "exon_9",
            "metastasis": "M0",
            "disease_status": "primary",
            "tumour_rupture": False,
            "resection_status": "R0",
            "resectability": "resectable",
        }
    )
    assert not any(note in n for n in options(adjuvant, ["imatinib"])[0]["notes"])


def test_adjuvant_regimens_agree_across_pathways_with_a_stated_reason() -> None:
    r = rec({**STS, "grade": "2", "nodes": "N1", "resectability": "resectable"})
    adjuvant = [
        op
        for pw in r["pathways"]
        for st in pw["steps"]
        if st["treatment"].startswith("adjuvant")
        for op in st["options"]
    ]
    assert adjuvant and {op["status"] for op in adjuvant} == {"not_recommended"}
    neo = [
        op
        for pw in r["pathways"]
        for st in pw["steps"]
        if st["treatment"].startswith("neoadjuvant")
        for op in st["options"]
    ]
    assert neo and all(op["notes"] for op in neo)  # why the neoadjuvant ones differ


def test_a_ruled_out_drug_shows_no_reason_arguing_for_it() -> None:
    r = rec({**GIST, "kit_mutation": "none", "pdgfra_mutation": "none", "metastasis": "M0",
             "disease_status": "primary", "tumour_rupture": False, "resection_status": "R0",
             "resectability": "resectable", "size_cm": 12.0})
    op = options(r, ["imatinib"])[0]
    assert op["status"] == "not_recommended"
    assert not any("prolongs survival" in x or "first-choice" in x for x in op["reasons"])



def test_a_step_whose_regimens_are_all_ruled_out_shows_no_reason_arguing_for_it() -> None:
    """Found by the Hypothesis property (H-06): grade 3 argues for adjuvant chemotherapy, but
    anthracyclines are not tolerated, so every regimen of the step is ruled out; the step said
    'not recommended' while still giving the survival benefit as a reason."""
    r = rec({"histology": "liposarcoma", "primary_site": "upper_extremity", "size_cm": 6.0,
             "grade": "3", "metastasis": "M0", "resectability": "resectable",
             "intolerant_of": ["anthracycline"]})
    steps = [s for p in r["pathways"] for s in p["steps"]
             if s["treatment"] == "adjuvant_systemic_therapy"]
    assert steps and all(s["status"] == "not_recommended" for s in steps)
    for s in steps:
        assert not any("prolonged 5-year survival" in x for x in s["reasons"]), s["reasons"]
        assert any("None of this step's regimens" in x for x in s["reasons"])

# -------------------------------------------------------------- 8. honest limits, across candidates
def test_no_later_lines_for_retroperitoneal_disease_said_plainly() -> None:
    r = rec(
        {
            **STS,
            "primary_site": "retroperitoneum",
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "metastatic_sites": ["liver"],
            "progressed_on": ["anthracycline"],
        }
    )
    assert group(r) == "retroperitoneal.disseminated"
    assert warned(r, "out_of_guideline", "no later line")
    first = rec(
        {
            **STS,
            "primary_site": "retroperitoneum",
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "metastatic_sites": ["liver"],
            "prior_therapies": [],
        }
    )
    assert not warned(first, "out_of_guideline")


def test_across_candidates_holds_whatever_the_missing_facts() -> None:
    r = recommend(
        {
            "histology": "gist",
            "primary_site": "stomach",
            "kit_mutation": "none",
            "pdgfra_mutation": "d842v",
        }
    )
    assert r.patient_group is None and len(r.candidate_groups) > 1
    across = {a.drugs: a for a in r.across_candidates}
    assert across[("imatinib",)].status == "not_recommended"
    assert set(across[("imatinib",)].groups) == set(r.candidate_groups)
    assert across[("avapritinib",)].status == "preferred"
    pinned = recommend(
        {
            **GIST,
            "metastasis": "M1",
            "metastatic_burden": "disseminated",
            "disease_status": "primary",
        }
    )
    assert pinned.across_candidates == ()
    assert recommend({**STS, "histology": "desmoid_tumour"}).across_candidates == ()
