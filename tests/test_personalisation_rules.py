"""Each personalisation rule in both directions (and its unknown case), through recommend() only.

Every test builds a patient that lands in the rule's group, then checks the status of the
targeted step or regimen, its notes, the warnings and missing_information.
"""

from __future__ import annotations

from typing import Any

import pytest

from sarcoma_cds import recommend

# ------------------------------------------------------------------ patients
STS_BASE: dict[str, Any] = {
    "histology": "leiomyosarcoma",
    "primary_site": "lower_extremity",
    "size_cm": 8.0,
    "grade": "3",
    "nodes": "N0",
    "metastasis": "M0",
    "disease_status": "primary",
    "age_years": 60,
}
GIST_BASE: dict[str, Any] = {
    "histology": "gist",
    "primary_site": "stomach",
    "size_cm": 7.0,
    "mitotic_rate_per_5mm2": 8,
    "metastasis": "M0",
    "disease_status": "primary",
    "tumour_rupture": False,
    "resection_status": "not_resected",
    "age_years": 60,
}

GROUP_FACTS: dict[str, dict[str, Any]] = {
    "extremity.stage_i": {**STS_BASE, "size_cm": 4.0, "grade": "1", "resectability": "resectable"},
    "extremity.stage_ii_resectable": {**STS_BASE, "size_cm": 4.0, "resectability": "resectable"},
    "extremity.stage_iii_resectable": {**STS_BASE, "resectability": "resectable"},
    "extremity.stage_iii_unresectable": {**STS_BASE, "resectability": "unresectable"},
    "extremity.stage_iv_oligometastatic": {
        **STS_BASE,
        "metastasis": "M1",
        "metastatic_burden": "oligometastatic",
        "metastatic_sites": ["liver"],
    },
    "extremity.stage_iv_disseminated": {
        **STS_BASE,
        "metastasis": "M1",
        "metastatic_burden": "disseminated",
        "metastatic_sites": ["lung", "bone"],
    },
    "extremity.recurrent": {**STS_BASE, "disease_status": "recurrent"},
    "retroperitoneal.resectable": {
        **STS_BASE,
        "primary_site": "retroperitoneum",
        "resectability": "resectable",
    },
    "retroperitoneal.unresectable": {
        **STS_BASE,
        "primary_site": "retroperitoneum",
        "resectability": "unresectable",
    },
    "retroperitoneal.metastatic_limited": {
        **STS_BASE,
        "primary_site": "retroperitoneum",
        "metastasis": "M1",
        "metastatic_burden": "oligometastatic",
        "metastatic_sites": ["liver"],
    },
    "retroperitoneal.disseminated": {
        **STS_BASE,
        "primary_site": "retroperitoneum",
        "metastasis": "M1",
        "metastatic_burden": "disseminated",
        "metastatic_sites": ["liver", "lung"],
    },
    "gist.resectable_minimal_morbidity": {**GIST_BASE, "resectability": "resectable"},
    "gist.resectable_significant_morbidity": {
        **GIST_BASE,
        "resectability": "resectable_significant_morbidity",
    },
    "gist.unresectable": {**GIST_BASE, "resectability": "unresectable"},
    "gist.progressive": {
        k: v for k, v in GIST_BASE.items() if k not in ("tumour_rupture", "resection_status")
    }
    | {
        "disease_status": "progressive",
        "metastasis": "M1",
        "metastatic_burden": "oligometastatic",
        "metastatic_sites": ["liver"],
        "progression_extent": "limited",
        "prior_therapies": ["imatinib_standard_dose"],
    },
    "gist.recurrent_or_metastatic": {
        **GIST_BASE,
        "metastasis": "M1",
        "metastatic_burden": "disseminated",
        "metastatic_sites": ["liver"],
    },
}


def rec_for(group: str, drop: tuple[str, ...] = (), **facts: Any) -> dict[str, Any]:
    f = {k: v for k, v in GROUP_FACTS[group].items() if k not in drop}
    f.update(facts)
    out = recommend(f).model_dump(mode="json")
    assert out["patient_group"] is not None, (f, out["candidate_groups"], out["out_of_scope"])
    assert out["patient_group"]["id"] == group
    return out


