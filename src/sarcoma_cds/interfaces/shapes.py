"""JSON shapes that more than one interface prints, defined once so they cannot drift apart
(``sarcoma-cds groups --format json`` and REST ``GET /groups`` give the same document)."""

from __future__ import annotations

from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB


def groups_document(kb: CompiledKB) -> dict[str, Any]:
    """``{"groups": [...]}``: every patient group with its id, label, site, summary and
    references."""
    return {"groups": [{"id": g.id, "label": g.label, "site": g.site, "summary": g.summary,
                        "references": list(g.references)} for g in kb.data.groups]}
