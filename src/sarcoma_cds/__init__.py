"""sarcoma-cds: decision support for adult soft-tissue sarcoma and GIST.

The public API is what this module exports; everything else may move.
Recommendations are decision support, not orders.
"""

from __future__ import annotations

from typing import Any

from sarcoma_cds.domain.engine import recommend as _recommend
from sarcoma_cds.domain.facts import FACT_FIELDS, InvalidFacts, PatientFacts, parse_facts
from sarcoma_cds.domain.knowledge import CompiledKB, KnowledgeBaseError
from sarcoma_cds.domain.recommendation import DISCLAIMER, Recommendation
from sarcoma_cds.kb.loader import load_kb

__version__ = "0.1.0"

__all__ = [
    "DISCLAIMER",
    "FACT_FIELDS",
    "CompiledKB",
    "InvalidFacts",
    "KnowledgeBaseError",
    "PatientFacts",
    "Recommendation",
    "__version__",
    "load_kb",
    "parse_facts",
    "recommend",
]


def recommend(facts: dict[str, Any] | PatientFacts, kb: CompiledKB | None = None) -> Recommendation:
    """Personalised recommendation for one patient's facts (contract model).

    Raises :class:`InvalidFacts` (a ``ValueError``) naming every offending field.
    ``kb`` defaults to the packaged knowledge base, loaded and compiled once.
    """
    return _recommend(kb if kb is not None else load_kb(), facts)
