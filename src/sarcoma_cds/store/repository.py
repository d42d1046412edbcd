"""Repository of the audit store: every write is one transaction, written whole or not at all.

Nothing here logs patient data. Facts are reduced to a digest of their canonical JSON form
unless raw storage is switched on (or a clinician saves a case). With a
:class:`~sarcoma_cds.store.crypto.DataCipher` (the service always gives one), the digest is a
keyed ``hmac-sha256:`` and the stored facts, the case label and the recommendation are
encrypted; the readers decrypt them. Without one (a bare library use) rows are written as
before (``sha256:``, in the clear).
"""

from __future__ import annotations

import asyncio
import copy
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sarcoma_cds.domain.facts import LIST_FIELDS, PatientFacts
from sarcoma_cds.domain.recommendation import Recommendation
from sarcoma_cds.store.crypto import DataCipher, DataKeyError, is_sealed_json, is_sealed_text
from sarcoma_cds.store.db import make_engine, migrate
from sarcoma_cds.store.group_commit import GroupCommitWriter
from sarcoma_cds.store.models import AuditRecord, CdsCard, Feedback, RateLimit

EXPORT_FIELDS = (
    "seq", "id", "created_at", "request_id", "caller", "interface", "kb_version", "kb_hash",
    "facts_digest", "group_id", "out_of_scope", "statuses", "saved", "label", "raw_facts",
)


class _Rollback(Exception):
    """Ends the health check's probe transaction without committing it."""


#: Patient facts, parsed or as the contract's JSON object.
Facts = PatientFacts | Mapping[str, Any]


def canonical_facts(facts: Facts) -> dict[str, Any]:
    """Facts as a canonical JSON-able dict: no nulls, list fields sorted."""
    if isinstance(facts, PatientFacts):
        data = facts.model_dump(mode="json", exclude_none=True)
    else:
        data = {k: v for k, v in dict(facts).items() if v is not None}
    for k in LIST_FIELDS:
        if isinstance(data.get(k), list | tuple):
            data[k] = sorted(data[k])
    return data


def canonical_json(facts: Facts) -> str:
    """The canonical JSON of the facts (sorted keys, no whitespace)."""
    return json.dumps(canonical_facts(facts), sort_keys=True, separators=(",", ":"))


def facts_digest(facts: Facts, cipher: DataCipher | None = None) -> str:
    """``hmac-sha256:<hex>`` of the canonical JSON of the facts under the cipher's digest key;
    without a cipher the unkeyed ``sha256:<hex>`` (reversible by brute force: library use
    only)."""
    blob = canonical_json(facts)
    if cipher is not None:
        return cipher.digest(blob)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def statuses_summary(rec: Recommendation) -> dict[str, Any]:
    """Compact statuses of a recommendation: step and option statuses, asks and warnings."""
    steps: dict[str, str] = {}
    options: dict[str, str] = {}
    for pi, p in enumerate(rec.pathways, start=1):
        for s in p.steps:
            key = f"{pi}/{s.treatment}"
            steps[key] = s.status
            for o in s.options:
                options[f"{key}/{'+'.join(o.drugs)}"] = o.status
    out: dict[str, Any] = {"steps": steps, "options": options}
    if rec.missing_information:
        out["missing"] = [m.field for m in rec.missing_information]
    if rec.warnings:
        out["warnings"] = [w.code for w in rec.warnings]
    if rec.candidate_groups:
        out["candidates"] = list(rec.candidate_groups)
    if rec.stage is not None and rec.stage.group:
        out["stage"] = rec.stage.group
    return out


def _safe_text(value: str) -> str:
    """Free text as every database stores it: NUL (which PostgreSQL text refuses) becomes
    U+FFFD, the replacement character."""
    return value.replace("\x00", "\ufffd")


def _safe_json(value: Any) -> Any:
    """A JSON value with NUL replaced in every string (keys too)."""
    if isinstance(value, str):
        return _safe_text(value)
    if isinstance(value, dict):
        return {_safe_text(str(k)): _safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe_json(v) for v in value]
    return value


