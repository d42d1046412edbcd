"""FHIR R4 / mCODE adapters: mCODE Bundle -> facts, recommendation -> CPG Bundle, KB export."""

from sarcoma_cds.adapters.fhir.cpg import (
    kb_to_fhir,
    recommendation_to_bundle,
    validate_bundle,
    validate_resource,
)
from sarcoma_cds.adapters.fhir.mcode_in import MappingResult, facts_from_bundle

__all__ = [
    "MappingResult",
    "facts_from_bundle",
    "kb_to_fhir",
    "recommendation_to_bundle",
    "validate_bundle",
    "validate_resource",
]
