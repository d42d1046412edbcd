"""Knowledge-base slips that would change advice silently are rejected on load (hazard H-10).

Each test copies the packaged knowledge base, makes one deliberate mistake of a kind a
guideline author makes, and checks that loading fails with a message naming the file,
the rule and the problem.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sarcoma_cds import KnowledgeBaseError, load_kb
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR

RULES = "rules/personalisation.yaml"
CLASSIFICATION = "rules/classification.yaml"
DEFINITIONS = "rules/definitions.yaml"


def _slip(tmp_path: Path, rel: str, old: str, new: str) -> list[str]:
    kb = tmp_path / "kb"
    shutil.copytree(DEFAULT_KB_DIR, kb)
    path = kb / rel
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(KnowledgeBaseError) as e:
        load_kb(kb)
    return e.value.problems


def _one(problems: list[str], *words: str) -> None:
    assert any(all(w in p for w in words) for p in problems), problems


def test_the_packaged_knowledge_base_is_clean() -> None:
    assert load_kb(DEFAULT_KB_DIR).version


SLIPS = [
    # (what an author got wrong, file, the text, the slip, words the message must name)
    ("a rule value outside the vocabulary", RULES, "{fact: kit_mutation, eq: exon_9}",
     "{fact: kit_mutation, eq: exon_99}", ("personalisation.yaml", "kit_mutation", "exon_99", "vocabulary")),
    ("a typo in a classification value", CLASSIFICATION, "{fact: stage_group, eq: II}",
     "{fact: stage_group, eq: III}", ("classification.yaml", "stage_group", "'III'")),
    ("a typo in a drug name", RULES, "targets: {drugs: [imatinib]}", "targets: {drugs: [imatinibb]}",
     ("imatinibb",)),
    ("a typo in a listed therapy", DEFINITIONS, "{fact: prior_therapies, contains: anthracycline}",
     "{fact: prior_therapies, contains: anthracyclin}", ("definitions.yaml", "anthracyclin")),
    ("a typo in a comorbidity", RULES, "{fact: comorbidities, contains: heart_failure}",
     "{fact: comorbidities, contains: heart_failur}", ("comorbidities", "heart_failur")),
    ("a comparison on a categorical fact", RULES, '{fact: grade, eq: "3"}', "{fact: grade, lt: 3}",
     ("grade", "not a number")),
    ("a typo in an ask field", RULES, "- field: ntrk_fusion", "- field: ntrk_fusionn", ("ask", "ntrk_fusionn")),
    ("an unknown reference", RULES, "references: [label-ifosfamide]", "references: [label-ifosfamid]",
     ("label-ifosfamid", "sources.yaml")),
    ("an unknown warning target", RULES, "treatment: image_guided_ablation", "treatment: image_guided_ablatoin",
     ("image_guided_ablatoin",)),
    ("'in' on a list fact", RULES, "{fact: comorbidities, contains: heart_failure}",
     "{fact: comorbidities, in: [heart_failure]}", ("comorbidities", "is a list")),
]


@pytest.mark.parametrize("what,rel,old,new,words", SLIPS, ids=[s[0] for s in SLIPS])
def test_each_slip_is_caught_with_its_place_named(tmp_path: Path, what: str, rel: str, old: str, new: str,
                                                  words: tuple[str, ...]) -> None:
    _one(_slip(tmp_path, rel, old, new), *words)