def _utc(dt: datetime) -> datetime:
    """A stored time as UTC (SQLite hands times back without their zone)."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _opened(cipher: DataCipher | None, value: Any, text: bool, field: str,
            unreadable: list[str]) -> Any:
    """A stored value decrypted (None, and the field named in ``unreadable``, when the row is
    encrypted and the key is missing)."""
    sealed = is_sealed_text(value) if text else is_sealed_json(value)
    if not sealed:
        return value
    if cipher is None:
        unreadable.append(field)
        return None
    try:
        return cipher.open_text(value) if text else cipher.open_json(value)
    except DataKeyError:
        unreadable.append(field)
        return None


def _jti_digest(jti: str) -> str:
    """How a JWT id is stored: its SHA-256, never the id truncated."""
    return "sha256:" + hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


def record_dict(r: AuditRecord, *, with_recommendation: bool = False,
                cipher: DataCipher | None = None) -> dict[str, Any]:
    """An audit row as a dict, its encrypted fields decrypted; ``unreadable`` lists the fields
    that the configured keys cannot decrypt (their value is None)."""
    unreadable: list[str] = []
    d: dict[str, Any] = {
        "seq": r.seq, "id": r.id, "created_at": _utc(r.created_at).isoformat(),
        "request_id": r.request_id, "caller": r.caller, "interface": r.interface,
        "kb_version": r.kb_version, "kb_hash": r.kb_hash, "facts_digest": r.facts_digest,
        "group_id": r.group_id, "out_of_scope": r.out_of_scope, "statuses": r.statuses,
        "saved": r.saved, "label": _opened(cipher, r.label, True, "label", unreadable),
        "raw_facts": _opened(cipher, r.raw_facts, False, "raw_facts", unreadable),
    }
    if with_recommendation:
        d["recommendation"] = _opened(cipher, r.recommendation, False, "recommendation",
                                      unreadable)
    if unreadable:
        d["unreadable"] = unreadable
    return d


def feedback_dict(f: Feedback, cipher: DataCipher | None = None) -> dict[str, Any]:
    unreadable: list[str] = []
    note = _opened(cipher, f.note, True, "note", unreadable)
    reason = _opened(cipher, f.override_reason, False, "override_reason", unreadable)
    accepted = _opened(cipher, f.accepted_suggestions, False, "accepted_suggestions", unreadable)
    d = {
        "id": f.id, "created_at": _utc(f.created_at).isoformat(),
        "kind": f.kind, "audit_id": f.audit_id, "service_id": f.service_id,
        "card_uuid": f.card_uuid, "outcome": f.outcome,
        "outcome_at": _utc(f.outcome_at).isoformat() if f.outcome_at else None,
        "override_reason": reason, "accepted_suggestions": accepted,
        "treatment": f.treatment, "note": note, "caller": f.caller,
    }
    if unreadable:
        d["unreadable"] = unreadable
    return d


@dataclass
class AuditStore:
    """The audit store. Build it with :meth:`open` (creates/migrates the schema)."""

    engine: Engine
    sessions: sessionmaker[Session]
    cipher: DataCipher | None = None  # encrypts stored patient data, keys the facts digest
    #: the per-process group-commit writer of audit records (its thread starts on first use)
    writer: GroupCommitWriter = field(init=False)

    def __post_init__(self) -> None:
        db = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        lock = Path(db + ".write.lock") if db and db != ":memory:" else None
        self.writer = GroupCommitWriter(self.sessions, lock_path=lock)

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True,
             cipher: DataCipher | None = None) -> AuditStore:
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine, sessionmaker(engine, expire_on_commit=False), cipher)

    def close(self) -> None:
        self.writer.close()  # commits what is queued first
        self.engine.dispose()

    def health(self) -> str:
        """``ok``; ``unreachable`` (no connection, no answer); or ``read-only`` (it answers but
        refuses a write: a read-only file or mount, a full disk, a read-only transaction or a
        standby). The write probe is a real insert, rolled back."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return "unreachable"
        try:
            with self.sessions.begin() as s:
                s.add(RateLimit(key=f"healthz:{uuid.uuid4().hex}", window_start=_now(), count=0))
                s.flush()
                raise _Rollback
        except _Rollback:
            return "ok"
        except Exception:
            return "read-only"

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------ writes
    def build_record(
        self,
        rec: Recommendation,
        facts: Facts,
        *,
        interface: str,
        caller: str,
        request_id: str,
        store_raw: bool = False,
        saved: bool = False,
        label: str | None = None,
        audit_id: str | None = None,
        memo: dict[Any, Any] | None = None,
    ) -> AuditRecord:
        """The audit row for one served recommendation (not yet written). Kept apart from the
        write so that the privacy of the row (digest, stored facts) and the way rows are written
        (one transaction each, or group commits) change independently.

        With a cipher the digest is keyed and the facts, label and recommendation encrypted.
        ``request_id`` is the server's id of the request (never the client's own, which a client
        could reuse to blur the trail). ``audit_id``: an id chosen beforehand (CDS cards link to
        it before the record is written with them); a new UUID otherwise.

        ``memo``: a dict kept with ``rec`` and ``facts`` (the service's render cache keeps one
        per distinct facts): the parts of the row that depend on them only (the digest, the
        statuses and the recommendation, encrypted) are computed once per cipher and reused for
        equal facts. A reused encrypted recommendation shows a reader of the database that two
        rows hold the same recommendation for the same facts, which their equal digests show
        already; each row's stored facts and label are encrypted afresh."""
        raw = _safe_json(canonical_facts(facts)) if (store_raw or saved) else None
        text = _safe_text(label[:200]) if label else None
        parts = memo.get(self.cipher) if memo is not None else None
        if parts is None:
            sealed = None
            if self.cipher is not None:  # (sealed, NUL is no concern: the JSON is encrypted
                sealed = self.cipher.seal_json_bytes(  # whole)
                    rec.__pydantic_serializer__.to_json(rec))
            parts = (facts_digest(facts, self.cipher), statuses_summary(rec), sealed)
            if memo is not None:
                memo[self.cipher] = parts  # (keyed by the cipher itself: its keys)
        digest, statuses, sealed = parts
        recommendation: Any
        if self.cipher is not None:
            raw = self.cipher.seal_json(raw)
            text = self.cipher.seal_text(text)
            recommendation = dict(sealed or {})
        else:
            recommendation = _safe_json(rec.model_dump(mode="json"))
        return AuditRecord(
            id=audit_id or str(uuid.uuid4()), created_at=_now(),
            request_id=_safe_text(request_id[:64]),
            caller=_safe_text(caller[:200]), interface=interface[:20],
            kb_version=rec.guideline.version,
            kb_hash=rec.guideline.content_hash, facts_digest=digest,
            raw_facts=raw,
            group_id=rec.patient_group.id if rec.patient_group else None,
            out_of_scope=rec.out_of_scope is not None, statuses=copy.deepcopy(statuses),
            recommendation=recommendation, saved=saved, label=text,
        )

    def submit_record(self, row: AuditRecord, card_uuids: Sequence[str] = (),
                      service_id: str | None = None) -> Future[str]:
        """Queue one audit row and its CDS cards for the next group commit; the future gives the
        row's id once the transaction holding it has committed, or raises
        :class:`~sarcoma_cds.store.group_commit.AuditWriteFailed` (answer nothing as served)."""
        return self.writer.submit(row, card_uuids, service_id)

    def submit_record_async(self, row: AuditRecord, card_uuids: Sequence[str] = (),
                            service_id: str | None = None) -> asyncio.Future[str]:
        """:meth:`submit_record` for a coroutine, on the event loop (``await`` the result)."""
        fut: asyncio.Future[str] = self.writer.submit_async(row, card_uuids, service_id)
        return fut

    def submit_record_once_async(self, row: AuditRecord, card_uuids: Sequence[str],
                                 service_id: str | None, jti: tuple[str, str, datetime],
                                 ) -> asyncio.Future[str | None]:
        """A CDS call's JWT id and its audit row (with its cards) in one group commit: the token
        id (``(iss, jti, expires_at)``, stored as :meth:`remember_jti` stores it) is inserted
        first and the row only when the id is new. The future gives the row's id, or None for
        a replayed token (nothing of the row is written); it raises
        :class:`~sarcoma_cds.store.group_commit.AuditWriteFailed` when the transaction failed."""
        iss, value, expires_at = jti
        fut: asyncio.Future[str | None] = self.writer.submit_async(
            row, card_uuids, service_id, jti=(iss, _jti_digest(value), expires_at))
        return fut

    def remember_jti_async(self, iss: str, jti: str,
                           expires_at: datetime) -> asyncio.Future[bool]:
        """:meth:`remember_jti` for a coroutine, on the event loop (``await`` the result)."""
        return self.writer.remember_jti_async(iss, _jti_digest(jti), expires_at)

    def write_record(self, row: AuditRecord, card_uuids: Sequence[str] = (),
                     service_id: str | None = None) -> str:
        """Write one audit row and its CDS cards (with other requests' rows, in one group
        commit) and wait until they are committed; returns the row's id. Raises
        :class:`~sarcoma_cds.store.group_commit.AuditWriteFailed` when the transaction failed."""
        return self.submit_record(row, card_uuids, service_id).result()

    def record_recommendation(
        self,
        rec: Recommendation,
        facts: Facts,
        *,
        interface: str,
        caller: str,
        request_id: str,
        store_raw: bool = False,
        saved: bool = False,
        label: str | None = None,
        card_uuids: Sequence[str] = (),
        service_id: str | None = None,
        audit_id: str | None = None,
    ) -> str:
        """Record one served recommendation (and its CDS cards) in one transaction; returns its
        id."""
        row = self.build_record(rec, facts, interface=interface, caller=caller,
                                request_id=request_id, store_raw=store_raw, saved=saved,
                                label=label, audit_id=audit_id)
        return self.write_record(row, card_uuids, service_id)

    def record_feedback(
        self,
        *,
        kind: str,
        outcome: str,
        caller: str,
        audit_id: str | None = None,
        service_id: str | None = None,
        card_uuid: str | None = None,
        outcome_at: datetime | None = None,
        override_reason: dict[str, Any] | None = None,
        accepted_suggestions: list[Any] | None = None,
        treatment: str | None = None,
        note: str | None = None,
    ) -> str:
        """Record a CDS feedback outcome or a clinician decision (one transaction); returns its
        id."""
        fid = str(uuid.uuid4())
        note = _safe_text(note) if note is not None else None
        reason: Any = _safe_json(override_reason)
        accepted: Any = _safe_json(accepted_suggestions)
        if self.cipher is not None:  # a clinician's rationale may name the patient
            note = self.cipher.seal_text(note)
            # (so may the override reason's free-text userComment: the web decision form puts
            # its rationale there too, and an EHR sends whatever the clinician typed)
            reason = self.cipher.seal_json(override_reason)
            accepted = self.cipher.seal_json(accepted_suggestions)  # (free-form from the EHR)
        with self.sessions.begin() as s:
            if audit_id is None and card_uuid is not None:
                card = s.get(CdsCard, card_uuid)
                audit_id = card.audit_id if card else None
            s.add(Feedback(
                id=fid, created_at=_now(), kind=kind, audit_id=audit_id, service_id=service_id,
                card_uuid=card_uuid, outcome=_safe_text(outcome[:40]), outcome_at=outcome_at,
                override_reason=reason,
                accepted_suggestions=accepted,
                treatment=_safe_text(treatment[:120]) if treatment else None, note=note,
                caller=_safe_text(caller[:200]),
            ))
        return fid

    def record_decision(self, audit_id: str, *, outcome: str, caller: str,
                        treatment: str | None = None, note: str | None = None,
                        override_reason: dict[str, Any] | None = None) -> str:
        """A clinician's decision on a recommendation (accepted, overridden, ...)."""
        return self.record_feedback(kind="decision", outcome=outcome, caller=caller,
                                    audit_id=audit_id, treatment=treatment, note=note,
                                    override_reason=override_reason)

    def remember_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Store a JWT id; False if it was already seen (a replay). Expired ids are purged.

        The id is stored as its SHA-256 (hex), never truncated: two long ids that share their
        first characters are two tokens (issue 12). It goes in the next group commit (no fsync
        of its own; expired ids purged once a minute; issue 13)."""
        return self.writer.remember_jti(iss, _jti_digest(jti), expires_at)

    def claim_rate(self, key: str, window_start: datetime, wanted: int, limit: int) -> int:
        """Claim up to ``wanted`` requests of ``key``'s allowance (``limit`` per window starting
        at ``window_start``); returns how many were granted (0: the window is spent). One atomic
        UPDATE (or the first INSERT of the key), so workers and replicas share the count."""
        key = key[:200]
        stmt = (update(RateLimit).where(RateLimit.key == key)
                .values(count=case((RateLimit.window_start == window_start,
                                    RateLimit.count + wanted), else_=wanted),
                        window_start=window_start)
                .returning(RateLimit.count))
        for _ in range(3):
            try:
                with self.sessions.begin() as s:
                    count = s.execute(stmt).scalar_one_or_none()
                    if count is None:
                        s.add(RateLimit(key=key, window_start=window_start, count=wanted))
                        count = wanted
            except IntegrityError:  # another worker inserted the key first: update it
                continue
            before = count - wanted
            return max(0, min(wanted, limit - before))
        return 0

    # ------------------------------------------------------------------ reads
    def get_record(self, audit_id: str) -> dict[str, Any] | None:
        """One audit record with its recommendation and feedback, or None."""
        with self.sessions() as s:
            r = s.scalar(select(AuditRecord).where(AuditRecord.id == audit_id))
            if r is None:
                return None
            d = record_dict(r, with_recommendation=True, cipher=self.cipher)
            fb = s.scalars(select(Feedback).where(Feedback.audit_id == audit_id)
                           .order_by(Feedback.seq))
            d["feedback"] = [feedback_dict(f, self.cipher) for f in fb]
            return d

    def served_card(self, card_uuid: str, caller: str, service_id: str) -> str | None:
        """The audit id of a CDS card that ``service_id`` served to ``caller`` (the card's audit
        record names that caller), else None: feedback is taken only on cards served, and only
        from the client that received them (issue 12)."""
        with self.sessions() as s:
            q = (select(CdsCard.audit_id).join(AuditRecord, AuditRecord.id == CdsCard.audit_id)
                 .where(CdsCard.uuid == card_uuid, CdsCard.service_id == service_id,
                        AuditRecord.caller == caller[:200]))
            return s.scalar(q)

    def audit_id_for_card(self, card_uuid: str) -> str | None:
        with self.sessions() as s:
            c = s.get(CdsCard, card_uuid)
            return c.audit_id if c else None

    def page(self, *, limit: int = 50, after: int = 0, interface: str | None = None,
             saved_only: bool = False) -> tuple[list[dict[str, Any]], int | None]:
        """Records with ``seq > after``, oldest first; returns (items, next cursor or None)."""
        limit = max(1, min(limit, 500))
        with self.sessions() as s:
            q = select(AuditRecord).where(AuditRecord.seq > after)
            if interface:
                q = q.where(AuditRecord.interface == interface)
            if saved_only:
                q = q.where(AuditRecord.saved.is_(True))
            rows = list(s.scalars(q.order_by(AuditRecord.seq).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return ([record_dict(r, cipher=self.cipher) for r in rows],
                (rows[-1].seq if more and rows else None))

    def list_cases(self, *, limit: int = 50, offset: int = 0,
                   saved_only: bool = True) -> list[dict[str, Any]]:
        """Newest first: saved cases (or every record when ``saved_only`` is False)."""
        with self.sessions() as s:
            q = select(AuditRecord)
            if saved_only:
                q = q.where(AuditRecord.saved.is_(True))
            q = (q.order_by(AuditRecord.seq.desc()).offset(max(0, offset))
                 .limit(max(1, min(limit, 500))))
            return [record_dict(r, cipher=self.cipher) for r in s.scalars(q)]

    def list_feedback(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with self.sessions() as s:
            q = select(Feedback).order_by(Feedback.seq).limit(limit)
            return [feedback_dict(f, self.cipher) for f in s.scalars(q)]

    def iter_records(self, batch: int = 500) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            items, _ = self.page(limit=batch, after=after)
            if not items:
                return
            yield from items
            after = items[-1]["seq"]

    def count(self) -> int:
        from sqlalchemy import func

        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0)

    # ------------------------------------------------------------------ key rotation
    def rekey(self, batch: int = 200) -> int:
        """Re-encrypt every stored patient value with the first data key (rows written in the
        clear get encrypted too), one transaction per batch; returns the rows rewritten. Run it
        after putting a new key first in ``SARCOMA_CDS_DATA_KEYS``; then the old key may go.
        Digests keep the key they were made with (the facts behind most are not stored)."""
        if self.cipher is None:
            raise DataKeyError("rekey needs the data keys (SARCOMA_CDS_DATA_KEYS)")
        cipher = self.cipher

        def record(r: AuditRecord) -> None:
            r.raw_facts = cipher.reseal_json(r.raw_facts)
            r.recommendation = cipher.reseal_json(r.recommendation)
            r.label = cipher.reseal_text(r.label)

        def feedback(f: Feedback) -> None:
            f.note = cipher.reseal_text(f.note)
            f.override_reason = cipher.reseal_json(f.override_reason)
            f.accepted_suggestions = cipher.reseal_json(f.accepted_suggestions)

        return self._rewrite_all(AuditRecord, record, batch) + self._rewrite_all(
            Feedback, feedback, batch)

    def _rewrite_all(self, model: Any, rewrite: Any, batch: int) -> int:
        """Apply ``rewrite`` to every row of ``model`` in ``seq`` order, one transaction per
        batch (a crash leaves every row either old or new, both readable); returns the rows."""
        n = after = 0
        while True:
            with self.sessions.begin() as s:
                rows = list(s.scalars(select(model).where(model.seq > after)
                                      .order_by(model.seq).limit(batch)))
                for row in rows:
                    rewrite(row)
            if not rows:
                return n
            after, n = rows[-1].seq, n + len(rows)

    # ------------------------------------------------------------------ export
    def export(self, out: TextIO, fmt: str = "jsonl") -> int:
        """Write every audit record to ``out`` as CSV or JSONL; returns the number written."""
        return write_records(self.iter_records(), out, fmt)


def write_records(records: Iterable[dict[str, Any]], out: TextIO, fmt: str) -> int:
    n = 0
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in records:
            row = dict(r)
            for k in ("statuses", "raw_facts"):
                row[k] = json.dumps(row[k], sort_keys=True) if row.get(k) is not None else ""
            w.writerow(row)
            n += 1
    elif fmt == "jsonl":
        for r in records:
            out.write(json.dumps(r, sort_keys=True) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}; expected csv or jsonl")
    return n


def export_string(store: AuditStore, fmt: str) -> str:
    buf = io.StringIO()
    store.export(buf, fmt)
    return buf.getvalue()
