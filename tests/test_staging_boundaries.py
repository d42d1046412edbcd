"""AJCC 8th edition boundaries (trunk/extremity and retroperitoneum), through recommend() only.

T: <=5 cm T1, >5-10 T2, >10-15 T3, >15 T4 (greatest dimension; depth not used).
Trunk/extremity: IA T1 G1; IB T2-4 G1; II T1 G2-3; IIIA T2 G2-3; IIIB T3-4 G2-3; IV N1 or M1.
Retroperitoneum: as above, but N1 M0 -> IIIB; M1 -> IV.
GX is staged like G1, NX like N0 (contract rule).
"""

from __future__ import annotations

from typing import Any

import pytest

from sarcoma_cds import recommend

TE = "AJCC8 trunk and extremities"
RP = "AJCC8 retroperitoneum"


def _stage(**facts: Any) -> dict | None:
    base: dict[str, Any] = {"histology": "leiomyosarcoma", "primary_site": "lower_extremity"}
    base.update(facts)
    return recommend(base).model_dump(mode="json")["stage"]


# ------------------------------------------------------------------ T boundaries
T_BOUNDARIES = [
    (0.1, "T1"), (5.0, "T1"), (5.01, "T2"), (10.0, "T2"), (10.01, "T3"),
    (15.0, "T3"), (15.01, "T4"), (100.0, "T4"),
]


@pytest.mark.parametrize("site,system", [
    ("upper_extremity", TE), ("lower_extremity", TE), ("trunk", TE), ("retroperitoneum", RP)])
@pytest.mark.parametrize("size,t", T_BOUNDARIES)
def test_t_category_boundaries(site: str, system: str, size: float, t: str) -> None:
    st = _stage(primary_site=site, size_cm=size, grade="2", nodes="N0", metastasis="M0")
    assert st is not None
    assert st["system"] == system
    assert st["t"] == t


@pytest.mark.parametrize("depth", ["superficial", "deep", None])
def test_depth_does_not_change_stage(depth: str | None) -> None:
    facts: dict[str, Any] = dict(size_cm=8.0, grade="3", nodes="N0", metastasis="M0")
    if depth:
        facts["depth"] = depth
    st = _stage(**facts)
    assert (st["t"], st["group"]) == ("T2", "IIIA")


# ------------------------------------------------------------------ stage groups
# (size, grade, nodes, metastasis, trunk/extremity group, retroperitoneum group)
STAGE_TABLE = [
    (5.0, "1", "N0", "M0", "IA", "IA"),
    (5.01, "1", "N0", "M0", "IB", "IB"),
    (10.01, "1", "N0", "M0", "IB", "IB"),
    (15.01, "1", "N0", "M0", "IB", "IB"),
    (2.0, "2", "N0", "M0", "II", "II"),
    (5.0, "3", "N0", "M0", "II", "II"),
    (5.01, "2", "N0", "M0", "IIIA", "IIIA"),
    (10.0, "3", "N0", "M0", "IIIA", "IIIA"),
    (10.01, "2", "N0", "M0", "IIIB", "IIIB"),
    (15.0, "3", "N0", "M0", "IIIB", "IIIB"),
    (15.01, "3", "N0", "M0", "IIIB", "IIIB"),
    # N1 M0: stage IV for trunk/extremity, IIIB for retroperitoneum, whatever T and G
    (3.0, "1", "N1", "M0", "IV", "IIIB"),
    (3.0, "3", "N1", "M0", "IV", "IIIB"),
    (20.0, "2", "N1", "M0", "IV", "IIIB"),
    # M1: stage IV for both
    (3.0, "1", "N0", "M1", "IV", "IV"),
    (12.0, "3", "N1", "M1", "IV", "IV"),
]


@pytest.mark.parametrize("size,grade,nodes,m,te_group,rp_group", STAGE_TABLE)
def test_stage_groups_trunk_extremity(size: float, grade: str, nodes: str, m: str, te_group: str,
                                      rp_group: str) -> None:
    for site in ("upper_extremity", "lower_extremity", "trunk"):
        st = _stage(primary_site=site, size_cm=size, grade=grade, nodes=nodes, metastasis=m)
        assert st["system"] == TE
        assert st["group"] == te_group, (site, size, grade, nodes, m)


@pytest.mark.parametrize("size,grade,nodes,m,te_group,rp_group", STAGE_TABLE)
def test_stage_groups_retroperitoneum(size: float, grade: str, nodes: str, m: str, te_group: str,
                                      rp_group: str) -> None:
    st = _stage(
        primary_site="retroperitoneum", size_cm=size, grade=grade, nodes=nodes, metastasis=m
    )
    assert st["system"] == RP
    assert st["group"] == rp_group


def test_every_stage_group_is_reached() -> None:
    te = {row[4] for row in STAGE_TABLE}
    rp = {row[5] for row in STAGE_TABLE}
    assert te == rp == {"IA", "IB", "II", "IIIA", "IIIB", "IV"}