def step(rec: dict[str, Any], treatment: str, pathway: int | None = None) -> dict[str, Any]:
    found = [st for pi, pw in enumerate(rec["pathways"]) for st in pw["steps"]
             if st["treatment"] == treatment and (pathway is None or pi == pathway)]
    assert found, f"no step {treatment}"
    return found[0]


def option(rec: dict[str, Any], drugs: list[str], treatment: str | None = None) -> dict[str, Any]:
    want = sorted(drugs)
    found = [op for pw in rec["pathways"] for st in pw["steps"] for op in st["options"]
             if sorted(op["drugs"]) == want and (treatment is None or st["treatment"] == treatment)]
    assert found, f"no option {drugs}"
    return found[0]


def missing(rec: dict[str, Any]) -> list[str]:
    return [m["field"] for m in rec["missing_information"]]


def warnings(rec: dict[str, Any], code: str = "contraindication") -> set[str | None]:
    return {w["treatment"] for w in rec["warnings"] if w["code"] == code}


def notes_text(obj: dict[str, Any]) -> str:
    return " ".join(obj.get("notes", [])).lower()


TRK = [["larotrectinib"], ["entrectinib"], ["repotrectinib"]]

# ================================================================== NTRK fusion
NTRK_STS_GROUPS = ["extremity.stage_iii_unresectable", "extremity.stage_iv_oligometastatic",
                   "extremity.stage_iv_disseminated", "retroperitoneal.unresectable",
                   "retroperitoneal.metastatic_limited", "retroperitoneal.disseminated"]
NTRK_GIST_GROUPS = [
    "gist.resectable_significant_morbidity",
    "gist.unresectable",
    "gist.recurrent_or_metastatic",
]


@pytest.mark.parametrize("group", NTRK_STS_GROUPS + NTRK_GIST_GROUPS)
@pytest.mark.parametrize(
    "value,status", [(True, "preferred"), (False, "not_recommended"), (None, "conditional")]
)
def test_ntrk(group: str, value: bool | None, status: str) -> None:
    if value is True and not group.startswith("gist"):
        status = (
            "option"  # soft-tissue sarcoma: the source says TRK inhibitors "may be used" (issue 10)
        )
    extra = {} if value is None else {"ntrk_fusion": value}
    if group.startswith("gist"):
        extra |= {"kit_mutation": "exon_11", "pdgfra_mutation": "none"}
    rec = rec_for(group, **extra)
    for drugs in TRK:
        op = option(rec, drugs)
        assert op["status"] == status, (drugs, op)
        assert op["reasons"]
    assert ("ntrk_fusion" in missing(rec)) is (value is None)


def test_ntrk_untested_null_is_unknown() -> None:
    rec = rec_for("extremity.stage_iii_unresectable", ntrk_fusion=None)
    assert option(rec, ["larotrectinib"])["status"] == "conditional"
    assert "ntrk_fusion" in missing(rec)


def test_ntrk_positive_does_not_touch_anthracyclines() -> None:
    rec = rec_for("extremity.stage_iii_unresectable", ntrk_fusion=True)
    assert option(rec, ["doxorubicin"])["status"] == "option"


# ================================================================== GIST genotype: imatinib
IMATINIB_GROUPS = [
    "gist.resectable_significant_morbidity",
    "gist.unresectable",
    "gist.recurrent_or_metastatic",
]


@pytest.mark.parametrize("group", IMATINIB_GROUPS)
@pytest.mark.parametrize("kit,pdgfra,status", [
    ("exon_11", "none", "preferred"),
    ("exon_9", "none", "preferred"),
    ("exon_13", "none", "preferred"),
    ("none", "exon_18_sensitive", "preferred"),
    ("none", "exon_12", "preferred"),
    ("none", "d842v", "not_recommended"),
    ("none", "exon_18_insensitive", "not_recommended"),
    ("none", "none", "not_recommended"),
])
def test_imatinib_by_genotype(group: str, kit: str, pdgfra: str, status: str) -> None:
    rec = rec_for(group, kit_mutation=kit, pdgfra_mutation=pdgfra)
    assert option(rec, ["imatinib"])["status"] == status
    assert "kit_mutation" not in missing(rec)


