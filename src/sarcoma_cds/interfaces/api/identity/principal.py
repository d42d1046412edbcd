"""Who is calling: one :class:`Principal` for every way in (issue 12).

``local``
    the single user of the embedded default (no sign-in and no API keys configured; the
    server listens on 127.0.0.1 only).
``oidc``
    a user signed in with OpenID Connect (a row of ``web_sessions``).
``smart``
    a user who opened the app by a SMART on FHIR launch.
``apikey``
    a REST client holding an API key.
``cds``
    a CDS Hooks client (its JWT's issuer).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import Literal

from sarcoma_cds.interfaces.api.identity.roles import AUDITOR, CLINICIAN, VIEWER, expand

Kind = Literal["local", "oidc", "smart", "apikey", "cds"]

#: The roles of the local user of the embedded default: every role but the audit trail's,
#: which needs an API key (as before issue 12).
LOCAL_ROLES = expand({VIEWER, CLINICIAN})

#: The roles of an API key listed without ``roles=`` (what a key could do before issue 12:
#: the REST API and the audit trail).
LEGACY_KEY_ROLES = expand({VIEWER, AUDITOR})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and its (expanded) roles."""

    kind: Kind
    subject: str
    display_name: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def author(self) -> str:
        """How the principal is named in the audit trail and on a recorded decision: the
        display name, with the subject it stands for (``Alice Smith (oidc:alice)``)."""
        if self.kind == "local":
            return self.display_name[:200]
        tag = f"{self.kind}:{self.subject}"
        name = self.display_name.strip()
        text = tag if not name or name == self.subject else f"{name} ({tag})"
        return text[:200]


def local_user() -> Principal:
    """The single user of the embedded default, named after the operating-system account."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # (no user name in a container without /etc/passwd entry)
        who = ""
    name = f"local user {who}".strip() if who else "local user"
    return Principal(kind="local", subject=who or "local", display_name=name, roles=LOCAL_ROLES)
