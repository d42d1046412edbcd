"""The service layer shared by the REST API, CDS Hooks and the web app.

``create_app`` builds one :class:`Services` and hands it to the web app's
``mount(app, services)``. Everything a user interface needs goes through it, so
every recommendation served is audited in the same way whatever the interface.

Recommendations are decision support, not orders: show ``services.disclaimer``
(the knowledge base's text) wherever clinicians see a recommendation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds import DISCLAIMER, Recommendation, load_kb, parse_facts
from sarcoma_cds.domain.engine import recommend as engine_recommend
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.interfaces.api.settings import Settings
from sarcoma_cds.store import AuditStore


@dataclass
class BundleAnswer:
    """What :meth:`Services.answer_bundle` returns: the mapping, and the answer when the facts are
    valid."""

    facts: dict[str, Any]
    provenance: dict[str, Any]
    gaps: list[dict[str, str]]
    reported: dict[str, Any]
    problems: list[tuple[str, str]] = field(default_factory=list)
    recommendation: Recommendation | None = None
    audit_id: str | None = None
    checked_facts: dict[str, Any] | None = None  # the valid facts (``record=False``)


def stage_cross_check(rec: Recommendation, reported: dict[str, Any]) -> list[dict[str, str]]:
    """A ``data_conflict`` gap for each recorded stage group that differs from the computed AJCC 8
    stage."""
    out = []
    for sg in reported.get("stage_group", []):
        if (
            rec.stage is not None
            and rec.stage.group
            and sg["value"] not in (rec.stage.group, rec.stage.group[:-1])
        ):
            out.append(
                {
                    "resource": sg["resource"],
                    "element": "valueCodeableConcept",
                    "problem": f"data_conflict: recorded stage group {sg['value']} differs from "
                               "the "
                    f"computed AJCC 8 stage {rec.stage.group}",
                }
            )
    return out


@dataclass
class Services:
    """Access to the knowledge base, the engine, the audit store and the FHIR mapper.

    Attributes:
        settings: the service settings (``Settings.from_env()`` unless given).
        kb: the compiled knowledge base (``kb.version``, ``kb.content_hash``,
            ``kb.data.groups``, ``kb.groups[id]``).
        store: the :class:`~sarcoma_cds.store.AuditStore` (SQLAlchemy).
    """

    settings: Settings
    kb: CompiledKB
    store: AuditStore
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings | None = None, kb: CompiledKB | None = None) -> Services:
        from sarcoma_cds.store.crypto import DataCipher, load_data_keys

        s = settings or Settings.from_env()
        # stored patient data encrypted, facts digest keyed (issue 12): SARCOMA_CDS_DATA_KEYS
        cipher = DataCipher(load_data_keys(s.data_dir, s.data_keys))
        return cls(settings=s, kb=kb or load_kb(s.kb_dir),
                   store=AuditStore.open(s.db_url, run_migrations=s.run_migrations,
                                         cipher=cipher))

    @property
    def disclaimer(self) -> str:
        """The 'decision support, not an order' text to show next to every recommendation."""
        return self.kb.data.meta.disclaimer or DISCLAIMER

    # ------------------------------------------------------------ recommendations
    def recommend(self, facts: dict[str, Any]) -> Recommendation:
        """The recommendation for ``facts`` (not audited). Raises ``InvalidFacts``."""
        return engine_recommend(self.kb, parse_facts(facts))

    def recommend_and_record(
        self,
        facts: dict[str, Any],
        interface: str = "web",
        caller: str = "anonymous",
        *,
        request_id: str | None = None,
        save: bool = False,
        label: str | None = None,
        card_uuids: Sequence[str] = (),
        service_id: str | None = None,
    ) -> tuple[Recommendation, str]:
        """Recommend and write the audit record in one go; returns ``(recommendation, audit_id)``.

        Raises ``InvalidFacts`` (nothing is recorded then). ``interface`` is one of
        ``rest``, ``fhir``, ``cds-hooks``, ``web``. ``caller`` identifies the user or
        client (never a patient). ``save=True`` marks the record as a saved case and
        keeps its facts (an explicit clinician action); otherwise raw facts are kept
        only when ``SARCOMA_CDS_STORE_RAW_FACTS=1``.
        """
        parsed = parse_facts(facts)
        rec = engine_recommend(self.kb, parsed)
        audit_id = self.store.record_recommendation(
            rec, parsed, interface=interface, caller=caller,
            request_id=request_id or uuid.uuid4().hex, store_raw=self.settings.store_raw_facts,
            saved=save, label=label, card_uuids=card_uuids, service_id=service_id,
        )
        return rec, audit_id

    # ------------------------------------------------------------ cases (web)
    def save_case(self, facts: dict[str, Any], caller: str, label: str | None = None,
                  request_id: str | None = None) -> tuple[Recommendation, str]:
        """Recommend, record and keep the facts as a saved case; returns ``(rec, case_id)``."""
        return self.recommend_and_record(facts, "web", caller, request_id=request_id,
                                         save=True, label=label)

    def get_case(self, case_id: str) -> dict[str, Any] | None:
        """An audit record by id (``/cases/{id}``): its fields, ``recommendation`` (contract
        JSON as served), ``raw_facts`` (None unless saved or raw storage is on) and
        ``feedback`` (decisions and CDS outcomes). None when unknown."""
        return self.store.get_record(case_id)

    def list_cases(
        self, limit: int = 50, offset: int = 0, saved_only: bool = True
    ) -> list[dict[str, Any]]:
        """Newest first; without recommendation bodies."""
        return self.store.list_cases(limit=limit, offset=offset, saved_only=saved_only)

    def record_decision(self, case_id: str, outcome: str, caller: str, *,
                        treatment: str | None = None, note: str | None = None,
                        override_reason: dict[str, Any] | None = None) -> str:
        """A clinician's decision on a recommendation: ``outcome`` such as ``accepted``,
        ``overridden`` or ``deferred``; ``override_reason`` as a CDS Hooks-style coding
        dict (``{"code": ..., "display": ..., "userComment": ...}``). Returns its id."""
        return self.store.record_decision(case_id, outcome=outcome, caller=caller,
                                          treatment=treatment, note=note,
                                          override_reason=override_reason)

    def case_url(self, case_id: str) -> str:
        """Absolute (when SARCOMA_CDS_BASE_URL is set) URL of the web view of a record."""
        return f"{self.settings.base_url or ''}/cases/{case_id}"

    # ------------------------------------------------------------ FHIR
    def facts_from_bundle(
        self, bundle: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """mCODE Bundle -> ``(facts, provenance, gaps)``.

        ``facts`` is a contract facts dict (possibly incomplete: check with
        ``parse_facts``); ``provenance`` maps each fact to the list of
        ``{"resourceType", "id"}`` it came from; ``gaps`` lists every resource or
        code that could not be used: ``{"resource", "element", "problem"}``.
        """
        from sarcoma_cds.adapters.fhir import facts_from_bundle

        res = facts_from_bundle(bundle)
        return res.facts, res.provenance, res.gaps

    def facts_from_bundle_full(self, bundle: dict[str, Any]) -> Any:
        """Like :meth:`facts_from_bundle` but returns the whole ``MappingResult``
        (``facts``, ``provenance``, ``gaps``, ``reported``: e.g. the recorded stage group)."""
        from sarcoma_cds.adapters.fhir import facts_from_bundle

        return facts_from_bundle(bundle)

    def answer_bundle(
        self,
        bundle: Any,
        interface: str,
        caller: str,
        *,
        request_id: str | None = None,
        service_id: str | None = None,
        card_uuids: Sequence[str] = (),
        record: bool = True,
    ) -> BundleAnswer:
        """The one door from a FHIR Bundle to an answer, for every interface (REST, CDS Hooks, web).

        Maps the bundle (facts, provenance, gaps), checks the facts, recommends, cross-checks
        what the record states against what was computed (the recorded AJCC stage group), and
        writes the audit record. When the facts are not valid contract facts nothing is
        recorded and ``problems`` says why; the caller decides how to show it (422, an info card,
        the form with its errors). ``record=False`` recommends without writing: the caller then
        writes the record with :meth:`record_answer` (CDS Hooks: with its cards, in one
        transaction).
        """
        from sarcoma_cds import InvalidFacts
        from sarcoma_cds.adapters.fhir import facts_from_bundle

        mapped = facts_from_bundle(bundle)
        ans = BundleAnswer(facts=mapped.facts, provenance=mapped.provenance, gaps=list(mapped.gaps),
                           reported=mapped.reported)
        try:
            facts = parse_facts(mapped.facts).model_dump(exclude_none=True)
        except InvalidFacts as e:
            ans.problems = list(e.problems)
            return ans
        if record:
            ans.recommendation, ans.audit_id = self.recommend_and_record(
                facts,
                interface,
                caller,
                request_id=request_id,
                service_id=service_id,
                card_uuids=card_uuids,
            )
        else:
            ans.recommendation, ans.checked_facts = self.recommend(facts), facts
        ans.gaps += stage_cross_check(ans.recommendation, mapped.reported)
        return ans

    def record_answer(self, ans: BundleAnswer, interface: str, caller: str, *, request_id: str,
                      audit_id: str, service_id: str | None = None,
                      card_uuids: Sequence[str] = ()) -> str:
        """Write the audit record of an answer made with ``answer_bundle(record=False)`` under
        the id its cards already link to, and the cards, in one transaction (issue 12)."""
        if ans.recommendation is None or ans.checked_facts is None:
            raise ValueError("record_answer needs a recommendation made with record=False")
        ans.audit_id = self.store.record_recommendation(
            ans.recommendation, parse_facts(ans.checked_facts), interface=interface,
            caller=caller, request_id=request_id, store_raw=self.settings.store_raw_facts,
            card_uuids=card_uuids, service_id=service_id, audit_id=audit_id,
        )
        return ans.audit_id

    def recommendation_to_fhir(
        self,
        rec: Recommendation,
        facts: dict[str, Any] | None = None,
        audit_id: str | None = None,
        patient_ref: str | None = None,
    ) -> dict[str, Any]:
        """The recommendation as a CPG-on-FHIR Bundle (CarePlan, RequestGroup, requests);
        ``patient_ref`` (e.g. ``Patient/123``) becomes their subject."""
        from sarcoma_cds.adapters.fhir import recommendation_to_bundle

        return recommendation_to_bundle(rec, self.kb, facts=facts, audit_id=audit_id,
                                        base_url=self.settings.base_url, patient_ref=patient_ref)