@pytest.mark.parametrize("group", ["gist.unresectable", "gist.recurrent_or_metastatic"])
def test_imatinib_kit_exon9_high_dose_note(group: str) -> None:
    """Only where the source gives the note: unresectable and metastatic GIST (issue 10)."""
    exon9 = option(rec_for(group, kit_mutation="exon_9", pdgfra_mutation="none"), ["imatinib"])
    exon11 = option(rec_for(group, kit_mutation="exon_11", pdgfra_mutation="none"), ["imatinib"])
    assert "high-dose" in notes_text(exon9) and "exon 9" in notes_text(exon9)
    assert "high-dose" not in notes_text(exon11)


@pytest.mark.parametrize("group", IMATINIB_GROUPS)
@pytest.mark.parametrize("genotype", [{}, {"kit_mutation": "unknown"},
                                      {"kit_mutation": "unknown", "pdgfra_mutation": "unknown"}])
def test_imatinib_unknown_genotype_conditional(group: str, genotype: dict[str, str]) -> None:
    rec = rec_for(group, **genotype)
    assert option(rec, ["imatinib"])["status"] == "conditional"
    assert {"kit_mutation", "pdgfra_mutation"} <= set(missing(rec))


def test_imatinib_d842v_beats_kit_mutation() -> None:
    rec = rec_for("gist.unresectable", kit_mutation="exon_11", pdgfra_mutation="d842v")
    assert option(rec, ["imatinib"])["status"] == "not_recommended"


# ================================================================== GIST genotype: avapritinib
@pytest.mark.parametrize("group", IMATINIB_GROUPS)
@pytest.mark.parametrize(
    "pdgfra,status",
    [
        ("d842v", "preferred"),
        ("exon_18_insensitive", "preferred"),
        ("none", "not_recommended"),
        ("exon_18_sensitive", "not_recommended"),
        ("exon_12", "not_recommended"),
        ("unknown", "conditional"),
        (None, "conditional"),
    ],
)
def test_avapritinib_by_pdgfra(group: str, pdgfra: str | None, status: str) -> None:
    extra = {"kit_mutation": "none"} | ({} if pdgfra is None else {"pdgfra_mutation": pdgfra})
    rec = rec_for(group, **extra)
    assert option(rec, ["avapritinib"])["status"] == status
    assert ("pdgfra_mutation" in missing(rec)) is (status == "conditional")


# ================================================================== GIST genotype: SDH
@pytest.mark.parametrize(
    "value,status", [(True, "option"), (False, "not_recommended"), (None, "conditional")]
)
def test_sdh_neoadjuvant_sunitinib(value: bool | None, status: str) -> None:
    extra: dict[str, Any] = {"kit_mutation": "none", "pdgfra_mutation": "none"}
    if value is not None:
        extra["sdh_deficient"] = value
    rec = rec_for("gist.resectable_significant_morbidity", **extra)
    op = option(rec, ["sunitinib"])
    assert op["status"] == status
    assert ("observation" in notes_text(op)) is (value is True)
    assert ("sdh_deficient" in missing(rec)) is (value is None)


SDH_ADVANCED = [["sunitinib"], ["regorafenib"], ["pazopanib"], ["imatinib", "binimetinib"]]


@pytest.mark.parametrize("group", ["gist.unresectable", "gist.recurrent_or_metastatic"])
@pytest.mark.parametrize(
    "value,status", [(True, "option"), (False, "not_recommended"), (None, "conditional")]
)
def test_sdh_advanced_options(group: str, value: bool | None, status: str) -> None:
    extra: dict[str, Any] = {"kit_mutation": "none", "pdgfra_mutation": "none"}
    if value is not None:
        extra["sdh_deficient"] = value
    rec = rec_for(group, **extra)
    for drugs in SDH_ADVANCED:
        assert option(rec, drugs)["status"] == status, drugs
    assert ("sdh_deficient" in missing(rec)) is (value is None)


def test_sdh_deficient_wild_type_imatinib_alone_not_recommended() -> None:
    rec = rec_for(
        "gist.recurrent_or_metastatic",
        kit_mutation="none",
        pdgfra_mutation="none",
        sdh_deficient=True,
    )
    assert option(rec, ["imatinib"])["status"] == "not_recommended"
    assert (
        option(rec, ["imatinib", "binimetinib"])["status"] == "option"
    )  # "options for SDH-deficient GIST"