# ------------------------------------------------------------------ GX and NX
@pytest.mark.parametrize("site", ["lower_extremity", "retroperitoneum"])
@pytest.mark.parametrize("size,expected", [(4.0, "IA"), (7.0, "IB"), (12.0, "IB"), (16.0, "IB")])
def test_gx_staged_like_g1(site: str, size: float, expected: str) -> None:
    gx = _stage(primary_site=site, size_cm=size, grade="X", nodes="N0", metastasis="M0")
    g1 = _stage(primary_site=site, size_cm=size, grade="1", nodes="N0", metastasis="M0")
    assert gx["group"] == g1["group"] == expected
    assert gx["g"] == "GX"  # reported as assessed, staged as G1
    assert g1["g"] == "G1"


@pytest.mark.parametrize("site", ["trunk", "retroperitoneum"])
@pytest.mark.parametrize("size,grade,expected", [
    (4.0, "1", "IA"), (4.0, "3", "II"), (8.0, "2", "IIIA"), (11.0, "3", "IIIB"), (8.0, "1", "IB")])
def test_nx_staged_like_n0(site: str, size: float, grade: str, expected: str) -> None:
    nx = _stage(primary_site=site, size_cm=size, grade=grade, nodes="NX", metastasis="M0")
    n0 = _stage(primary_site=site, size_cm=size, grade=grade, nodes="N0", metastasis="M0")
    assert nx["group"] == n0["group"] == expected
    assert nx["n"] == "NX"


# ------------------------------------------------------------------ missing facts
# (site, facts, possible groups)
MISSING = [
    ("lower_extremity", dict(grade="1", nodes="N0", metastasis="M0"), ["IA", "IB"]),
    ("lower_extremity", dict(grade="3", nodes="N0", metastasis="M0"), ["II", "IIIA", "IIIB"]),
    ("lower_extremity", dict(size_cm=4.0, nodes="N0", metastasis="M0"), ["IA", "II"]),
    ("lower_extremity", dict(size_cm=8.0, nodes="N0", metastasis="M0"), ["IB", "IIIA"]),
    ("lower_extremity", dict(size_cm=8.0, grade="3", metastasis="M0"), ["IIIA", "IV"]),
    ("lower_extremity", dict(size_cm=8.0, grade="3", nodes="N0"), ["IIIA", "IV"]),
    ("retroperitoneum", dict(size_cm=8.0, grade="3", metastasis="M0"), ["IIIA", "IIIB"]),
    ("retroperitoneum", dict(size_cm=12.0, grade="3", nodes="N0"), ["IIIB", "IV"]),
    ("retroperitoneum", dict(size_cm=3.0, nodes="N0", metastasis="M0"), ["IA", "II"]),
    ("trunk", dict(), ["IA", "IB", "II", "IIIA", "IIIB", "IV"]),
]


@pytest.mark.parametrize("site,facts,possible", MISSING)
def test_missing_facts_give_possible_groups(site: str, facts: dict, possible: list[str]) -> None:
    st = _stage(primary_site=site, **facts)
    assert st is not None
    assert st["group"] is None
    assert sorted(st["possible_groups"]) == sorted(possible)


@pytest.mark.parametrize(
    "site,facts,expected",
    [
        # missing facts that cannot change the group still give a stage
        ("lower_extremity", dict(size_cm=8.0, grade="3", nodes="N1"), "IV"),  # N1 -> IV with any M
        ("lower_extremity", dict(metastasis="M1"), "IV"),  # M1 -> IV, nothing else needed
        (
            "retroperitoneum",
            dict(size_cm=12.0, grade="2", nodes="N1"),
            None,
        ),  # IIIB or IV: not pinned
        (
            "retroperitoneum",
            dict(size_cm=12.0, grade="2", metastasis="M0"),
            "IIIB",
        ),  # N0/N1 both IIIB
    ],
)
def test_missing_facts_that_do_not_matter(site: str, facts: dict, expected: str | None) -> None:
    st = _stage(primary_site=site, **facts)
    assert st["group"] == expected


def test_missing_size_reports_no_t() -> None:
    st = _stage(grade="1", nodes="N0", metastasis="M0")
    assert st["t"] is None


# ------------------------------------------------------------------ no AJCC stage
@pytest.mark.parametrize("site", ["stomach", "duodenum", "small_intestine", "rectum", "colon",
                                  "oesophagus", "other_gi", "intra_abdominal", "retroperitoneum"])
def test_gist_has_no_stage(site: str) -> None:
    rec = recommend({"histology": "gist", "primary_site": site, "size_cm": 6.0,
                     "mitotic_rate_per_5mm2": 3, "metastasis": "M0", "resectability": "resectable"})
    assert rec.model_dump(mode="json")["stage"] is None


@pytest.mark.parametrize(
    "site",
    [
        "intra_abdominal",
        "stomach",
        "duodenum",
        "small_intestine",
        "colon",
        "rectum",
        "oesophagus",
        "other_gi",
    ],
)
def test_non_gist_abdominal_or_gi_site_has_no_stage(site: str) -> None:
    rec = recommend(
        {
            "histology": "leiomyosarcoma",
            "primary_site": site,
            "size_cm": 8.0,
            "grade": "3",
            "nodes": "N0",
            "metastasis": "M0",
            "resectability": "resectable",
        }
    ).model_dump(mode="json")
    assert rec["stage"] is None
    # still classified in the retroperitoneal/intra-abdominal groups
    assert rec["patient_group"]["id"] == "retroperitoneal.resectable"
