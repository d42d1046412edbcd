"""The reader's code tables: data with provenance, checked against their sources, no guessing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sarcoma_cds.adapters.fhir import terms as T

ROOT = Path(__file__).resolve().parents[1]


def _script() -> object:
    spec = importlib.util.spec_from_file_location(
        "terminology_script", ROOT / "scripts" / "terminology.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["terminology_script"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_table_passes_the_check_script() -> None:
    pytest.importorskip("simple_icd_10_cm")
    assert _script().check() == []  # type: ignore[attr-defined]


def test_every_target_names_its_source() -> None:
    for path in T.DIR.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["resourceType"] == "ConceptMap"
        for g in data["group"]:
            for e in g["element"]:
                assert all(t.get("comment") for t in e["target"]), (path.name, e["code"])


@pytest.mark.parametrize(
    ("code", "site"),
    [
        ("72696002", "lower_extremity"),
        ("56459004", "lower_extremity"),
        ("85562004", "upper_extremity"),
        ("16982005", "upper_extremity"),
        ("91470000", "trunk"),
        ("69695003", "stomach"),
        ("21306003", "small_intestine"),
    ],
)
def test_body_sites_map_through_their_parents(code: str, site: str) -> None:
    assert T.snomed_site(code) == site


def test_corrected_and_unknown_codes() -> None:
    assert T.icdo3_site("C49.4") == "trunk"  # abdominal wall, not intra-abdominal
    assert T.snomed_site("4147007") is None  # not the mesentery
    assert T.snomed_site("999999999") is None and T.icdo3_site("C49.9") is None
    assert T.icd10cm("C49.A2", "histology") == (True, "gist")
    assert T.icd10cm("C49A2", "primary_site") == (True, "stomach")
    assert T.icd10cm("C49.A3", "primary_site") == (
        True,
        None,
    )  # duodenum or jejunum/ileum: not said
    assert T.icdo3_histology("8936/1")[0] == "gist" and T.icdo3_histology("8890/0")[0] is None


def test_genes_and_drugs() -> None:
    assert T.hgnc_gene("HGNC:8803") == T.hgnc_gene("8803") == "PDGFRA"
    assert T.system("http://www.genenames.org/geneId") == T.HGNC
    assert T.rxnorm_drug("282388") == "imatinib" and T.rxnorm_drug("1") is None
    assert T.drugs_in_text("Gleevec 400 MG Oral Tablet") == {"imatinib"}
    assert T.drugs_in_text("doxorubicin hydrochloride liposome (pegylated)") == {
        "liposomal_doxorubicin"
    }
    assert T.drugs_in_text("paracetamol") == set()