# ================================================================== GIST genotype: BRAF
@pytest.mark.parametrize("group", IMATINIB_GROUPS)
@pytest.mark.parametrize(
    "value,status", [(True, "preferred"), (False, "not_recommended"), (None, "conditional")]
)
def test_braf_dabrafenib_trametinib(group: str, value: bool | None, status: str) -> None:
    if value is True and group != "gist.resectable_significant_morbidity":
        status = (
            "option"  # "recommended" only before surgery; "is treated with" otherwise (issue 10)
        )
    extra: dict[str, Any] = {"kit_mutation": "none", "pdgfra_mutation": "none"}
    if value is not None:
        extra["braf_v600e"] = value
    rec = rec_for(group, **extra)
    assert option(rec, ["dabrafenib", "trametinib"])["status"] == status
    assert ("braf_v600e" in missing(rec)) is (value is None)


# ================================================================== observation for indolent GIST
@pytest.mark.parametrize(
    "extra,noted",
    [
        ({"kit_mutation": "none", "pdgfra_mutation": "none", "sdh_deficient": True}, True),
        ({"kit_mutation": "none", "pdgfra_mutation": "none", "nf1_mutation": True}, True),
        (
            {
                "kit_mutation": "none",
                "pdgfra_mutation": "none",
                "sdh_deficient": False,
                "nf1_mutation": False,
            },
            False,
        ),
        ({"kit_mutation": "exon_11", "pdgfra_mutation": "none", "sdh_deficient": True}, False),
        ({"kit_mutation": "exon_11", "pdgfra_mutation": "none", "nf1_mutation": True}, False),
    ],
)
def test_observation_note_sdh_nf1(extra: dict[str, Any], noted: bool) -> None:
    rec = rec_for("gist.recurrent_or_metastatic", **extra)
    st = step(rec, "targeted_systemic_therapy")
    assert ("observation" in notes_text(st)) is noted


# ================================================================== after neoadjuvant therapy
@pytest.mark.parametrize(
    "extra,adjuvant_note,observation_note",
    [
        ({"kit_mutation": "exon_11", "pdgfra_mutation": "none"}, True, False),
        ({"kit_mutation": "none", "pdgfra_mutation": "d842v"}, False, True),
        ({"kit_mutation": "none", "pdgfra_mutation": "none", "sdh_deficient": True}, False, True),
        (
            {
                "kit_mutation": "none",
                "pdgfra_mutation": "none",
                "sdh_deficient": False,
                "braf_v600e": False,
                "ntrk_fusion": False,
            },
            False,
            False,
        ),
    ],
)
def test_after_neoadjuvant_notes(
    extra: dict[str, Any], adjuvant_note: bool, observation_note: bool
) -> None:
    st = step(
        rec_for("gist.resectable_significant_morbidity", **extra),
        "neoadjuvant_targeted_systemic_therapy",
    )
    text = notes_text(st)
    assert ("adjuvant" in text and "3 years" in text) is adjuvant_note
    assert ("observation" in text) is observation_note


# ================================================================== GIST adjuvant by risk
# (site, size, mitoses, NIH risk, expected imatinib status with an imatinib-sensitive genotype)
ADJUVANT = [
    ("stomach", 1.5, 2, "very_low", "not_recommended"),
    ("stomach", 4.0, 3, "low", "not_recommended"),
    ("small_intestine", 4.0, 3, "low", "not_recommended"),
    ("stomach", 7.0, 3, "intermediate", "preferred"),
    ("stomach", 1.5, 8, "intermediate", "preferred"),
    ("stomach", 7.0, 8, "high", "preferred"),
    ("small_intestine", 4.0, 8, "high", "preferred"),
]


@pytest.mark.parametrize("site,size,mitoses,risk,status", ADJUVANT)
def test_adjuvant_imatinib_by_risk(
    site: str, size: float, mitoses: float, risk: str, status: str
) -> None:
    rec = rec_for("gist.resectable_minimal_morbidity", primary_site=site, size_cm=size,
                  mitotic_rate_per_5mm2=mitoses, kit_mutation="exon_11", pdgfra_mutation="none")
    nih = {r["scheme"]: r for r in rec["gist_risk"]}["nih_modified_joensuu_2008"]
    assert nih["category"] == risk
    assert option(rec, ["imatinib"], "targeted_systemic_therapy")["status"] == status


