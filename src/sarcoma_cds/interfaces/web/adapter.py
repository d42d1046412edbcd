"""A thin adapter between the web pages and the application's services.

The service layer (``sarcoma_cds.interfaces.api.services.Services``) owns recommending
with an audit record, the saved-case store and FHIR mapping. The pages only talk to
:class:`WebBackend`, so a change in the service's helper names is absorbed here. When the
web app is mounted without services (``mount(app, None)``, e.g. a bare app in a test), a
minimal in-memory fallback keeps every page working and ``fallbacks`` says what is missing.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sarcoma_cds import DISCLAIMER, Recommendation, load_kb, recommend

if TYPE_CHECKING:  # (the service layer needs the service extras; the pages work without them)
    from sarcoma_cds.interfaces.api.services import Services

OUTCOMES = {
    "accepted": "Accepted the recommendation",
    "overridden": "Chose another option",
    "deferred": "Deferred (more information needed)",
}


@dataclass
class Decision:
    outcome: str
    chosen: str
    rationale: str
    clinician: str
    at: str

    @property
    def outcome_label(self) -> str:
        return OUTCOMES.get(self.outcome, self.outcome.replace("_", " "))


@dataclass
class CaseView:
    """What the case pages need, whatever store it came from."""

    id: str
    facts: dict[str, Any]
    recommendation: dict[str, Any]
    created: str = ""
    label: str = ""
    decisions: list[Decision] = field(default_factory=list)
    kb_version: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def short_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")
    except (TypeError, ValueError):
        return iso or ""


class _MemoryStore:
    """Fallback case store (process memory), used only without the service layer."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseView] = {}
        self.lock = threading.Lock()

    def add(self, facts: dict[str, Any], rec: dict[str, Any], label: str, saved: bool) -> str:
        cid = uuid.uuid4().hex
        with self.lock:
            self.cases[cid] = CaseView(cid, dict(facts) if saved else {}, rec, _now(), label)
        return cid


class WebBackend:
    """Everything the pages need from the application."""

    def __init__(self, services: Services | None = None) -> None:
        self.services = services
        self.kb = getattr(services, "kb", None) or load_kb()
        self.fallbacks: list[str] = []
        self._mem = _MemoryStore() if services is None else None
        if services is None:
            self.fallbacks.append("no service layer: cases are kept in memory only; "
                                  "FHIR import/export off")

    @property
    def disclaimer(self) -> str:
        return str(getattr(self.services, "disclaimer", None) or DISCLAIMER)

    # ------------------------------------------------------------------ recommend
    def recommend(self, facts: dict[str, Any]) -> Recommendation:
        """Recommendation without recording (what-if variants). Raises InvalidFacts."""
        return recommend(facts, self.kb)

    def recommend_and_record(self, facts: dict[str, Any],
                             caller: str) -> tuple[Recommendation, str]:
        """Recommend and write the audit record (not a saved case)."""
        if self.services is not None:
            rec, audit_id = self.services.recommend_and_record(facts, interface="web",
                                                               caller=caller)
            return rec, str(audit_id)
        rec = self.recommend(facts)
        assert self._mem is not None
        return rec, self._mem.add(facts, rec.model_dump(mode="json"), "", saved=False)

    def save_case(self, facts: dict[str, Any], caller: str,
                  label: str) -> tuple[Recommendation, str]:
        """Recommend, record and keep the facts as a saved case (explicit clinician action)."""
        if self.services is not None:
            rec, cid = self.services.save_case(facts, caller=caller, label=label or None)
            return rec, str(cid)
        rec = self.recommend(facts)
        assert self._mem is not None
        return rec, self._mem.add(facts, rec.model_dump(mode="json"), label, saved=True)

    # ------------------------------------------------------------------ cases
    def get_case(self, cid: str) -> CaseView | None:
        if self.services is None:
            assert self._mem is not None
            return self._mem.cases.get(cid)
        raw = self.services.get_case(cid)
        if raw is None:
            return None
        if raw.get("unreadable"):  # its data key is gone: say so, never show an empty record
            from sarcoma_cds.interfaces.web.routes_extra import CaseUnreadable

            raise CaseUnreadable(list(raw["unreadable"]))
        decisions = [
            Decision(
                outcome=str(f.get("outcome") or ""),
                chosen=str(f.get("treatment") or ""),
                rationale=str(f.get("note")
                              or (f.get("override_reason") or {}).get("userComment") or ""),
                clinician=str(f.get("caller") or ""),
                at=str(f.get("outcome_at") or f.get("created_at") or ""),
            )
            for f in raw.get("feedback") or []
            if f.get("kind", "decision") == "decision" or f.get("outcome")
        ]
        return CaseView(
            id=str(raw.get("id", cid)),
            facts=dict(raw.get("raw_facts") or {}),
            recommendation=dict(raw.get("recommendation") or {}),
            created=str(raw.get("created_at") or ""),
            label=str(raw.get("label") or ""),
            decisions=decisions,
            kb_version=str(raw.get("kb_version") or ""),
        )

    def list_cases(self, limit: int = 50) -> list[dict[str, Any]]:
        if self.services is None:
            assert self._mem is not None
            rows = [c for c in self._mem.cases.values() if c.facts]
            return [{"id": c.id, "label": c.label, "created_at": c.created,
                     "group_id": (c.recommendation.get("patient_group") or {}).get("id")}
                    for c in reversed(rows)][:limit]
        return list(self.services.list_cases(limit=limit))

    def record_decision(self, cid: str, outcome: str, chosen: str, rationale: str,
                        clinician: str) -> None:
        caller = clinician.strip() or "web"
        if self.services is not None:
            reason = None
            if outcome == "overridden":
                reason = {"code": "other-option", "display": "Chose another option",
                          "userComment": rationale}
            self.services.record_decision(cid, outcome, caller, treatment=chosen or None,
                                          note=rationale or None, override_reason=reason)
            return
        assert self._mem is not None
        with self._mem.lock:
            case = self._mem.cases.get(cid)
            if case is None:
                raise KeyError(cid)
            case.decisions.append(Decision(outcome, chosen, rationale, caller, _now()))

    # ------------------------------------------------------------------ FHIR
    @property
    def has_fhir(self) -> bool:
        return self.services is not None and hasattr(self.services, "facts_from_bundle")

    def facts_from_bundle(
            self, bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        svc = self.services
        if svc is None or not self.has_fhir:
            raise NotImplementedError("FHIR import needs the service layer")
        facts, provenance, gaps = svc.facts_from_bundle(bundle)
        return dict(facts), dict(provenance or {}), list(gaps or [])

    def answer_bundle(self, bundle: dict[str, Any], caller: str) -> Any:
        """The service's one door for a FHIR Bundle (mapping, cross-checks, recommendation,
        audit)."""
        svc = self.services
        if svc is None or not hasattr(svc, "answer_bundle"):
            raise NotImplementedError("FHIR import needs the service layer")
        return svc.answer_bundle(bundle, "web", caller)

    def recommendation_to_fhir(self, rec: dict[str, Any], facts: dict[str, Any],
                               cid: str) -> dict[str, Any]:
        svc = self.services
        if svc is None or not self.has_fhir:
            raise NotImplementedError("FHIR export needs the service layer")
        model = Recommendation.model_validate(rec)
        return dict(svc.recommendation_to_fhir(model, facts or None, audit_id=cid))
