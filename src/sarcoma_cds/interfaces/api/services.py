"""The service layer shared by the REST API, CDS Hooks and the web app.

``create_app`` builds one :class:`Services` and hands it to the web app's
``mount(app, services)``. Everything a user interface needs goes through it, so
every recommendation served is audited in the same way whatever the interface.

Recommendations are decision support, not orders: show ``services.disclaimer``
(the knowledge base's text) wherever clinicians see a recommendation.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds import DISCLAIMER, PatientFacts, Recommendation, load_kb, parse_facts
from sarcoma_cds.domain.engine import recommend as engine_recommend
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.interfaces.api.settings import Settings
from sarcoma_cds.store import AuditStore
from sarcoma_cds.store.models import AuditRecord

#: Distinct facts whose rendered recommendation is kept (about 10 kB each: some 40 MB at most).
RENDER_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Rendered:
    """One recommendation, computed once for equal facts and reused: the parsed facts, the
    recommendation and its contract JSON as bytes (what the REST API answers)."""

    facts: PatientFacts
    recommendation: Recommendation
    body: bytes
    #: the parts of an audit row that depend on the facts only (``AuditStore.build_record``'s
    #: ``memo``: the keyed digest, the statuses, the encrypted recommendation), made once
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Prepared:
    """A recommendation and its audit row, built but not yet written (the row's id is known)."""

    rendered: Rendered
    row: AuditRecord

    @property
    def audit_id(self) -> str:
        return self.row.id


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
    #: with ``write=False``: the audit row to write (``Services.commit``) before answering
    row: AuditRecord | None = None


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

    def __post_init__(self) -> None:
        # the recommendation for equal facts is the same: computed and serialised once (bounded)
        self._rendered = functools.lru_cache(maxsize=RENDER_CACHE_SIZE)(self._render_key)

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
        return self.render(facts).recommendation

    def render(self, facts: dict[str, Any] | PatientFacts) -> Rendered:
        """The recommendation for ``facts`` with its contract JSON, from a bounded LRU cache keyed
        by the canonical facts (sorted keys, no nulls) and the knowledge base's content hash.
        Raises ``InvalidFacts`` (nothing is cached then)."""
        parsed = facts if isinstance(facts, PatientFacts) else parse_facts(facts)
        key = json.dumps(parsed.model_dump(mode="json", exclude_none=True), sort_keys=True,
                         separators=(",", ":"))
        return self._rendered(self.kb.content_hash, key)

    def _render_key(self, kb_hash: str, key: str) -> Rendered:
        parsed = parse_facts(json.loads(key))
        rec = engine_recommend(self.kb, parsed)
        return Rendered(parsed, rec, rec.__pydantic_serializer__.to_json(rec))

    def prepare(
        self,
        facts: dict[str, Any] | PatientFacts,
        interface: str = "web",
        caller: str = "anonymous",
        *,
        request_id: str | None = None,
        save: bool = False,
        label: str | None = None,
    ) -> Prepared:
        """Recommend and build the audit row, without writing it (CPU only: run it off the event
        loop). Raises ``InvalidFacts``. Write the row with :meth:`commit` or
        :meth:`commit_async` before answering."""
        rendered = self.render(facts)
        row = self.store.build_record(
            rendered.recommendation, rendered.facts, interface=interface, caller=caller,
            request_id=request_id or uuid.uuid4().hex, store_raw=self.settings.store_raw_facts,
            saved=save, label=label, memo=rendered.memo)
        return Prepared(rendered, row)

    def commit(self, row: AuditRecord, card_uuids: Sequence[str] = (),
               service_id: str | None = None) -> str:
        """Write the row in the next group commit and wait for it; returns its id. Raises
        ``AuditWriteFailed`` (answered 503)."""
        return self.store.write_record(row, card_uuids, service_id)

    async def commit_async(self, row: AuditRecord, card_uuids: Sequence[str] = (),
                           service_id: str | None = None) -> str:
        """:meth:`commit` for a coroutine: the event loop serves other requests meanwhile."""
        return await self.store.submit_record_async(row, card_uuids, service_id)

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
        prep = self.prepare(facts, interface, caller, request_id=request_id, save=save,
                            label=label)
        return prep.rendered.recommendation, self.commit(prep.row, card_uuids, service_id)

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

    def answer_bundle(
        self,
        bundle: Any,
        interface: str,
        caller: str,
        *,
        request_id: str | None = None,
        service_id: str | None = None,
        card_uuids: Sequence[str] = (),
        write: bool = True,
    ) -> BundleAnswer:
        """The one door from a FHIR Bundle to an answer, for every interface (REST, CDS Hooks, web).

        Maps the bundle (facts, provenance, gaps), checks the facts, recommends, cross-checks
        what the record states against what was computed (the recorded AJCC stage group), and
        writes the audit record. When the facts are not valid contract facts nothing is
        recorded and ``problems`` says why; the caller decides how to show it (422, an info card,
        the form with its errors). ``write=False`` builds the row (``ans.row``, ``ans.audit_id``)
        without writing it: the caller writes it with :meth:`commit` (with the CDS cards that
        name it) before answering.
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
        prep = self.prepare(facts, interface, caller, request_id=request_id)
        ans.recommendation, ans.row = prep.rendered.recommendation, prep.row
        ans.audit_id = (self.commit(prep.row, card_uuids, service_id) if write
                        else prep.audit_id)
        ans.gaps += stage_cross_check(ans.recommendation, mapped.reported)
        return ans

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