def test_adjuvant_imatinib_high_risk_insensitive_genotype() -> None:
    rec = rec_for("gist.resectable_minimal_morbidity", size_cm=12.0, mitotic_rate_per_5mm2=10,
                  kit_mutation="none", pdgfra_mutation="d842v")
    assert option(rec, ["imatinib"])["status"] == "not_recommended"


def test_adjuvant_imatinib_ruptured_is_not_this_group() -> None:
    out = recommend(
        {**GROUP_FACTS["gist.resectable_minimal_morbidity"], "tumour_rupture": True}
    ).model_dump(mode="json")
    assert out["patient_group"]["id"] == "gist.recurrent_or_metastatic"


def test_adjuvant_imatinib_risk_unknown_conditional() -> None:
    rec = rec_for("gist.resectable_minimal_morbidity", drop=("mitotic_rate_per_5mm2",), size_cm=4.0,
                  kit_mutation="exon_11", pdgfra_mutation="none")
    assert option(rec, ["imatinib"])["status"] == "conditional"
    assert "mitotic_rate_per_5mm2" in missing(rec)


def test_adjuvant_imatinib_size_over_10_pins_high_risk() -> None:
    rec = rec_for(
        "gist.resectable_minimal_morbidity",
        drop=("mitotic_rate_per_5mm2",),
        size_cm=12.0,
        kit_mutation="exon_11",
        pdgfra_mutation="none",
    )
    assert option(rec, ["imatinib"])["status"] == "preferred"
    assert "mitotic_rate_per_5mm2" not in missing(rec)


@pytest.mark.parametrize(
    "comorbidities,status",
    [
        (["heart_failure"], "caution"),
        ([], "preferred"),
        (["decompensated_liver_failure"], "preferred"),
    ],
)
def test_adjuvant_imatinib_heart_failure(comorbidities: list[str], status: str) -> None:
    rec = rec_for(
        "gist.resectable_minimal_morbidity",
        kit_mutation="exon_11",
        pdgfra_mutation="none",
        comorbidities=comorbidities,
    )
    op = option(rec, ["imatinib"])
    assert op["status"] == status
    assert any("heart failure" in r.lower() for r in op["reasons"]) is (status == "caution")


def test_adjuvant_heart_failure_low_risk_still_not_recommended() -> None:
    rec = rec_for("gist.resectable_minimal_morbidity", size_cm=3.0, mitotic_rate_per_5mm2=2,
                  kit_mutation="exon_11", pdgfra_mutation="none", comorbidities=["heart_failure"])
    assert option(rec, ["imatinib"])["status"] == "not_recommended"


# ================================================================== progressive GIST
LOCAL = "excision_or_ablation_or_chemoembolisation_or_palliative_radiotherapy"


@pytest.mark.parametrize("extent,status", [("limited", "option"), ("widespread", "not_recommended"),
                                           (None, "conditional")])
def test_progression_local_therapy(extent: str | None, status: str) -> None:
    rec = rec_for("gist.progressive", drop=("progression_extent",),
                  **({} if extent is None else {"progression_extent": extent}))
    st = step(rec, LOCAL)
    assert st["status"] == status
    assert st["reasons"]
    assert ("progression_extent" in missing(rec)) is (extent is None)


@pytest.mark.parametrize(
    "extent,phrase,absent",
    [
        ("limited", "continued", "alternative tki"),
        ("widespread", "alternative tki", "may be continued"),
    ],
)
def test_progression_systemic_notes(extent: str, phrase: str, absent: str) -> None:
    st = step(
        rec_for("gist.progressive", progression_extent=extent), "continue_targeted_systemic_therapy"
    )
    assert phrase in notes_text(st)
    assert absent not in notes_text(st)


@pytest.mark.parametrize("prior,status", [
    (["imatinib_standard_dose"], "option"),
    # after high dose: no escalation, but continuation or re-introduction for palliation (issue 10)
    (["imatinib_high_dose"], "caution"),
    (["imatinib_standard_dose", "imatinib_high_dose"], "caution"),
    # a progressive GIST that never had a TKI is not denied imatinib (issue 10)
    (["surgery"], "option"),
    ([], "option"),
    (None, "conditional"),
])
def test_progression_imatinib_escalation(prior: list[str] | None, status: str) -> None:
    rec = rec_for(
        "gist.progressive",
        drop=("prior_therapies",),
        kit_mutation="exon_11",
        pdgfra_mutation="none",
        **({} if prior is None else {"prior_therapies": prior}),
    )
    assert option(rec, ["imatinib"])["status"] == status
    assert ("prior_therapies" in missing(rec)) is (prior is None)


