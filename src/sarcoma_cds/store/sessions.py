"""Signed-in users' sessions (issue 12), in the ``web_sessions`` table of the audit database.

The browser's cookie holds a random token (256 bits); the table holds only its SHA-256, so a
reader of the database cannot take over a session. Every worker and replica reads the same
table, so a user stays signed in whichever one answers (issue 13). Nothing here logs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from sarcoma_cds.store.models import WebSession

#: Seconds between two updates of a session's ``last_seen_at`` (not one write per request).
TOUCH_EVERY_S = 60


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SessionRow:
    """A live session as read back (the token itself is never stored)."""

    kind: str
    subject: str
    display_name: str
    roles: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    context: dict[str, Any] | None


@dataclass
class WebSessionStore:
    """Create, read and delete sessions; expired rows are purged when a session is created."""

    sessions: sessionmaker[Session]
    #: A session unused for longer than this ends (its ``last_seen_at`` is refreshed at most
    #: once every :data:`TOUCH_EVERY_S`, so the idle time is measured to within a minute).
    idle: timedelta = timedelta(minutes=60)

    def create(self, *, kind: str, subject: str, display_name: str, roles: Iterable[str],
               lifetime: timedelta, context: dict[str, Any] | None = None) -> str:
        """A new session; returns the token for the cookie (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            s.execute(delete(WebSession).where(WebSession.expires_at < now))
            # (names come from the identity provider or the EHR: NUL, which PostgreSQL text
            # refuses, becomes U+FFFD instead of failing the sign-in with a 500)
            s.add(WebSession(id_hash=token_hash(token), kind=kind[:20],
                             subject=_no_nul(subject[:300]),
                             display_name=_no_nul(display_name[:200]), roles=sorted(roles),
                             created_at=now, expires_at=now + lifetime, last_seen_at=now,
                             context=context))
        return token

    def get(self, token: str) -> SessionRow | None:
        """The live session of ``token``, or None (unknown, deleted or expired)."""
        if not token or len(token) > 200:
            return None
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            row = s.get(WebSession, token_hash(token))
            if row is None:
                return None
            if _utc(row.expires_at) <= now or now - _utc(row.last_seen_at) > self.idle:
                s.delete(row)  # expired, or idle too long
                return None
            if (now - _utc(row.last_seen_at)).total_seconds() > TOUCH_EVERY_S:
                row.last_seen_at = now
            return SessionRow(kind=row.kind, subject=row.subject, display_name=row.display_name,
                              roles=tuple(row.roles or ()), created_at=_utc(row.created_at),
                              expires_at=_utc(row.expires_at), context=row.context)

    def delete(self, token: str) -> bool:
        """End a session (sign-out); True when there was one."""
        if not token or len(token) > 200:
            return False
        with self.sessions.begin() as s:
            res = s.execute(delete(WebSession).where(WebSession.id_hash == token_hash(token)))
            return bool(getattr(res, "rowcount", 0))

    def pop(self, token: str) -> SessionRow | None:
        """End a session and return what it was (None when there was none): sign-out needs the
        row's context (the provider's ID token hint) once the row is gone."""
        if not token or len(token) > 200:
            return None
        with self.sessions.begin() as s:
            row = s.get(WebSession, token_hash(token))
            if row is None:
                return None
            out = SessionRow(kind=row.kind, subject=row.subject, display_name=row.display_name,
                             roles=tuple(row.roles or ()), created_at=_utc(row.created_at),
                             expires_at=_utc(row.expires_at), context=row.context)
            s.delete(row)
            return out

    def reconcile(self, kind: str, subject: str, roles: Iterable[str] | None) -> int:
        """At a new sign-in, the user's other live sessions take the roles the provider gives
        now (roles removed there are lost everywhere); ``roles`` None (no longer admitted)
        ends them. Returns how many sessions changed."""
        subject = _no_nul(subject)[:300]  # (stored so: PostgreSQL text refuses NUL)
        with self.sessions.begin() as s:
            rows = list(s.scalars(select(WebSession).where(WebSession.kind == kind[:20],
                                                           WebSession.subject == subject)))
            for row in rows:
                if roles is None:
                    s.delete(row)
                else:
                    row.roles = sorted(roles)
            return len(rows)

    def touch(self, token: str, when: datetime) -> None:
        """Set a session's last use (tests of the idle timeout)."""
        with self.sessions.begin() as s:
            row = s.get(WebSession, token_hash(token))
            if row is not None:
                row.last_seen_at = when

    def expire(self, token: str, when: datetime) -> None:
        """Set a session's expiry (tests and administrators ending a session early)."""
        with self.sessions.begin() as s:
            row = s.get(WebSession, token_hash(token))
            if row is not None:
                row.expires_at = when

    def count(self) -> int:
        with self.sessions() as s:
            return len(list(s.scalars(select(WebSession.id_hash))))
