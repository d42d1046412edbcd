"""Deterministic random patient facts for benchmarks (a realistic mix, some facts missing)."""

from __future__ import annotations

import random
from typing import Any

STS = ["liposarcoma", "liposarcoma_dedifferentiated", "liposarcoma_myxoid", "leiomyosarcoma",
       "undifferentiated_pleomorphic_sarcoma", "synovial_sarcoma", "myxofibrosarcoma",
       "malignant_peripheral_nerve_sheath_tumour", "angiosarcoma", "other_soft_tissue_sarcoma"]
OOS = ["rhabdomyosarcoma", "desmoid_tumour", "ewing_sarcoma"]
LIMB = ["upper_extremity", "lower_extremity", "trunk"]
ABD = ["retroperitoneum", "intra_abdominal"]
GI = ["stomach", "stomach", "stomach", "small_intestine", "duodenum", "rectum", "colon"]


def _maybe(r: random.Random, p: float, value: Any) -> Any:
    return value if r.random() < p else None


def patient(r: random.Random) -> dict[str, Any]:
    u = r.random()
    f: dict[str, Any] = {}
    if u < 0.30:
        f["histology"] = "gist"
        f["primary_site"] = r.choice(GI)
        f["mitotic_rate_per_5mm2"] = _maybe(r, 0.85, r.choice([0, 2, 4, 5, 6, 8, 10, 12, 30]))
        f["kit_mutation"] = _maybe(
            r, 0.8, r.choice(["exon_11", "exon_11", "exon_9", "none", "unknown"])
        )
        f["pdgfra_mutation"] = _maybe(r, 0.7, r.choice(["none", "none", "d842v", "exon_12"]))
        f["tumour_rupture"] = _maybe(r, 0.7, r.random() < 0.1)
        f["sdh_deficient"] = _maybe(r, 0.4, r.random() < 0.1)
        f["disease_status"] = _maybe(
            r, 0.85, r.choice(["primary", "primary", "recurrent", "progressive"])
        )
        if f["disease_status"] == "progressive":
            f["progression_extent"] = _maybe(r, 0.8, r.choice(["limited", "widespread"]))
            f["prior_therapies"] = _maybe(
                r,
                0.8,
                r.choice(
                    [
                        ["imatinib_standard_dose"],
                        ["imatinib_high_dose", "imatinib_standard_dose"],
                        ["surgery"],
                    ]
                ),
            )
    else:
        f["histology"] = r.choice(OOS) if u > 0.93 else r.choice(STS)
        f["primary_site"] = r.choice(LIMB * 3 + ABD + ["stomach", "head_neck", "other"])
        f["grade"] = _maybe(r, 0.9, r.choice(["1", "2", "3", "3", "X"]))
        f["nodes"] = _maybe(r, 0.8, r.choice(["N0", "N0", "N0", "NX", "N1"]))
        f["depth"] = _maybe(r, 0.7, r.choice(["superficial", "deep"]))
        f["disease_status"] = _maybe(
            r, 0.8, r.choice(["primary", "primary", "primary", "recurrent"])
        )
        f["prior_therapies"] = _maybe(
            r, 0.5, r.choice([[], ["anthracycline"], ["surgery", "radiotherapy"]])
        )
    f["size_cm"] = _maybe(r, 0.9, round(r.uniform(0.8, 25), 1))
    f["metastasis"] = _maybe(r, 0.9, "M1" if r.random() < 0.2 else "M0")
    if f["metastasis"] == "M1":
        f["metastatic_burden"] = _maybe(r, 0.8, r.choice(["oligometastatic", "disseminated"]))
        f["metastatic_sites"] = _maybe(r, 0.7, r.choice([["lung"], ["liver"], ["lung", "bone"]]))
    f["resectability"] = _maybe(
        r,
        0.85,
        r.choice(["resectable", "resectable", "resectable_significant_morbidity", "unresectable"]),
    )
    f["ntrk_fusion"] = _maybe(r, 0.4, r.random() < 0.05)
    f["comorbidities"] = _maybe(
        r, 0.3, r.choice([[], ["heart_failure"], ["uncorrectable_coagulopathy"]])
    )
    f["age_years"] = _maybe(r, 0.9, r.randint(19, 90))
    f["ecog"] = _maybe(r, 0.6, r.randint(0, 3))
    return {k: v for k, v in f.items() if v is not None}


def patients(n: int, seed: int = 7) -> list[dict[str, Any]]:
    r = random.Random(seed)
    return [patient(r) for _ in range(n)]
