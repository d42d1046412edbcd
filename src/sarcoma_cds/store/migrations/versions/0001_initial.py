"""Initial audit schema: audit records, CDS cards, feedback, seen JWT ids.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("interface", sa.String(20), nullable=False),
        sa.Column("kb_version", sa.String(40), nullable=False),
        sa.Column("kb_hash", sa.String(80), nullable=False),
        sa.Column("facts_digest", sa.String(80), nullable=False),
        sa.Column("raw_facts", sa.JSON(), nullable=True),
        sa.Column("group_id", sa.String(80), nullable=True),
        sa.Column("out_of_scope", sa.Boolean(), nullable=False),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("recommendation", sa.JSON(), nullable=True),
        sa.Column("saved", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
    )
    op.create_index("ix_audit_records_id", "audit_records", ["id"], unique=True)
    op.create_index("ix_audit_records_created_at", "audit_records", ["created_at"])
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("audit_id", sa.String(36), sa.ForeignKey("audit_records.id"), nullable=False),
        sa.Column("service_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cds_cards_audit_id", "cds_cards", ["audit_id"])
    op.create_table(
        "feedback",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("audit_id", sa.String(36), sa.ForeignKey("audit_records.id"), nullable=True),
        sa.Column("service_id", sa.String(80), nullable=True),
        sa.Column("card_uuid", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("override_reason", sa.JSON(), nullable=True),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("treatment", sa.String(120), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("caller", sa.String(200), nullable=False),
    )
    op.create_index("ix_feedback_id", "feedback", ["id"], unique=True)
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_index("ix_feedback_audit_id", "feedback", ["audit_id"])
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_table(
        "seen_jti",
        sa.Column("iss", sa.String(300), primary_key=True),
        sa.Column("jti", sa.String(200), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_seen_jti_expires_at", "seen_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_table("seen_jti")
    op.drop_table("feedback")
    op.drop_table("cds_cards")
    op.drop_table("audit_records")
