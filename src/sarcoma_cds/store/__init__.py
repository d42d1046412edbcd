"""The audit store: SQLAlchemy 2 models, Alembic migrations, repository functions.

Import this package only where the service extras are installed (it imports SQLAlchemy).
"""

from sarcoma_cds.store.repository import AuditStore, canonical_facts, facts_digest, statuses_summary

__all__ = ["AuditStore", "canonical_facts", "facts_digest", "statuses_summary"]
