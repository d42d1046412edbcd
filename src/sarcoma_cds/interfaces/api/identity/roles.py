"""The roles of sarcoma-cds (issue 12) and what each one allows.

``viewer``
    browse the saved cases and compute recommendations (REST, FHIR, the patient form).
``clinician``
    everything a viewer may do, plus save cases and record tumour-board decisions.
``auditor``
    read the audit trail (REST ``/audit`` and ``/audit/{id}``).
``admin``
    every role.

Roles given to a principal are expanded once (:func:`expand`), so a check is a set lookup.
"""

from __future__ import annotations

from collections.abc import Iterable

VIEWER = "viewer"
CLINICIAN = "clinician"
AUDITOR = "auditor"
ADMIN = "admin"

ROLES: tuple[str, ...] = (VIEWER, CLINICIAN, AUDITOR, ADMIN)

#: What each role includes besides itself.
IMPLIES: dict[str, frozenset[str]] = {
    VIEWER: frozenset(),
    CLINICIAN: frozenset({VIEWER}),
    AUDITOR: frozenset(),
    ADMIN: frozenset({VIEWER, CLINICIAN, AUDITOR}),
}

#: What a role allows, in words (for the 403 page and problem document).
DOES: dict[str, str] = {
    VIEWER: "see saved cases and compute recommendations",
    CLINICIAN: "save cases and record decisions",
    AUDITOR: "read the audit trail",
    ADMIN: "administer the service",
}


class UnknownRole(ValueError):
    """A configured role name is not one of :data:`ROLES`; the message names it."""


def expand(roles: Iterable[str]) -> frozenset[str]:
    """The roles with everything they imply."""
    out: set[str] = set()
    for r in roles:
        out.add(r)
        out |= IMPLIES.get(r, frozenset())
    return frozenset(out)


def parse_roles(text: str, where: str = "roles") -> frozenset[str]:
    """``"clinician,auditor"`` -> the roles (expanded); an unknown name raises
    :class:`UnknownRole` naming ``where``."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROLES]
    if unknown:
        raise UnknownRole(f"{where}: unknown role {unknown[0]!r} "
                          f"(expected one of {', '.join(ROLES)})")
    return expand(names)