def test_progression_imatinib_escalation_insensitive_genotype() -> None:
    rec = rec_for("gist.progressive", kit_mutation="none", pdgfra_mutation="d842v",
                  prior_therapies=["avapritinib"])
    assert option(rec, ["imatinib"])["status"] == "not_recommended"


@pytest.mark.parametrize("prior,status,switch_reason", [
    (["imatinib_standard_dose"], "option", True),
    (["imatinib_high_dose"], "option", True),
    # the switch to sunitinib is described after imatinib only (issue 10)
    (["avapritinib"], "not_recommended", False),
    (None, "conditional", False),
])
def test_progression_sunitinib_switch(
    prior: list[str] | None, status: str, switch_reason: bool
) -> None:
    rec = rec_for(
        "gist.progressive",
        drop=("prior_therapies",),
        kit_mutation="exon_11",
        pdgfra_mutation="none",
        **({} if prior is None else {"prior_therapies": prior}),
    )
    op = option(rec, ["sunitinib"])
    assert op["status"] == status
    assert any("progression after imatinib" in r.lower() for r in op["reasons"]) is switch_reason


# ================================================================== after anthracycline
SECOND_LINE = ["pazopanib", "trabectedin", "eribulin"]


@pytest.mark.parametrize(
    "histology,grade,expected",
    [
        (
            "leiomyosarcoma",
            "3",
            {"pazopanib": "option", "trabectedin": "option", "eribulin": "not_recommended"},
        ),
        (
            "liposarcoma_pleomorphic",
            "3",
            {"pazopanib": "not_recommended", "trabectedin": "option", "eribulin": "option"},
        ),
        (
            "liposarcoma_dedifferentiated",
            "2",
            {"pazopanib": "not_recommended", "trabectedin": "option", "eribulin": "option"},
        ),
        (
            "liposarcoma_myxoid",
            "1",
            {
                "pazopanib": "not_recommended",
                "trabectedin": "option",
                "eribulin": "not_recommended",
            },
        ),
        (
            "liposarcoma",
            "X",
            {"pazopanib": "not_recommended", "trabectedin": "option", "eribulin": "conditional"},
        ),
        (
            "undifferentiated_pleomorphic_sarcoma",
            "3",
            {
                "pazopanib": "option",
                "trabectedin": "not_recommended",
                "eribulin": "not_recommended",
            },
        ),
        (
            "synovial_sarcoma",
            "3",
            {
                "pazopanib": "option",
                "trabectedin": "not_recommended",
                "eribulin": "not_recommended",
            },
        ),
    ],
)
def test_second_line_after_anthracycline(
    histology: str, grade: str, expected: dict[str, str]
) -> None:
    # contract 1.1: failure (progressed_on) opens the second line; "given" alone is asked (issue 10)
    rec = rec_for("extremity.stage_iv_disseminated", histology=histology, grade=grade,
                  prior_therapies=["anthracycline"], progressed_on=["anthracycline"])
    got = {d: option(rec, [d])["status"] for d in SECOND_LINE}
    assert got == expected
    for d in SECOND_LINE:
        assert option(rec, [d])["line"] == "secondary"
    assert ("grade" in missing(rec)) is (grade == "X")


@pytest.mark.parametrize("prior", [[], ["radiotherapy"], ["surgery", "radiotherapy"]])
def test_second_line_before_anthracycline_not_recommended(prior: list[str]) -> None:
    rec = rec_for(
        "extremity.stage_iv_disseminated", histology="leiomyosarcoma", prior_therapies=prior
    )
    for d in SECOND_LINE:
        assert option(rec, [d])["status"] == "not_recommended", d
    assert option(rec, ["doxorubicin"])["status"] == "option"


def test_second_line_prior_therapy_unknown_conditional() -> None:
    rec = rec_for("extremity.stage_iv_disseminated", histology="leiomyosarcoma")
    assert option(rec, ["pazopanib"])["status"] == "conditional"
    assert option(rec, ["trabectedin"])["status"] == "conditional"
    assert "prior_therapies" in missing(rec)


