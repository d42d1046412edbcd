"""SQLAlchemy 2 models of the audit store.

Three kinds of record:

* ``audit_records``: one row per recommendation served, on any interface
  (REST, FHIR, CDS Hooks, web). By default it holds a keyed digest (HMAC-SHA256;
  ``sha256:`` in rows written before issue 12) of the canonical input facts, never
  the facts themselves (``raw_facts`` is filled only
  when ``SARCOMA_CDS_STORE_RAW_FACTS=1``, or when a clinician explicitly saves a
  case in the web app). The recommendation as served is kept so the record shows
  what the clinician saw. Stored facts, the case label and the recommendation are
  encrypted (``store/crypto.py``).
* ``cds_cards``: the uuid of every CDS Hooks card served, pointing at its audit
  record, so card feedback can be joined back to the recommendation.
* ``feedback``: CDS Hooks feedback (accepted / overridden with override reasons)
  and clinician decisions recorded in the web app.
* ``seen_jti``: JWT ids already accepted, kept until the token expires (replay
  protection shared by every worker).

The schema is created by the Alembic migrations in ``store/migrations``; these
models must stay in step with them (a test compares them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AuditRecord(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(200))
    interface: Mapped[str] = mapped_column(String(20))
    kb_version: Mapped[str] = mapped_column(String(40))
    kb_hash: Mapped[str] = mapped_column(String(80))
    facts_digest: Mapped[str] = mapped_column(String(80))
    raw_facts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    group_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    out_of_scope: Mapped[bool] = mapped_column(Boolean, default=False)
    statuses: Mapped[dict[str, Any]] = mapped_column(JSON)
    recommendation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    saved: Mapped[bool] = mapped_column(Boolean, default=False)
    # free text that may name the patient: stored encrypted, hence Text (migration 0003)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)


class CdsCard(Base):
    __tablename__ = "cds_cards"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audit_records.id"), index=True)
    service_id: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    __tablename__ = "feedback"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # cds_feedback | decision
    audit_id: Mapped[str | None] = mapped_column(ForeignKey("audit_records.id"), nullable=True,
                                                 index=True)
    service_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    card_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(40))
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    override_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    accepted_suggestions: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    treatment: Mapped[str | None] = mapped_column(String(120), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    caller: Mapped[str] = mapped_column(String(200))


class SeenJti(Base):
    __tablename__ = "seen_jti"

    iss: Mapped[str] = mapped_column(String(300), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class WebSession(Base):
    """A signed-in user's session (OpenID Connect or SMART launch; issue 12). The cookie holds a
    random token; only its SHA-256 is stored, so a database reader cannot take over a session.
    Kept in the database so that every worker and replica sees the same sessions (issue 13)."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # oidc | smart | local
    subject: Mapped[str] = mapped_column(String(300))
    display_name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # SMART context


class RateLimit(Base):
    """A fixed-window request counter per client (issue 12 item 3), shared by every worker and
    replica."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)
