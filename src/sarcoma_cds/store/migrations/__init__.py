"""Alembic migrations of the audit store (run programmatically: ``store.db.migrate``)."""