def test_pazopanib_palette_note_only_non_adipocytic() -> None:
    lms = option(
        rec_for("extremity.stage_iv_disseminated", progressed_on=["anthracycline"]), ["pazopanib"]
    )
    lps = option(rec_for("extremity.stage_iv_disseminated", histology="liposarcoma",
                         progressed_on=["anthracycline"]), ["pazopanib"])
    assert "palette" in notes_text(lms)
    assert "palette" not in notes_text(lps)
    assert any("adipocytic" in r.lower() for r in lps["reasons"])


def test_eribulin_grade_missing_conditional() -> None:
    rec = rec_for("extremity.stage_iv_disseminated", drop=("grade",), histology="liposarcoma",
                  progressed_on=["anthracycline"])
    assert option(rec, ["eribulin"])["status"] == "conditional"
    assert "grade" in missing(rec)


# ================================================================== adjuvant chemotherapy by grade
@pytest.mark.parametrize("grade,nodes,status", [
    ("3", "N0", "option"),
    ("2", "N0", "not_recommended"),
    ("1", "N1", "caution"),
    ("X", "N1", "conditional"),  # grade X is unknown, not low (issue 10)
    (None, "N1", "conditional"),
])
def test_adjuvant_chemotherapy_by_grade(grade: str | None, nodes: str, status: str) -> None:
    rec = rec_for("extremity.stage_iii_resectable", drop=("grade",), nodes=nodes,
                  **({} if grade is None else {"grade": grade}))
    st = step(rec, "adjuvant_systemic_therapy")
    assert st["status"] == status
    assert st["reasons"]
    for op in st["options"]:
        assert op["status"] == status
    assert ("grade" in missing(rec)) is (grade in (None, "X"))


def test_adjuvant_chemotherapy_rule_only_touches_adjuvant_steps() -> None:
    """The Plus step keeps its status (radiotherapy still applies); its chemotherapy regimens
    follow the adjuvant grade rule, so one regimen never disagrees across pathways (issue 10)."""
    rec = rec_for("extremity.stage_iii_resectable", grade="2")
    assert step(rec, "neoadjuvant_systemic_therapy")["status"] == "option"
    plus = step(rec, "adjuvant_radiotherapy_or_chemoradiation", pathway=1)
    assert plus["status"] == "option"
    assert {op["status"] for op in plus["options"]} == {"not_recommended"}


# ================================================================== extremity local treatment notes
@pytest.mark.parametrize("size,noted", [(4.9, True), (2.0, True), (5.0, False)])
def test_radiotherapy_omission_small_tumour(size: float, noted: bool) -> None:
    rec = rec_for("extremity.stage_ii_resectable", size_cm=size)
    st = step(rec, "adjuvant_radiotherapy")
    assert ("5 cm" in notes_text(st)) is noted
    assert st["status"] == "option"


@pytest.mark.parametrize("resection,noted", [("R0", True), ("R1", False), ("not_resected", False)])
def test_radiotherapy_wide_margin_observation_note(resection: str, noted: bool) -> None:
    st = step(
        rec_for("extremity.stage_ii_resectable", resection_status=resection),
        "adjuvant_radiotherapy",
    )
    assert ("observation alone" in notes_text(st)) is noted


@pytest.mark.parametrize("group,neo_step,adj_step", [
    ("extremity.stage_ii_resectable", "neoadjuvant_radiotherapy", "adjuvant_radiotherapy"),
    ("extremity.stage_iii_resectable", "neoadjuvant_radiotherapy_or_chemoradiation",
     "adjuvant_radiotherapy_or_chemoradiation"),
])
@pytest.mark.parametrize(
    "resection,noted", [("R1", True), ("R2", True), ("R0", False), ("not_resected", False)]
)
def test_margin_notes(
    group: str, neo_step: str, adj_step: str, resection: str, noted: bool
) -> None:
    # the "observation or boost" note is for R1 after neoadjuvant radiotherapy only (issue 10)
    rec = rec_for(group, resection_status=resection, prior_therapies=["radiotherapy", "surgery"])
    assert ("boost" in notes_text(step(rec, neo_step))) is (resection == "R1")
    assert ("radiation oncologist" in notes_text(step(rec, adj_step))) is noted


# ================================================================== group-level warnings
def test_stage_i_unresectable_out_of_guideline() -> None:
    assert warnings(rec_for("extremity.stage_i", resectability="unresectable"), "out_of_guideline")
    assert not warnings(rec_for("extremity.stage_i"), "out_of_guideline")


@pytest.mark.parametrize("group", ["extremity.stage_iii_resectable", "retroperitoneal.resectable"])
def test_progressive_non_gist_out_of_guideline(group: str) -> None:
    assert warnings(rec_for(group, disease_status="progressive"), "out_of_guideline")
    assert not warnings(rec_for(group, disease_status="primary"), "out_of_guideline")


# ================================================================== recurrent extremity
@pytest.mark.parametrize(
    "extra,phrase",
    [
        ({"metastasis": "M0"}, "local recurrence"),
        ({"metastasis": "M0", "nodes": "N1"}, "node dissection"),
        (
            {
                "metastasis": "M1",
                "metastatic_burden": "oligometastatic",
                "metastatic_sites": ["lung"],
            },
            "metastasectomy",
        ),
        (
            {
                "metastasis": "M1",
                "metastatic_burden": "disseminated",
                "metastatic_sites": ["lung", "bone"],
            },
            "best supportive care",
        ),
    ],
)
def test_recurrent_extremity_by_extent(extra: dict[str, Any], phrase: str) -> None:
    st = step(rec_for("extremity.recurrent", **extra), "individualised_therapy")
    assert phrase in notes_text(st)
    others = {"local recurrence", "node dissection", "metastasectomy", "best supportive care"} - {
        phrase
    }
    if extra.get("nodes") == "N1":
        others.discard("local recurrence")
    for other in others:
        assert other not in notes_text(st), other


# ================================================================== metastases management notes
@pytest.mark.parametrize(
    "sites,noted",
    [(["lung"], True), (["lung", "liver"], True), (["liver"], False), (["bone"], False)],
)
def test_lung_metastasectomy_note(sites: list[str], noted: bool) -> None:
    st = step(
        rec_for("extremity.stage_iv_oligometastatic", metastatic_sites=sites),
        "metastases_management",
    )
    assert ("metastasectomy" in notes_text(st)) is noted


@pytest.mark.parametrize(
    "sites,noted", [(["lung"], True), (["lung", "liver"], False), (["liver"], False)]
)
def test_embolisation_not_for_lung_only(sites: list[str], noted: bool) -> None:
    st = step(
        rec_for("extremity.stage_iv_oligometastatic", metastatic_sites=sites),
        "metastases_management",
    )
    assert ("non-lung" in notes_text(st)) is noted


# ================================================================== contraindications
CONTRA_GROUPS = [
    "extremity.stage_iv_oligometastatic",
    "extremity.stage_iv_disseminated",
    "extremity.recurrent",
    "retroperitoneal.metastatic_limited",
    "retroperitoneal.disseminated",
    "gist.progressive",
]


@pytest.mark.parametrize("group", CONTRA_GROUPS)
@pytest.mark.parametrize("comorbidities,expected", [
    (["uncorrectable_coagulopathy"], {"image_guided_ablation", "embolisation"}),
    (["active_infection_treatment_area"], {"image_guided_ablation", "embolisation"}),
    (["decompensated_liver_failure"], {"embolisation"}),
    (["heart_failure"], set()),
    ([], set()),
])
def test_contraindications(group: str, comorbidities: list[str], expected: set[str]) -> None:
    rec = rec_for(group, comorbidities=comorbidities)
    assert warnings(rec) == expected
    for w in rec["warnings"]:
        if w["code"] == "contraindication":
            assert w["message"]


@pytest.mark.parametrize("group", ["extremity.stage_i", "extremity.stage_iii_resectable",
                                   "gist.resectable_minimal_morbidity"])
def test_no_contraindication_warning_without_ablation_or_embolisation(group: str) -> None:
    rec = rec_for(
        group, comorbidities=["uncorrectable_coagulopathy", "decompensated_liver_failure"]
    )
    assert warnings(rec) == set()


def test_contraindication_example_file() -> None:
    import json
    from pathlib import Path

    path = (
        Path(__file__).resolve().parents[1]
        / "examples"
        / "patients"
        / "contraindication-coagulopathy.json"
    )
    out = recommend(json.loads(path.read_text())).model_dump(mode="json")
    assert warnings(out) == {"image_guided_ablation", "embolisation"}
